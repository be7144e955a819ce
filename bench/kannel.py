"""Messages/s through real Kannel: orderbell's Kannel gateway sending N messages through
smsbox's sendsms to bearerbox and on to fakesmsc, against a same-run baseline of a bare
aiohttp loop calling the same sendsms URL with the same query and the same number in flight.

smsbox answers once bearerbox has taken the message, so both sides measure Kannel's own
throughput; the ratio is what our gateway (request building, classification, result objects)
costs on top. Each run starts once fakesmsc has every message of the run before. Kannel is
started with the harness the tests use (tests/kannel_harness.py), logging warnings only;
without bearerbox the figure is skipped with a printed reason.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlencode

import aiohttp
from tests.kannel_harness import Kannel, missing

from bench.common import Figure, interleaved, median
from orderbell.channels.base import Outcome, OutgoingMessage
from orderbell.domain.model import Channel

IN_FLIGHT = 50
WARM_UP = IN_FLIGHT


def _messages(count: int, start: int = 1) -> list[OutgoingMessage]:
    return [
        OutgoingMessage(
            id=i, shop_id=1, channel=Channel.SMS, to="+905321234567", text=f"Order {i} shipped"
        )
        for i in range(start, start + count)
    ]


def ours(server: Kannel, count: int) -> float:
    """Messages/s of orderbell's Kannel gateway with IN_FLIGHT requests in flight."""
    gateway = server.gateway(sender="Shop", concurrency=IN_FLIGHT)

    async def run() -> float:
        await gateway.send(_messages(WARM_UP))  # open the pool
        start = time.perf_counter()
        results = await gateway.send(_messages(count))
        elapsed = time.perf_counter() - start
        await gateway.close()
        refused = [r for r in results if r.outcome is not Outcome.ACCEPTED]
        if refused:
            raise RuntimeError(f"Kannel refused {len(refused)} messages: {refused[0]}")
        return count / elapsed

    return asyncio.run(run())


def bare_aiohttp(server: Kannel, count: int) -> float:
    """Messages/s of a bare aiohttp loop GETting the same sendsms URL, IN_FLIGHT at a time."""
    base = {k: str(v) for k, v in server.settings(sender="Shop").items() if k != "base_url"}
    url = f"{server.base_url}/cgi-bin/sendsms"

    async def run() -> float:
        connector = aiohttp.TCPConnector(limit=IN_FLIGHT, limit_per_host=IN_FLIGHT)
        async with aiohttp.ClientSession(connector=connector) as session:
            gate = asyncio.Semaphore(IN_FLIGHT)

            async def one(i: int) -> None:
                query = {"username": base["username"], "password": base["password"],
                         "to": "+905321234567", "text": f"Order {i} shipped",
                         "charset": "UTF-8", "from": "Shop"}  # fmt: skip
                async with gate, session.get(f"{url}?{urlencode(query, quote_via=quote)}") as r:
                    await r.read()
                    if r.status != 202:
                        raise RuntimeError(f"sendsms answered {r.status}")

            await asyncio.gather(*(one(i) for i in range(WARM_UP)))
            start = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(count)))
            return count / (time.perf_counter() - start)

    return asyncio.run(run())


def kannel_figures(count: int, runs: int, server: Kannel | None = None) -> list[Figure]:
    """Ours vs bare aiohttp through one real Kannel (or ``server``); none without Kannel."""
    reason = missing()
    if reason is not None:
        print(f"  kannel skipped: {reason} (apt-get install -y kannel kannel-extras)")
        return []
    with tempfile.TemporaryDirectory() as tmp:
        own = server is None
        kannel = server if server is not None else Kannel(Path(tmp), log_level=2).start()
        sent = len(kannel.phone.received())

        def settled(run: Callable[[Kannel, int], float]) -> float:
            # Each run starts once bearerbox has handed the last one's messages to fakesmsc,
            # so no run pays for its predecessor's backlog.
            nonlocal sent
            measured = run(kannel, count)
            sent += count + WARM_UP
            kannel.phone.wait_for(sent, timeout=60)
            return measured

        try:
            base_runs, our_runs = interleaved(
                runs, lambda: settled(bare_aiohttp), lambda: settled(ours)
            )
            delivered = len(kannel.phone.received())
        finally:
            if own:
                kannel.stop()
    figure, baseline = median(our_runs), median(base_runs)
    notes = {"messages": count, "runs": runs, "in_flight": IN_FLIGHT, "ours_runs": our_runs,
             "bare_aiohttp_runs": base_runs, "delivered_to_fakesmsc": delivered}  # fmt: skip
    return [
        Figure(
            name=f"kannel sendsms, {IN_FLIGHT} in flight (vs bare aiohttp)",
            unit="msg/s",
            ours=figure,
            baseline=baseline,
            target=">= 0.9x bare aiohttp",
            passed=figure >= 0.9 * baseline,
            notes=notes,
        )
    ]
