"""Structured logs (JSON lines or console) with personal data masked before output.

Every record passes :func:`mask_pii`: message texts, subjects and secrets are replaced by
their length, and phone numbers and e-mail addresses anywhere in a value are masked
(``+48*******00``, ``j***@example.com``), so a provider's error text that echoes a
recipient cannot leak it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from orderbell.channels.masking import mask_email, mask_phone

#: Keys whose values are never written: message content and credentials.
REDACTED_KEYS = frozenset(
    {"text", "body", "html", "subject", "password", "api_key", "token", "authorization", "secret"}
)
#: Keys that hold a recipient.
RECIPIENT_KEYS = frozenset({"to", "phone", "email", "recipient", "sender_address"})

#: An address's local part takes every character RFC 5322 allows unquoted (an admin's login
#: may be "ann{x}@…" or "o'brien!x@…": with fewer, most of it was left readable).
_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
#: E.164 (+ and 7-15 digits, optional single spaces), or a national number in groups of digits.
_PHONE = re.compile(r"(?<![\w+])(?:\+\d(?: ?\d){6,14}|\(?0\d{2,4}\)?(?: \d{2,4}){2,4})(?!\w)")


def mask_text(value: str) -> str:
    """The value with every e-mail address and phone number in it masked."""
    value = _EMAIL.sub(lambda m: mask_email(m.group(0)), value)
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), value)


def _mask(key: str, value: Any) -> Any:
    if key in REDACTED_KEYS and value is not None:
        return f"[redacted {len(str(value))} chars]"
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: _mask(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(key, v) for v in value]
    return value


def mask_pii(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: redact content, mask recipients everywhere."""
    for key, value in list(event_dict.items()):
        if key in ("timestamp", "level", "logger"):
            continue
        event_dict[key] = _mask(key, value)
    return event_dict


def configure(level: str = "INFO", *, json: bool = False, stream: TextIO | None = None) -> None:
    """Set up structlog (and the standard library's root logger) for orderbell."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    out = stream or sys.stderr
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            mask_pii,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=numeric, stream=out, format="%(levelname)s %(name)s %(message)s")
