"""Building the MIME e-mail for an outgoing message: addresses, headers, text + HTML,
attachments — and refusing anything that could inject a header.

Every header value (subject, display names, addresses, Reply-To, extra headers, attachment
file names and content types) is refused when it holds CR, LF or NUL: nothing is folded or
cleaned silently. Addresses are ASCII on the wire where they can be (an internationalised
domain is IDNA-encoded); a non-ASCII local part needs SMTPUTF8 (RFC 6531), which the
message then says it needs (:attr:`Built.smtputf8`) and the SMTP provider checks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.policy import SMTPUTF8 as SMTPUTF8_POLICY
from email.utils import format_datetime, make_msgid

import idna

from orderbell.channels.base import OutgoingMessage

_BAD_HEADER_CHARS = re.compile(r"[\r\n\x00]")
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # printable ASCII, no colon (RFC 5322 ftext)
_NAME_AND_ADDRESS = re.compile(r"^\s*(?P<name>.*?)\s*<(?P<addr>[^<>]*)>\s*$", re.DOTALL)
#: headers the provider writes itself; extra headers may not replace them
_RESERVED_HEADERS = frozenset(
    {
        "from", "to", "cc", "bcc", "subject", "date", "message-id", "reply-to", "sender",
        "return-path", "mime-version", "content-type", "content-transfer-encoding",
        "content-disposition",
    }
)  # fmt: skip
_NOT_IN_ADDR = frozenset(' <>,;"()[]\\')  #: quoted local parts are not supported
MAX_ADDRESS = 254  #: RFC 5321 path limit (256) minus the angle brackets
MAX_LOCAL_PART = 64  #: RFC 5321 4.5.3.1.1


class UnsafeMessage(ValueError):
    """A message that must not be sent at all (e.g. header injection); PERMANENT."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Built:
    """A message ready for the wire."""

    message: EmailMessage
    envelope_to: str
    smtputf8: bool  #: an address needs SMTPUTF8 (a non-ASCII local part)

    def as_bytes(self) -> bytes:
        """The DATA: CRLF line ends; raw UTF-8 headers only when SMTPUTF8 is needed."""
        return self.message.as_bytes(policy=SMTPUTF8_POLICY if self.smtputf8 else SMTP_POLICY)


def check_header(label: str, value: str | None) -> None:
    """Refuse CR, LF and NUL in a header value (header injection)."""
    if value is not None and _BAD_HEADER_CHARS.search(value):
        raise UnsafeMessage("header_injection", f"{label} contains a line break or NUL")


def split_address(value: str) -> tuple[str, str]:
    """("Name", "a@b.c") from "Name <a@b.c>" or ("", "a@b.c") from "a@b.c".

    Not :func:`email.utils.parseaddr`: it reads ``Shop, Inc <a@b.c>`` as the address "Shop".
    """
    match = _NAME_AND_ADDRESS.match(value)
    if match:
        return match.group("name").strip().strip('"').strip(), match.group("addr").strip()
    return "", value.strip()


def address(label: str, value: str, display_name: str | None = None) -> Address:
    """Parse an address ("a@b.c" or "Name <a@b.c>") into a header Address; IDNA domain."""
    name, addr = split_address(value)
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or "@" in local or any(c in addr for c in _NOT_IN_ADDR):
        raise UnsafeMessage("invalid_address", f"{label} is not a valid e-mail address")
    if len(local.encode()) > MAX_LOCAL_PART:
        raise UnsafeMessage("invalid_address", f"{label} has a local part over 64 octets")
    try:
        if not domain.isascii():  # IDNA 2008 with UTS 46 mapping, as email-validator does
            domain = idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise UnsafeMessage("invalid_address", f"{label} has an invalid domain") from exc
    if len(f"{local}@{domain}".encode()) > MAX_ADDRESS:
        raise UnsafeMessage("invalid_address", f"{label} is longer than {MAX_ADDRESS} octets")
    return Address(display_name=name or display_name or "", username=local, domain=domain)


def from_address(message: OutgoingMessage, configured: str, configured_name: str | None) -> Address:
    """The From: the message's sender if it has an address, else the configured one."""
    if message.sender and "@" in message.sender:
        return address("sender", message.sender, configured_name)
    return address("from_address", configured, message.sender or configured_name)


def _check_all(message: OutgoingMessage, configured: str, configured_name: str | None) -> None:
    checks = {
        "subject": message.subject,
        "to": message.to,
        "sender": message.sender,
        "reply_to": message.reply_to,
        "from_address": configured,
        "from_name": configured_name,
    }
    for label, value in checks.items():
        check_header(label, value)
    for name, value in message.headers.items():
        check_header(f"header {name!r}", name)
        check_header(f"header {name!r}", value)
        if not _HEADER_NAME.match(name) or name.lower() in _RESERVED_HEADERS:
            raise UnsafeMessage("invalid_header", f"header name {name!r} is not allowed")
    for att in message.attachments:
        check_header("attachment filename", att.filename)
        check_header("attachment content type", att.content_type)
        if "/" in att.filename or "\\" in att.filename:
            raise UnsafeMessage("invalid_attachment", "attachment filename contains a path")


def build(message: OutgoingMessage, configured: str, configured_name: str | None) -> Built:
    """Build the MIME message; raises :class:`UnsafeMessage` for unsafe or invalid input."""
    _check_all(message, configured, configured_name)
    sender = from_address(message, configured, configured_name)
    to = address("to", message.to)
    reply_to = address("reply_to", message.reply_to) if message.reply_to else None
    smtputf8 = any(
        not a.username.isascii() for a in (sender, to, reply_to) if a is not None
    )  # display names are RFC 2047-encoded; only a local part needs SMTPUTF8
    msg = EmailMessage(policy=SMTPUTF8_POLICY if smtputf8 else SMTP_POLICY)
    msg["From"] = sender
    msg["To"] = to
    if message.subject is not None:
        msg["Subject"] = message.subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(idstring=f"ob{message.id}", domain=sender.domain)
    if reply_to is not None:
        msg["Reply-To"] = reply_to
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
    return Built(msg, to.addr_spec, smtputf8)
