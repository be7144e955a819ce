"""Resident memory of orderbell's processes, from /proc/<pid>/status (VmHWM: the peak;
VmRSS: now): the API (`orderbell serve` without the embedded worker) after POST /v1/events
for the demo shop, and a worker (`orderbell worker --concurrency 2`) after draining due
messages with the console provider, against the resident memory of a bare Python process
that imported orderbell.api.app (the code an API process loads before it does anything).

Each run uses a throw-away PostgreSQL database (the many-machines deployment these figures
size); the processes are the real commands, started here on free loopback ports and stopped
by their pid.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.common import Figure, median
from bench.ingest import HOST, ROOT, Server, answers, free_port, stop, throughput
from bench.workers import database, seed
from orderbell.billing import credits
from orderbell.engine.demo import ensure_demo_shop
from orderbell.store.db import make_engine
from orderbell.store.schema import messages

ORDERBELL = Path(sys.executable).with_name("orderbell")  #: the installed command
BARE = "import sys, time, orderbell.api.app; print('ready', flush=True); time.sleep(600)"
LIMIT_MB = 256


def resident_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a running process, in kB."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


@contextmanager
def running(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process we own, its output to `log`; stopped by its pid at the end."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        stop(proc)


def _wait(proc: subprocess.Popen[bytes], log: Path, done: Any, what: str) -> None:
    deadline = time.monotonic() + 120
    while not done():
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{what} exited:\n{tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not done within 120 s")
        time.sleep(0.1)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERBELL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return {**env, **extra}


def bare(folder: Path) -> dict[str, int]:
    """A Python process that only imported orderbell.api.app."""
    log = folder / "bare.log"
    with running([sys.executable, "-c", BARE], _env(), log) as proc:
        _wait(proc, log, lambda: "ready" in log.read_text(), "the bare process")
        return resident_kb(proc.pid)


def api(url: str, folder: Path, events: int) -> dict[str, int]:
    """`orderbell serve` without the embedded worker, after `events` POST /v1/events (the
    demo shop, with credit for every message)."""
    engine = make_engine(url)
    with engine.begin() as conn:
        now = datetime.now(UTC)
        shop = ensure_demo_shop(conn, now)
        credits.topup(conn, shop.shop_id, "1000000", reference="bench", actor="bench", now=now)
    engine.dispose()
    port = free_port()
    env = _env(ORDERBELL_DATABASE_URL=url, ORDERBELL_OUTBOX_FILE=str(folder / "api.jsonl"),
               ORDERBELL_EMBEDDED_WORKER="false", ORDERBELL_HOST=HOST,
               ORDERBELL_PORT=str(port))  # fmt: skip
    log = folder / "api.log"
    with running([str(ORDERBELL), "serve"], env, log) as proc:
        base = f"http://{HOST}:{port}"
        _wait(proc, log, lambda: answers(base), "orderbell serve")
        headers = {"content-type": "application/json", "authorization": f"Bearer {shop.api_key}"}
        posted = throughput(Server("ours", proc.pid, base, headers), "mem", events, 300)
        if posted["ok"] != events:
            raise RuntimeError(f"the API accepted {posted['ok']} of {events} events")
        return resident_kb(proc.pid)


def worker(url: str, folder: Path, count: int) -> dict[str, int]:
    """`orderbell worker --concurrency 2` (unbilled, console provider to a file) after it
    drained `count` due SMS."""
    seed(url, count)
    engine = make_engine(url)

    def drained() -> bool:
        with engine.connect() as conn:
            sent = select(func.count()).where(messages.c.status == "sent")
            return int(conn.execute(sent).scalar_one()) >= count

    log = folder / "worker.log"
    try:
        env = _env(ORDERBELL_DATABASE_URL=url, ORDERBELL_BILLING="false",
                   ORDERBELL_OUTBOX_FILE=str(folder / "worker.jsonl"))  # fmt: skip
        with running([str(ORDERBELL), "worker", "--concurrency", "2"], env, log) as proc:
            _wait(proc, log, drained, "orderbell worker")
            return resident_kb(proc.pid)
    finally:
        engine.dispose()


def memory_figures(events: int, count: int, runs: int) -> list[Figure]:
    """Peak resident memory of the API and of a worker against a bare import of the app."""
    measured: dict[str, list[dict[str, int]]] = {"bare": [], "api": [], "worker": []}
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="orderbell-memory-") as tmp:
            folder = Path(tmp)
            measured["bare"].append(bare(folder))
            with database() as url:
                measured["api"].append(api(url, folder, events))
            with database() as url:
                measured["worker"].append(worker(url, folder, count))

    def mb(kind: str, key: str) -> float:
        return median([m[key] / 1024 for m in measured[kind]])

    base = mb("bare", "VmRSS")
    notes: dict[str, Any] = {
        "runs": runs, "kB": measured, "baseline": BARE, "bare_peak_mb": mb("bare", "VmHWM"),
        "why_the_bare_peak": "orderbell.web.accounts hashes a dummy password with argon2 "
        "(64 MiB memory cost) at import; the worker does not import the web app",
    }  # fmt: skip
    return [
        Figure(f"API process peak RSS after {events:,} events", "MB", mb("api", "VmHWM"), base,
               f"<= {LIMIT_MB} MB", mb("api", "VmHWM") <= LIMIT_MB, higher_is_better=False,
               notes={**notes, "events": events, "rss_mb_at_end": mb("api", "VmRSS")}),
        Figure(f"Worker process peak RSS after {count:,} messages", "MB", mb("worker", "VmHWM"),
               base, f"<= {LIMIT_MB} MB", mb("worker", "VmHWM") <= LIMIT_MB,
               higher_is_better=False,
               notes={**notes, "messages": count, "rss_mb_at_end": mb("worker", "VmRSS")}),
    ]  # fmt: skip
