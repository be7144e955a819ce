"""Loopback stand-ins for SMSAPI.pl, SerwerSMS.pl and Twilio: aiohttp servers on 127.0.0.1
(a random port, in a thread of their own) that speak each provider's documented request and
answer shapes, check authentication and required fields like the real one, record what they
were sent, and can be told to fail (``mode``), to answer slowly (``latency``) and to throttle
above a rate (``max_rate``, a token bucket answering 429).

Modes: ok, invalid_number, no_funds, unsubscribed (Twilio), throttled, error500, timeout
(holds the request ``hang`` seconds), garbage (200 with an HTML page).

Also a command for the benchmarks: ``python -m tests.gateway_servers smsapi --port P
--latency 0.05`` serves until terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

SMSAPI_TOKEN = "smsapi-test-token-0123456789"
SERWERSMS_TOKEN = "serwersms-test-token-0123456789"
TWILIO_SID = "AC" + "0123456789abcdef" * 2
TWILIO_TOKEN = "f00dfeedf00dfeedf00dfeedf00dfeed"


@dataclass
class Submission:
    """One request the fake gateway accepted for processing."""

    fields: dict[str, Any]
    at: float  #: time.monotonic() when it arrived


@dataclass
class FakeGateway:
    """A provider's HTTP API on loopback."""

    kind: str  #: "smsapi" | "serwersms" | "twilio"
    mode: str = "ok"
    latency: float = 0.0
    max_rate: float | None = None
    burst: float = 2.0
    hang: float = 5.0
    submissions: list[Submission] = field(default_factory=list)
    throttled: int = 0
    port: int = 0
    record: bool = True
    _tokens: float = 0.0
    _refilled: float = 0.0
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _counter: int = 0

    @property
    def base_url(self) -> str:
        """Where the gateway listens."""
        return f"http://127.0.0.1:{self.port}"

    # ---------------------------------------------------------------- lifecycle

    def app(self) -> web.Application:
        """The aiohttp application for this provider."""
        app = web.Application()
        if self.kind == "smsapi":
            app.router.add_post("/sms.do", self._smsapi)
        elif self.kind == "serwersms":
            app.router.add_post("/messages/send_sms", self._serwersms)
            app.router.add_post("/messages/send_sms.json", self._serwersms)
        elif self.kind == "twilio":
            app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._twilio)
        else:
            raise ValueError(self.kind)
        return app

    async def _start(self, port: int) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def start(self) -> FakeGateway:
        """Serve in a background thread; returns once listening."""
        ready = threading.Event()
        loop = asyncio.new_event_loop()
        self._loop = loop

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._start(0))
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name=f"fake-{self.kind}", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake gateway did not start")
        return self

    def stop(self) -> None:
        """Stop serving (hung requests are cut) and join the thread."""
        loop, runner = self._loop, self._runner
        if loop is None or runner is None:
            return
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = self._runner = None

    # ---------------------------------------------------------------- common behaviour

    def _take_token(self) -> bool:
        """Token bucket: ``max_rate`` per second with ``burst`` capacity."""
        if self.max_rate is None:
            return True
        now = time.monotonic()
        if self._refilled == 0.0:
            self._tokens, self._refilled = self.burst, now
        self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.max_rate)
        self._refilled = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self.throttled += 1
        return False

    async def _common(self) -> web.Response | None:
        """Latency, throttling and the modes every provider shares."""
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.mode == "timeout":
            await asyncio.sleep(self.hang)
        if self.mode == "error500":
            return web.Response(status=500, text="Internal Server Error")
        if self.mode == "garbage":
            return web.Response(status=200, text="<html><body>Bad gateway?</body></html>")
        return None

    def _record(self, submission: Submission) -> None:
        if self.record:
            self.submissions.append(submission)

    def _new_id(self, width: int = 10) -> str:
        self._counter += 1
        return f"{self._counter:0{width}x}"

    # ---------------------------------------------------------------- SMSAPI.pl

    async def _smsapi(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {SMSAPI_TOKEN}":
            return web.json_response({"error": 101, "message": "Authorization failed"})
        form = dict(await request.post())
        if not self._take_token() or self.mode == "throttled":
            return web.json_response({"error": 203, "message": "Too many requests"}, status=429)
        if (early := await self._common()) is not None:
            return early
        if form.get("format") != "json" or not form.get("to") or not form.get("message"):
            return web.json_response({"error": 8, "message": "Error in request"})
        if self.mode == "invalid_number" or not str(form["to"]).isdigit():
            return web.json_response(
                {"error": 13, "message": "No correct phone numbers", "invalid_numbers": [
                    {"number": form["to"], "submitted_number": form["to"], "message": "Invalid phone number"}
                ]}
            )  # fmt: skip
        if self.mode == "no_funds":
            return web.json_response({"error": 103, "message": "Insufficient credits"})
        self._record(Submission(fields=dict(form), at=time.monotonic()))
        entry = {
            "id": self._new_id(16).upper(),
            "points": 0.16,
            "number": form["to"],
            "date_sent": int(time.time()),
            "submitted_number": form["to"],
            "status": "QUEUE",
            "idx": form.get("idx"),
            "parts": 1 if len(str(form["message"])) <= 160 else 2,
        }
        return web.json_response({"count": 1, "list": [entry]})

    # ---------------------------------------------------------------- SerwerSMS.pl

    async def _serwersms(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {SERWERSMS_TOKEN}":
            return web.json_response(
                {"error": {"code": 1001, "type": "InvalidUser", "message": "Incorrect login or password"}}
            )  # fmt: skip
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not self._take_token() or self.mode == "throttled":
            return web.Response(status=429, text="Too Many Requests")
        if (early := await self._common()) is not None:
            return early
        if not isinstance(body, dict) or not body.get("phone") or not body.get("text"):
            return web.json_response(
                {"error": {"code": 2000, "type": "ValidationRequiredError", "message": "Missing required parameters"}}
            )  # fmt: skip
        if self.mode == "no_funds":
            return web.json_response(
                {"error": {"code": 3002, "type": "SendError", "message": "Exhausted the limit of available SMS FULL"}}
            )  # fmt: skip
        item: dict[str, Any] = {"id": self._new_id(), "phone": body["phone"], "text": body["text"]}
        if self.mode == "invalid_number" or not str(body["phone"]).startswith("+"):
            item.update(
                status="unsent", error_code=2200, error_message="Nieprawidlowy numer odbiorcy"
            )
            return web.json_response({"success": True, "queued": 0, "unsent": 1, "items": [item]})
        self._record(Submission(fields=dict(body), at=time.monotonic()))
        item.update(status="queued", queued="2026-11-20 10:00:00", parts=1)
        return web.json_response({"success": True, "queued": 1, "unsent": 0, "items": [item]})

    # ---------------------------------------------------------------- Twilio

    async def _twilio(self, request: web.Request) -> web.Response:
        expected = base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
        if (
            request.match_info["sid"] != TWILIO_SID
            or request.headers.get("Authorization") != f"Basic {expected}"
        ):
            return _twilio_error(20003, "Authenticate", 401)
        form = dict(await request.post())
        if not self._take_token() or self.mode == "throttled":
            return _twilio_error(20429, "Too Many Requests", 429)
        if (early := await self._common()) is not None:
            return early
        if not form.get("To") or not form.get("Body"):
            return _twilio_error(21604, "A 'To' phone number and a 'Body' are required.", 400)
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return _twilio_error(21603, "A 'From' or 'MessagingServiceSid' is required.", 400)
        if self.mode == "invalid_number" or not str(form["To"]).startswith("+"):
            return _twilio_error(21211, "The 'To' number is not a valid phone number.", 400)
        if self.mode == "unsubscribed":
            return _twilio_error(21610, "Attempt to send to unsubscribed recipient", 400)
        if self.mode == "no_funds":
            return _twilio_error(20003, "Permission Denied: account suspended", 401)
        self._record(Submission(fields=dict(form), at=time.monotonic()))
        sid = "SM" + secrets.token_hex(16)
        return web.json_response(
            {
                "sid": sid,
                "account_sid": TWILIO_SID,
                "to": form["To"],
                "from": form.get("From"),
                "body": form["Body"],
                "status": "queued",
                "num_segments": "1",
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "uri": f"/2010-04-01/Accounts/{TWILIO_SID}/Messages/{sid}.json",
            },
            status=201,
        )


def _twilio_error(code: int, message: str, status: int) -> web.Response:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def main() -> None:
    """Serve one fake gateway on a given port until terminated (for the benchmarks)."""
    parser = argparse.ArgumentParser(prog="python -m tests.gateway_servers")
    parser.add_argument("kind", choices=["smsapi", "serwersms", "twilio"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--max-rate", type=float, default=None)
    args = parser.parse_args()
    gateway = FakeGateway(args.kind, latency=args.latency, max_rate=args.max_rate)
    gateway.record = False  # a benchmark sends many; nobody reads them back
    try:  # the stand-in should not be the bottleneck of a client benchmark
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        loop = asyncio.new_event_loop()
    web.run_app(
        gateway.app(), host="127.0.0.1", port=args.port, print=None, access_log=None, loop=loop
    )


if __name__ == "__main__":
    main()
