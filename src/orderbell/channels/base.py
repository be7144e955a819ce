"""The provider interface: one verb, ``send``, over a batch of outgoing messages.

Adding a gateway is one module with a class that implements :class:`Provider`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from orderbell.domain.model import Channel


class Outcome(enum.StrEnum):
    """What a provider said about one message."""

    ACCEPTED = "accepted"  #: the provider took it (sent)
    RETRYABLE = "retryable"  #: transient failure; nothing was sent; try later
    PERMANENT = "permanent"  #: will never succeed (invalid number, rejected)
    AMBIGUOUS = "ambiguous"  #: the request left but no answer came back (timeout)


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    """A file sent with an e-mail."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class OutgoingMessage:
    """One rendered message ready for a provider."""

    id: int  #: our message id; providers echo it back as their reference where they can
    shop_id: int
    channel: Channel
    to: str  #: E.164 phone number or e-mail address
    text: str
    sender: str | None = None  #: SMS sender name / e-mail From
    subject: str | None = None
    html: str | None = None
    reply_to: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    """A provider's answer for one message."""

    message_id: int
    outcome: Outcome
    provider_message_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    segments: int | None = None  #: as reported by the provider


class Provider(Protocol):
    """Sends messages of one channel. Implementations must not raise for per-message
    failures: they return a :class:`SendResult` for every message they were given."""

    name: str
    channel: Channel

    async def send(self, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Hand a batch to the provider; one result per message, in any order."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
