"""SMSAPI.pl (smsapi.com): ``POST {base_url}/sms.do`` with an OAuth bearer token.

Request (form, as the official smsapi-python-client sends it): ``to`` (digits, no "+"),
``message``, ``from`` (a registered sender name, optional), ``encoding=utf-8``, ``format=json``,
``details=1`` (the answer then tells the parts), ``idx`` = our message id (echoed in delivery
reports) and ``notify_url`` = our callback URL.

Answers: ``{"count":1,"list":[{"id":"…","points":0.16,"number":"48…","status":"QUEUE",
"parts":1,…}]}`` on success; **errors may come with HTTP 200** as ``{"error":13,"message":…,
"invalid_numbers":[…]}``, so the ``error`` key is always checked first [src: client fixtures].
Error codes [13 verified in the client's fixtures; the others from SMSAPI's error list, mem]:
13 no correct numbers, 14/23 bad sender, 8/11/12 bad message, 101/102/105 authorization,
103 not enough points, 200/201/999 system errors, 202/203 too many requests.

Callbacks, authenticated by the secret ``callback_token`` in the callback URL path (SMSAPI
signs nothing; when ``username`` is configured the callback's ``username`` must match too):

- delivery report (GET, or POST form) [mem]: ``MsgId``, ``status`` (401 NOT_FOUND, 402 EXPIRED,
  403 SENT, 404 DELIVERED, 405 UNDELIVERED, 406 FAILED, 407 REJECTED, 408 UNKNOWN, 409 QUEUE,
  410 ACCEPTED, 411 RENEWAL, 412 STOP), ``status_name``, ``idx``, ``donedate`` (unix),
  ``username``, ``points``, ``to``, ``from``; several reports in one call come comma-joined.
- inbound SMS (POST form) [mem]: ``sms_from``, ``sms_to``, ``sms_text``, ``sms_date`` (unix),
  ``MsgId``, ``username``.

SMSAPI expects the body ``OK`` in answer to a callback (:data:`CALLBACK_RESPONSE`).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

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
    unix_time,
)
from orderbell.domain.model import Channel

KIND = "smsapi"
CHANNEL = Channel.SMS
SECRET_FIELDS = frozenset({"access_token"})
TITLE = "SMSAPI.pl"
FIELDS = (
    Setting(
        name="access_token",
        label="Access token",
        required=True,
        hint="An OAuth token from the SMSAPI panel (API tokens).",
    ),
    Setting(
        name="sender",
        label="Sender name",
        hint="Registered at SMSAPI, up to 11 characters; empty: the shop's SMS sender name.",
    ),
    Setting(name="username", label="SMSAPI login", hint="When set, callbacks must name it."),
    *COMMON_FIELDS,
)
BASE_URL = "https://api.smsapi.pl"
CALLBACK_RESPONSE = b"OK"

_INVALID_NUMBER = frozenset({13})
_NO_FUNDS = frozenset({103})
_AUTH = frozenset({101, 102, 105})
_THROTTLED = frozenset({202, 203})
_SYSTEM = frozenset({200, 201, 999})

#: SMSAPI delivery-report status codes → our state
_STATES: dict[str, DeliveryState] = {
    "401": DeliveryState.FAILED,  # NOT_FOUND
    "402": DeliveryState.UNDELIVERED,  # EXPIRED
    "403": DeliveryState.ACCEPTED,  # SENT (to the network, no report yet)
    "404": DeliveryState.DELIVERED,
    "405": DeliveryState.UNDELIVERED,
    "406": DeliveryState.FAILED,
    "407": DeliveryState.FAILED,  # REJECTED
    "408": DeliveryState.ACCEPTED,  # UNKNOWN: no change
    "409": DeliveryState.ACCEPTED,  # QUEUE
    "410": DeliveryState.ACCEPTED,
    "411": DeliveryState.ACCEPTED,  # RENEWAL (retrying)
    "412": DeliveryState.FAILED,  # STOP
}
_NAMES = {
    "NOT_FOUND": "401", "EXPIRED": "402", "SENT": "403", "DELIVERED": "404",
    "UNDELIVERED": "405", "FAILED": "406", "REJECTED": "407", "UNKNOWN": "408",
    "QUEUE": "409", "ACCEPTED": "410", "RENEWAL": "411", "STOP": "412",
}  # fmt: skip


def validate(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Normalised settings: access_token (secret), sender, username, base_url, concurrency,
    timeouts."""
    values = common_settings(settings, BASE_URL)
    values["access_token"] = setting_str(
        settings, "access_token", required=True, pattern=r"[A-Za-z0-9._~+/=-]{8,200}"
    )
    values["sender"] = setting_str(settings, "sender", pattern=r"[A-Za-z0-9 .&-]{1,11}|\+?\d{3,16}")
    values["username"] = setting_str(settings, "username", max_length=100)
    return values


def build(settings: Mapping[str, Any], *, name: str, callback_url: str | None) -> SmsapiGateway:
    """A gateway from (validated) settings."""
    v = validate(settings)
    return SmsapiGateway(
        name=name,
        access_token=v["access_token"],
        sender=v["sender"],
        username=v["username"],
        **client_options(v, callback_url),
    )


