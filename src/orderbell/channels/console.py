"""The console provider: the default in development, so orderbell runs with no gateway.

Each message becomes one JSON line appended to a file (the "outbox", which tests and the demo
read back) and/or one short human line on a stream. Every message is accepted.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from orderbell.channels.base import Outcome, OutgoingMessage, SendResult
from orderbell.channels.masking import mask_recipient
from orderbell.domain.model import Channel

_PREVIEW_CHARS = 60


def provider_message_id(message: OutgoingMessage) -> str:
    """The reference the console provider gives a message: ``console-<id>``."""
    return f"console-{message.id}"


def outbox_record(message: OutgoingMessage) -> dict[str, Any]:
    """The JSON object written to the outbox file for one message."""
    record: dict[str, Any] = {
        "id": message.id,
        "shop_id": message.shop_id,
        "channel": message.channel.value,
        "to": message.to,
        "sender": message.sender,
        "subject": message.subject,
        "text": message.text,
    }
    if message.html is not None:
        record["html"] = message.html
    record["provider_message_id"] = provider_message_id(message)
    return record


def human_line(message: OutgoingMessage, *, mask: bool = False) -> str:
    """A one-line summary of a message for a terminal (no trailing newline)."""
    to = mask_recipient(message.to) if mask else message.to
    body = message.subject if message.subject else message.text
    preview = " ".join(body.split())
    if len(preview) > _PREVIEW_CHARS:
        preview = preview[: _PREVIEW_CHARS - 1] + "…"
    sender = f" from {message.sender}" if message.sender else ""
    return (
        f"[{message.channel.value} #{message.id} shop {message.shop_id}] → {to}{sender}: {preview}"
    )


class ConsoleProvider:
    """Writes messages to a JSON-lines file and/or a stream instead of sending them."""

    def __init__(
        self,
        channel: Channel,
        *,
        stream: TextIO | None = None,
        path: Path | None = None,
        name: str = "console",
        mask_recipients: bool = False,
    ) -> None:
        self.name = name
        self.channel = channel
        self.path = Path(path) if path is not None else None
        self.stream = stream if stream is not None or path is not None else sys.stdout
        self.mask_recipients = mask_recipients
        self._dir_ready = False

    async def send(self, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Record every message of the batch; all are accepted."""
        if not batch:
            return []
        try:
            if self.path is not None:
                self._append(batch)
            if self.stream is not None:
                lines = [human_line(m, mask=self.mask_recipients) for m in batch]
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
        except (OSError, ValueError) as exc:
            # ValueError: the stream was closed. Nothing (or not all) was recorded: try later.
            return [
                SendResult(
                    message_id=m.id,
                    outcome=Outcome.RETRYABLE,
                    error_code="console_io",
                    error_message=f"{type(exc).__name__}: {exc}",
                )
                for m in batch
            ]
        return [
            SendResult(
                message_id=m.id,
                outcome=Outcome.ACCEPTED,
                provider_message_id=provider_message_id(m),
            )
            for m in batch
        ]

    def _append(self, batch: Sequence[OutgoingMessage]) -> None:
        """Append the batch to the outbox file with one write."""
        assert self.path is not None
        if not self._dir_ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._dir_ready = True
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        payload = "".join(dumps(outbox_record(m)) + "\n" for m in batch)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(payload)
            fh.flush()

    async def close(self) -> None:
        """Nothing to release: the file is opened per batch."""
