"""`python -m bench` (make bench): every figure with its same-run baseline and the ratio;
writes bench/results/latest.json (`--quick`: smaller counts, bench/results/quick.json;
`--only NAME`: some of them, to *-partial.json)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog

from bench.backlog import backlog_figures
from bench.common import Figure, print_table
from bench.gateways import egress_figures, pacing_figures
from bench.ingest import ingest_figures
from bench.kannel import kannel_figures
from bench.memory import memory_figures
from bench.pipeline import pipeline_figure, planning_figure, pricing_figure
from bench.render import render_figure
from bench.smtp import smtp_figure
from bench.workers import worker_figures

RESULTS = Path(__file__).resolve().parent / "results"
#: The backlog figures: batches of 100 claimed per run, runs, next-due lookups timed.
CLAIMS = {"batches": 50, "runs": 3, "lookups": 200}
QUICK_CLAIMS = {"batches": 20, "runs": 1, "lookups": 50}


def suites(quick: bool) -> dict[str, Callable[[], list[Figure]]]:
    """The benchmarks by name, with full or quick counts."""
    if quick:
        return {
            "render": lambda: [render_figure(count=5_000, runs=3)],
            "pipeline": lambda: [pipeline_figure(count=2_000, runs=1)],
            "ingest": lambda: ingest_figures(count=300, runs=1, limit=3, per_s=200, seconds=1),
            "pricing": lambda: [
                pricing_figure(count=50, runs=1, path="request"),
                pricing_figure(count=50, runs=1, path="worker"),
                pricing_figure(count=50, runs=1, path="concurrent"),
                pricing_figure(count=50, runs=1, path="request", terms="packages"),
                pricing_figure(count=50, runs=1, path="worker", terms="packages"),
                pricing_figure(count=50, runs=1, path="request", terms="capped"),
                pricing_figure(count=50, runs=1, path="worker", terms="capped"),
            ],
            "planning": lambda: [planning_figure(count=200, runs=1)],
            "smtp": lambda: [smtp_figure(count=300, runs=1)],
            "egress": lambda: egress_figures(count=1_000, runs=1),
            "pacing": lambda: pacing_figures(seconds=3),
            "workers": lambda: worker_figures(count=2_000, runs=1, per_s=100, seconds=2),
            "kannel": lambda: kannel_figures(count=300, runs=1),
            "backlog": lambda: [
                *backlog_figures("sqlite", pending=100_000, history=100_000, **QUICK_CLAIMS),
                *backlog_figures("postgresql", pending=100_000, history=100_000, **QUICK_CLAIMS),
            ],
            "memory": lambda: memory_figures(events=200, count=1_000, runs=1),
        }
    return {
        "render": lambda: [render_figure(count=50_000, runs=5)],
        "pipeline": lambda: [pipeline_figure(count=20_000, runs=3)],
        "ingest": lambda: ingest_figures(count=5_000, runs=3, limit=10, per_s=1000, seconds=5),
        "pricing": lambda: [
            pricing_figure(count=2_000, runs=3, path="request"),
            pricing_figure(count=2_000, runs=3, path="worker"),
            pricing_figure(count=2_000, runs=3, path="concurrent"),
            pricing_figure(count=2_000, runs=3, path="request", terms="packages"),
            pricing_figure(count=2_000, runs=3, path="worker", terms="packages"),
            pricing_figure(count=2_000, runs=3, path="request", terms="capped"),
            pricing_figure(count=2_000, runs=3, path="worker", terms="capped"),
        ],
        "planning": lambda: [planning_figure(count=2_000, runs=3)],
        "smtp": lambda: [smtp_figure(count=2_000, runs=3)],
        "egress": lambda: egress_figures(count=2_000, runs=3),
        "pacing": lambda: pacing_figures(seconds=60),  # the issue: accuracy over 60 s
        "workers": lambda: worker_figures(count=10_000, runs=3, per_s=1_000, seconds=5),
        "kannel": lambda: kannel_figures(count=2_000, runs=3),
        "backlog": lambda: [
            *backlog_figures("sqlite", pending=1_000_000, history=1_000_000, **CLAIMS),
            *backlog_figures("postgresql", pending=5_000_000, history=2_000_000, **CLAIMS),
        ],
        "memory": lambda: memory_figures(events=2_000, count=10_000, runs=3),
    }


def main() -> int:
    """Run the benchmarks; exit 0 whether targets pass or miss (the table says which)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts, a fast pass")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(suites(quick=False)),
    )
    args = parser.parse_args()
    # In-process runs log warnings only (the ingest server logs as configured, to a file).
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    figures: list[Figure] = []
    timings: dict[str, float] = {}
    started = time.perf_counter()
    for name, run in suites(args.quick).items():
        if args.only and name not in args.only:
            continue
        begin = time.perf_counter()
        print(f"running {name} ...", flush=True)
        figures.extend(run())
        timings[name] = round(time.perf_counter() - begin, 1)
    print()
    print_table(figures)
    name = "quick" if args.quick else "latest"
    out = RESULTS / (f"{name}-partial.json" if args.only else f"{name}.json")
    out.parent.mkdir(exist_ok=True)
    report = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_1m_at_end": os.getloadavg()[0],
        },
        "seconds": {**timings, "total": round(time.perf_counter() - started, 1)},
        "figures": [f.as_json() for f in figures],
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{sum(f.passed for f in figures)}/{len(figures)} targets met; written {out}")
    print(f"machine: {os.cpu_count()} CPUs; the HTTP client shares them with the servers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
