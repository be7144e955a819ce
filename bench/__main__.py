"""`python -m bench` (make bench): every figure with its same-run baseline and ratio;
writes bench/results/latest.json."""

from __future__ import annotations

import json
import logging
import platform
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import structlog

from bench.common import Figure, print_table
from bench.ingest import ingest_figures
from bench.pipeline import pipeline_figure, pricing_figure
from bench.render import render_figure


def main() -> int:
    """Run every benchmark; exit 0 (misses are reported, not hidden)."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    quick = "--quick" in sys.argv
    figures: list[Figure] = []
    figures.append(render_figure(count=5000 if quick else 50_000, runs=3 if quick else 5))
    figures.append(pipeline_figure(count=2000 if quick else 20_000, runs=1 if quick else 3))
    figures.append(pricing_figure(count=300 if quick else 2000, runs=1 if quick else 3))
    figures.extend(
        ingest_figures(count=300, runs=1, rate=200, seconds=1.0) if quick else ingest_figures()
    )
    print_table(figures)
    out = Path(__file__).parent / "results" / ("quick.json" if quick else "latest.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "at": datetime.now(UTC).isoformat(),
                "machine": {"python": platform.python_version(), "cpus": _cpus()},
                "figures": [{**asdict(f), "ratio": f.ratio} for f in figures],
            },
            indent=2,
        )
    )
    print(f"written: {out}")
    return 0


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    raise SystemExit(main())
