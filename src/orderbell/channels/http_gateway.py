"""A generic HTTP JSON SMS gateway, configured per shop without code.

Settings (``validate`` normalises them; ``auth_value`` and ``callback_secret`` are secrets)::

    url, method ("POST" | "PUT")
    fields          our name -> their JSON key (dots nest): to, text (required), from,
                    reference (our message id), callback_url
    static          constant JSON fields merged into every request
    auth_header + auth_value      e.g. "Authorization" + "Bearer k3y"
    success_status  HTTP statuses that mean "accepted" (default 200, 201, 202)
    id_path         where the provider's message id is in the response ("id", "data.0.id")
    error_path      a response field that, when present and truthy, means "rejected"
    timeout_seconds
    callback_auth   "token" (the secret token in our callback URL is enough) or "hmac"
                    (also an HMAC-SHA256 hex of the raw body in `signature_header`,
                    keyed with `callback_secret`; a "sha256=" prefix is accepted)
    receipt_fields  id, reference, status, code, time -> their keys
    inbound_fields  from, to, text, id, time -> their keys
    status_map      their status (any case) -> accepted | delivered | undelivered | failed

Outcomes: a success status -> ACCEPTED; 429, 408 and 5xx -> RETRYABLE; other 4xx ->
PERMANENT; no connection -> RETRYABLE (nothing left); a timeout or a dropped connection after
the request was written, or a success status with an unreadable body -> AMBIGUOUS.

aiohttp rather than httpx: it is a runtime dependency already, and ENGINEERING.md chose it
for many requests in flight (httpx is only a test dependency here).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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
from orderbell.channels.gateway_client import our_id
from orderbell.domain.model import Channel
from orderbell.errors import InvalidInput

KIND = "http"
CHANNEL = Channel.SMS
SECRET_FIELDS = frozenset({"auth_value", "callback_secret"})
TITLE = "HTTP JSON gateway"
_JSON = "JSON; empty: the default."
FIELDS = (
    Setting(name="url", label="Send URL", required=True, hint="https://… that takes one SMS."),
    Setting(name="method", label="Method", type="choice", choices=("POST", "PUT")),
    Setting(name="auth_header", label="Auth header", hint="e.g. Authorization"),
    Setting(name="auth_value", label="Auth header value", hint="e.g. Bearer and your key."),
    Setting(
        name="fields",
        label="Request fields",
        type="json",
        hint="Ours → their JSON key (to, from, text, reference, callback_url). " + _JSON,
    ),
    Setting(name="static", label="Constant fields", type="json", hint=_JSON),
    Setting(name="success_status", label="Success statuses", type="json", hint="e.g. [200, 202]"),
    Setting(name="id_path", label="Message id in the answer", hint="e.g. id or data.0.id"),
    Setting(name="error_path", label="Error in the answer", hint="A field that means rejected."),
    Setting(name="timeout_seconds", label="Timeout (seconds)", type="number"),
    Setting(
        name="callback_auth",
        label="Callback check",
        type="choice",
        choices=("token", "hmac"),
        hint="token: the secret callback URL is enough; hmac: also a signature header.",
    ),
    Setting(name="signature_header", label="Signature header"),
    Setting(name="callback_secret", label="Signature key", hint="For hmac: 8 characters or more."),
    Setting(name="receipt_fields", label="Receipt fields", type="json", hint=_JSON),
    Setting(name="inbound_fields", label="Inbound SMS fields", type="json", hint=_JSON),
    Setting(name="status_map", label="Status names", type="json", hint="Theirs → ours. " + _JSON),
)
DEFAULT_CONCURRENCY = 50

DEFAULT_STATUS_MAP: Mapping[str, DeliveryState] = {
    **dict.fromkeys(
        ("accepted", "sent", "queued", "enroute", "buffered", "acceptd", "submitted", "pending"),
        DeliveryState.ACCEPTED,
    ),
    **dict.fromkeys(("delivered", "delivrd", "received"), DeliveryState.DELIVERED),
    **dict.fromkeys(
        ("undelivered", "undeliv", "expired", "unknown", "deleted"), DeliveryState.UNDELIVERED
    ),
    **dict.fromkeys(("failed", "rejected", "rejectd", "error"), DeliveryState.FAILED),
}
_SEND_FIELDS = frozenset({"to", "from", "text", "reference", "callback_url"})
_HEADER_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


class HttpSettings(BaseModel):
    """The validated configuration of one HTTP gateway account."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(max_length=2000)
    method: Literal["POST", "PUT"] = "POST"
    fields: dict[str, str] = Field(
        default_factory=lambda: {
            "to": "to",
            "from": "from",
            "text": "text",
            "reference": "reference",
        }
    )
    static: dict[str, Any] = Field(default_factory=dict)
    auth_header: str | None = Field(default=None, max_length=100)
    auth_value: str | None = Field(default=None, max_length=2000)
    success_status: list[int] = Field(default_factory=lambda: [200, 201, 202], min_length=1)
    id_path: str = Field(default="id", max_length=200)
    error_path: str | None = Field(default=None, max_length=200)
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    callback_auth: Literal["token", "hmac"] = "token"
    signature_header: str = Field(default="X-Signature", max_length=100)
    callback_secret: str | None = Field(default=None, min_length=8, max_length=500)
    receipt_fields: dict[str, str] = Field(
        default_factory=lambda: {
            "id": "id",
            "reference": "reference",
            "status": "status",
            "code": "code",
            "time": "time",
        }
    )
    inbound_fields: dict[str, str] = Field(
        default_factory=lambda: {
            "from": "from",
            "to": "to",
            "text": "text",
            "id": "id",
            "time": "time",
        }
    )
    status_map: dict[str, DeliveryState] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = set(value) - _SEND_FIELDS
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}; known: {sorted(_SEND_FIELDS)}")
        if "to" not in value or "text" not in value:
            raise ValueError("must map at least 'to' and 'text'")
        return value

    @field_validator("auth_header", "signature_header")
    @classmethod
    def _header(cls, value: str | None) -> str | None:
        if value is not None and (not value or set(value) - _HEADER_CHARS):
            raise ValueError("must be an HTTP header name")
        return value

    @field_validator("auth_value")
    @classmethod
    def _header_value(cls, value: str | None) -> str | None:
        if value is not None and any(c in value for c in "\r\n\x00"):
            raise ValueError("must not contain CR, LF or NUL")
        return value

    @field_validator("success_status")
    @classmethod
    def _statuses(cls, value: list[int]) -> list[int]:
        if any(not 200 <= s <= 299 for s in value):
            raise ValueError("success statuses must be 2xx")
        return value

    @field_validator("status_map")
    @classmethod
    def _status_map(cls, value: dict[str, DeliveryState]) -> dict[str, DeliveryState]:
        return {k.lower(): v for k, v in value.items()}

    @model_validator(mode="after")
    def _secrets_present(self) -> HttpSettings:
        if self.auth_header and not self.auth_value:
            raise _Missing("auth_value", "required when auth_header is set")
        if self.callback_auth == "hmac" and not self.callback_secret:
            raise _Missing("callback_secret", "required when callback_auth is 'hmac'")
        return self


