"""SerwerSMS.pl HTTPS API v2: ``POST {base_url}/messages/send_sms`` with a JSON body and an
API token (``Authorization: Bearer …``, generated in the panel).

Request [src: the official clients and dev.serwersms.pl]: ``phone``, ``text``, ``sender`` (a
sender name makes it an SMS FULL; without one it is ECO+), ``utf`` (true when the text is not
GSM-7; FULL only), ``details`` (true: items carry parts), ``unique_id`` = our message id.

Answers [doc]: ``{"success":true,"queued":1,"unsent":0,"items":[{"id":"…","phone":"+48…",
"status":"queued","parts":1,…}]}``; a message refused alone is an item with ``"status":
"unsent"`` and ``error_code``/``error_message`` (the report codes: 2200 invalid number, 2201
limit exhausted, 2205 bad sender, 2206 blacklisted …); a refused request is
``{"error":{"code":…,"type":…,"message":…}}`` (1001 InvalidUser, 1002/1003/1005/1007 no
permission, 2000 missing parameters, 2001 ValidationPhoneError, 3000/3002 SMS limit
exhausted, 3001/3003/3009 no permission to send, 3100 sending blocked, 3101 empty, 3102 too
long).

Callbacks, authenticated by the secret ``callback_token`` in the callback URL path (SerwerSMS
signs nothing). Delivery reports and replies are pushed to the URLs set in the client panel;
their parameter names are not in the public docs we could read, so the parser accepts the
names of the API's own report objects and the legacy XML API [mem]:

- report: ``id`` (or ``smsid``), ``status`` (or ``stan``: delivered, undelivered, sent,
  unsent, in_progress, …), ``unique_id``, ``date``/``data`` (Warsaw local time or unix),
  ``error_code``/``kod``.
- reply: ``phone`` (or ``numer``), ``text`` (or ``wiadomosc``), ``to``, ``id``, ``date``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

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
from orderbell.domain.segments import GSM7, analyse

KIND = "serwersms"
CHANNEL = Channel.SMS
SECRET_FIELDS = frozenset({"api_token"})
TITLE = "SerwerSMS.pl"
FIELDS = (
    Setting(
        name="api_token",
        label="API token",
        required=True,
        hint="An API token from the SerwerSMS panel.",
    ),
    Setting(
        name="sender",
        label="Sender name",
        hint="Registered at SerwerSMS; empty: the shop's SMS sender name (none: ECO+).",
    ),
    *COMMON_FIELDS,
)
BASE_URL = "https://api2.serwersms.pl"
CALLBACK_RESPONSE = b"OK"
_WARSAW = ZoneInfo("Europe/Warsaw")

_AUTH = frozenset({1001, 1002, 1003, 1005, 1007, 3001, 3003, 3009, 3100})
_NO_FUNDS = frozenset({3000, 3002, 2201})
_INVALID_NUMBER = frozenset({2001, 2200})  # 2001 request-level, 2200 item-level

_STATES = {
    "delivered": DeliveryState.DELIVERED,
    "undelivered": DeliveryState.UNDELIVERED,
    "unsent": DeliveryState.FAILED,
    "sent": DeliveryState.ACCEPTED,
    "in_progress": DeliveryState.ACCEPTED,
    "pending": DeliveryState.ACCEPTED,
    "queued": DeliveryState.ACCEPTED,
    "saved": DeliveryState.ACCEPTED,
    # the legacy XML API's Polish names
    "doreczone": DeliveryState.DELIVERED,
    "niedoreczone": DeliveryState.UNDELIVERED,
    "wyslane": DeliveryState.ACCEPTED,
    "niewyslane": DeliveryState.FAILED,
}


def validate(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Normalised settings: api_token (secret), sender, base_url, concurrency, timeouts."""
    values = common_settings(settings, BASE_URL)
    values["api_token"] = setting_str(
        settings, "api_token", required=True, pattern=r"[A-Za-z0-9._~+/=-]{8,200}"
    )
    values["sender"] = setting_str(
        settings, "sender", pattern=r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,10}|\d{4}|\d{9}"
    )
    return values


def build(settings: Mapping[str, Any], *, name: str, callback_url: str | None) -> SerwerSmsGateway:
    """A gateway from (validated) settings."""
    v = validate(settings)
    return SerwerSmsGateway(
        name=name,
        api_token=v["api_token"],
        sender=v["sender"],
        **client_options(v, callback_url),
    )


