"""The scale benchmarks (backlog claims, resident memory) run end to end with tiny counts.
No speed or size is asserted."""

from __future__ import annotations

import math
import os

from bench.backlog import DUE_NOW, backlog_figures
from bench.memory import resident_kb


def test_backlog_benchmark_claims_from_both_outboxes() -> None:
    claim, lookup = backlog_figures(
        "sqlite", pending=DUE_NOW + 2_000, history=1_000, batches=2, runs=1, lookups=5
    )
    for figure in (claim, lookup):
        assert figure.ours > 0 and math.isfinite(figure.ours), figure
        assert figure.baseline > 0 and math.isfinite(figure.baseline), figure
    assert len(claim.notes["large_runs"]) == len(claim.notes["young_runs"]) == 1
    assert claim.notes["claim_plan_indexes"]


def test_resident_memory_is_read_from_proc() -> None:
    kb = resident_kb(os.getpid())
    assert 0 < kb["VmRSS"] <= kb["VmHWM"]
