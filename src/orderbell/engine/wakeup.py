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

    def seen(self) -> int:
        """How many signals came so far: a loop notes it before it looks for work, so one
        that comes while it looks is not lost (`wait(since=…)`)."""
        ...

    async def wait(self, since: int | None = None) -> None:
        """Return when there may be new due work: at once if a signal came after `since`
        (a `seen()`), else at the next one (never, if there is no signal)."""
        ...

    async def close(self) -> None:
        """Stop listening."""
        ...


class PollWaker:
    """No signal at all: idle loops wake on their poll timeout only (SQLite)."""

    def seen(self) -> int:
        """No signal ever comes."""
        return 0

    async def wait(self, since: int | None = None) -> None:
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

    def seen(self) -> int:
        """How many notifications arrived so far."""
        return self.notifications

    async def wait(self, since: int | None = None) -> None:
        """Return at the next notification, or at once if one arrived after `since`: a
        notification that comes while the loop is busy (looking for work and finding none
        just before the insert committed) wakes no waiter, and would otherwise be lost
        until the next poll."""
        self._start()
        if since is not None and self.notifications > since:
            return
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
