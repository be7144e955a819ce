"""The benchmarks run end to end with tiny counts, so they cannot rot. No speed asserted."""

from __future__ import annotations

import pytest
from bench.ingest import ingest_figures
from bench.pipeline import pipeline_figure, pricing_figure
from bench.render import render_figure


def test_render_and_pipeline_benchmarks_measure_something() -> None:
    for figure in (
        render_figure(count=500, runs=1),
        pipeline_figure(count=200, runs=1),
        pricing_figure(count=20, runs=1),
    ):
        assert figure.ours > 0 and figure.baseline is not None and figure.baseline > 0
        assert figure.ratio is not None and figure.ratio > 0


@pytest.mark.slow
def test_http_ingest_benchmark_measures_both_servers() -> None:
    throughput, latency = ingest_figures(count=40, runs=1, rate=40, seconds=1.0)
    assert throughput.ours > 0 and throughput.baseline is not None and throughput.baseline > 0
    assert latency.ours > 0 and latency.notes["ours"]["p50_ms"] > 0
