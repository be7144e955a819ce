"""Kannel (kannel.org), the open-source SMS gateway a shop runs itself: ``GET
{base_url}/cgi-bin/sendsms`` on its smsbox, with a ``sendsms-user``'s username and password.

Request: ``to`` (E.164, "+" kept), ``text`` in UTF-8 with ``charset=UTF-8``, ``coding=2``
(UCS-2) when the text is not GSM-7 — without it Kannel turns every character outside GSM-7
into "?" —, ``from`` (sender, optional), ``smsc`` (route to one smsc-id, optional),
``dlr-mask=31`` and ``dlr-url``: our callback URL with ``kind=dlr``, our message id and
Kannel's escapes ``%d`` (report type), ``%A`` (the SMSC's reply), ``%T`` (unix time) and
``%F`` (the SMSC's message id).

Answers (smsbox 1.4.5, checked against Debian's package):

- 202 ``0: Accepted for delivery`` or ``3: Queued for later delivery`` -> ACCEPTED. Kannel
  gives no message id: the receipts carry ours.
- 403 ``Authorization failed for sendsms`` -> RETRYABLE ``auth``; 400 ``Sender missing and no
  global set`` -> RETRYABLE ``config:sender`` (account-level problems, see
  :mod:`~orderbell.channels.gateway_client`).
- 400 ``Missing receiver number`` or ``Number(s) has/have been denied by white- and/or
  black-lists.`` -> PERMANENT ``invalid_number``; other 400s (``… misformed, rejected``) ->
  PERMANENT ``rejected``; other 4xx -> PERMANENT ``http_4xx``.
- 503 ``Not routable. Do not try again.`` -> PERMANENT ``rejected:not_routable``; 503
  ``Temporal failure, try again later.`` and other 5xx -> RETRYABLE; a refused connection
  (smsbox down) -> RETRYABLE ``connect``; no answer in time -> AMBIGUOUS ``timeout``.

Delivery reports (GET on the dlr-url): ``%d`` 1 delivered, 2 undelivered, 4 queued on the
SMSC and 8 accepted by it (intermediate: no change), 16 rejected by the SMSC -> FAILED.
Kannel's fake SMSC reports 8 (``%A`` = "ACK/") then 1, each once.

Inbound SMS: an ``sms-service`` whose ``get-url`` is our callback URL followed by
:data:`INBOUND_QUERY`, with ``max-messages = 0`` and ``omit-empty = true`` (else Kannel texts
the answer's body back to the customer; we answer an empty body anyway). ``%b`` and not
``%a``: ``%a`` squeezes spaces. smsbox hands a UCS-2 message over as raw UTF-16BE bytes
(``%c`` = 2, ``%C`` = UTF-16BE) and a GSM one as UTF-8, so the text is decoded from the raw
query bytes with the charset Kannel names.

Callbacks are authenticated by the secret ``callback_token`` in the callback URL path (Kannel
signs nothing).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from orderbell.channels.base import (
    Callback,
    CallbackRejected,
    DeliveryState,
    Inbound,
    Outcome,
    OutgoingMessage,
    Receipt,
    SendResult,
)
from orderbell.channels.fields import Setting
from orderbell.channels.gateway_client import (
    COMMON_FIELDS,
    HttpGateway,
    Reply,
    Request,
    by_http_status,
    callback_params,
    check_callback_path,
    client_options,
    common_settings,
    garbage,
    our_id,
    result,
    setting_str,
    short,
    unix_time,
)
from orderbell.domain.model import Channel
from orderbell.domain.segments import GSM7, analyse

KIND = "kannel"
CHANNEL = Channel.SMS
SECRET_FIELDS = frozenset({"password"})
TITLE = "Kannel (smsbox sendsms)"
FIELDS = (
    Setting(
        name="base_url",
        label="smsbox address",
        required=True,
        hint="Where smsbox's sendsms-port listens, e.g. http://10.0.0.5:13013",
    ),
    Setting(name="username", label="sendsms-user username", required=True),
    Setting(name="password", label="sendsms-user password", required=True),
    Setting(name="sender", label="Sender", hint="Up to 11 characters or a number; empty: default"),
    Setting(name="smsc_id", label="SMSC id", hint="Route through this smsc group (optional)."),
    Setting(name="sendsms_path", label="sendsms path", hint="Default /cgi-bin/sendsms"),
    *(f for f in COMMON_FIELDS if f.name != "base_url"),  # base_url is required here, above
)
SENDSMS_PATH = "/cgi-bin/sendsms"
DLR_MASK = "31"  #: every report: delivered, undelivered, queued, SMSC ack and nack
DLR_QUERY = "kind=dlr&type=%d&reply=%A&at=%T&smsc_msgid=%F"
INBOUND_QUERY = "kind=inbound&from=%p&to=%P&text=%b&coding=%c&charset=%C&at=%T&id=%I"
#: an empty answer: whatever smsbox gets back from a get-url it may text to the sender
CALLBACK_RESPONSE = b""

_SMPP_FIELDS = re.compile(r"\bstat:(\w+).*?\berr:(\w+)", re.IGNORECASE)
#: (words in the answer, outcome, error code), first match wins
_ANSWERS: tuple[tuple[str, Outcome, str], ...] = (
    ("authorization failed", Outcome.RETRYABLE, "auth"),
    ("sender missing", Outcome.RETRYABLE, "config:sender"),
    ("receiver number", Outcome.PERMANENT, "invalid_number"),
    ("white- and/or black-list", Outcome.PERMANENT, "invalid_number:denied"),
    ("not routable", Outcome.PERMANENT, "rejected:not_routable"),
    ("temporal failure", Outcome.RETRYABLE, "provider_error:temporary"),
)


def validate(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Normalised settings (base_url is smsbox's sendsms port); InvalidInput names the field."""
    base_url = setting_str(settings, "base_url", required=True)
    values = common_settings(settings, base_url or "")
    values["username"] = setting_str(settings, "username", required=True, max_length=100)
    values["password"] = setting_str(settings, "password", required=True, max_length=200)
    values["sender"] = setting_str(settings, "sender", pattern=r"[A-Za-z0-9 .&-]{1,11}|\+?\d{3,16}")
    values["smsc_id"] = setting_str(settings, "smsc_id", pattern=r"[A-Za-z0-9_.-]{1,64}")
    values["sendsms_path"] = setting_str(
        settings, "sendsms_path", pattern=r"/[A-Za-z0-9_./-]{0,100}", default=SENDSMS_PATH
    )
    return values


