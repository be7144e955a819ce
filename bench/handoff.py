"""Due time to hand-off on PostgreSQL under a steady stream: messages become due at a fixed
rate (inserted in small batches every 10 ms, each row due at its insert time, as ingest
plans order updates) while worker processes run the real dispatcher loops with LISTEN/NOTIFY
wake-up, against the same workers woken by their poll only.

The inserting side runs in this process and says whether it kept the pace; the workers are
processes of their own (spawned), so neither competes with the other for the GIL: two of two
loops each, as the deployment guide advises for this 2-CPU machine (a process per core,
``--concurrency 2``). Each worker hands messages to a recorder that notes the wall time of
every hand-off.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import queue
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, insert, select, text

from bench.common import Figure, bench_shops, median
from orderbell.channels.base import Outcome, OutgoingMessage, SendResult
from orderbell.compose import build
from orderbell.domain.model import Channel
from orderbell.engine.wakeup import PollWaker
from orderbell.settings import Settings
from orderbell.store.db import make_engine
from orderbell.store.schema import messages

TICK = 0.010  #: the inserting side commits a batch every 10 ms
GRACE = 30.0  #: how long after the last insert every message must have been handed over
#: The database's other sessions, when messages were left behind.
ACTIVITY = (
    "SELECT pid, state, wait_event_type, wait_event, now() - xact_start, left(query, 60) "
    "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


class Recorder:
    """A provider that accepts everything and notes when each message was handed to it."""

    name = "recorder"

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.handed: dict[int, float] = {}

    async def send(self, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Accept the batch; remember the wall time of each hand-off."""
        now = time.time()
        for m in batch:
            self.handed[m.id] = now
        return [SendResult(message_id=m.id, outcome=Outcome.ACCEPTED) for m in batch]

    async def close(self) -> None:
        """Nothing to release."""


def _worker(url: str, loops: int, notify: bool, stop: Any, out: Any) -> None:
    """One worker process: `loops` dispatch loops (unbilled) handing to a Recorder until
    `stop` is set; puts "ready" once listening, then its {message id: hand-off time}."""
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    recorder = Recorder(Channel.SMS)
    providers: dict[Channel, Any] = {Channel.SMS: recorder, Channel.EMAIL: recorder}
    settings = Settings(database_url=url, billing=False, embedded_worker=False)
    svc = build(settings, providers=providers, run_migrations=False)

    async def main() -> None:
        halt = asyncio.Event()
        waker = svc.waker() if notify else PollWaker()
        poll = svc.settings.worker_poll_seconds
        running = asyncio.gather(
            *(svc.dispatcher(f"lat:{i}").run(halt, poll, waker) for i in range(loops))
        )
        connected = getattr(waker, "connected", None)
        if connected is not None:
            await asyncio.wait_for(connected.wait(), timeout=30)
        await asyncio.sleep(0.5)  # every loop has polled once and is idle
        out.put("ready")
        await asyncio.to_thread(stop.wait)
        halt.set()
        await running
        await waker.close()

    asyncio.run(main())
    svc.engine.dispose()
    out.put(recorder.handed)


def paced_inserts(url: str, per_s: int, seconds: float) -> dict[str, float]:
    """Insert `per_s` due-now SMS a second for `seconds`, a batch (one transaction) every
    TICK; a late batch goes at once with its rows due then. Says how well it kept pace."""
    engine = make_engine(url)
    with engine.begin() as conn:
        shop_id = bench_shops(conn, 1, datetime.now(UTC))[0]
    row = {
        "shop_id": shop_id, "channel": "sms", "category": "transactional",
        "recipient": "+15550100200", "status": "scheduled", "reason": "bench",
        "context": {"_system": True, "_text": "Your order has shipped"}, "attempts": 0,
    }  # fmt: skip
    ticks = round(seconds / TICK)
    lags: list[float] = []
    inserted = 0
    started = time.perf_counter()
    for k in range(ticks):  # bounded
        target = started + k * TICK
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        lags.append(time.perf_counter() - target)
        count = int((k + 1) * per_s * TICK) - int(k * per_s * TICK)
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(insert(messages), [{**row, "due_at": now, "created_at": now,
                                             "updated_at": now}] * count)  # fmt: skip
        inserted += count
    elapsed = time.perf_counter() - started
    engine.dispose()
    lags.sort()
    return {
        "inserted": inserted,
        "offered_per_s": per_s,
        "inserted_per_s": inserted / elapsed,
        "batch_lag_p99_ms": lags[int(0.99 * (len(lags) - 1))] * 1000,
        "batch_lag_max_ms": lags[-1] * 1000,
        "kept_pace": inserted / elapsed >= 0.95 * per_s,
    }


