"""Pacing of one provider account across every worker and process: a rate (messages per
second, shared through the database) and a concurrency limit (requests in flight, per worker).

How the rate is shared: ``shop_providers.paced_until`` is the account's next free send slot.
A worker reserves a *block* of slots in one short transaction (read the row, advance
``paced_until`` by ``block / rate`` with a compare-and-swap UPDATE, so it is atomic on SQLite
and PostgreSQL alike), keeps them in memory and sleeps until each slot before its request.
At 100 msg/s with the default block (a fifth of a second of slots) that is five small
transactions per second for the whole fleet, whatever the number of workers.

A slot not used within ``max_lag`` of its time (the worker was busy, or idle) is dropped
rather than spent late, so an account is never sent a burst above its rate; an idle
account's ``paced_until`` lies in the past and the next block starts now. A worker that dies
wastes at most one block.

Use, right before each provider request::

    pacer = Pacer(engine, provider_id, rate_per_second=20, concurrency=50, clock=clock)
    async with pacer.slot():
        await post(...)

The HTTP gateways take it as ``gateway.pacer = pacer`` and enter it around each request;
any other provider can be wrapped: ``paced(provider, pacer)``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine, select, update

from orderbell.channels.base import OutgoingMessage, Provider, SendResult
from orderbell.clock import Clock
from orderbell.errors import NotFound
from orderbell.store.schema import shop_providers

DEFAULT_CONCURRENCY = 50
#: seconds of slots one reservation takes: fewer DB round trips against finer sharing
BLOCK_SECONDS = 0.2
_MAX_CAS_TRIES = 50


class Pacer:
    """Rate slots shared through the database plus a per-worker concurrency limit.

    ``rate_per_second`` None or 0 means unpaced (only the concurrency limit applies).
    """

    def __init__(
        self,
        engine: Engine,
        provider_id: int,
        *,
        rate_per_second: float | Decimal | None,
        concurrency: int | None,
        clock: Clock,
        block: int | None = None,
        max_lag: float | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.engine = engine
        self.provider_id = provider_id
        self.rate = float(rate_per_second) if rate_per_second else 0.0
        if self.rate < 0 or not math.isfinite(self.rate):
            raise ValueError("rate_per_second must be a positive number")
        self.concurrency = concurrency or DEFAULT_CONCURRENCY
        self.clock = clock
        self._sleep = sleep
        self._interval = timedelta(seconds=1 / self.rate) if self.rate else timedelta(0)
        self.block = block or max(1, min(self.concurrency, round(self.rate * BLOCK_SECONDS)))
        lag = max_lag if max_lag is not None else max(0.05, 2 / self.rate if self.rate else 0)
        self._max_lag = timedelta(seconds=lag)
        self._slots: collections.deque[datetime] = collections.deque()
        self._reserving = asyncio.Lock()
        self._in_flight = asyncio.Semaphore(self.concurrency)
        self.reservations = 0  #: blocks reserved (for tests and metrics)
        self.dropped = 0  #: slots dropped because they were not used in time

    @classmethod
    def for_provider(cls, engine: Engine, provider_id: int, clock: Clock) -> Pacer:
        """A pacer with the account's configured rate and concurrency."""
        with engine.connect() as conn:
            row = conn.execute(
                select(shop_providers.c.rate_per_second, shop_providers.c.concurrency).where(
                    shop_providers.c.id == provider_id
                )
            ).first()
        if row is None:
            raise NotFound("provider not found", field="provider_id")
        return cls(
            engine,
            provider_id,
            rate_per_second=row.rate_per_second,
            concurrency=row.concurrency,
            clock=clock,
        )

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one concurrency slot and wait for one rate slot; release on exit."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    async def acquire(self) -> None:
        """Wait for a concurrency slot, then until the next rate slot is due."""
        await self._in_flight.acquire()
        try:
            if self.rate:
                await self._wait_for_slot()
        except BaseException:
            self._in_flight.release()
            raise

    def release(self) -> None:
        """Give back the concurrency slot taken by :meth:`acquire`."""
        self._in_flight.release()

    async def _wait_for_slot(self) -> None:
        while True:
            if not self._slots:
                async with self._reserving:
                    if not self._slots:
                        self._slots.extend(await asyncio.to_thread(self._reserve, self.block))
                continue
            due = self._slots.popleft()
            late = self.clock.now() - due
            if late > self._max_lag:
                self.dropped += 1
                continue
            if late < timedelta(0):
                await self._sleep(-late.total_seconds())
            return

    def _reserve(self, count: int) -> list[datetime]:
        """Advance ``paced_until`` by ``count`` slots atomically; the slots' times."""
        table = shop_providers
        for _ in range(_MAX_CAS_TRIES):
            with self.engine.begin() as conn:
                row = conn.execute(
                    select(table.c.paced_until)
                    .where(table.c.id == self.provider_id)
                    .with_for_update()
                ).first()
                if row is None:
                    raise NotFound("provider not found", field="provider_id")
                old: datetime | None = row.paced_until
                now = self.clock.now()
                start = old if old is not None and old > now else now
                end = start + self._interval * count
                same = table.c.paced_until.is_(None) if old is None else table.c.paced_until == old
                swapped = conn.execute(
                    update(table)
                    .where(table.c.id == self.provider_id, same)
                    .values(paced_until=end)
                ).rowcount
            if swapped == 1:
                self.reservations += 1
                return [start + self._interval * i for i in range(count)]
        raise RuntimeError("could not reserve pacing slots: too much contention")


class PacedProvider:
    """Any provider, each message sent alone inside one pacer slot."""

    def __init__(self, provider: Provider, pacer: Pacer) -> None:
        self.provider = provider
        self.pacer = pacer
        self.name = provider.name
        self.channel = provider.channel

    async def send(self, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        """One slot per message; results in the batch's order."""

        async def one(message: OutgoingMessage) -> list[SendResult]:
            async with self.pacer.slot():
                return await self.provider.send([message])

        results = await asyncio.gather(*(one(m) for m in batch))
        return [r for rs in results for r in rs]

    async def close(self) -> None:
        """Close the wrapped provider."""
        await self.provider.close()


def paced(provider: Provider, pacer: Pacer) -> PacedProvider:
    """Wrap a provider so that every message takes one slot of ``pacer``."""
    return PacedProvider(provider, pacer)
