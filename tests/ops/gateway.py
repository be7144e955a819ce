"""A loopback SMS gateway that records every submission by message id, and the minimal HTTP
provider that talks to it (wired through ``ORDERBELL_SMS_PROVIDER=tests.ops.gateway:provider``
with ``ORDERBELL_TEST_GATEWAY_URL``): real HTTP between a worker process and a recorder."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import aiohttp
from aiohttp import web

from orderbell.channels.base import Outcome, OutgoingMessage, SendResult
from orderbell.domain.model import Channel
from orderbell.settings import Settings

URL_VARIABLE = "ORDERBELL_TEST_GATEWAY_URL"


class Gateway:
    """An aiohttp server on its own thread: POST /send {"id": ...} → 200, recorded; or 503
    (recorded as refused) while `up` is False. `delay` slows every answer."""

    def __init__(self) -> None:
        self.up = True
        self.delay = 0.0
        self.received: list[tuple[int, float]] = []  # (message id, wall time)
        self.refused = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self.url = ""

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/send", self._send)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/send"
        self._runner = runner
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.delay:
            await asyncio.sleep(self.delay)
        if not self.up:
            with self._lock:
                self.refused += 1
            return web.json_response({"error": "down"}, status=503)
        with self._lock:
            self.received.append((int(body["id"]), time.time()))
        return web.json_response({"ref": f"gw-{body['id']}"})

    def start(self) -> Gateway:
        """Start serving; returns self once the port is known."""
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the loopback gateway did not start")
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def ids(self) -> Counter[int]:
        """How many times each message id was submitted."""
        with self._lock:
            return Counter(m for m, _ in self.received)


class HttpTestProvider:
    """POSTs each message to the recorder: 200 accepted, 5xx or refused connection
    retryable (nothing was taken), a timeout after sending ambiguous."""

    def __init__(self, url: str, channel: Channel = Channel.SMS) -> None:
        self.url = url
        self.name = "loopback"
        self.channel = channel
        self._session: aiohttp.ClientSession | None = None

    async def send(self, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        """One POST per message, concurrently."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=10),
                connector=aiohttp.TCPConnector(limit=50),
            )
        return list(await asyncio.gather(*(self._one(m) for m in batch)))

    async def _one(self, message: OutgoingMessage) -> SendResult:
        assert self._session is not None
        try:
            async with self._session.post(self.url, json={"id": message.id}) as r:
                data: dict[str, Any] = await r.json()
                if r.status == 200:
                    return SendResult(
                        message_id=message.id,
                        outcome=Outcome.ACCEPTED,
                        provider_message_id=str(data["ref"]),
                    )
                return SendResult(
                    message_id=message.id, outcome=Outcome.RETRYABLE, error_code=str(r.status)
                )
        except aiohttp.ClientConnectorError:
            return SendResult(message_id=message.id, outcome=Outcome.RETRYABLE, error_code="down")
        except (TimeoutError, aiohttp.ClientError):
            return SendResult(message_id=message.id, outcome=Outcome.AMBIGUOUS, error_code="lost")

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def provider(settings: Settings, channel: Channel) -> HttpTestProvider:
    """The factory named by ORDERBELL_SMS_PROVIDER=tests.ops.gateway:provider."""
    return HttpTestProvider(os.environ[URL_VARIABLE], channel)
