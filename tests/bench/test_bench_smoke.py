"""The benchmarks run end to end with tiny counts, so they cannot rot. No speed is asserted."""

from __future__ import annotations

import math

from bench.common import Figure
from bench.ingest import ingest_figures
from bench.pipeline import pipeline_figure, planning_figure, pricing_figure
from bench.render import render_figure


def measured(figure: Figure) -> None:
    assert figure.ours > 0 and math.isfinite(figure.ours), figure
    assert figure.baseline > 0 and math.isfinite(figure.baseline), figure
    assert figure.ratio > 0, figure
    assert isinstance(figure.passed, bool)


def test_render_pipeline_and_pricing_benchmarks_measure_something() -> None:
    pipeline = pipeline_figure(count=200, runs=1)
    for figure in (
        render_figure(count=200, runs=1),
        pipeline,
        pricing_figure(count=5, runs=1, path="request"),
        pricing_figure(count=5, runs=1, path="worker"),
        pricing_figure(count=5, runs=1, path="concurrent"),
        pricing_figure(count=5, runs=1, path="worker", terms="packages"),
        pricing_figure(count=5, runs=1, path="request", terms="capped"),
    ):
        measured(figure)
    assert pipeline.notes["ours_sent"] == pipeline.notes["raw_sent"] == 200
    measured(planning_figure(count=10, runs=1))  # raises unless every event planned 2 messages


def test_http_ingest_benchmark_measures_both_servers() -> None:
    throughput, in_request, latency = ingest_figures(
        count=20, runs=1, limit=5, per_s=20, seconds=0.5, warmup=2, idle_seconds=0.3
    )
    measured(throughput)
    measured(in_request)
    measured(latency)
    assert throughput.notes["runs"]["ours"][0]["errors"] == 0
    assert in_request.passed  # no errors planning in the request either
    assert latency.notes["ours"]["requests"] == 10
    assert latency.notes["ours"]["errors"] == 0
    assert latency.notes["validate_only"]["unanswered"] == 0


def test_smtp_benchmark_measures_both_ways_of_connecting() -> None:
    from bench.smtp import smtp_figure

    figure = smtp_figure(count=20, runs=1)
    measured(figure)
    assert figure.notes["received"] == 20 + 20 + 20  # warm-up batch, baseline, ours
