"""The SMTP provider: e-mail through any SMTP relay, with one reused connection (aiosmtplib).

Outcomes: a 5xx answer to MAIL, RCPT or DATA is PERMANENT (the SMTP code is the error code),
a 4xx answer is RETRYABLE, failing to connect is RETRYABLE (nothing was sent), and a timeout
or a dropped connection once the DATA command went out is AMBIGUOUS (it may have been taken).
Header values with CR, LF or NUL are refused before anything is sent ("header_injection").
"""

from __future__ import annotations

import asyncio
import contextlib
import email.errors
import re
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Literal

import aiosmtplib
import structlog

from orderbell.channels.base import Outcome, OutgoingMessage, SendResult
from orderbell.channels.masking import mask_email
from orderbell.domain.model import Channel

log = structlog.get_logger("orderbell.smtp")

_BAD_HEADER_CHARS = re.compile(r"[\r\n\x00]")
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # printable ASCII, no colon (RFC 5322 ftext)
#: headers the provider writes itself; extra headers may not replace them
_RESERVED_HEADERS = frozenset(
    {
        "from", "to", "cc", "bcc", "subject", "date", "message-id", "reply-to", "sender",
        "return-path", "mime-version", "content-type", "content-transfer-encoding",
        "content-disposition",
    }
)  # fmt: skip
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


class UnsafeMessage(ValueError):
    """A message that must not be sent at all (e.g. header injection); PERMANENT."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A message ready for the wire: envelope and bytes."""

    message_id: int
    envelope_to: str
    data: bytes
    smtp_message_id: str


def _check_header(label: str, value: str | None) -> None:
    """Refuse CR, LF and NUL in a header value (header injection)."""
    if value is not None and _BAD_HEADER_CHARS.search(value):
        raise UnsafeMessage("header_injection", f"{label} contains a line break or NUL")


def _address(label: str, value: str, display_name: str | None = None) -> Address:
    """Parse an address ("a@b.c" or "Name <a@b.c>") into a header Address; IDNA domain."""
    name, addr = parseaddr(value)
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or " " in addr or not local.isascii():
        raise UnsafeMessage("invalid_address", f"{label} is not a valid e-mail address")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise UnsafeMessage("invalid_address", f"{label} has an invalid domain") from exc
    return Address(display_name=name or display_name or "", username=local, domain=domain)


def _from_address(message: OutgoingMessage, settings: SmtpSettings) -> Address:
    """The From: the message's sender if it has an address, else the configured one."""
    if message.sender and "@" in message.sender:
        return _address("sender", message.sender, settings.from_name)
    return _address("from_address", settings.from_address, message.sender or settings.from_name)


def build_email(message: OutgoingMessage, settings: SmtpSettings) -> EmailMessage:
    """Build the MIME message; raises :class:`UnsafeMessage` for unsafe or invalid input."""
    checks = {
        "subject": message.subject,
        "to": message.to,
        "sender": message.sender,
        "reply_to": message.reply_to,
        "from_address": settings.from_address,
        "from_name": settings.from_name,
    }
    for label, value in checks.items():
        _check_header(label, value)
    for name, value in message.headers.items():
        _check_header(f"header {name!r}", name)
        _check_header(f"header {name!r}", value)
        if not _HEADER_NAME.match(name) or name.lower() in _RESERVED_HEADERS:
            raise UnsafeMessage("invalid_header", f"header name {name!r} is not allowed")
    for att in message.attachments:
        _check_header("attachment filename", att.filename)
        _check_header("attachment content type", att.content_type)

    sender = _from_address(message, settings)
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = sender
    msg["To"] = _address("to", message.to)
    if message.subject is not None:
        msg["Subject"] = message.subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(idstring=f"ob{message.id}", domain=sender.domain)
    if message.reply_to:
        msg["Reply-To"] = _address("reply_to", message.reply_to)
    for name, value in message.headers.items():
        msg[name] = value
    msg.set_content(message.text)
    if message.html is not None:
        msg.add_alternative(message.html, subtype="html")
    for att in message.attachments:
        maintype, _, subtype = att.content_type.partition("/")
        if not maintype or not subtype or maintype in ("multipart", "message"):
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(att.data, maintype=maintype, subtype=subtype, filename=att.filename)
    return msg


def _classify(code: int) -> Outcome:
    """A 5xx SMTP reply is permanent; anything else (4xx, odd codes) may be retried."""
    return Outcome.PERMANENT if 500 <= code < 600 else Outcome.RETRYABLE


class SmtpProvider:
    """Sends e-mail over SMTP, reusing one connection across batches."""

    channel = Channel.EMAIL

    def __init__(self, settings: SmtpSettings, *, name: str = "smtp") -> None:
        self.name = name
        self.settings = settings
        _check_header("from_address", settings.from_address)
        #: MAIL FROM (bounces go here); raises UnsafeMessage for a bad configuration
        self._envelope_from = _address("from_address", settings.from_address).addr_spec
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
            msg = build_email(message, self.settings)
            data = msg.as_bytes(policy=SMTP_POLICY)
        except UnsafeMessage:
            raise
        except (ValueError, TypeError, LookupError, email.errors.MessageError) as exc:
            raise UnsafeMessage("invalid_message", f"cannot build the e-mail: {exc}") from exc
        to = msg["To"].addresses[0].addr_spec
        return _Prepared(message.id, to, data, str(msg["Message-ID"]))

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
            try:
                await client.mail(self._envelope_from)
                await client.rcpt(p.envelope_to)
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
