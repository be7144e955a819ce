"""Waking idle workers when due work arrives: LISTEN/NOTIFY on PostgreSQL, a poll on SQLite.

On PostgreSQL an ``AFTER INSERT`` trigger on ``messages`` (migration 0005) sends
``NOTIFY orderbell_due`` when a statement inserts a message that is due now. One listener
per process holds a dedicated connection and wakes every idle dispatch loop of the process;
the loops still poll (``ORDERBELL_WORKER_POLL_SECONDS``) so a lost connection or a message
that became due by the clock, not by an insert, is picked up anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

import structlog
from sqlalchemy import Engine

log = structlog.get_logger("orderbell.wakeup")
CHANNEL = "orderbell_due"  #: the NOTIFY channel the trigger uses


class Waker(Protocol):
    """Something an idle dispatch loop can wait on besides its poll timeout."""

    async def wait(self) -> None:
        """Return when there may be new due work (never returns if there is no signal)."""
        ...

    async def close(self) -> None:
        """Stop listening."""
        ...


class PollWaker:
    """No signal at all: idle loops wake on their poll timeout only (SQLite)."""

    async def wait(self) -> None:
        """Never signals."""
        await asyncio.Event().wait()

    async def close(self) -> None:
        """Nothing to release."""


class PgListener:
    """LISTEN on a dedicated connection; each notification wakes every waiting loop.

    Reconnects (after `retry_seconds`) when the connection drops, e.g. a database restart.
    """

    def __init__(self, conninfo: str, *, retry_seconds: float = 1.0) -> None:
        self._conninfo = conninfo
        self._retry = retry_seconds
        self._signal: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.notifications = 0  #: how many arrived (tests and metrics read it)
        self.connected = asyncio.Event()

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._listen())

    async def wait(self) -> None:
        """Return at the next notification."""
        self._start()
        if self._signal is None or self._signal.done():
            self._signal = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._signal)

    def _wake(self) -> None:
        self.notifications += 1
        if self._signal is not None and not self._signal.done():
            self._signal.set_result(None)

    async def _listen(self) -> None:
        import psycopg

        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, connect_timeout=5
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    self._wake()  # anything inserted while we were away is due now
                    async for _ in conn.notifies():
                        self._wake()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the poll keeps the worker going meanwhile
                log.warning("listen_lost", error=type(exc).__name__)
            self.connected.clear()
            await asyncio.sleep(self._retry)

    async def close(self) -> None:
        """Stop listening and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None


def for_engine(engine: Engine) -> Waker:
    """LISTEN/NOTIFY on PostgreSQL, polling elsewhere."""
    if engine.dialect.name != "postgresql":
        return PollWaker()
    url = engine.url.set(drivername="postgresql")
    return PgListener(url.render_as_string(hide_password=False))
