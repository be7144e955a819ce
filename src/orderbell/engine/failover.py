"""Failover health: when a provider account errs too often, skip it for a cooling period.

Each worker keeps a sliding window of its own outcomes per account; when the error rate over
the window crosses `trip_rate` (with at least `min_samples` outcomes, so one timeout never
trips it) the account cools down until ``shop_providers.cooling_until``, which every worker
reads. Against flapping: the window restarts after a trip, a provider that trips again soon
cools twice as long (up to `max_cooling_seconds`), and only a window whose error rate fell
below the lower `recover_rate` resets that escalation (hysteresis).

Errors are RETRYABLE and AMBIGUOUS outcomes (the provider's fault: 5xx, 429, timeouts);
PERMANENT ones (an invalid number) say nothing about the provider's health.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from orderbell.channels.base import Outcome

ERRORS = frozenset({Outcome.RETRYABLE, Outcome.AMBIGUOUS})


@dataclass(frozen=True, slots=True, kw_only=True)
class FailoverPolicy:
    """The thresholds of failover."""

    window_seconds: float = 60.0
    min_samples: int = 10
    trip_rate: float = 0.5  #: cool down above this error rate …
    recover_rate: float = 0.2  #: … and count as healthy again only below this one
    cooling_seconds: float = 30.0
    max_cooling_seconds: float = 600.0


class Health:
    """One worker's view of its provider accounts' recent outcomes."""

    def __init__(self, policy: FailoverPolicy | None = None) -> None:
        self.policy = policy or FailoverPolicy()
        self._samples: dict[int, deque[tuple[datetime, bool]]] = {}
        self._trips: dict[int, int] = {}

    def record(
        self, account_id: int, outcomes: Iterable[Outcome], now: datetime
    ) -> datetime | None:
        """Add outcomes; returns the cooling deadline when this trips the account."""
        p = self.policy
        window = self._samples.setdefault(account_id, deque())
        for outcome in outcomes:
            window.append((now, outcome in ERRORS))
        horizon = now - timedelta(seconds=p.window_seconds)
        while window and window[0][0] < horizon:
            window.popleft()
        if len(window) < p.min_samples:
            return None
        rate = sum(1 for _, bad in window if bad) / len(window)
        if rate <= p.recover_rate:
            self._trips.pop(account_id, None)
            return None
        if rate <= p.trip_rate:
            return None
        trips = self._trips.get(account_id, 0) + 1
        self._trips[account_id] = trips
        window.clear()
        seconds = min(p.max_cooling_seconds, p.cooling_seconds * 2 ** (trips - 1))
        return now + timedelta(seconds=seconds)

    def error_rate(self, account_id: int) -> float | None:
        """The current window's error rate (None without samples)."""
        window = self._samples.get(account_id)
        if not window:
            return None
        return sum(1 for _, bad in window if bad) / len(window)
