"""The SMTP provider: e-mail through any SMTP relay, with one reused connection (aiosmtplib).

Outcomes: a 5xx answer to MAIL, RCPT or DATA is PERMANENT (the SMTP code is the error code),
a 4xx answer is RETRYABLE, failing to connect is RETRYABLE (nothing was sent), and a timeout
or a dropped connection once the DATA command went out is AMBIGUOUS (it may have been taken).
Header values with CR, LF or NUL are refused before anything is sent ("header_injection").

A gateway module (see :class:`orderbell.channels.base.Gateway`): ``validate`` checks a shop's
SMTP settings and ``build`` makes the provider; SMTP has no callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.errors
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Literal

import aiosmtplib
import structlog

from orderbell.channels import mime
from orderbell.channels.base import (
    Callback,
    CallbackRejected,
    Inbound,
    Outcome,
    OutgoingMessage,
    Receipt,
    SendResult,
)
from orderbell.channels.fields import Setting
from orderbell.channels.masking import mask_email
from orderbell.channels.mime import UnsafeMessage
from orderbell.domain.addresses import parse_email
from orderbell.domain.model import Channel
from orderbell.errors import InvalidInput

__all__ = [
    "CHANNEL", "FIELDS", "KIND", "SECRET_FIELDS", "TITLE", "SmtpProvider", "SmtpSettings",
    "UnsafeMessage", "build", "build_email", "check_display_name", "validate",
]  # fmt: skip

KIND = "smtp"
CHANNEL = Channel.EMAIL
SECRET_FIELDS = frozenset({"password"})
TITLE = "SMTP relay"
FIELDS = (
    Setting(name="host", label="SMTP host", required=True, hint="e.g. smtp.example.com"),
    Setting(name="security", label="Security", type="choice", choices=("starttls", "tls", "none")),
    Setting(name="port", label="Port", type="number", hint="Empty: 587, 465 or 25 by security."),
    Setting(name="username", label="Username"),
    Setting(name="password", label="Password"),
    Setting(name="from_address", label="From address", required=True),
    Setting(name="from_name", label="From name", hint="e.g. your shop's name."),
    Setting(name="timeout", label="Timeout (seconds)", type="number"),
    Setting(name="max_messages_per_connection", label="Messages per connection", type="number"),
)

log = structlog.get_logger("orderbell.smtp")

_MAX_ERROR_CHARS = 300


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpSettings:
    """Where and how to reach the SMTP relay, and who the mail is from."""

    host: str
    port: int = 25
    security: Literal["none", "starttls", "tls"] = "none"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 10.0  #: seconds, for connecting and for each command
    from_address: str
    from_name: str | None = None
    max_messages_per_connection: int = 100
    #: trust store for STARTTLS/TLS (e.g. a private CA); None = the system's defaults
    tls_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A message ready for the wire: envelope and bytes."""

    message_id: int
    envelope_to: str
    data: bytes
    smtp_message_id: str
    smtputf8: bool = False  #: needs the server's SMTPUTF8 extension (non-ASCII local part)


def build_email(message: OutgoingMessage, settings: SmtpSettings) -> EmailMessage:
    """Build the MIME message; raises :class:`UnsafeMessage` for unsafe or invalid input."""
    return mime.build(message, settings.from_address, settings.from_name).message


def _classify(code: int) -> Outcome:
    """A 5xx SMTP reply is permanent; anything else (4xx, odd codes) may be retried."""
    return Outcome.PERMANENT if 500 <= code < 600 else Outcome.RETRYABLE


