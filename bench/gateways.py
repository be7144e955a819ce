"""Gateway egress and pacing accuracy.

Egress: our SMSAPI gateway (aiohttp, 50 requests in flight) against a loopback SMSAPI stand-in
(``python -m tests.gateway_servers``, its own process) that answers every request after
50 ms. Little's law caps 50 in flight at 50 ms each at 1,000 requests/s; the same-run baseline
is a bare httpx loop with 50 in flight posting the same form (and the ceiling itself).

Pacing: one Pacer on a fresh SQLite file, a worker sending as fast as it lets it, at 1, 10
and 100 messages/s; achieved over the window against the configured rate.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import Engine

from bench.common import Figure, interleaved, median
from orderbell.api.schemas import ShopIn
from orderbell.channels import smsapi
from orderbell.channels.base import Outcome, OutgoingMessage
from orderbell.channels.pacing import Pacer
from orderbell.clock import SystemClock
from orderbell.domain.model import Channel
from orderbell.store import shops
from orderbell.store.db import make_engine, migrate, new_id
from orderbell.store.schema import shop_providers

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
TOKEN = "smsapi-test-token-0123456789"  # the stand-in's token (tests/gateway_servers.py)
IN_FLIGHT = 50
LATENCY = 0.05
CEILING = IN_FLIGHT / LATENCY


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@contextmanager
def fake_gateway(latency: float) -> Iterator[str]:
    """The SMSAPI stand-in as a process we own; its base URL until we stop it."""
    port = _free_port()
    argv = [sys.executable, "-m", "tests.gateway_servers", "smsapi", "--port", str(port),
            "--latency", str(latency)]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as s:
                if s.connect_ex((HOST, port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the fake gateway did not start")
            time.sleep(0.05)
        yield f"http://{HOST}:{port}"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def _messages(count: int) -> list[OutgoingMessage]:
    return [
        OutgoingMessage(
            id=i, shop_id=1, channel=Channel.SMS, to="+48600100200", text=f"Order {i} shipped"
        )
        for i in range(1, count + 1)
    ]


def ours(url: str, count: int) -> float:
    """Requests/s of our gateway sending ``count`` messages with 50 in flight."""
    gateway = smsapi.build(
        {"access_token": TOKEN, "base_url": url, "concurrency": IN_FLIGHT},
        name="bench",
        callback_url=None,
    )

    async def run() -> float:
        batch = _messages(count)
        await gateway.send(batch[:IN_FLIGHT])  # warm the pool
        start = time.perf_counter()
        results = await gateway.send(batch)
        elapsed = time.perf_counter() - start
        await gateway.close()
        if any(r.outcome is not Outcome.ACCEPTED for r in results):
            raise RuntimeError("the gateway benchmark had failures")
        return count / elapsed

    return asyncio.run(run())


def bare_httpx(url: str, count: int) -> float:
    """Requests/s of a bare httpx loop posting the same form with 50 in flight."""

    async def run() -> float:
        limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(limits=limits, headers=headers, timeout=30) as client:
            gate = asyncio.Semaphore(IN_FLIGHT)

            async def one(i: int) -> None:
                form = {"to": "48600100200", "message": f"Order {i} shipped", "format": "json",
                        "encoding": "utf-8", "idx": str(i)}  # fmt: skip
                async with gate:
                    r = await client.post(f"{url}/sms.do", data=form)
                    r.raise_for_status()

            await asyncio.gather(*(one(i) for i in range(IN_FLIGHT)))
            start = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(count)))
            return count / (time.perf_counter() - start)

    return asyncio.run(run())


def egress_figures(count: int, runs: int) -> list[Figure]:
    """Ours vs the Little's-law ceiling and vs bare httpx, medians of interleaved runs."""
    with fake_gateway(LATENCY) as url:
        base_runs, our_runs = interleaved(
            runs, lambda: bare_httpx(url, count), lambda: ours(url, count)
        )
    figure, httpx_rate = median(our_runs), median(base_runs)
    notes = {"requests": count, "runs": runs, "in_flight": IN_FLIGHT, "latency_ms": 50,
             "ours_runs": our_runs, "bare_httpx_runs": base_runs}  # fmt: skip
    return [
        Figure(
            name="gateway egress, 50 in flight @50 ms (vs ceiling)",
            unit="req/s",
            ours=figure,
            baseline=CEILING,
            target=">= 0.7x Little's-law 1,000/s",
            passed=figure >= 0.7 * CEILING,
            notes=notes,
        ),
        Figure(
            name="gateway egress (vs bare httpx, 50 in flight)",
            unit="req/s",
            ours=figure,
            baseline=httpx_rate,
            target=">= 1.0x bare httpx",
            passed=figure >= httpx_rate,
            notes=notes,
        ),
    ]


def _provider(folder: Path, rate: float) -> tuple[Engine, int]:
    engine = make_engine(f"sqlite:///{folder / 'pacing.db'}")
    migrate(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        shop = shops.create(conn, ShopIn(name="Bench", slug="bench"), now)
        pid = new_id(
            conn.execute(
                shop_providers.insert().values(
                    shop_id=shop.id, name="sms", channel="sms", kind="smsapi", settings={},
                    secrets={}, rate_per_second=rate, concurrency=IN_FLIGHT,
                    callback_token="bench-token", created_at=now, updated_at=now,
                )
            )
        )  # fmt: skip
    return engine, pid


def achieved_rate(rate: float, seconds: float) -> dict[str, float]:
    """One pacer at ``rate``, a worker taking slots as fast as it can for ``seconds``."""
    with tempfile.TemporaryDirectory() as tmp:
        engine, pid = _provider(Path(tmp), rate)
        pacer = Pacer.for_provider(engine, pid, SystemClock())
        stamps: list[float] = []

        async def run() -> None:
            deadline = time.monotonic() + seconds

            async def taker() -> None:
                while time.monotonic() < deadline:
                    async with pacer.slot():
                        if time.monotonic() < deadline:
                            stamps.append(time.monotonic())

            await asyncio.gather(*(taker() for _ in range(10)))

        asyncio.run(run())
        engine.dispose()
    stamps.sort()
    # The slope of a least-squares line through (time, count), from the second slot on (the
    # first pays for opening the database): endpoint jitter of a busy machine cancels out.
    points = stamps[1:]
    window = points[-1] - points[0] if len(points) > 1 else seconds
    if len(points) > 2:
        mean_t = statistics.fmean(points)
        mean_i = (len(points) - 1) / 2
        num = sum((t - mean_t) * (i - mean_i) for i, t in enumerate(points))
        den = sum((t - mean_t) ** 2 for t in points)
        achieved = num / den
    else:
        achieved = len(stamps) / seconds
    return {"achieved": achieved, "slots": len(stamps), "reservations": pacer.reservations,
            "window_s": window}  # fmt: skip


def pacing_figures(seconds: float, rates: tuple[float, ...] = (1, 10, 100)) -> list[Figure]:
    """Achieved/configured at each rate over one window of ``seconds``."""
    if seconds < 60:
        print(f"  pacing windows are {seconds:g} s (60 s each would make the run too long)")
    figures = []
    for rate in rates:
        got = achieved_rate(rate, seconds)
        ratio = got["achieved"] / rate
        figures.append(
            Figure(
                name=f"pacing accuracy at {rate:g} msg/s ({seconds:g} s window)",
                unit="msg/s",
                ours=got["achieved"],
                baseline=rate,
                target="0.95x-1.00x configured",
                passed=0.95 <= ratio <= 1.005,
                notes={**got, "db_reservations_per_s": got["reservations"] / seconds},
            )
        )
    return figures
