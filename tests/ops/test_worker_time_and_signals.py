"""A worker tells time by the database, wakes on NOTIFY, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from tests.ops.gateway import Gateway, HttpTestProvider
from tests.ops.harness import (
    Workers,
    database_now,
    new_shop,
    seed,
    statuses,
    wait_until,
    worker_env,
)

from orderbell.api.schemas import EventIn
from orderbell.channels.console import ConsoleProvider
from orderbell.clock import SkewedClock, SystemClock
from orderbell.compose import Services, build, database_clock
from orderbell.domain.model import Channel
from orderbell.engine.dispatcher import Dispatcher, RetryPolicy
from orderbell.settings import Settings
from orderbell.store.db import make_engine
from orderbell.store.schema import attempts, events, message_log, messages
from orderbell.templates.sandbox import Renderer

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(90)]
SKEW = timedelta(minutes=-5)  #: the worker's machine is five minutes behind


def dispatcher(url: str, gateway: Gateway, tmp_path: Path, *, database_time: bool) -> Dispatcher:
    engine = make_engine(url)
    local = SkewedClock(SystemClock(), SKEW)
    return Dispatcher(
        engine=engine,
        clock=database_clock(engine, local) if database_time else local,
        providers={
            Channel.SMS: HttpTestProvider(gateway.url),
            Channel.EMAIL: ConsoleProvider(Channel.EMAIL, path=tmp_path / "out.jsonl"),
        },
        renderer=Renderer(),
        worker_id=f"skewed-{database_time}",
        lease_seconds=5,
        retry=RetryPolicy(max_attempts=100, base_seconds=0.1, cap_seconds=0.2),
        database_time=database_time,
    )


async def run_for(d: Dispatcher, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await d.run_once()
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("database_time", [True, False], ids=["database-clock", "worker-clock"])
def test_validity_passing_while_the_gateway_is_down_expires_by_the_database_clock(
    ops_db: str, gateway: Gateway, tmp_path: Path, database_time: bool
) -> None:
    engine = make_engine(ops_db)
    db_now = database_now(engine)
    # due long ago (so even the slow clock finds it due), valid for 1.5 s more
    [mid] = seed(
        engine,
        new_shop(engine, "skew"),
        1,
        due_at=db_now - timedelta(minutes=10),
        expires_at=db_now + timedelta(seconds=1.5),
    )
    d = dispatcher(ops_db, gateway, tmp_path, database_time=database_time)

    async def scenario() -> None:
        gateway.up = False
        await run_for(d, 2.5)  # retries while down; validity passes meanwhile
        gateway.up = True
        await run_for(d, 1.0)
        await d._providers[Channel.SMS].close()

    asyncio.run(scenario())
    assert gateway.refused > 0  # it really tried while the gateway was down
    with engine.connect() as conn:
        status = conn.execute(select(messages.c.status).where(messages.c.id == mid)).scalar()
    if database_time:
        assert status == "expired"
        assert gateway.ids() == {}  # never sent late
    else:  # the control: a worker trusting its own slow clock sends it 1 s+ late
        assert status == "sent" and gateway.ids() == {mid: 1}
    engine.dispose()


@contextmanager
def idle_worker(ops_db: str, tmp_path: Path) -> Iterator[Services]:
    """A worker on its own thread that polls only every 30 s: within the block, only a
    notification can wake it in time. Yields its services once it listens and idles."""
    settings = Settings(database_url=ops_db, outbox_file=tmp_path / "out.jsonl")  # type: ignore[arg-type]
    svc = build(settings)
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    waker = None

    async def work() -> None:
        nonlocal waker
        waker = svc.waker()
        await svc.dispatcher("wake").run(stop, poll_seconds=30, waker=waker)
        await waker.close()

    thread = threading.Thread(target=loop.run_until_complete, args=(work(),), daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: waker is not None and waker.connected.is_set(), 10)  # type: ignore[attr-defined]
        time.sleep(0.5)  # the worker is idle in its 30 s sleep
        yield svc
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        svc.engine.dispose()


def test_a_notification_while_the_loop_is_busy_wakes_its_next_wait(ops_db: str) -> None:
    """A NOTIFY that arrives while no loop waits (one is looking for work, and found none
    just before the insert committed) is not lost until the next poll: the loop noted
    `seen()` before looking, and `wait(seen)` returns at once."""
    from orderbell.engine.wakeup import PgListener, for_engine

    engine = make_engine(ops_db)

    async def scenario() -> None:
        listener = for_engine(engine)
        assert isinstance(listener, PgListener)
        await asyncio.wait_for(listener.wait(), 10)  # connected: that first wake is free
        seen = listener.seen()
        with engine.begin() as conn:  # while the loop is busy elsewhere
            conn.exec_driver_sql("NOTIFY orderbell_due")
        for _ in range(250):  # bounded: 5 s
            if listener.seen() > seen:
                break
            await asyncio.sleep(0.02)
        assert listener.seen() > seen
        await asyncio.wait_for(listener.wait(seen), 0.5)  # at once, not at the next signal
        with pytest.raises(TimeoutError):  # nothing new since: it waits
            await asyncio.wait_for(listener.wait(listener.seen()), 0.3)
        await listener.close()

    try:
        asyncio.run(scenario())
    finally:
        engine.dispose()


def test_a_due_insert_wakes_an_idle_worker_within_a_second_by_notify(
    ops_db: str, tmp_path: Path
) -> None:
    with idle_worker(ops_db, tmp_path) as svc:
        shop = new_shop(svc.engine, "wake")
        for _ in range(3):
            [mid] = seed(svc.engine, shop, 1)
            started = time.monotonic()
            assert wait_until(lambda: statuses(svc.engine).get("sent", 0) >= 1, 5, step=0.02)
            with svc.engine.connect() as conn:
                st = conn.execute(select(messages.c.status).where(messages.c.id == mid)).scalar()
            assert st == "sent" and time.monotonic() - started < 1.0
            with svc.engine.begin() as conn:
                conn.execute(messages.delete())


def test_an_accepted_event_wakes_an_idle_worker_to_plan_it_by_notify(
    ops_db: str, tmp_path: Path
) -> None:
    with idle_worker(ops_db, tmp_path) as svc:
        shop = new_shop(svc.engine, "accept")

        def planned(event_id: int) -> bool:
            with svc.engine.connect() as conn:
                at = conn.execute(select(events.c.planned_at).where(events.c.id == event_id))
                return at.scalar() is not None

        for i in range(3):
            event = EventIn.model_validate(
                {"type": "order.created", "occurred_at": "2026-11-20T10:00:00+00:00",
                 "order": {"code": f"W-{i}"}, "customer": {"id": "c1"}}
            )  # fmt: skip
            started = time.monotonic()
            accepted = svc.ingestor.accept(shop, event)
            assert accepted.outcome == {"status": "accepted"}
            assert wait_until(lambda e=accepted.event_id: planned(e), 5, step=0.02)
            assert time.monotonic() - started < 1.0


def test_sigterm_finishes_the_chunk_in_flight_and_gives_back_unstarted_claims(
    ops_db: str, gateway: Gateway, tmp_path: Path
) -> None:
    engine = make_engine(ops_db)
    seed(engine, new_shop(engine, "term"), 1_000)
    gateway.delay = 0.4  # each chunk of 10 takes ~0.4 s: SIGTERM lands mid-batch
    env = worker_env(ops_db, gateway.url, tmp_path, ORDERBELL_WORKER_SEND_CHUNK="10")
    workers = Workers(env, tmp_path, concurrency=2)
    proc = workers.spawn()
    try:
        assert wait_until(lambda: len(gateway.ids()) >= 10, 30), workers.logs()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, workers.logs()
    finally:
        workers.stop_all()
    counts = statuses(engine)
    received = gateway.ids()
    assert "sending" not in counts  # no claim left behind
    assert counts["sent"] == len(received) < 200  # what was handed over is recorded sent
    assert counts["scheduled"] == 1_000 - len(received)
    with engine.connect() as conn:
        leased = conn.execute(
            select(func.count()).select_from(messages).where(messages.c.lease_owner.is_not(None))
        ).scalar()
        released = conn.execute(
            select(func.count())
            .select_from(message_log)
            .where(message_log.c.reason.like("released:%"))
        ).scalar()
        open_attempts = conn.execute(
            select(func.count()).select_from(attempts).where(attempts.c.finished_at.is_(None))
        ).scalar()
    assert leased == 0 and open_attempts == 0
    assert released and released > 0  # claimed but unstarted messages were given back
    engine.dispose()
