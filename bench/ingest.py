"""Durable event ingest over HTTP against a validate-only endpoint of the same model.

Both servers are real uvicorn processes on 127.0.0.1 started here and stopped by pid.
Throughput: a fixed number of events with a bounded number in flight. Latency: an
open-loop paced load (events start on schedule whether or not earlier ones finished).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import Figure

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(argv: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    """Start a server process we own; yield its base URL; stop it by pid."""
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"server exited: {log.read()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("server did not start in 30 s")
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def body(i: int) -> bytes:
    return json.dumps(
        {
            "id": f"bench-{i}",
            "type": "order.created",
            "occurred_at": datetime.now(UTC).isoformat(),
            "order": {"code": f"B{i}", "total": "249.90", "currency": "TRY"},
            "customer": {"id": f"c{i % 1000}", "name": "Ayşe Yılmaz", "phone": "+905321234567"},
        }
    ).encode()


async def _post(
    session: aiohttp.ClientSession, url: str, data: bytes, headers: dict[str, str]
) -> float:
    start = time.perf_counter()
    async with session.post(url, data=data, headers=headers) as r:
        await r.read()
        if r.status not in (200, 201):
            raise RuntimeError(f"HTTP {r.status}")
    return time.perf_counter() - start


async def throughput(base: str, headers: dict[str, str], count: int, offset: int) -> float:
    """Events per second with 32 requests in flight."""
    payloads = [body(offset + i) for i in range(count)]
    connector = aiohttp.TCPConnector(limit=32)
    async with aiohttp.ClientSession(connector=connector) as session:
        queue = iter(payloads)

        async def worker() -> None:
            for data in queue:
                await _post(session, f"{base}/v1/events", data, headers)

        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(32))), timeout=120)
        return count / (time.perf_counter() - start)


async def paced(
    base: str, headers: dict[str, str], rate: int, seconds: float, offset: int
) -> dict[str, float]:
    """Open-loop load at `rate` events/s; latency percentiles in ms."""
    count = int(rate * seconds)
    payloads = [body(offset + i) for i in range(count)]
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        tasks = []
        for i, data in enumerate(payloads):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_post(session, f"{base}/v1/events", data, headers)))
        latencies = sorted(await asyncio.wait_for(asyncio.gather(*tasks), timeout=120))
        achieved = count / (time.perf_counter() - start)

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {"p50_ms": pct(0.50), "p99_ms": pct(0.99), "achieved_per_s": achieved}


def ingest_figures(
    count: int = 3000, runs: int = 3, rate: int = 1000, seconds: float = 4.0
) -> list[Figure]:
    """Throughput ratio and paced p99 for POST /v1/events."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "ORDERBELL_DATABASE_URL": f"sqlite:///{tmp}/orderbell.db",
            "ORDERBELL_OUTBOX_FILE": f"{tmp}/outbox.jsonl",
            "ORDERBELL_LOG_LEVEL": "WARNING",
        }
        subprocess.run([str(BIN / "orderbell"), "migrate"], env=env, check=True,
                       capture_output=True)  # fmt: skip
        ours_port, base_port = _free_port(), _free_port()
        ours_env = {**env, "ORDERBELL_PORT": str(ours_port)}
        ours_cmd = [str(BIN / "orderbell"), "serve", "--demo", "--no-worker"]
        base_cmd = [str(BIN / "uvicorn"), "bench.baseline_app:app", "--host", "127.0.0.1",
                    "--port", str(base_port), "--log-level", "warning"]  # fmt: skip
        results: dict[str, Any] = {}
        with server(ours_cmd, ours_env, ours_port) as ours_url:
            key = _demo_key(env)
            auth = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
            with server(base_cmd, {**env, "PYTHONPATH": str(Path.cwd())}, base_port) as base_url:
                plain = {"content-type": "application/json"}
                asyncio.run(throughput(base_url, plain, 200, 10_000_000))  # warm up
                asyncio.run(throughput(ours_url, auth, 200, 10_000_000))
                ours_runs, base_runs = [], []
                for r in range(runs):
                    base_runs.append(asyncio.run(throughput(base_url, plain, count, r * count)))
                    ours_runs.append(asyncio.run(throughput(ours_url, auth, count, r * count)))
                results["latency"] = asyncio.run(paced(ours_url, auth, rate, seconds, 20_000_000))
                results["base_latency"] = asyncio.run(paced(base_url, plain, rate, seconds, 0))
        ours = sorted(ours_runs)[len(ours_runs) // 2]
        base = sorted(base_runs)[len(base_runs) // 2]
        lat = results["latency"]
        return [
            Figure(
                name="HTTP ingest events/s (32 in flight)",
                unit="events/s",
                ours=ours,
                baseline=base,
                target=">=0.6x and >=2,000/s",
                passed=ours / base >= 0.6 and ours >= 2000,
                notes={"ours_runs": ours_runs, "validate_only_runs": base_runs},
            ),
            Figure(
                name=f"HTTP ingest p99 ms at {rate}/s paced",
                unit="ms",
                ours=lat["p99_ms"],
                baseline=results["base_latency"]["p99_ms"],
                target="p99 <= 50 ms",
                passed=lat["p99_ms"] <= 50 and lat["achieved_per_s"] >= rate * 0.95,
                notes={"ours": lat, "validate_only": results["base_latency"]},
            ),
        ]


def _demo_key(env: dict[str, str]) -> str:
    done = subprocess.run([str(BIN / "orderbell"), "apikey", "create", "--shop", "demo"],
                          env=env, check=True, capture_output=True, text=True)  # fmt: skip
    return done.stdout.strip()
