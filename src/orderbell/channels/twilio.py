"""Twilio Programmable Messaging: ``POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json``
(form-encoded, HTTP Basic ``AccountSid:AuthToken`` or ``ApiKeySid:ApiKeySecret``).

Request: ``To`` (E.164), ``From`` or ``MessagingServiceSid``, ``Body``, ``StatusCallback`` =
our callback URL with ``ob_mid=<our id>`` added to its query (Twilio echoes nothing of ours,
and the URL is covered by the signature, so the id cannot be forged).

Answers: 201 ``{"sid":"SM…","status":"queued","num_segments":"1",…}``; errors are 4xx
``{"code":21211,"message":…,"more_info":…,"status":400}``. Codes: 21211 invalid To, 21614 not a
mobile, 21610 unsubscribed (STOP), 21408/21612 cannot route, 20003 authentication (also a
suspended account, the nearest thing to "no funds" at submission), 20429 / HTTP 429 throttled.

Callbacks: status callbacks (``MessageSid``, ``MessageStatus`` queued/sent/delivered/
undelivered/failed/…, ``ErrorCode``, ``RawDlrDoneDate`` YYMMDDhhmm UTC when the carrier gave
one) and inbound webhooks (``From``, ``To``, ``Body``, ``MessageSid``, ``SmsStatus=received``).
Both are authenticated by ``X-Twilio-Signature`` = base64(HMAC-SHA1(auth token, full URL +
every POST parameter's name and value, sorted by name)), compared in constant time; a missing
or wrong signature, or another account's ``AccountSid``, is rejected with 403.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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
    client_options,
    common_settings,
    garbage,
    our_id,
    result,
    setting_str,
)
from orderbell.domain.model import Channel
from orderbell.errors import InvalidInput

KIND = "twilio"
CHANNEL = Channel.SMS
SECRET_FIELDS = frozenset({"auth_token", "api_key_secret"})
TITLE = "Twilio"
FIELDS = (
    Setting(name="account_sid", label="Account SID", required=True, hint="AC and 32 hex digits."),
    Setting(name="auth_token", label="Auth token", required=True),
    Setting(
        name="from_number",
        label="From number",
        hint="+E.164 number, short code or sender name; or give a messaging service.",
    ),
    Setting(name="messaging_service_sid", label="Messaging service SID", hint="MG…"),
    Setting(name="api_key_sid", label="API key SID", hint="Optional: SK…, with its secret."),
    Setting(name="api_key_secret", label="API key secret"),
    *COMMON_FIELDS,
)
BASE_URL = "https://api.twilio.com"
#: an empty TwiML document: no reply SMS to an inbound message; status callbacks ignore it
CALLBACK_RESPONSE = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
CALLBACK_MEDIA_TYPE = "text/xml"
MESSAGE_ID_PARAM = "ob_mid"

_INVALID_NUMBER = frozenset({21211, 21614, 21217, 21401})
_UNSUBSCRIBED = frozenset({21610})
_AUTH = frozenset({20003, 20005})
_THROTTLED = frozenset({20429, 14107, 30022})

_STATES = {
    "accepted": DeliveryState.ACCEPTED,
    "scheduled": DeliveryState.ACCEPTED,
    "queued": DeliveryState.ACCEPTED,
    "sending": DeliveryState.ACCEPTED,
    "sent": DeliveryState.ACCEPTED,
    "delivered": DeliveryState.DELIVERED,
    "read": DeliveryState.DELIVERED,
    "undelivered": DeliveryState.UNDELIVERED,
    "failed": DeliveryState.FAILED,
    "canceled": DeliveryState.FAILED,
}


def validate(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Normalised settings: account_sid, auth_token (secret), optional api_key_sid +
    api_key_secret (secret), from_number or messaging_service_sid, base_url, concurrency,
    timeouts."""
    values = common_settings(settings, BASE_URL)
    values["account_sid"] = setting_str(
        settings, "account_sid", required=True, pattern=r"AC[0-9a-fA-F]{32}"
    )
    values["auth_token"] = setting_str(
        settings, "auth_token", required=True, pattern=r"[0-9A-Za-z]{16,64}"
    )
    values["api_key_sid"] = setting_str(settings, "api_key_sid", pattern=r"SK[0-9a-fA-F]{32}")
    values["api_key_secret"] = setting_str(
        settings, "api_key_secret", pattern=r"[0-9A-Za-z]{16,64}"
    )
    if (values["api_key_sid"] is None) != (values["api_key_secret"] is None):
        field = "api_key_secret" if values["api_key_sid"] else "api_key_sid"
        raise InvalidInput("api_key_sid and api_key_secret go together", field=f"settings.{field}")
    values["from_number"] = setting_str(
        settings, "from_number", pattern=r"\+[1-9]\d{3,14}|\d{3,8}|[A-Za-z0-9 ]{1,11}"
    )
    values["messaging_service_sid"] = setting_str(
        settings, "messaging_service_sid", pattern=r"MG[0-9a-fA-F]{32}"
    )
    if values["from_number"] is None and values["messaging_service_sid"] is None:
        raise InvalidInput(
            "from_number or messaging_service_sid is required", field="settings.from_number"
        )
    return values


