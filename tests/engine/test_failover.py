"""Failover health: no trip on a few errors, cooling that grows on repeated trips, and
hysteresis — only a clearly healthy window resets the escalation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orderbell.channels.base import Outcome
from orderbell.engine.failover import FailoverPolicy, Health

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
OK, ERR, BAD = Outcome.ACCEPTED, Outcome.RETRYABLE, Outcome.PERMANENT


def test_too_few_samples_never_trip() -> None:
    health = Health(FailoverPolicy(min_samples=10))
    assert health.record(1, [ERR] * 9, T0) is None


def test_trip_above_rate_then_escalating_cooling() -> None:
    health = Health(FailoverPolicy(min_samples=10, cooling_seconds=30, max_cooling_seconds=100))
    assert health.record(1, [ERR] * 10, T0) == T0 + timedelta(seconds=30)
    assert health.record(1, [ERR] * 10, T0) == T0 + timedelta(seconds=60)
    assert health.record(1, [ERR] * 10, T0) == T0 + timedelta(seconds=100)  # capped


def test_hysteresis_between_trip_and_recover_rates() -> None:
    health = Health(FailoverPolicy(min_samples=10, trip_rate=0.5, recover_rate=0.2))
    assert health.record(1, [ERR] * 10, T0) is not None  # trip 1
    # 40 % errors: below the trip rate, above the recover rate: escalation kept
    assert health.record(1, [ERR] * 4 + [OK] * 6, T0) is None
    later = T0 + timedelta(minutes=5)
    assert health.record(1, [ERR] * 10, later) == later + timedelta(seconds=60)  # trip 2
    # a healthy window (10 % errors) resets it: the next trip cools for the base time again
    calm = later + timedelta(minutes=5)
    assert health.record(1, [ERR] + [OK] * 9, calm) is None
    again = calm + timedelta(minutes=5)
    assert health.record(1, [ERR] * 10, again) == again + timedelta(seconds=30)


def test_permanent_errors_and_old_samples_do_not_count() -> None:
    health = Health(FailoverPolicy(min_samples=10, window_seconds=60))
    assert health.record(1, [BAD] * 20, T0) is None  # invalid numbers: not the provider's fault
    assert health.record(2, [ERR] * 9, T0) is None
    assert health.record(2, [ERR], T0 + timedelta(seconds=61)) is None  # the 9 fell out
    assert health.error_rate(2) == 1.0
