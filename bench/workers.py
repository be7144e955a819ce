"""Workers on PostgreSQL: messages/s of 1, 2 and 4 worker processes running the real
dispatcher against a raw SKIP LOCKED claim loop on the same table; procrastinate (a
PostgreSQL task queue) draining one job per message on the same server; and the p99 delay
from due time to hand-off with LISTEN/NOTIFY against a poll-only worker (bench/handoff.py).
Throw-away databases on the local server (ORDERBELL_BENCH_PG_URL, default 127.0.0.1:5432)."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from bench.common import Figure, bench_shops, median
from bench.handoff import handoff_figure
from orderbell.channels.console import ConsoleProvider
from orderbell.compose import build
from orderbell.domain.model import Channel
from orderbell.settings import Settings
from orderbell.store.db import make_engine, migrate
from orderbell.store.schema import messages

ADMIN = os.environ.get(
    "ORDERBELL_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@contextmanager
def database() -> Iterator[str]:
    """A fresh migrated database, dropped afterwards."""
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    name = f"orderbell_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(ADMIN).set(database=name).render_as_string(hide_password=False)
    try:
        engine = make_engine(url)
        migrate(engine)
        engine.dispose()
        yield url
    finally:
        admin.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def seed(url: str, count: int, *, shops_count: int = 1) -> None:
    """Empty the outbox, then `count` due SMS messages with fixed texts (unbilled)."""
    engine = make_engine(url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(messages.delete())
    # What autovacuum does between runs on a real server (it is off on the shared test
    # server): without it every run inherits the dead rows of the runs before, and the
    # claims and the audit-trail writes slow down run after run (hand-off p50 of 12 s
    # after the throughput runs, against 40 ms on a fresh database).
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM messages, attempts, message_log"))
    with engine.begin() as conn:
        ids = bench_shops(conn, shops_count, now)
        rows = [
            {
                "shop_id": ids[i % shops_count], "channel": "sms", "category": "transactional",
                "recipient": "+15550100200", "status": "scheduled", "reason": "bench",
                "due_at": now - timedelta(seconds=1), "context": {"_system": True,
                "_text": "Your order has shipped"}, "attempts": 0, "created_at": now,
                "updated_at": now,
            }
            for i in range(count)
        ]  # fmt: skip
        for start in range(0, count, 5000):
            conn.execute(insert(messages), rows[start : start + 5000])
        conn.execute(text("ANALYZE messages"))
    engine.dispose()


def _worker(url: str, folder: str, go: Any, done: Any) -> None:
    """One worker process: the real dispatcher (console provider to a file), until dry."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    settings = Settings(database_url=url, billing=False, embedded_worker=False)
    path = Path(folder) / f"out-{os.getpid()}.jsonl"
    providers: dict[Channel, Any] = {
        c: ConsoleProvider(c, path=path) for c in (Channel.SMS, Channel.EMAIL)
    }
    svc = build(settings, providers=providers, run_migrations=False)
    dispatcher = svc.dispatcher(f"bench:{os.getpid()}")
    go.wait()
    done.put(asyncio.run(dispatcher.drain(max_batches=100_000)))
    svc.engine.dispose()


def ours(url: str, count: int, workers: int, folder: str) -> float:
    """messages/s of `workers` processes draining `count` due messages."""
    seed(url, count)
    ctx = mp.get_context("spawn")
    go, done = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, folder, go, done)) for _ in range(workers)]
    for p in procs:
        p.start()
    time.sleep(3.0)  # let them import and connect; the clock starts at "go"
    started = time.perf_counter()
    go.set()
    total = sum(int(done.get(timeout=600)) for _ in procs)
    elapsed = time.perf_counter() - started
    for p in procs:
        p.join(30)
    if total != count:
        raise RuntimeError(f"drained {total} of {count}")
    return count / elapsed


