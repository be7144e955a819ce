"""What the HTTP SMS gateways (kannel, smsapi, serwersms, twilio) share: one pooled aiohttp
session per gateway, many requests in flight bounded by the account's concurrency, optional
pacing right before each request, and one classification of transport failures.

Why aiohttp and not httpx: ENGINEERING.md chose it for high-concurrency gateway calls; the
``gateway_egress`` benchmark measures both at 50 requests in flight.

Outcomes, and the ``error_code`` convention ``<category>`` or ``<category>:<provider code>``:

- ``ACCEPTED``: the provider took the message and gave its id.
- ``PERMANENT``: ``invalid_number:…``, ``unsubscribed:…``, ``rejected:…``, ``http_4xx``: this
  message will never go through this provider as it is.
- ``RETRYABLE`` (nothing was sent): ``throttled[:…]`` (HTTP 429 or the provider's own code),
  ``http_5xx``, ``connect`` (refused / unreachable / connect timeout), ``auth:…`` and
  ``no_funds:…``. The last two are account-level problems: the message is fine and will go
  through once the shop fixes its credentials or tops up the gateway account (or through the
  next provider in its failover order), so failing it for good would drop a customer's
  notification over a billing hiccup. Validity still bounds how long it waits.
- ``AMBIGUOUS`` (the request left, no usable answer): ``timeout`` after the request was sent,
  ``disconnected``, ``http_504``, and ``garbage`` (a 2xx answer we cannot read: the provider
  may well have queued the message).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import aiohttp
import structlog

from orderbell.channels.base import Callback, CallbackRejected, Outcome, OutgoingMessage, SendResult
from orderbell.channels.fields import Setting
from orderbell.domain.model import Channel
from orderbell.errors import InvalidInput

log = structlog.get_logger("orderbell.gateways")

DEFAULT_CONCURRENCY = 50
DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_CONNECT_TIMEOUT_SECONDS = 5.0
_MAX_ERROR_CHARS = 200


class Pacing(Protocol):
    """What a gateway needs from a pacer (see :mod:`orderbell.channels.pacing`)."""

    def slot(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold one send slot (rate and concurrency) for the duration of a request."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One HTTP request to a gateway, relative to its base URL."""

    method: str = "POST"
    path: str
    query: Mapping[str, str] | None = None  #: percent-encoded (spaces as %20) onto the path
    form: Mapping[str, str] | None = None
    json_body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """The gateway's answer: status, headers and the raw body."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None


def result(
    message: OutgoingMessage,
    outcome: Outcome,
    code: str | None = None,
    text: str | None = None,
    *,
    provider_message_id: str | None = None,
    segments: int | None = None,
) -> SendResult:
    """A SendResult with a short, credential-free error message."""
    return SendResult(
        message_id=message.id,
        outcome=outcome,
        provider_message_id=provider_message_id,
        error_code=code,
        error_message=short(text) if text else None,
        segments=segments,
    )


def short(text: object) -> str:
    """A provider's message cut to a loggable length, on one line."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= _MAX_ERROR_CHARS else flat[: _MAX_ERROR_CHARS - 1] + "…"


def by_http_status(message: OutgoingMessage, reply: Reply) -> SendResult | None:
    """The outcome the HTTP status alone decides (429, 5xx, 401/403), or None."""
    status = reply.status
    if status == 429:
        return result(message, Outcome.RETRYABLE, "throttled", "HTTP 429 Too Many Requests")
    if status == 504:
        return result(message, Outcome.AMBIGUOUS, "http_504", "gateway timeout upstream")
    if status >= 500:
        return result(message, Outcome.RETRYABLE, f"http_{status}", f"HTTP {status}")
    return None


def garbage(message: OutgoingMessage, reply: Reply) -> SendResult:
    """An answer we cannot read: AMBIGUOUS for a 2xx (it may be queued), else PERMANENT."""
    if 200 <= reply.status < 300:
        return result(message, Outcome.AMBIGUOUS, "garbage", f"unreadable HTTP {reply.status}")
    return result(message, Outcome.PERMANENT, f"http_{reply.status}", "unreadable error answer")


# ---------------------------------------------------------------- settings helpers


def setting_str(
    settings: Mapping[str, Any],
    key: str,
    *,
    required: bool = False,
    pattern: str | None = None,
    max_length: int = 500,
    default: str | None = None,
) -> str | None:
    """A string setting, stripped; InvalidInput names ``settings.<key>``."""
    value = settings.get(key, default)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidInput(f"{key} is required", field=f"settings.{key}")
        return default
    if not isinstance(value, str):
        raise InvalidInput(f"{key} must be a string", field=f"settings.{key}")
    value = value.strip()
    if len(value) > max_length or any(ch in value for ch in "\r\n\x00"):
        raise InvalidInput(
            f"{key} is too long or contains control characters", field=f"settings.{key}"
        )
    if pattern is not None and not re.fullmatch(pattern, value):
        raise InvalidInput(f"{key} has an invalid format", field=f"settings.{key}")
    return value


