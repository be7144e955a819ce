"""A loopback HTTP JSON SMS gateway (aiohttp on 127.0.0.1, a free port, its own thread) that
speaks the generic gateway's default shape and can misbehave on demand: 500, 429, 400,
garbage, or sleeping past the client's timeout after reading the request."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Gateway:
    """What the fake gateway received, and how it answers."""

    mode: str = "ok"  # ok | 500 | 429 | 400 | garbage | sleep | error_body
    sleep_seconds: float = 1.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    delay_seconds: float = 0.0  # latency of every answer
    before_answer: Callable[[dict[str, Any]], None] | None = None  # runs in a worker thread
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sms"

    @property
    def texts(self) -> list[str]:
        return [r["json"].get("text", "") for r in self.requests]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = await request.json()
        except ValueError:
            body = {"_raw": raw.decode(errors="replace")}
        record = {"headers": dict(request.headers), "json": body}
        self.requests.append(record)
        n = len(self.requests)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_seconds:
                await asyncio.sleep(self.delay_seconds)
            if self.mode == "sleep":
                await asyncio.sleep(self.sleep_seconds)
            if self.before_answer is not None:
                hook = self.before_answer
                await asyncio.get_running_loop().run_in_executor(None, hook, record)
            if self.mode == "500":
                return web.json_response({"error": "internal"}, status=500)
            if self.mode == "429":
                return web.json_response({"error": "slow down"}, status=429)
            if self.mode == "400":
                return web.json_response({"error": "invalid number"}, status=400)
            if self.mode == "garbage":
                return web.Response(text="<html>oops", status=200, content_type="text/html")
            if self.mode == "error_body":
                return web.json_response({"error": "no_funds"}, status=200)
            return web.json_response({"id": f"gw-{n}", "status": "queued"}, status=201)
        finally:
            self.in_flight -= 1

    def start(self) -> Gateway:
        ready = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_route("*", "/sms", self._handle)
            self._runner = web.AppRunner(app)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=main, name="fake-gateway", daemon=True)
        self._thread.start()
        assert ready.wait(10), "the fake gateway did not start"
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)


def settings_for(gateway: Gateway, **more: Any) -> dict[str, Any]:
    """Provider settings pointing the generic HTTP gateway at a fake one."""
    return {
        "url": gateway.url,
        "auth_header": "X-Api-Key",
        "auth_value": "k3y-secret-value",
        "timeout_seconds": 10,  # generous: a loaded machine must not turn "ok" into a timeout
        **more,
    }
