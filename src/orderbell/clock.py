"""The one clock of the application: nothing else asks the system for the time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Tells the current time as an aware UTC datetime."""

    def now(self) -> datetime:
        """The current instant, UTC."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """The current instant, UTC."""
        return datetime.now(UTC)


class ManualClock:
    """A clock that tests and the demo move by hand; thread-safe."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The current (manual) instant, UTC."""
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to an instant."""
        if when.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        with self._lock:
            self._now = when.astimezone(UTC)

    def advance(self, delta: timedelta) -> None:
        """Move forward by delta."""
        with self._lock:
            self._now = self._now + delta


class SkewedClock:
    """Another clock off by a fixed amount: a machine whose clock is wrong (tests, drills)."""

    def __init__(self, base: Clock, skew: timedelta) -> None:
        self._base = base
        self.skew = skew

    def now(self) -> datetime:
        """The base clock's instant plus the skew."""
        return self._base.now() + self.skew


class DatabaseClock:
    """The database server's clock, read through this machine's clock plus a measured offset.

    With many machines on one PostgreSQL database, time-based decisions (due, expired,
    quiet hours) must agree whatever a machine's own clock says. The offset to the server's
    ``clock_timestamp()`` is measured at most every `refresh_seconds` (one cheap query), so
    ``now()`` costs no round trip. If the database cannot be reached the last offset is kept.
    """

    def __init__(
        self,
        read_server_time: Callable[[], datetime],
        *,
        local: Clock | None = None,
        refresh_seconds: float = 30.0,
    ) -> None:
        self._read = read_server_time
        self._local = local or SystemClock()
        self._refresh = refresh_seconds
        self._offset = timedelta(0)
        self._next_refresh = 0.0
        self._lock = threading.Lock()

    @property
    def offset(self) -> timedelta:
        """Server time minus local time at the last measurement."""
        return self._offset

    def now(self) -> datetime:
        """The server's current instant, UTC."""
        if time.monotonic() >= self._next_refresh:
            self.measure()
        return self._local.now() + self._offset

    def measure(self) -> None:
        """Measure the offset now (half the round trip is taken as the server's reply time)."""
        with self._lock:
            self._next_refresh = time.monotonic() + self._refresh
            try:
                before = self._local.now()
                server = self._read()
                after = self._local.now()
            except Exception:  # keep the last offset; the next call tries again soon
                self._next_refresh = time.monotonic() + 1.0
                return
            self._offset = server.astimezone(UTC) - (before + (after - before) / 2)