def build(settings: Mapping[str, Any], *, name: str, callback_url: str | None) -> KannelGateway:
    """A gateway from (validated) settings."""
    v = validate(settings)
    return KannelGateway(
        name=name,
        username=v["username"],
        password=v["password"],
        sender=v["sender"],
        smsc_id=v["smsc_id"],
        sendsms_path=v["sendsms_path"],
        **client_options(v, callback_url),
    )


def with_query(url: str, query: str) -> str:
    """A URL with more query parameters (already encoded) appended."""
    return f"{url}{'&' if '?' in url else '?'}{query}"


class KannelGateway(HttpGateway):
    """SMS through a shop's own Kannel."""

    kind = KIND

    def __init__(
        self,
        *,
        username: str,
        password: str,
        sender: str | None,
        smsc_id: str | None = None,
        sendsms_path: str = SENDSMS_PATH,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.username = username
        self._password = password
        self.sender = sender
        self.smsc_id = smsc_id
        self.sendsms_path = sendsms_path

    def request_for(self, message: OutgoingMessage) -> Request:
        """One sendsms GET; UCS-2 only when the text needs it; a dlr-url naming our id."""
        if not message.text:
            raise ValueError("empty message text")
        query = {
            "username": self.username,
            "password": self._password,
            "to": message.to,
            "text": message.text,
            "charset": "UTF-8",
        }
        if analyse(message.text).encoding != GSM7:
            query["coding"] = "2"
        sender = message.sender or self.sender
        if sender:
            query["from"] = sender
        if self.smsc_id:
            query["smsc"] = self.smsc_id
        if self.callback_url:
            query["dlr-mask"] = DLR_MASK
            query["dlr-url"] = with_query(self.callback_url, f"mid={message.id}&{DLR_QUERY}")
        return Request(method="GET", path=self.sendsms_path, query=query)

    def interpret(self, message: OutgoingMessage, reply: Reply) -> SendResult:
        """smsbox answers in words: ``0: Accepted …`` or what went wrong."""
        text = reply.body.decode("utf-8", errors="replace").strip()
        if 200 <= reply.status < 300 and text[:2] in ("0:", "3:"):
            return result(message, Outcome.ACCEPTED)
        lowered = text.lower()
        if reply.status >= 400:
            for words, outcome, code in _ANSWERS:
                if words in lowered:
                    return result(message, outcome, code, text)
        decided = by_http_status(message, reply)
        if decided is not None:
            return decided
        if reply.status == 403:
            return result(message, Outcome.RETRYABLE, "auth", text)
        if reply.status == 400:  # "… field misformed, rejected" and the like
            return result(message, Outcome.PERMANENT, "rejected", text)
        if 400 < reply.status < 500:
            return result(message, Outcome.PERMANENT, f"http_{reply.status}", text)
        return garbage(message, reply)

    def parse_callback(self, callback: Callback) -> list[Receipt | Inbound]:
        """A delivery report (``kind=dlr``) or an inbound SMS (``kind=inbound``)."""
        check_callback_path(callback, self.callback_url)
        params = callback_params(callback)
        kind = params.get("kind")
        if kind == "dlr":
            return [_receipt(params)]
        if kind == "inbound":
            return [_inbound(params, _raw_query(callback.url))]
        raise CallbackRejected("neither a delivery report nor an inbound message")


def _state(kind: int) -> DeliveryState | None:
    if kind & 1:
        return DeliveryState.DELIVERED
    if kind & 2:
        return DeliveryState.UNDELIVERED
    if kind & 16:
        return DeliveryState.FAILED
    if kind & (4 | 8):
        return DeliveryState.ACCEPTED
    return None


def _receipt(params: Mapping[str, str]) -> Receipt:
    mid, kind = params.get("mid", "").strip(), params.get("type", "").strip()
    number = our_id(kind)
    state = _state(number) if number is not None and number < 1024 else None
    message_id = our_id(mid)
    if state is None or message_id is None:
        raise CallbackRejected("a Kannel delivery report needs mid and a known type")
    return Receipt(
        state=state,
        message_id=message_id,
        provider_message_id=params.get("smsc_msgid", "").strip()[:200] or None,
        code=_code(kind, params.get("reply", "")),
        at=unix_time(params.get("at", "")),
    )


def _code(kind: str, reply: str) -> str:
    """The report type, with the SMSC's stat and err when its reply is an SMPP receipt (whose
    ``text:`` field would carry the start of the message: never stored)."""
    found = _SMPP_FIELDS.search(reply)
    if found:
        return f"{kind}:{found.group(1)}:{found.group(2)}"[:64]
    said = short(reply).split(" text:")[0] if reply.strip() else ""
    return f"{kind}:{said}"[:64] if said else kind


def _raw_query(url: str) -> dict[str, bytes]:
    """The query parameters as the bytes Kannel percent-encoded (not decoded as UTF-8)."""
    pairs = parse_qsl(urlsplit(url).query, keep_blank_values=True, encoding="latin-1")
    return {key: value.encode("latin-1") for key, value in pairs}


def _decode(raw: bytes, coding: str, charset: str) -> str:
    name = charset.strip() or ("UTF-16BE" if coding.strip() == "2" else "UTF-8")
    try:
        return raw.decode(name, errors="replace")
    except (LookupError, UnicodeError):  # "binary", an unknown charset, or idna and the like
        return raw.decode("utf-8", errors="replace")


def _inbound(params: Mapping[str, str], raw: Mapping[str, bytes]) -> Inbound:
    sender = params.get("from", "").strip()
    if not sender:
        raise CallbackRejected("inbound message without a sender")
    data = raw.get("text")
    if data is None:  # not from the query string (a POST form): already text
        text = params.get("text", "")
    else:
        text = _decode(data, params.get("coding", ""), params.get("charset", ""))
    return Inbound(
        sender=sender,
        text=text,
        recipient=params.get("to") or None,
        provider_message_id=params.get("id") or None,
        received_at=unix_time(params.get("at", "")),
    )
