"""Shared helpers: figures, interleaved runs and medians, the result table, a throw-away
orderbell on a fresh SQLite file."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from orderbell.channels.base import Provider
from orderbell.channels.console import ConsoleProvider
from orderbell.clock import ManualClock
from orderbell.compose import Services, build
from orderbell.domain.model import Channel
from orderbell.settings import Settings
from orderbell.store.schema import shops

#: The benchmarks' clock: Friday 2026-11-20 12:00 in Istanbul (inside the demo quiet hours).
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@dataclass
class Figure:
    """One measured figure next to its baseline, measured in the same run."""

    name: str
    unit: str
    ours: float
    baseline: float
    target: str
    passed: bool
    higher_is_better: bool = True
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """ours / baseline (for a latency, above 1 means slower than the baseline)."""
        return self.ours / self.baseline if self.baseline else float("nan")

    def as_json(self) -> dict[str, Any]:
        """The figure as written to the results file."""
        return {
            "name": self.name,
            "unit": self.unit,
            "ours": self.ours,
            "baseline": self.baseline,
            "ratio": self.ratio,
            "target": self.target,
            "passed": self.passed,
            "higher_is_better": self.higher_is_better,
            "notes": self.notes,
        }


def median(values: list[float]) -> float:
    """The median of the repetitions."""
    return float(statistics.median(values))


def interleaved(
    runs: int, baseline: Callable[[], float], ours: Callable[[], float]
) -> tuple[list[float], list[float]]:
    """Baseline and ours alternately, so a noisy neighbour hurts both about equally."""
    base_runs: list[float] = []
    our_runs: list[float] = []
    for _ in range(runs):
        base_runs.append(baseline())
        our_runs.append(ours())
    return base_runs, our_runs


def rate(work: Callable[[], int]) -> float:
    """Items per second of one call that returns how many items it processed."""
    start = time.perf_counter()
    count = work()
    elapsed = time.perf_counter() - start
    if count <= 0:
        raise RuntimeError("the benchmark processed nothing")
    return count / elapsed


def services(folder: Path, *, billing: bool = True, batch: int = 100) -> Services:
    """orderbell on a fresh SQLite file, console providers writing to a file, a manual clock."""
    folder.mkdir(parents=True, exist_ok=True)
    outbox = folder / "outbox.jsonl"
    settings = Settings(
        database_url=f"sqlite:///{folder / 'orderbell.db'}",
        outbox_file=outbox,
        embedded_worker=False,
        billing=billing,
        worker_batch=batch,
    )
    providers: dict[Channel, Provider] = {
        Channel.SMS: ConsoleProvider(Channel.SMS, path=outbox),
        Channel.EMAIL: ConsoleProvider(Channel.EMAIL, path=outbox),
    }
    return build(settings, clock=ManualClock(NOW), providers=providers)


def bench_shops(conn: Connection, count: int, now: datetime) -> list[int]:
    """The ids of `count` plain shops (UTC, no quiet hours), created as far as missing."""
    ids = list(conn.execute(select(shops.c.id).order_by(shops.c.id)).scalars())
    for i in range(len(ids), count):
        ids.append(
            conn.execute(
                shops.insert().values(
                    name=f"b{i}", slug=f"b{i}", timezone="UTC", country="US", locale="en",
                    currency="USD", closed_dates=[], settings={},
                    transactional_obeys_quiet_hours=False, created_at=now,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        )  # fmt: skip
    return ids[:count]


def _number(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:,.2f}" if value < 10 else f"{value:,.1f}"
    return f"{value:,.0f}"


def print_table(figures: list[Figure]) -> None:
    """The human-readable result: one line per figure."""
    head = f"{'figure':<50} {'ours':>11} {'baseline':>11} {'ratio':>7}  {'target':<30} result"
    print(head)
    print("-" * len(head))
    for f in figures:
        print(
            f"{f.name:<50} {_number(f.ours, f.unit):>11} {_number(f.baseline, f.unit):>11} "
            f"{f.ratio:>6.2f}x  {f.target:<30} {'PASS' if f.passed else 'MISS'}"
        )