class SerwerSmsGateway(HttpGateway):
    """SMS through SerwerSMS.pl."""

    kind = KIND

    def __init__(self, *, api_token: str, sender: str | None, **kw: Any) -> None:
        super().__init__(**kw)
        self._token = api_token
        self.sender = sender

    def auth_headers(self) -> Mapping[str, str]:
        """The API token as a bearer token."""
        return {"Authorization": f"Bearer {self._token}"}

    def request_for(self, message: OutgoingMessage) -> Request:
        """One JSON send_sms request; ``utf`` only when the text needs UCS-2."""
        if not message.text:
            raise ValueError("empty message text")
        body: dict[str, Any] = {
            "phone": message.to,
            "text": message.text,
            "details": True,
            "unique_id": str(message.id),
            "system": "orderbell",
        }
        sender = message.sender or self.sender
        if sender:
            body["sender"] = sender
            if analyse(message.text).encoding != GSM7:
                body["utf"] = True
        return Request(path="/messages/send_sms", json_body=body)

    def interpret(self, message: OutgoingMessage, reply: Reply) -> SendResult:
        """Request-level error, then the item's status."""
        data = reply.json()
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            err = data["error"]
            return _error(message, err.get("code"), err.get("message") or err.get("type"))
        decided = by_http_status(message, reply)
        if decided is not None:
            return decided
        if not 200 <= reply.status < 300 or not isinstance(data, dict):
            return garbage(message, reply)
        items = data.get("items")
        if not isinstance(items, list) or not items or not isinstance(items[0], dict):
            return garbage(message, reply)  # even "success": without an id we cannot track it
        item = items[0]
        if item.get("status") == "unsent":
            return _error(message, item.get("error_code"), item.get("error_message"))
        provider_id = item.get("id")
        if not isinstance(provider_id, str | int) or not str(provider_id):
            return garbage(message, reply)
        parts = item.get("parts")
        return result(
            message,
            Outcome.ACCEPTED,
            provider_message_id=str(provider_id),
            segments=parts if isinstance(parts, int) else None,
        )

    def parse_callback(self, callback: Callback) -> list[Receipt | Inbound]:
        """A delivery report or a reply."""
        check_callback_path(callback, self.callback_url)
        params = callback_params(callback)
        status = params.get("status") or params.get("stan")
        provider_id = params.get("id") or params.get("smsid")
        if status is not None and (provider_id or params.get("unique_id")):
            state = _STATES.get(status.strip().lower())
            if state is None:
                raise CallbackRejected("unknown SerwerSMS status")
            unique = (params.get("unique_id") or "").strip()
            code = params.get("error_code") or params.get("kod") or status.strip().lower()
            return [
                Receipt(
                    state=state,
                    message_id=our_id(unique),
                    provider_message_id=provider_id or None,
                    code=code[:64],
                    at=_when(params.get("date") or params.get("data") or ""),
                )
            ]
        sender = params.get("phone") or params.get("numer")
        text = params.get("text", params.get("wiadomosc"))
        if sender and text is not None:
            return [
                Inbound(
                    sender=sender.strip(),
                    text=text,
                    recipient=params.get("to") or None,
                    provider_message_id=provider_id or None,
                    received_at=_when(params.get("date") or params.get("data") or ""),
                )
            ]
        raise CallbackRejected("neither a delivery report nor a reply")


def _error(message: OutgoingMessage, code: object, text: object) -> SendResult:
    try:
        number = int(code)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return result(message, Outcome.PERMANENT, f"rejected:{code}", str(text or ""))
    words = str(text or "")
    if number in _INVALID_NUMBER:
        return result(message, Outcome.PERMANENT, f"invalid_number:{number}", words)
    if number in _NO_FUNDS:
        return result(message, Outcome.RETRYABLE, f"no_funds:{number}", words)
    if number in _AUTH:
        return result(message, Outcome.RETRYABLE, f"auth:{number}", words)
    if number == 2204:  # operator error on their side
        return result(message, Outcome.RETRYABLE, f"provider_error:{number}", words)
    return result(message, Outcome.PERMANENT, f"rejected:{number}", words)


def _when(value: str) -> datetime | None:
    """A unix time, or a "YYYY-MM-DD HH:MM:SS" (ISO) time in Warsaw."""
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return unix_time(value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_WARSAW)
    return parsed.astimezone(UTC)
