"""The Kannel benchmark runs end to end through real Kannel with tiny counts. No speed is
asserted."""

from __future__ import annotations

from bench.kannel import WARM_UP, kannel_figures
from tests.kannel_harness import Kannel


def test_kannel_benchmark_measures_ours_and_bare_aiohttp(kannel: Kannel) -> None:
    kannel.start()
    [figure] = kannel_figures(count=40, runs=1, server=kannel)
    assert figure.ours > 0 and figure.baseline > 0 and figure.ratio > 0, figure
    assert figure.notes["delivered_to_fakesmsc"] >= 2 * (40 + WARM_UP)