RAW_CLAIM = """
WITH due AS (
    SELECT id FROM messages
    WHERE status IN ('scheduled', 'deferred') AND due_at <= now()
    ORDER BY due_at LIMIT 100 FOR UPDATE SKIP LOCKED
)
UPDATE messages m SET status = 'sending', lease_owner = 'raw',
    lease_until = now() + interval '60 seconds', attempts = m.attempts + 1, updated_at = now()
FROM due WHERE m.id = due.id RETURNING m.id
"""
RAW_DONE = """UPDATE messages SET status = 'sent', sent_at = now(), updated_at = now(),
    lease_owner = NULL, lease_until = NULL WHERE id = ANY(%s)"""


def raw_loop(url: str, count: int) -> float:
    """The floor: one psycopg connection claims 100 due rows with SKIP LOCKED, then marks
    them sent. No re-check, rendering, sending, attempts or audit trail."""
    seed(url, count)
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    done = 0
    with psycopg.connect(conninfo) as conn:
        started = time.perf_counter()
        for _ in range(count // 100 + 2):  # bounded
            with conn.transaction():
                ids = [r[0] for r in conn.execute(RAW_CLAIM).fetchall()]
            if not ids:
                break
            with conn.transaction():
                conn.execute(RAW_DONE, (ids,))
            done += len(ids)
        elapsed = time.perf_counter() - started
    if done != count:
        raise RuntimeError(f"raw loop drained {done} of {count}")
    return count / elapsed


def procrastinate_rate(url: str, count: int) -> float:
    """procrastinate: one job per message deferred in bulk, then drained by its worker
    (concurrency 10, exits when the queue is empty)."""
    import procrastinate

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))

    @app.task(name="send_message")
    async def send_message(message_id: int) -> None:
        """The job: nothing (the peer's queue overhead is what is measured)."""

    async def main() -> float:
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            for start in range(0, count, 1000):
                jobs: list[dict[str, Any]] = [
                    {"message_id": i} for i in range(start, min(count, start + 1000))
                ]
                await send_message.batch_defer_async(*jobs)
            started = time.perf_counter()
            await app.run_worker_async(wait=False, concurrency=10, install_signal_handlers=False)
            return count / (time.perf_counter() - started)

    import logging

    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    return asyncio.run(main())


def worker_figures(count: int, runs: int, per_s: int, seconds: float) -> list[Figure]:
    """All the PostgreSQL worker figures, baselines measured in the same run, alternately."""
    import tempfile

    results: dict[str, list[float]] = {k: [] for k in ("raw", "w1", "w2", "w4", "peer")}
    with database() as url, tempfile.TemporaryDirectory() as folder:
        for _ in range(runs):
            results["raw"].append(raw_loop(url, count))
            results["w1"].append(ours(url, count, 1, folder))
            results["w2"].append(ours(url, count, 2, folder))
            results["w4"].append(ours(url, count, 4, folder))
        latency = handoff_figure(url, per_s=per_s, seconds=seconds, runs=runs)
    for _ in range(runs):  # a fresh database each: procrastinate's schema is applied once
        with database() as peer_url:
            results["peer"].append(procrastinate_rate(peer_url, count))
    raw, w1, w2, w4, peer = (median(results[k]) for k in ("raw", "w1", "w2", "w4", "peer"))
    notes = {"count": count, "runs": runs, "cpus": os.cpu_count()}
    return [
        Figure("PG: 1 worker msg/s vs raw SKIP LOCKED loop", "msg/s", w1, raw, "info", True,
               notes=notes),
        Figure("PG: 2 workers msg/s vs raw SKIP LOCKED loop", "msg/s", w2, raw, ">= 0.5x",
               w2 >= 0.5 * raw, notes=notes),
        Figure("PG: 4 workers msg/s vs raw SKIP LOCKED loop", "msg/s", w4, raw, "info", True,
               notes=notes),
        Figure("PG: 2 workers vs 1 worker (scaling)", "msg/s", w2, w1, ">= 1.4x",
               w2 >= 1.4 * w1, notes=notes),
        Figure("PG: 2 workers vs procrastinate (1 job/msg)", "msg/s", w2, peer, ">= 10x",
               w2 >= 10 * peer, notes=notes),
        latency,
    ]  # fmt: skip
