"""SMTP sending: our provider reusing one connection across messages, against the same
provider opening one connection per message (max_messages_per_connection=1), both to a
loopback aiosmtpd server that accepts everything. The same messages, MIME building and
batches on both sides, so the ratio is what connection reuse buys."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from bench.common import Figure, interleaved, median
from orderbell.channels.base import Attachment, Outcome, OutgoingMessage
from orderbell.channels.smtp import SmtpProvider, SmtpSettings
from orderbell.domain.model import Channel

TARGET = 1.5
BATCH = 50  #: messages per provider.send call, as a dispatcher batch
TIME_LIMIT = 60.0  #: seconds per measured run; the count is cut short beyond it


class _Sink:
    """Accepts every message, keeps only a count."""

    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received += 1
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _messages(count: int) -> list[OutgoingMessage]:
    terms = Attachment(
        filename="terms.pdf", content_type="application/pdf", data=b"%PDF-1.4\n" * 200
    )
    return [
        OutgoingMessage(
            id=i,
            shop_id=1,
            channel=Channel.EMAIL,
            to=f"customer{i}@example.com",
            subject=f"Your order #{1000 + i} is confirmed",
            text=f"Hello Ayşe,\nthank you for order #{1000 + i}.\n" * 5,
            html=f"<p>Hello Ayşe,</p><p>thank you for order <b>#{1000 + i}</b>.</p>" * 5,
            sender="Demo Shop <orders@shop.example>",
            attachments=(terms,) if i % 10 == 0 else (),
        )
        for i in range(count)
    ]


def _run(settings: SmtpSettings, messages: list[OutgoingMessage]) -> Callable[[], float]:
    def once() -> float:
        async def go() -> tuple[int, float]:
            provider = SmtpProvider(settings)
            sent = 0
            start = time.perf_counter()
            try:
                for i in range(0, len(messages), BATCH):
                    results = await provider.send(messages[i : i + BATCH])
                    sent += sum(r.outcome is Outcome.ACCEPTED for r in results)
                    if time.perf_counter() - start > TIME_LIMIT:
                        break
            finally:
                await provider.close()
            return sent, time.perf_counter() - start

        sent, elapsed = asyncio.run(go())
        if sent == 0:
            raise RuntimeError("the SMTP benchmark sent nothing")
        return sent / elapsed

    return once


def smtp_figure(count: int = 2_000, runs: int = 3) -> Figure:
    """Messages/s with connection reuse against one connection per message."""
    sink = _Sink()
    port = _free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        base: dict[str, Any] = {"host": "127.0.0.1", "port": port, "timeout": 10.0}
        base["from_address"] = "orders@shop.example"
        messages = _messages(count)
        reuse = SmtpSettings(**base, max_messages_per_connection=10_000)
        per_message = SmtpSettings(**base, max_messages_per_connection=1)
        _run(reuse, messages[:BATCH])()  # warm-up: imports, the server's first session
        base_runs, our_runs = interleaved(runs, _run(per_message, messages), _run(reuse, messages))
    finally:
        controller.stop()
    ours, baseline = median(our_runs), median(base_runs)
    return Figure(
        name="SMTP send, one reused connection (msg/s)",
        unit="msg/s",
        ours=ours,
        baseline=baseline,
        target=f">= {TARGET}x one connection per message",
        passed=ours >= TARGET * baseline,
        notes={
            "count": count,
            "runs": runs,
            "batch": BATCH,
            "ours_runs": our_runs,
            "baseline_runs": base_runs,
            "received": sink.received,
            "baseline": "the same provider with max_messages_per_connection=1",
        },
    )
