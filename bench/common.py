"""Shared helpers: timing, medians, a result table, a throw-away orderbell."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orderbell.channels.console import ConsoleProvider
from orderbell.clock import ManualClock
from orderbell.compose import Services, build
from orderbell.domain.model import Channel
from orderbell.settings import Settings

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@dataclass
class Figure:
    """One measured figure with its same-run baseline."""

    name: str
    unit: str
    ours: float
    baseline: float | None
    target: str
    passed: bool
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """ours / baseline (for latencies the caller passes baseline=None)."""
        if self.baseline in (None, 0):
            return None
        assert self.baseline is not None
        return self.ours / self.baseline


def median_of(runs: int, measure: Callable[[], float]) -> tuple[float, list[float]]:
    """The median of several runs of a measurement, and all of them."""
    values = [measure() for _ in range(runs)]
    return statistics.median(values), values


def timed(work: Callable[[], int]) -> float:
    """Items per second of one call that returns how many items it processed."""
    start = time.perf_counter()
    count = work()
    return count / (time.perf_counter() - start)


def services(folder: Path, *, billing: bool = True, batch: int = 100) -> Services:
    """orderbell on a fresh SQLite file with console providers writing to a file."""
    folder.mkdir(parents=True, exist_ok=True)
    outbox = folder / "outbox.jsonl"
    settings = Settings(
        database_url=f"sqlite:///{folder / 'orderbell.db'}",
        outbox_file=outbox,
        embedded_worker=False,
        billing=billing,
        worker_batch=batch,
    )
    providers = {
        Channel.SMS: ConsoleProvider(Channel.SMS, path=outbox),
        Channel.EMAIL: ConsoleProvider(Channel.EMAIL, path=outbox),
    }
    return build(settings, clock=ManualClock(NOW), providers=providers)  # type: ignore[arg-type]


def print_table(figures: list[Figure]) -> None:
    """The human-readable result."""
    print(f"{'figure':<52} {'ours':>12} {'baseline':>12} {'ratio':>7}  {'target':<28} result")
    for f in figures:
        base = f"{f.baseline:,.1f}" if f.baseline is not None else "-"
        ratio = f"{f.ratio:.2f}x" if f.ratio is not None else "-"
        print(
            f"{f.name:<52} {f.ours:>12,.1f} {base:>12} {ratio:>7}  {f.target:<28} "
            f"{'PASS' if f.passed else 'MISS'}"
        )