def _receive(out: Any, procs: list[Any], timeout: float) -> Any:
    """The next message from the workers; fails at once if they have all exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return out.get(timeout=0.5)
        except queue.Empty:
            if not any(p.is_alive() for p in procs):
                raise RuntimeError("the worker processes exited") from None
    raise RuntimeError(f"no word from the workers within {timeout:g} s")


def _percentile(values: list[float], p: float) -> float:
    return values[int(p * (len(values) - 1))]


def handoff(
    url: str, *, per_s: int, seconds: float, notify: bool, processes: int = 2, loops: int = 2
) -> dict[str, Any]:
    """Due→hand-off percentiles (ms) of messages due at `per_s` for `seconds`, handed over by
    `processes` workers of `loops` dispatch loops each; LISTEN/NOTIFY or poll only. The
    outbox is emptied first."""
    from bench.workers import seed

    seed(url, 0)
    ctx = mp.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, loops, notify, stop, out))
             for _ in range(processes)]  # fmt: skip
    for p in procs:
        p.start()
    handed: dict[int, float] = {}
    engine = make_engine(url)
    try:
        for _ in procs:
            if _receive(out, procs, 120) != "ready":
                raise RuntimeError("a worker answered before it was ready")
        pace = paced_inserts(url, per_s, seconds)
        stuck = _wait_until_sent(engine, GRACE)
        cutoff = time.time()
    finally:
        stop.set()
        for _ in procs:
            handed.update(_receive(out, procs, 60))
        for p in procs:
            p.join(30)
    with engine.connect() as conn:
        due = dict(conn.execute(select(messages.c.id, messages.c.due_at)).all())
    engine.dispose()
    # A message not handed over by the cut-off counts with the time it had waited (a floor).
    delays = sorted((handed.get(m, cutoff) - at.timestamp()) * 1000 for m, at in due.items())
    return {
        "p50_ms": _percentile(delays, 0.50),
        "p99_ms": _percentile(delays, 0.99),
        "max_ms": delays[-1],
        "handed": sum(1 for m in due if m in handed),
        "unhanded": sum(1 for m in due if m not in handed),
        "processes": processes,
        "loops": loops,
        "inserter": pace,
        **({"stuck": stuck} if stuck else {}),
    }


def _wait_until_sent(engine: Engine, grace: float) -> dict[str, Any]:
    """Wait (at most `grace` s) until every message is sent; if some are not, what the
    outbox and the database's sessions looked like then (for the notes)."""
    deadline = time.monotonic() + grace
    with engine.connect() as conn:
        while time.monotonic() < deadline:  # bounded
            left = conn.execute(select(messages.c.id).where(messages.c.status != "sent").limit(1))
            if left.first() is None:
                return {}
            conn.rollback()
            time.sleep(0.05)
        states = conn.execute(select(messages.c.status, func.count()).group_by(messages.c.status))
        sessions = conn.execute(text(ACTIVITY))
        return {
            "states": dict(states.tuples().all()),
            "sessions": [list(map(str, r)) for r in sessions],
        }


def handoff_figure(url: str, *, per_s: int, seconds: float, runs: int) -> Figure:
    """p99 due→hand-off with LISTEN/NOTIFY against poll only (medians of `runs`, taken
    alternately); met if <= 1 s, the inserting side kept the pace and every message was
    handed over within GRACE in every run."""
    measured: dict[str, list[dict[str, Any]]] = {"notify": [], "poll": []}
    for _ in range(runs):
        for way in ("poll", "notify"):
            measured[way].append(handoff(url, per_s=per_s, seconds=seconds,
                                         notify=way == "notify"))  # fmt: skip
    ours, polled = (median([r["p99_ms"] for r in measured[w]]) for w in ("notify", "poll"))
    paced = all(r["inserter"]["kept_pace"] for w in measured for r in measured[w])
    complete = not any(r["unhanded"] for w in measured for r in measured[w])
    return Figure(
        f"PG: p99 due->hand-off at {per_s:,}/s, NOTIFY vs poll", "ms", ours, polled,
        "<= 1000 ms, inserts kept pace", ours <= 1000 and paced and complete,
        higher_is_better=False,
        notes={"per_s": per_s, "seconds": seconds, "inserts_kept_pace": paced,
               "unhanded": sum(r["unhanded"] for w in measured for r in measured[w]),
               "p50_ms_notify": median([r["p50_ms"] for r in measured["notify"]]),
               "p50_ms_poll": median([r["p50_ms"] for r in measured["poll"]]),
               "runs": measured},
    )  # fmt: skip
