"""Pacing of one provider account: rate slots shared through the database by every worker,
a concurrency limit per worker; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from tests.gateway_servers import SMSAPI_TOKEN, FakeGateway

from orderbell.api.schemas import ShopIn
from orderbell.channels import smsapi
from orderbell.channels.base import Outcome, OutgoingMessage, SendResult
from orderbell.channels.console import ConsoleProvider
from orderbell.channels.pacing import Pacer, paced
from orderbell.clock import ManualClock, SystemClock
from orderbell.domain.model import Channel
from orderbell.store import shops
from orderbell.store.db import make_engine, migrate, new_id
from orderbell.store.schema import shop_providers


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    migrate(eng)
    yield eng
    eng.dispose()


def provider_row(engine: Engine, *, rate: float | None = 20, concurrency: int | None = 50) -> int:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        shop = shops.create(conn, ShopIn(name="Pace", slug=f"pace-{secrets.token_hex(3)}"), now)
        return new_id(
            conn.execute(
                shop_providers.insert().values(
                    shop_id=shop.id, name="sms", channel="sms", kind="smsapi", position=0,
                    active=True, settings={}, secrets={}, rate_per_second=rate,
                    concurrency=concurrency, callback_token=secrets.token_hex(16),
                    created_at=now, updated_at=now,
                )
            )
        )  # fmt: skip


def msg(id_: int) -> OutgoingMessage:
    return OutgoingMessage(id=id_, shop_id=1, channel=Channel.SMS, to="+48600100200", text="x")


def test_slots_are_evenly_spaced_and_shared_through_the_row(engine: Engine) -> None:
    pid = provider_row(engine, rate=10)
    clock = ManualClock(datetime(2026, 11, 20, 9, 0, tzinfo=UTC))
    starts: list[datetime] = []

    async def fake_sleep(seconds: float) -> None:
        clock.advance(timedelta(seconds=seconds))

    async def go() -> None:
        pacer = Pacer.for_provider(engine, pid, clock)
        pacer._sleep = fake_sleep
        for _ in range(25):
            async with pacer.slot():
                starts.append(clock.now())

    asyncio.run(go())
    gaps = {round((b - a).total_seconds(), 6) for a, b in itertools.pairwise(starts)}
    assert gaps == {0.1}
    with engine.connect() as conn:
        until = conn.execute(select(shop_providers.c.paced_until)).scalar_one()
    assert until >= starts[-1] + timedelta(seconds=0.1)


def test_an_idle_account_starts_now_and_stale_slots_are_dropped(engine: Engine) -> None:
    pid = provider_row(engine, rate=10)
    clock = ManualClock(datetime(2026, 11, 20, 9, 0, tzinfo=UTC))

    async def go() -> tuple[datetime, datetime, int]:
        pacer = Pacer(engine, pid, rate_per_second=10, concurrency=5, clock=clock, block=5)
        async with pacer.slot():
            first = clock.now()
        clock.advance(timedelta(minutes=5))  # idle: the 4 reserved slots are long gone
        async with pacer.slot():
            second = clock.now()
        return first, second, pacer.dropped

    first, second, dropped = asyncio.run(go())
    assert second - first == timedelta(minutes=5)  # no wait: a fresh block starting now
    assert dropped == 4


def test_concurrency_limits_requests_in_flight(engine: Engine) -> None:
    pid = provider_row(engine, rate=None, concurrency=3)
    peak = 0
    in_flight = 0

    async def work(pacer: Pacer) -> None:
        nonlocal peak, in_flight
        async with pacer.slot():
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1

    async def go() -> None:
        pacer = Pacer.for_provider(engine, pid, SystemClock())
        await asyncio.gather(*(work(pacer) for _ in range(20)))

    asyncio.run(go())
    assert peak == 3


def measure(engine: Engine, pid: int, *, rate: float, workers: int, seconds: float) -> float:
    """Send as fast as the pacers let us through ``workers`` Pacers (each its own worker)
    for ``seconds``; the achieved rate over the window."""
    clock = SystemClock()
    stamps: list[float] = []

    async def worker(pacer: Pacer, deadline: float) -> None:
        async def one() -> None:
            while time.monotonic() < deadline:
                async with pacer.slot():
                    if time.monotonic() < deadline:
                        stamps.append(time.monotonic())

        await asyncio.gather(*(one() for _ in range(10)))

    async def go() -> None:
        pacers = [
            Pacer(engine, pid, rate_per_second=rate, concurrency=10, clock=clock)
            for _ in range(workers)
        ]
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(worker(p, deadline) for p in pacers))

    asyncio.run(go())
    stamps.sort()
    # From the second request on: the first one pays for connecting to the database.
    window = stamps[-1] - stamps[1]
    return (len(stamps) - 2) / window


def test_accuracy_at_20_per_second(engine: Engine) -> None:
    pid = provider_row(engine, rate=20)
    achieved = measure(engine, pid, rate=20, workers=1, seconds=3)
    assert 0.95 * 20 <= achieved <= 20 * 1.01, achieved


def test_two_workers_together_keep_the_rate(engine: Engine) -> None:
    pid = provider_row(engine, rate=20)
    achieved = measure(engine, pid, rate=20, workers=2, seconds=3)
    assert 0.95 * 20 <= achieved <= 20 * 1.01, achieved


def test_no_429_from_a_gateway_that_throttles_above_the_rate(engine: Engine) -> None:
    pid = provider_row(engine, rate=25)
    server = FakeGateway("smsapi", max_rate=25, burst=2, latency=0.01).start()
    try:

        async def go() -> list[SendResult]:
            gateways = [
                smsapi.build({"access_token": SMSAPI_TOKEN, "base_url": server.base_url},
                             name="main", callback_url=None)
                for _ in range(2)
            ]  # fmt: skip
            for gw in gateways:  # two workers, one pacer each, one shared account
                gw.pacer = Pacer.for_provider(engine, pid, SystemClock())
            try:
                halves = await asyncio.gather(
                    gateways[0].send([msg(i) for i in range(0, 40)]),
                    gateways[1].send([msg(i) for i in range(40, 80)]),
                )
            finally:
                for gw in gateways:
                    await gw.close()
            return [r for half in halves for r in half]

        results = asyncio.run(go())
    finally:
        server.stop()
    assert server.throttled == 0
    assert [r.outcome for r in results].count(Outcome.ACCEPTED) == 80
    # and the same load unpaced is throttled: the gateway really does enforce its rate
    assert len(server.submissions) == 80


def test_unpaced_load_is_throttled_by_the_same_gateway() -> None:
    server = FakeGateway("smsapi", max_rate=25, burst=2).start()
    try:

        async def go() -> list[SendResult]:
            gw = smsapi.build({"access_token": SMSAPI_TOKEN, "base_url": server.base_url},
                              name="main", callback_url=None)  # fmt: skip
            try:
                return await gw.send([msg(i) for i in range(40)])
            finally:
                await gw.close()

        results = asyncio.run(go())
    finally:
        server.stop()
    assert server.throttled > 0
    assert any(r.error_code == "throttled:203" for r in results)


def test_paced_wraps_any_provider(engine: Engine, tmp_path: Any) -> None:
    pid = provider_row(engine, rate=50)

    async def go() -> tuple[list[SendResult], float]:
        provider = paced(
            ConsoleProvider(Channel.SMS, path=tmp_path / "out.jsonl"),
            Pacer.for_provider(engine, pid, SystemClock()),
        )
        start = time.monotonic()
        results = await provider.send([msg(i) for i in range(11)])
        await provider.close()
        return results, time.monotonic() - start

    results, elapsed = asyncio.run(go())
    assert [r.message_id for r in results] == list(range(11))
    assert elapsed >= 0.19  # 11 slots at 50/s span 0.2 s
