"""The one clock of the application: nothing else asks the system for the time."""

from __future__ import annotations

import threading
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