def setting_url(settings: Mapping[str, Any], key: str, default: str) -> str:
    """An http(s) base URL without a trailing slash."""
    value = setting_str(settings, key, default=default) or default
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
        raise InvalidInput(f"{key} must be an http(s) URL", field=f"settings.{key}")
    return value.rstrip("/")


def setting_number(
    settings: Mapping[str, Any], key: str, default: float, *, low: float, high: float
) -> float:
    """A number setting within [low, high]."""
    value = settings.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidInput(f"{key} must be a number", field=f"settings.{key}")
    try:
        number = float(value)
    except ValueError as exc:
        raise InvalidInput(f"{key} must be a number", field=f"settings.{key}") from exc
    if not low <= number <= high:
        raise InvalidInput(f"{key} must be between {low:g} and {high:g}", field=f"settings.{key}")
    return number


def _seconds(name: str, label: str, default: float) -> Setting:
    return Setting(name=name, label=f"{label} (seconds)", type="number", hint=f"Empty: {default:g}")


#: how the admin form asks for :func:`common_settings` (concurrency is the account's own field)
COMMON_FIELDS = (
    Setting(name="base_url", label="API address", hint="Empty: the provider's usual address."),
    _seconds("timeout_seconds", "Timeout", DEFAULT_TIMEOUT_SECONDS),
    _seconds("connect_timeout_seconds", "Connect timeout", DEFAULT_CONNECT_TIMEOUT_SECONDS),
)