class _Missing(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def validate(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Normalised settings; bad ones raise InvalidInput naming `settings.<key>`."""
    try:
        model = HttpSettings.model_validate(dict(settings))
    except _Missing as exc:
        raise InvalidInput(f"settings.{exc.field}: {exc}", field=f"settings.{exc.field}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        ctx = err.get("ctx", {}).get("error")
        if isinstance(ctx, _Missing):
            field = f"settings.{ctx.field}"
            raise InvalidInput(f"{field}: {ctx}", field=field) from None
        loc = ".".join(str(p) for p in err.get("loc", ()))
        field = f"settings.{loc}" if loc else "settings"
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        raise InvalidInput(f"{field}: {message}", field=field) from None
    return model.model_dump(mode="json", exclude_none=True)


def build(settings: Mapping[str, Any], *, name: str, callback_url: str | None) -> HttpGateway:
    """A gateway from stored settings (secrets merged in); `concurrency` may ride along."""
    concurrency = int(settings.get("concurrency") or DEFAULT_CONCURRENCY)
    known = {k: v for k, v in settings.items() if k in HttpSettings.model_fields}
    return HttpGateway(
        HttpSettings.model_validate(known),
        name=name,
        callback_url=callback_url,
        concurrency=concurrency,
    )


# ------------------------------------------------------------------- JSON paths


def get_path(data: Any, path: str) -> Any:
    """`a.b.0.c` into nested objects and lists; None when absent."""
    for part in path.split("."):
        if isinstance(data, Mapping):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set `a.b.c` in a dict, creating the objects on the way."""
    *parents, last = path.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[last] = value


def _time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
            return datetime.fromtimestamp(float(value), tz=UTC)
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# ------------------------------------------------------------------- the gateway


class HttpGateway:
    """Sends each message as one JSON request; many in flight, bounded per worker."""

    channel = CHANNEL

    def __init__(
        self,
        settings: HttpSettings,
        *,
        name: str = "http",
        callback_url: str | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self.name = name
        self.settings = settings
        self.callback_url = callback_url
        self.concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None

    def _client(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(limit=self.concurrency)
            self._session = aiohttp.ClientSession(connector=connector)
            self._loop = loop
            self._slots = asyncio.Semaphore(self.concurrency)
        assert self._slots is not None
        return self._session, self._slots

    def request_body(self, message: OutgoingMessage) -> dict[str, Any]:
        """The JSON a message becomes."""
        body: dict[str, Any] = json.loads(json.dumps(self.settings.static))
        values = {
            "to": message.to,
            "from": message.sender,
            "text": message.text,
            "reference": str(message.id),
            "callback_url": self.callback_url,
        }
        for ours, theirs in self.settings.fields.items():
            if values.get(ours) is not None:
                set_path(body, theirs, values[ours])
        return body

    async def send(self, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Send the batch concurrently; one result per message."""
        if not batch:
            return []
        session, slots = self._client()
        return list(await asyncio.gather(*(self._send_one(session, slots, m) for m in batch)))

    async def _send_one(
        self, session: aiohttp.ClientSession, slots: asyncio.Semaphore, message: OutgoingMessage
    ) -> SendResult:
        s = self.settings
        headers = {s.auth_header: s.auth_value} if s.auth_header and s.auth_value else {}
        timeout = aiohttp.ClientTimeout(
            total=s.timeout_seconds, sock_connect=min(s.timeout_seconds, 5.0)
        )

        def result(
            outcome: Outcome, code: str | None = None, text: str | None = None
        ) -> SendResult:
            return SendResult(
                message_id=message.id, outcome=outcome, error_code=code, error_message=text
            )

        async with slots:
            try:
                async with session.request(
                    s.method,
                    s.url,
                    json=self.request_body(message),
                    headers=headers,
                    timeout=timeout,
                    allow_redirects=False,
                ) as response:
                    status = response.status
                    raw = await response.read()
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                return result(Outcome.RETRYABLE, "connect_error", type(exc).__name__)
            except TimeoutError:
                return result(
                    Outcome.AMBIGUOUS, "timeout", f"no answer within {s.timeout_seconds:g} s"
                )
            except aiohttp.ClientError as exc:  # dropped after the request left: unknown
                return result(Outcome.AMBIGUOUS, "connection_lost", type(exc).__name__)
        return self._classify(message, status, raw)

    def _classify(self, message: OutgoingMessage, status: int, raw: bytes) -> SendResult:
        s = self.settings
        if status in s.success_status:
            try:
                data = json.loads(raw) if raw.strip() else {}
            except ValueError:
                return SendResult(
                    message_id=message.id,
                    outcome=Outcome.AMBIGUOUS,
                    error_code="bad_response",
                    error_message=f"HTTP {status} with a body that is not JSON",
                )
            error = get_path(data, s.error_path) if s.error_path else None
            if error:
                return SendResult(
                    message_id=message.id,
                    outcome=Outcome.PERMANENT,
                    error_code=str(error)[:100],
                    error_message=f"HTTP {status} with an error in the body",
                )
            pid = get_path(data, s.id_path)
            return SendResult(
                message_id=message.id,
                outcome=Outcome.ACCEPTED,
                provider_message_id=str(pid)[:200] if pid not in (None, "") else None,
            )
        retry = status in (408, 429) or status >= 500
        return SendResult(
            message_id=message.id,
            outcome=Outcome.RETRYABLE if retry else Outcome.PERMANENT,
            error_code=f"http_{status}",
            error_message=f"HTTP {status}",
        )

    async def close(self) -> None:
        """Close the connection pool (of the running loop)."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    # ------------------------------------------------------------- callbacks in

    def parse_callback(self, callback: Callback) -> list[Receipt | Inbound]:
        """Verify (token already checked by the URL; HMAC if configured) and parse."""
        s = self.settings
        if s.callback_auth == "hmac":
            assert s.callback_secret is not None
            given = callback.headers.get(s.signature_header.lower(), "")
            given = given.removeprefix("sha256=").strip().lower()
            expected = hmac.new(
                s.callback_secret.encode(), callback.body, hashlib.sha256
            ).hexdigest()
            if not given or not hmac.compare_digest(given, expected):
                raise CallbackRejected("bad or missing signature", status_code=403)
        return [self._item(item) for item in _items(callback)]

    def _item(self, item: Mapping[str, Any]) -> Receipt | Inbound:
        s = self.settings
        inbound, receipt = s.inbound_fields, s.receipt_fields
        text = get_path(item, inbound.get("text", "text"))
        if text is not None and get_path(item, inbound.get("from", "from")) is not None:
            pid = get_path(item, inbound.get("id", "id"))
            recipient = get_path(item, inbound.get("to", "to"))
            return Inbound(
                sender=str(get_path(item, inbound.get("from", "from")))[:64],
                text=str(text)[:2000],
                recipient=str(recipient)[:64] if recipient is not None else None,
                provider_message_id=str(pid)[:200] if pid not in (None, "") else None,
                received_at=_time(get_path(item, inbound.get("time", "time"))),
            )
        status = get_path(item, receipt.get("status", "status"))
        if status is None:
            raise CallbackRejected("neither a delivery receipt nor an inbound message")
        word = str(status).strip().lower()
        state = s.status_map.get(word) or DEFAULT_STATUS_MAP.get(word, DeliveryState.ACCEPTED)
        reference = get_path(item, receipt.get("reference", "reference"))
        pid = get_path(item, receipt.get("id", "id"))
        code = get_path(item, receipt.get("code", "code"))
        ref = str(reference).strip() if reference is not None else ""
        return Receipt(
            state=state,
            message_id=our_id(ref),
            provider_message_id=str(pid)[:200] if pid not in (None, "") else None,
            code=str(code if code is not None else status)[:64],
            at=_time(get_path(item, receipt.get("time", "time"))),
        )


def _items(callback: Callback) -> list[Mapping[str, Any]]:
    """The objects a callback carries: a JSON object or array, a form, or the query."""
    body = callback.body.strip()
    if body[:1] in (b"{", b"["):
        try:
            data = json.loads(body)
        except ValueError:
            raise CallbackRejected("the body is not valid JSON") from None
        items = data if isinstance(data, list) else [data]
        if not items or len(items) > 1000 or not all(isinstance(i, dict) for i in items):
            raise CallbackRejected("expected a JSON object or a list of objects")
        return items
    if callback.form:
        return [dict(callback.form)]
    if body:
        try:
            return [dict(parse_qsl(body.decode(), keep_blank_values=True))]
        except UnicodeDecodeError:
            raise CallbackRejected("the body is neither JSON nor a form") from None
    if callback.query:
        return [dict(callback.query)]
    raise CallbackRejected("empty callback")