class SmtpProvider:
    """Sends e-mail over SMTP, reusing one connection across batches."""

    channel = Channel.EMAIL

    def __init__(self, settings: SmtpSettings, *, name: str = "smtp") -> None:
        self.name = name
        self.settings = settings
        mime.check_header("from_address", settings.from_address)
        #: MAIL FROM (bounces go here); raises UnsafeMessage for a bad configuration
        self._envelope_from = mime.address("from_address", settings.from_address).addr_spec
        self.connections_opened = 0  #: how many SMTP sessions were started (observability)
        self._client: aiosmtplib.SMTP | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._sent_on_connection = 0

    async def send(self, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Send each message of the batch over the shared connection; one result each."""
        results: list[SendResult] = []
        ready: list[_Prepared] = []
        for message in batch:
            try:
                ready.append(self._prepare(message))
            except UnsafeMessage as exc:
                log.warning(
                    "smtp.refused_locally",
                    message_id=message.id,
                    to=mask_email(message.to),
                    error_code=exc.code,
                )
                results.append(
                    SendResult(
                        message_id=message.id,
                        outcome=Outcome.PERMANENT,
                        error_code=exc.code,
                        error_message=exc.message,
                    )
                )
        if ready:
            async with self._current_lock():
                for prepared in ready:
                    try:
                        results.append(await self._deliver(prepared))
                    except asyncio.CancelledError:
                        self._abandon()  # mid-transaction: the connection state is unknown
                        raise
        return results

    async def close(self) -> None:
        """Say QUIT and close the connection, if one is open."""
        if self._loop is asyncio.get_running_loop() and self._lock is not None:
            async with self._lock:
                await self._quit()
        else:
            self._abandon()

    # -- preparing ---------------------------------------------------------------------

    def _prepare(self, message: OutgoingMessage) -> _Prepared:
        """Validate and render one message, or raise ``UnsafeMessage``."""
        if message.channel is not Channel.EMAIL:
            raise UnsafeMessage("wrong_channel", f"the SMTP provider cannot send {message.channel}")
        try:
            built = mime.build(message, self.settings.from_address, self.settings.from_name)
            data = built.as_bytes()
        except UnsafeMessage:
            raise
        except (ValueError, TypeError, LookupError, email.errors.MessageError) as exc:
            raise UnsafeMessage("invalid_message", f"cannot build the e-mail: {exc}") from exc
        message_id = str(built.message["Message-ID"])
        return _Prepared(message.id, built.envelope_to, data, message_id, built.smtputf8)

    def parse_callback(self, callback: Callback) -> list[Receipt | Inbound]:
        """SMTP has no delivery callbacks (bounces arrive as mail)."""
        raise CallbackRejected("no callbacks", status_code=404)

    # -- the connection ----------------------------------------------------------------

    def _current_lock(self) -> asyncio.Lock:
        """The lock of the running event loop; a new loop drops the old loop's connection."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._lock is None:
            self._abandon()
            self._loop, self._lock = loop, asyncio.Lock()
        return self._lock

    def _abandon(self) -> None:
        """Forget the connection without talking to the server (its loop may be gone)."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.close()
        except RuntimeError:  # its event loop is already closed: at least hang up
            sock = client.transport.get_extra_info("socket") if client.transport else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    async def _quit(self) -> None:
        """Close the connection politely."""
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()

    async def _connection(self) -> tuple[aiosmtplib.SMTP, bool]:
        """The open connection, or a new one; True when it was just opened."""
        client = self._client
        if client is not None and client.is_connected:
            if self._sent_on_connection < self.settings.max_messages_per_connection:
                return client, False
            await self._quit()
        self._abandon()
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            username=s.username,
            password=s.password,
            timeout=s.timeout,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
            tls_context=s.tls_context,
        )
        await client.connect()
        self._client = client
        self._sent_on_connection = 0
        self.connections_opened += 1
        return client, True

    async def _reset(self, code: int | None = None) -> None:
        """After a refusal: RSET to start a clean transaction, or drop a broken connection."""
        client = self._client
        if client is None:
            return
        if code == 421:  # the server is closing the channel
            self._abandon()
            return
        try:
            await client.rset()
        except (aiosmtplib.SMTPException, OSError):
            self._abandon()

    # -- one message -------------------------------------------------------------------

    def _result(
        self, p: _Prepared, outcome: Outcome, code: str, text: str, *, logged: bool = True
    ) -> SendResult:
        """A failure result, with the recipient masked out of the server's text."""
        text = text.replace(p.envelope_to, mask_email(p.envelope_to))[:_MAX_ERROR_CHARS]
        if logged:
            log.warning(
                "smtp.failed",
                message_id=p.message_id,
                to=mask_email(p.envelope_to),
                outcome=outcome.value,
                error_code=code,
                error=text,
            )
        return SendResult(
            message_id=p.message_id, outcome=outcome, error_code=code, error_message=text
        )

    async def _deliver(self, p: _Prepared) -> SendResult:
        """MAIL, RCPT, DATA for one message, reconnecting once if a reused link went stale."""
        for _attempt in range(2):
            try:
                client, fresh = await self._connection()
            except aiosmtplib.SMTPAuthenticationError as exc:
                return self._result(p, Outcome.RETRYABLE, "smtp_auth", exc.message)
            except aiosmtplib.SMTPResponseException as exc:
                return self._result(p, Outcome.RETRYABLE, str(exc.code), exc.message)
            except (aiosmtplib.SMTPException, OSError) as exc:
                return self._result(p, Outcome.RETRYABLE, "connect_failed", str(exc))
            if p.smtputf8 and client.is_ehlo_or_helo_needed:
                try:  # EHLO now, to see whether the server offers SMTPUTF8
                    await client.ehlo()
                except (aiosmtplib.SMTPException, OSError):
                    self._abandon()
                    if not fresh:
                        continue
                    return self._result(p, Outcome.RETRYABLE, "disconnected", "EHLO failed")
            if p.smtputf8 and not client.supports_extension("smtputf8"):
                return self._result(
                    p,
                    Outcome.PERMANENT,
                    "smtputf8_unsupported",
                    "the address has a non-ASCII local part and the server lacks SMTPUTF8",
                )
            options, encoding = (["SMTPUTF8"], "utf-8") if p.smtputf8 else ([], "ascii")
            try:
                await client.mail(self._envelope_from, options=options, encoding=encoding)
                await client.rcpt(p.envelope_to, encoding=encoding)
            except aiosmtplib.SMTPResponseException as exc:
                await self._reset(exc.code)
                if exc.code == 421 and not fresh:
                    continue  # an idle connection the server was closing: reconnect once
                return self._result(p, _classify(exc.code), str(exc.code), exc.message)
            except (aiosmtplib.SMTPException, OSError) as exc:
                # Disconnected or timed out before DATA: nothing was sent.
                self._abandon()
                if not fresh:
                    continue  # the server had closed the idle connection: reconnect once
                return self._result(p, Outcome.RETRYABLE, "disconnected", str(exc))
            try:
                await client.data(p.data)
            except aiosmtplib.SMTPDataError as exc:
                await self._reset(exc.code)
                return self._result(p, _classify(exc.code), str(exc.code), exc.message)
            except (aiosmtplib.SMTPException, OSError) as exc:
                self._abandon()
                return self._result(p, Outcome.AMBIGUOUS, "no_answer_after_data", str(exc))
            self._sent_on_connection += 1
            return SendResult(
                message_id=p.message_id,
                outcome=Outcome.ACCEPTED,
                provider_message_id=p.smtp_message_id,
            )
        return self._result(p, Outcome.RETRYABLE, "disconnected", "the connection kept dropping")


# ---------------------------------------------------------------- per-shop settings

_SECURITY = ("none", "starttls", "tls")
_DEFAULT_PORT = {"none": 25, "starttls": 587, "tls": 465}
_KEYS = frozenset(
    {
        "host", "port", "security", "username", "password", "from_address", "from_name",
        "timeout", "max_messages_per_connection",
    }
)  # fmt: skip
MAX_DISPLAY_NAME = 100


def check_display_name(value: object, field: str) -> str:
    """A From display name: text without line breaks, NUL or angle brackets."""
    if not isinstance(value, str):
        raise InvalidInput("must be a string", field=field)
    text = value.strip()
    if not text:
        raise InvalidInput("must not be empty", field=field)
    if len(text) > MAX_DISPLAY_NAME:
        raise InvalidInput(f"is longer than {MAX_DISPLAY_NAME} characters", field=field)
    if any(c in text for c in "\r\n\x00"):
        raise InvalidInput("must not contain line breaks or NUL characters", field=field)
    if any(c in text for c in "<>") or not text.isprintable():
        raise InvalidInput("must not contain < > or control characters", field=field)
    return text


def _text(settings: Mapping[str, Any], key: str, *, max_length: int = 255) -> str | None:
    value = settings.get(key)
    if value is None:
        return None
    field_name = f"settings.{key}"
    if not isinstance(value, str):
        raise InvalidInput("must be a string", field=field_name)
    if any(c in value for c in "\r\n\x00"):
        raise InvalidInput("must not contain line breaks or NUL characters", field=field_name)
    if len(value) > max_length:
        raise InvalidInput(f"is longer than {max_length} characters", field=field_name)
    return value


def _number(
    settings: Mapping[str, Any], key: str, low: float, high: float, default: float
) -> float:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidInput(f"must be a number from {low:g} to {high:g}", field=f"settings.{key}")
    return float(value)


def validate(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A shop's SMTP settings, normalised; ``InvalidInput(field="settings.<key>")`` if bad."""
    if not isinstance(settings, Mapping):
        raise InvalidInput("must be an object", field="settings")
    for key in settings:
        if key not in _KEYS:
            raise InvalidInput(f"unknown setting {key!r}", field=f"settings.{key}")
    host = (_text(settings, "host", max_length=253) or "").strip()
    if not host or any(c.isspace() for c in host) or "/" in host:
        raise InvalidInput("must be a host name or IP address", field="settings.host")
    security = settings.get("security", "starttls")
    if security not in _SECURITY:
        raise InvalidInput("must be one of starttls, tls, none", field="settings.security")
    port = _number(settings, "port", 1, 65535, _DEFAULT_PORT[security])
    if not port.is_integer():
        raise InvalidInput("must be a whole number", field="settings.port")
    username = _text(settings, "username")
    password = _text(settings, "password", max_length=1000)
    if password and not username:
        raise InvalidInput("a password needs a username", field="settings.username")
    if settings.get("from_address") is None:
        raise InvalidInput("is required", field="settings.from_address")
    from_address = parse_email(settings["from_address"], field="settings.from_address")
    if not from_address.rpartition("@")[0].isascii():
        raise InvalidInput(
            "needs an ASCII local part (bounces go to it)", field="settings.from_address"
        )
    name = settings.get("from_name")
    out: dict[str, Any] = {
        "host": host,
        "port": int(port),
        "security": security,
        "username": username or None,
        "password": password or None,
        "from_address": from_address,
        "from_name": check_display_name(name, "settings.from_name") if name else None,
        "timeout": _number(settings, "timeout", 1, 120, 10.0),
        "max_messages_per_connection": int(
            _number(settings, "max_messages_per_connection", 1, 10_000, 100)
        ),
    }
    return out


#: What store.providers.build_gateway adds to every account's settings. One SMTP connection
#: sends serially and the router's pacer keeps the rate, so neither is a setting of ours.
ROUTER_KEYS = frozenset({"concurrency", "rate_per_second"})


def build(settings: Mapping[str, Any], *, name: str, callback_url: str | None) -> SmtpProvider:
    """The provider for validated settings (``callback_url`` is unused: no callbacks)."""
    own = {k: v for k, v in settings.items() if k not in ROUTER_KEYS}
    return SmtpProvider(SmtpSettings(**validate(own)), name=name)
