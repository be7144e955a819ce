"""The provider interface: one verb, ``send``, over a batch of outgoing messages.

Adding a gateway is one module with a class that implements :class:`Provider`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

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


# ---------------------------------------------------------------- gateways: callbacks in


class DeliveryState(enum.StrEnum):
    """What a delivery receipt says happened to a message after the provider took it."""

    ACCEPTED = "accepted"  #: intermediate: queued / accepted by the SMSC; no change of status
    DELIVERED = "delivered"  #: reached the handset / mailbox
    UNDELIVERED = "undelivered"  #: the network gave up (expired, unreachable)
    FAILED = "failed"  #: rejected after submission


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """A delivery report, matched by our message id (when echoed) or the provider's id."""

    state: DeliveryState
    message_id: int | None = None
    provider_message_id: str | None = None
    code: str | None = None  #: the provider's own status / error code, verbatim
    at: datetime | None = None  #: the provider's time of the event (aware), if it gives one


@dataclass(frozen=True, slots=True, kw_only=True)
class Inbound:
    """A message a customer sent to the shop (an SMS reply, "STOP", ...)."""

    sender: str  #: as received; may lack the "+" of E.164
    text: str
    recipient: str | None = None  #: the shop's number / short code it was sent to
    provider_message_id: str | None = None  #: for de-duplicating a re-delivered callback
    received_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Callback:
    """An HTTP request a provider made to our callback URL, as the web layer received it."""

    method: str
    url: str  #: the full URL as the provider called it (Twilio signs it)
    query: Mapping[str, str]
    headers: Mapping[str, str]  #: keys lower-cased
    body: bytes
    form: Mapping[str, str] = field(default_factory=dict)  #: parsed form body, when one was sent


class CallbackRejected(Exception):
    """A callback that is not authentic or not understood; answered 4xx, changes nothing."""

    def __init__(self, reason: str, *, status_code: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


class Gateway(Provider, Protocol):
    """A provider that also receives callbacks: delivery receipts and inbound messages.

    Modules under ``orderbell.channels`` that implement a gateway expose::

        KIND: str                      # "kannel", "smsapi", "serwersms", "twilio", "http", "smtp"
        CHANNEL: Channel
        SECRET_FIELDS: frozenset[str]  # settings keys that are credentials (write-only)
        def validate(settings: Mapping[str, Any]) -> dict[str, Any]
            # -> normalised settings; raises InvalidInput(field="settings.<key>") on bad input
        def build(settings: Mapping[str, Any], *, name: str, callback_url: str | None) -> Gateway
            # callback_url: where the provider must call us back (receipts/inbound), when known
    """

    def parse_callback(self, callback: Callback) -> list[Receipt | Inbound]:
        """Authenticate and parse one callback (raise :class:`CallbackRejected` if bad).
        Must not touch the database: the caller applies what it returns."""
        ...


ProviderSettings = Mapping[str, Any]
