"""The gateway benchmarks run end to end with tiny counts. No speed is asserted."""

from __future__ import annotations

from bench.gateways import egress_figures, pacing_figures


def test_egress_and_pacing_benchmarks_measure_something() -> None:
    figures = egress_figures(count=60, runs=1) + pacing_figures(seconds=0.5, rates=(10,))
    for figure in figures:
        assert figure.ours > 0 and figure.baseline > 0, figure
    assert figures[0].notes["requests"] == 60