def common_settings(settings: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    """The settings every HTTP gateway has: base_url, concurrency, timeouts."""
    return {
        "base_url": setting_url(settings, "base_url", base_url),
        "concurrency": int(
            setting_number(settings, "concurrency", DEFAULT_CONCURRENCY, low=1, high=1000)
        ),
        "timeout_seconds": setting_number(
            settings, "timeout_seconds", DEFAULT_TIMEOUT_SECONDS, low=0.05, high=300
        ),
        "connect_timeout_seconds": setting_number(
            settings, "connect_timeout_seconds", DEFAULT_CONNECT_TIMEOUT_SECONDS, low=0.05, high=60
        ),
    }


def client_options(values: Mapping[str, Any], callback_url: str | None) -> dict[str, Any]:
    """The :class:`HttpGateway` arguments from :func:`common_settings`, with the callback URL."""
    keys = ("base_url", "concurrency", "timeout_seconds", "connect_timeout_seconds")
    return {**{key: values[key] for key in keys}, "callback_url": callback_url}


# ---------------------------------------------------------------- the client


class HttpGateway:
    """Base of the HTTP gateways: subclasses build one request per message and read the reply.

    ``pacer`` (optional, settable after ``build``) is entered right before each request, so
    every request holds one rate slot and one concurrency slot of the provider account.
    """

    channel = Channel.SMS
    kind = "http"

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        concurrency: int = DEFAULT_CONCURRENCY,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        connect_timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT_SECONDS,
        callback_url: str | None = None,
        pacer: Pacing | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.concurrency = concurrency
        self.callback_url = callback_url
        self.pacer = pacer
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=connect_timeout_seconds,
            sock_connect=connect_timeout_seconds,
            sock_read=timeout_seconds,
        )
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._limit: asyncio.Semaphore | None = None

    def __repr__(self) -> str:
        # Never the credentials: only what identifies the account's configuration.
        return f"<{type(self).__name__} {self.name!r} {self.base_url}>"

    # -- subclass hooks

    def request_for(self, message: OutgoingMessage) -> Request:
        """The HTTP request that submits one message."""
        raise NotImplementedError

    def interpret(self, message: OutgoingMessage, reply: Reply) -> SendResult:
        """The outcome of one message from the gateway's reply."""
        raise NotImplementedError

    def auth_headers(self) -> Mapping[str, str]:
        """Headers that authenticate every request."""
        return {}

    # -- sending

    def _ensure_session(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(
                limit=self.concurrency,
                limit_per_host=self.concurrency,
                ttl_dns_cache=300,
                keepalive_timeout=30,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                headers=dict(self.auth_headers()),
                raise_for_status=False,
                auto_decompress=True,
            )
            self._loop = loop
            self._limit = asyncio.Semaphore(self.concurrency)
        assert self._limit is not None
        return self._session, self._limit

    async def send(self, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Submit every message, up to ``concurrency`` requests in flight; one result each."""
        if not batch:
            return []
        session, limit = self._ensure_session()
        return list(await asyncio.gather(*(self._send_one(session, limit, m) for m in batch)))

    async def _send_one(
        self, session: aiohttp.ClientSession, limit: asyncio.Semaphore, message: OutgoingMessage
    ) -> SendResult:
        try:
            request = self.request_for(message)
        except ValueError as exc:  # a message this gateway can never take (e.g. empty text)
            return result(message, Outcome.PERMANENT, "rejected", str(exc))
        async with limit:
            if self.pacer is None:
                outcome = await self._exchange(session, message, request)
            else:
                async with self.pacer.slot():
                    outcome = await self._exchange(session, message, request)
        if isinstance(outcome, SendResult):
            return outcome
        try:
            return self.interpret(message, outcome)
        except Exception as exc:  # a reply shaped unlike the documented one
            log.warning(
                "gateway answer not understood",
                gateway=self.kind,
                provider=self.name,
                status=outcome.status,
                error=type(exc).__name__,
            )
            return garbage(message, outcome)

    async def _exchange(
        self, session: aiohttp.ClientSession, message: OutgoingMessage, request: Request
    ) -> Reply | SendResult:
        """One request; transport failures become results (never exceptions)."""
        url = self.base_url + request.path
        if request.query is not None:
            url += "?" + urlencode(request.query, quote_via=quote)
        headers = dict(request.headers)
        data: bytes | None = None
        if request.form is not None:  # encoded here: cheaper than aiohttp's FormData
            data = urlencode(request.form).encode("ascii")
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif request.json_body is not None:
            data = json.dumps(request.json_body, ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        try:
            async with session.request(
                request.method, url, data=data, headers=headers or None
            ) as response:
                body = await response.read()
                return Reply(status=response.status, body=body, headers=response.headers)
        except aiohttp.ClientConnectorError as exc:
            return result(message, Outcome.RETRYABLE, "connect", f"cannot connect: {exc.os_error}")
        except aiohttp.ConnectionTimeoutError:
            return result(message, Outcome.RETRYABLE, "connect", "connect timeout")
        except (TimeoutError, aiohttp.ServerTimeoutError):
            return result(message, Outcome.AMBIGUOUS, "timeout", "no answer in time")
        except aiohttp.ServerDisconnectedError:
            return result(message, Outcome.AMBIGUOUS, "disconnected", "server disconnected")
        except (aiohttp.ClientError, OSError) as exc:
            return result(message, Outcome.AMBIGUOUS, "transport", type(exc).__name__)

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None and not self._session.closed:
            with contextlib.suppress(RuntimeError):  # its loop is gone: nothing left to close
                await self._session.close()
        self._session = None


# ---------------------------------------------------------------- callbacks


def callback_params(callback: Callback) -> dict[str, str]:
    """Query and form parameters of a callback in one mapping (the form wins)."""
    params = dict(callback.query)
    params.update(callback.form)
    if not callback.form and callback.body and callback.method.upper() == "POST":
        with contextlib.suppress(UnicodeDecodeError):
            params.update(parse_qsl(callback.body.decode("utf-8"), keep_blank_values=True))
    return params


MAX_ID_DIGITS = 18  #: below 2**63: every id column (BIGINT) can hold it


def our_id(value: object) -> int | None:
    """Our message id as a provider echoes it back: ASCII digits only (``"²".isdigit()`` is
    true in Python), short enough for the id column; None for anything else."""
    text = str(value).strip() if value is not None else ""
    if not text or len(text) > MAX_ID_DIGITS or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def unix_time(value: str) -> datetime | None:
    """A provider's unix timestamp (seconds) as an aware UTC time, or None when it is not one."""
    value = value.strip()
    if not (value.isascii() and value.isdigit()):
        return None
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (OverflowError, OSError, ValueError):
        return None


def check_callback_path(callback: Callback, callback_url: str | None) -> None:
    """The request must have come under our secret callback path (it carries the provider
    account's ``callback_token``), compared in constant time. A last segment that is a plain
    word (``/…/<token>/receipt``) is dropped first, so ``/…/<token>/inbound`` is accepted too.
    Without a configured URL, the web layer's lookup by token is the only check."""
    if not callback_url:
        return
    base = urlsplit(callback_url).path.rstrip("/")
    head, _, last = base.rpartition("/")
    if head and last.isalpha() and len(last) <= 12:
        base = head
    expected = (base + "/").encode()
    got = (urlsplit(callback.url).path.rstrip("/") + "/").encode()[: len(expected)]
    if len(base) < 2 or not hmac.compare_digest(got, expected):
        raise CallbackRejected("callback path does not match this provider", status_code=403)
