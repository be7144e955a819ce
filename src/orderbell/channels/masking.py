"""Masking of recipients for logs and human output: enough to tell messages apart, not to
contact anyone. ``+48123456700`` → ``+48*******00``; ``john@example.com`` → ``j***@example.com``.
"""

from __future__ import annotations

from functools import cache

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

_KEEP_LAST = 2
_MIN_HIDDEN = 3


@cache
def _country_codes() -> frozenset[str]:
    """Every ITU country calling code, as digit strings (1 to 3 digits, prefix-free)."""
    return frozenset(str(code) for code in COUNTRY_CODE_TO_REGION_CODE)


def _country_code(digits: str) -> str:
    """The calling code an E.164 number starts with, or "" when none matches."""
    codes = _country_codes()
    for size in (1, 2, 3):
        if digits[:size] in codes:
            return digits[:size]
    return ""


def mask_phone(phone: str) -> str:
    """Mask a phone number, keeping the country code and the last two digits."""
    value = phone.strip()
    if not value:
        return ""
    if value.startswith("+"):
        digits = "".join(ch for ch in value[1:] if ch.isdigit())
        code = _country_code(digits)
        prefix, rest = "+" + code, digits[len(code) :]
    else:
        prefix, rest = "", "".join(ch for ch in value if ch.isdigit())
    if len(rest) < _KEEP_LAST + _MIN_HIDDEN:
        return prefix + "*" * max(len(rest), _MIN_HIDDEN)
    return prefix + "*" * (len(rest) - _KEEP_LAST) + rest[-_KEEP_LAST:]


def mask_email(address: str) -> str:
    """Mask an e-mail address, keeping the first character of the local part and the domain."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local:
        return "***"
    return f"{local[0]}***@{domain}"


def mask_recipient(recipient: str) -> str:
    """Mask a phone number or an e-mail address, whichever it looks like."""
    return mask_email(recipient) if "@" in recipient else mask_phone(recipient)