class SmsapiGateway(HttpGateway):
    """SMS through SMSAPI.pl."""

    kind = KIND

    def __init__(
        self, *, access_token: str, sender: str | None, username: str | None, **kw: Any
    ) -> None:
        super().__init__(**kw)
        self._token = access_token
        self.sender = sender
        self.username = username

    def auth_headers(self) -> Mapping[str, str]:
        """OAuth 2.0 bearer token."""
        return {"Authorization": f"Bearer {self._token}"}

    def request_for(self, message: OutgoingMessage) -> Request:
        """The form SMSAPI's client library sends, with our id as ``idx``."""
        if not message.text:
            raise ValueError("empty message text")
        form = {
            "to": message.to.lstrip("+"),
            "message": message.text,
            "encoding": "utf-8",
            "format": "json",
            "details": "1",
            "idx": str(message.id),
        }
        sender = message.sender or self.sender
        if sender:
            form["from"] = sender
        if self.callback_url:
            form["notify_url"] = self.callback_url
        return Request(path="/sms.do", form=form)

    def interpret(self, message: OutgoingMessage, reply: Reply) -> SendResult:
        """Error key first (it may come with HTTP 200), then the first list entry."""
        data = reply.json()
        if isinstance(data, dict) and "error" in data:
            return _error(message, data)
        decided = by_http_status(message, reply)
        if decided is not None:
            return decided
        if not 200 <= reply.status < 300 or not isinstance(data, dict):
            return garbage(message, reply)
        entries = data.get("list")
        if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
            return garbage(message, reply)
        entry = entries[0]
        provider_id = entry.get("id")
        if not isinstance(provider_id, str | int) or not str(provider_id):
            return garbage(message, reply)
        parts = entry.get("parts")
        return result(
            message,
            Outcome.ACCEPTED,
            provider_message_id=str(provider_id),
            segments=parts if isinstance(parts, int) else None,
        )

    def parse_callback(self, callback: Callback) -> list[Receipt | Inbound]:
        """A delivery report (possibly several, comma-joined) or an inbound SMS."""
        check_callback_path(callback, self.callback_url)
        params = callback_params(callback)
        if self.username is not None and not hmac.compare_digest(
            params.get("username", "").encode(), self.username.encode()
        ):
            raise CallbackRejected("callback for another SMSAPI user", status_code=403)
        if "sms_from" in params:
            return [_inbound(params)]
        if "MsgId" in params and "status" in params:
            return list(_receipts(params))
        raise CallbackRejected("neither a delivery report nor an inbound message")


def _error(message: OutgoingMessage, data: Mapping[str, Any]) -> SendResult:
    code = data.get("error")
    text = str(data.get("message") or "")
    try:
        number = int(code)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return result(message, Outcome.PERMANENT, f"rejected:{code}", text)
    if number in _INVALID_NUMBER:
        return result(message, Outcome.PERMANENT, f"invalid_number:{number}", text)
    if number in _NO_FUNDS:
        return result(message, Outcome.RETRYABLE, f"no_funds:{number}", text)
    if number in _AUTH:
        return result(message, Outcome.RETRYABLE, f"auth:{number}", text)
    if number in _THROTTLED:
        return result(message, Outcome.RETRYABLE, f"throttled:{number}", text)
    if number in _SYSTEM:
        return result(message, Outcome.RETRYABLE, f"provider_error:{number}", text)
    return result(message, Outcome.PERMANENT, f"rejected:{number}", text)


def _split(params: Mapping[str, str], key: str, count: int) -> list[str]:
    values = params.get(key, "").split(",")
    return values if len(values) == count else [values[0]] * count


def _receipts(params: Mapping[str, str]) -> list[Receipt]:
    ids = params["MsgId"].split(",")
    statuses = _split(params, "status", len(ids))
    idxs = _split(params, "idx", len(ids))
    dates = _split(params, "donedate", len(ids))
    receipts = []
    for provider_id, status, idx, done in zip(ids, statuses, idxs, dates, strict=True):
        code = _NAMES.get(status.strip().upper(), status.strip())
        state = _STATES.get(code)
        if state is None:
            raise CallbackRejected(f"unknown SMSAPI status {short_code(code)}")
        receipts.append(
            Receipt(
                state=state,
                message_id=our_id(idx),
                provider_message_id=provider_id.strip() or None,
                code=code,
                at=unix_time(done),
            )
        )
    return receipts


def _inbound(params: Mapping[str, str]) -> Inbound:
    sender = params["sms_from"].strip()
    if not sender:
        raise CallbackRejected("inbound message without a sender")
    return Inbound(
        sender=sender,
        text=params.get("sms_text", ""),
        recipient=params.get("sms_to") or None,
        provider_message_id=params.get("MsgId") or None,
        received_at=unix_time(params.get("sms_date", "")),
    )


def short_code(code: str) -> str:
    """A provider code safe to echo in an error (short, printable)."""
    return "".join(ch for ch in code[:20] if ch.isprintable())
