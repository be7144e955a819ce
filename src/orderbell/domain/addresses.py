"""Phone numbers, e-mail addresses, header values and SMS sender names: parsed, normalised
and refused with a reason that names the field."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from phonenumbers import NumberParseException, PhoneNumberType

from orderbell.domain.segments import GSM7_BASIC
from orderbell.errors import InvalidInput

_KIND = {
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PERSONAL_NUMBER: "personal_number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
    PhoneNumberType.UNKNOWN: "unknown",
}

#: Number kinds that can receive an SMS.
SMS_CAPABLE = frozenset({"mobile", "fixed_line_or_mobile", "personal_number", "unknown"})
#: Kinds that cost the sender extra or never reach a person: always blocked.
PREMIUM = frozenset({"premium_rate", "shared_cost"})

_EXTENSION = re.compile(r"(?:ext\.?|extension|x|#)\s*\d+\s*$", re.IGNORECASE)
_LETTERS = re.compile(r"[^\W\d_]")
_ALLOWED_PHONE_CHARS = re.compile(r"^[\d\s+()./-]+$")


@dataclass(frozen=True, slots=True)
class Phone:
    """A parsed phone number."""

    e164: str  #: +48501234567
    region: str | None  #: ISO country of the number
    kind: str  #: mobile, fixed_line, premium_rate …


def parse_phone(raw: object, default_region: str | None, field: str = "phone") -> Phone:
    """Parse and normalise a number (the shop's country is the default region)."""
    if not isinstance(raw, str):
        raise InvalidInput("must be a string", field=field)
    return _parse_phone(raw, default_region, field)


@lru_cache(maxsize=8192)  # a pure function of its arguments; errors are not cached
def _parse_phone(raw: str, default_region: str | None, field: str) -> Phone:
    text = raw.strip()
    if not text:
        raise InvalidInput("must not be empty", field=field)
    if len(text) > 40:
        raise InvalidInput("is too long for a phone number", field=field)
    if _EXTENSION.search(text):
        raise InvalidInput(
            "extensions are not supported: an SMS needs a direct number", field=field
        )
    if _LETTERS.search(text):
        raise InvalidInput("contains letters: a phone number has only digits and +", field=field)
    if not _ALLOWED_PHONE_CHARS.match(text):
        raise InvalidInput("contains characters a phone number cannot have", field=field)
    try:
        number = phonenumbers.parse(text, (default_region or "").upper() or None)
    except NumberParseException as exc:
        reason = {
            NumberParseException.INVALID_COUNTRY_CODE: "has no valid country code "
            "(start with + and the country code)",
            NumberParseException.NOT_A_NUMBER: "is not a phone number",
            NumberParseException.TOO_SHORT_NSN: "is too short",
            NumberParseException.TOO_SHORT_AFTER_IDD: "is too short",
            NumberParseException.TOO_LONG: "is too long",
        }.get(exc.error_type, "is not a phone number")
        raise InvalidInput(reason, field=field) from None
    region = phonenumbers.region_code_for_number(number)
    if not phonenumbers.is_possible_number(number):
        raise InvalidInput(
            f"has the wrong number of digits for {region or 'its country'}", field=field
        )
    # valid = a type in its region's metadata: what is_valid_number checks, by the same
    # pattern matching number_type does (the two together matched them twice, ~5 us)
    number_type = phonenumbers.number_type(number)
    if region is None or number_type == PhoneNumberType.UNKNOWN:
        raise InvalidInput(f"is not a valid number in {region or 'any country'}", field=field)
    kind = _KIND.get(number_type, "unknown")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return Phone(e164=e164, region=region, kind=kind)


def sms_block_reason(phone: Phone, allowed_countries: Collection[str] | None) -> str | None:
    """Why an SMS must not go to this number (a reason code), or None."""
    if phone.kind in PREMIUM:
        return "premium_rate"
    if phone.kind not in SMS_CAPABLE:
        return "not_mobile"
    if allowed_countries is not None and (phone.region or "") not in {
        c.upper() for c in allowed_countries
    }:
        return "country_not_allowed"
    return None


def check_header_value(value: str, field: str) -> str:
    """Refuse CR, LF and NUL: they would let a value inject e-mail headers."""
    if any(c in value for c in "\r\n\x00"):
        raise InvalidInput("must not contain line breaks or NUL characters", field=field)
    return value


def parse_email(raw: object, field: str = "email") -> str:
    """A syntactically valid address, normalised (domain lower-cased; an internationalised
    domain stays in Unicode NFC, the SMTP channel IDNA-encodes it when sending)."""
    if not isinstance(raw, str):
        raise InvalidInput("must be a string", field=field)
    return _parse_email(raw, field)


@lru_cache(maxsize=8192)  # a pure function of its arguments; errors are not cached
def _parse_email(raw: str, field: str) -> str:
    text = check_header_value(raw.strip(), field)
    if not text:
        raise InvalidInput("must not be empty", field=field)
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"is not a valid e-mail address: {exc}", field=field) from None
    return str(result.normalized)


#: ASCII digits only: `\d` would also take Arabic-Indic, full-width … digits.
_SENDER_NUMBER = re.compile(r"\+?[0-9]{3,15}")
_SENDER_EXTRA = frozenset(" .-_&'!")


def check_sender_name(value: object, field: str = "sms_sender") -> str:
    """An SMS sender: up to 11 GSM-7 letters/digits (with a letter), or a number."""
    if not isinstance(value, str):
        raise InvalidInput("must be a string", field=field)
    text = value.strip()
    if not text:
        raise InvalidInput("must not be empty", field=field)
    if _SENDER_NUMBER.fullmatch(text):
        return text
    if len(text) > 11:
        raise InvalidInput(
            f"is {len(text)} characters: an alphanumeric sender has at most 11", field=field
        )
    bad = sorted({c for c in text if not (c.isascii() and c.isalnum()) and c not in _SENDER_EXTRA})
    if bad or not all(c in GSM7_BASIC for c in text):
        raise InvalidInput(
            f"contains characters a sender name cannot have: {''.join(bad)!r} "
            "(use A-Z, a-z, 0-9, space, . - _ & ' !)",
            field=field,
        )
    if not any(c.isalpha() for c in text):
        raise InvalidInput("an alphanumeric sender needs at least one letter", field=field)
    return text