def build(settings: Mapping[str, Any], *, name: str, callback_url: str | None) -> TwilioGateway:
    """A gateway from (validated) settings."""
    v = validate(settings)
    return TwilioGateway(
        name=name,
        account_sid=v["account_sid"],
        auth_token=v["auth_token"],
        api_key_sid=v["api_key_sid"],
        api_key_secret=v["api_key_secret"],
        from_number=v["from_number"],
        messaging_service_sid=v["messaging_service_sid"],
        **client_options(v, callback_url),
    )


def signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """Twilio's X-Twilio-Signature for a POST to ``url`` with form ``params``."""
    payload = url + "".join(key + params[key] for key in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _url_variants(url: str) -> list[str]:
    """The URL as given, and with the default port added or removed (Twilio's own
    validators accept both, because proxies differ in what they pass on)."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    variants = [url]
    if default is None or parts.hostname is None:
        return variants
    if parts.port is None:
        variants.append(urlunsplit(parts._replace(netloc=f"{parts.netloc}:{default}")))
    elif parts.port == default:
        variants.append(urlunsplit(parts._replace(netloc=parts.netloc.rsplit(":", 1)[0])))
    return variants


class TwilioGateway(HttpGateway):
    """SMS through Twilio."""

    kind = KIND

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        api_key_sid: str | None = None,
        api_key_secret: str | None = None,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.account_sid = account_sid
        self._auth_token = auth_token
        self._api_key = (api_key_sid, api_key_secret) if api_key_sid and api_key_secret else None
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid

    def auth_headers(self) -> Mapping[str, str]:
        """HTTP Basic with the API key when given, else the account's auth token."""
        user, secret = self._api_key or (self.account_sid, self._auth_token)
        token = base64.b64encode(f"{user}:{secret}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}

    def status_callback(self, message_id: int) -> str | None:
        """Our callback URL with our message id in its query."""
        if not self.callback_url:
            return None
        parts = urlsplit(self.callback_url)
        query = [
            *parse_qsl(parts.query, keep_blank_values=True),
            (MESSAGE_ID_PARAM, str(message_id)),
        ]
        return urlunsplit(parts._replace(query=urlencode(query)))

    def request_for(self, message: OutgoingMessage) -> Request:
        """One Messages.json form."""
        if not message.text:
            raise ValueError("empty message text")
        form = {"To": message.to, "Body": message.text}
        if self.messaging_service_sid:
            form["MessagingServiceSid"] = self.messaging_service_sid
        if message.sender or self.from_number:
            form["From"] = message.sender or self.from_number or ""
        callback = self.status_callback(message.id)
        if callback:
            form["StatusCallback"] = callback
        return Request(path=f"/2010-04-01/Accounts/{self.account_sid}/Messages.json", form=form)

    def interpret(self, message: OutgoingMessage, reply: Reply) -> SendResult:
        """201 with a sid, or a Twilio error object."""
        data = reply.json()
        if 200 <= reply.status < 300:
            sid = data.get("sid") if isinstance(data, dict) else None
            if not isinstance(sid, str) or not sid:
                return garbage(message, reply)
            segments = data.get("num_segments")
            return result(
                message,
                Outcome.ACCEPTED,
                provider_message_id=sid,
                segments=int(segments) if str(segments).isdigit() else None,
            )
        code = data.get("code") if isinstance(data, dict) else None
        if not isinstance(code, int):
            return by_http_status(message, reply) or garbage(message, reply)
        text = str(data.get("message") or "")
        if code in _INVALID_NUMBER:
            return result(message, Outcome.PERMANENT, f"invalid_number:{code}", text)
        if code in _UNSUBSCRIBED:
            return result(message, Outcome.PERMANENT, f"unsubscribed:{code}", text)
        if code in _THROTTLED or reply.status == 429:
            return result(message, Outcome.RETRYABLE, f"throttled:{code}", text)
        if code in _AUTH:
            return result(message, Outcome.RETRYABLE, f"auth:{code}", text)
        decided = by_http_status(message, reply)
        if decided is not None:
            return decided
        return result(message, Outcome.PERMANENT, f"rejected:{code}", text)

    def verify(self, callback: Callback) -> None:
        """Check X-Twilio-Signature in constant time (403 when missing or wrong)."""
        given = callback.headers.get("x-twilio-signature", "")
        if not given:
            raise CallbackRejected("missing X-Twilio-Signature", status_code=403)
        params = dict(callback.form)
        if not params and callback.body:
            params = dict(
                parse_qsl(callback.body.decode("utf-8", "replace"), keep_blank_values=True)
            )
        ok = False
        for url in _url_variants(callback.url):
            expected = signature(self._auth_token, url, params)
            ok |= hmac.compare_digest(expected.encode(), given.encode())
        if not ok:
            raise CallbackRejected("bad X-Twilio-Signature", status_code=403)
        account = params.get("AccountSid")
        if account is not None and not hmac.compare_digest(
            account.encode(), self.account_sid.encode()
        ):
            raise CallbackRejected("callback for another Twilio account", status_code=403)

    def parse_callback(self, callback: Callback) -> list[Receipt | Inbound]:
        """A status callback or an inbound message, once the signature is good."""
        self.verify(callback)
        params = dict(callback.form) or dict(
            parse_qsl(callback.body.decode("utf-8", "replace"), keep_blank_values=True)
        )
        status = (params.get("MessageStatus") or params.get("SmsStatus") or "").lower()
        sid = params.get("MessageSid") or params.get("SmsSid") or None
        if status in _STATES:
            ours = dict(parse_qsl(urlsplit(callback.url).query)).get(MESSAGE_ID_PARAM, "")
            error = params.get("ErrorCode") or None
            return [
                Receipt(
                    state=_STATES[status],
                    message_id=our_id(ours),
                    provider_message_id=sid,
                    code=error or status,
                    at=_raw_dlr_date(params.get("RawDlrDoneDate", "")),
                )
            ]
        if "From" in params and "Body" in params:
            return [
                Inbound(
                    sender=params["From"],
                    text=params["Body"],
                    recipient=params.get("To") or None,
                    provider_message_id=sid,
                )
            ]
        raise CallbackRejected("neither a status callback nor an inbound message")


def _raw_dlr_date(value: str) -> datetime | None:
    """Twilio's RawDlrDoneDate: YYMMDDhhmm (UTC), as carriers report it."""
    value = value.strip()
    if len(value) != 10 or not value.isdigit():
        return None
    try:
        return datetime.strptime(value, "%y%m%d%H%M").replace(tzinfo=UTC)
    except ValueError:
        return None
