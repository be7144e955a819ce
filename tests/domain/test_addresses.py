"""Phone numbers, e-mail addresses, header values and SMS sender names."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orderbell.domain.addresses import (
    Phone,
    check_header_value,
    check_sender_name,
    parse_email,
    parse_phone,
    sms_block_reason,
)
from orderbell.errors import InvalidInput

# --- parse_phone ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("+48 501 234 567", None),
        ("+48501234567", "US"),  # an international number ignores the default region
        ("501 234 567", "PL"),
        ("501-234-567", "pl"),
        ("(501) 234 567", "PL"),
        ("0048 501 234 567", "PL"),
        ("  +48 501 234 567  ", None),
        ("+48.501.234.567", None),
    ],
)
def test_polish_mobile_normalises_to_e164(raw: str, region: str | None) -> None:
    assert parse_phone(raw, region) == Phone(e164="+48501234567", region="PL", kind="mobile")


@pytest.mark.parametrize(
    ("raw", "e164", "region"),
    [
        ("+90 532 123 45 67", "+905321234567", "TR"),
        ("+420 601 123 456", "+420601123456", "CZ"),
        ("+351 912 345 678", "+351912345678", "PT"),
        ("+44 7400 123456", "+447400123456", "GB"),
    ],
)
def test_mobiles_of_other_countries(raw: str, e164: str, region: str) -> None:
    phone = parse_phone(raw, None)
    assert (phone.e164, phone.region, phone.kind) == (e164, region, "mobile")


def test_national_number_uses_the_default_region() -> None:
    assert parse_phone("0532 123 45 67", "TR").e164 == "+905321234567"
    assert parse_phone("(201) 555-0123", "US").e164 == "+12015550123"


def test_us_numbers_are_fixed_line_or_mobile() -> None:
    assert parse_phone("+1 201 555 0123", None).kind == "fixed_line_or_mobile"


def test_fixed_line() -> None:
    phone = parse_phone("22 123 45 67", "PL")
    assert phone == Phone(e164="+48221234567", region="PL", kind="fixed_line")


@pytest.mark.parametrize(
    ("raw", "kind"),
    [("+48 701 234 567", "premium_rate"), ("+48 801 234 567", "shared_cost"),
     ("+48 800 123 456", "toll_free")],
)  # fmt: skip
def test_special_number_kinds(raw: str, kind: str) -> None:
    assert parse_phone(raw, None).kind == kind


@pytest.mark.parametrize("raw", ["+48 501 CALL", "abc", "+48 501 234 56７a", "+48 śmieć"])
def test_letters_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_phone(raw, "PL")
    assert "contains letters" in info.value.message
    assert info.value.field == "phone"


@pytest.mark.parametrize(
    "raw",
    ["+48 22 123 45 67 ext. 12", "+48 22 123 45 67 ext 12", "+48221234567x12",
     "+48 22 123 45 67 #12", "+48 22 123 45 67 extension 3", "+48 22 123 45 67 EXT.12 "],
)  # fmt: skip
def test_extensions_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_phone(raw, None)
    assert "extensions are not supported" in info.value.message


@pytest.mark.parametrize("raw", [48501234567, None, b"+48501234567", ["+48501234567"]])
def test_non_string_phone(raw: object) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_phone(raw, "PL", field="customer.phone")
    assert info.value.message == "must be a string"
    assert info.value.field == "customer.phone"


@pytest.mark.parametrize(
    ("raw", "region", "message"),
    [
        ("", "PL", "must not be empty"),
        ("   ", "PL", "must not be empty"),
        ("1" * 41, "PL", "is too long for a phone number"),
        ("+48 501*234", None, "contains characters a phone number cannot have"),
        ("+48 501;234", None, "contains characters a phone number cannot have"),
        ("501 234 567", None, "has no valid country code (start with + and the country code)"),
        ("+999 1234567", None, "has no valid country code (start with + and the country code)"),
        ("+48 123", None, "has the wrong number of digits for PL"),
        ("+48 101 234 567", None, "is not a valid number in PL"),
        ("+48 501 234 5678", None, "is not a valid number in PL"),
        ("+", None, "is not a phone number"),
        ("++48", None, "is not a phone number"),
    ],
)
def test_invalid_numbers(raw: str, region: str | None, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_phone(raw, region)
    assert info.value.message == message
    assert info.value.field == "phone"


@given(digits=st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_any_accepted_polish_number_is_e164(digits: str) -> None:
    outcome: Phone | InvalidInput
    try:
        outcome = parse_phone(digits, "PL")
    except InvalidInput as exc:
        outcome = exc
    if isinstance(outcome, InvalidInput):
        assert outcome.field == "phone"
        return
    phone = outcome
    assert phone.e164.startswith("+")
    assert phone.e164[1:].isdigit() and phone.e164.isascii()
    assert parse_phone(phone.e164, None) == phone  # normalised form parses to itself


_CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


@given(code=st.sampled_from(_CODES), rest=st.text(alphabet="0123456789", max_size=14))
def test_a_number_is_accepted_exactly_when_phonenumbers_calls_it_valid(
    code: int, rest: str
) -> None:
    raw = f"+{code}{rest}"
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        number = None
    valid = (
        number is not None
        and phonenumbers.is_possible_number(number)
        and phonenumbers.is_valid_number(number)
    )
    try:
        phone = parse_phone(raw, None)
    except InvalidInput:
        assert not valid, raw
        return
    assert valid, raw
    assert number is not None
    assert phone.region == phonenumbers.region_code_for_number(number)


@pytest.mark.parametrize(
    "raw", ["+12015550123", "+15062345678", "+447797123456", "+77012345678", "+80012345678"]
)
def test_valid_numbers_on_shared_and_non_geographic_codes(raw: str) -> None:
    number = phonenumbers.parse(raw, None)
    assert phonenumbers.is_valid_number(number)
    assert parse_phone(raw, None).region == phonenumbers.region_code_for_number(number)


# --- sms_block_reason ------------------------------------------------------------------------------


def test_mobile_is_not_blocked() -> None:
    phone = parse_phone("+48 501 234 567", None)
    assert sms_block_reason(phone, None) is None
    assert sms_block_reason(phone, {"PL", "CZ"}) is None
    assert sms_block_reason(phone, ["pl"]) is None  # allowed countries are case-insensitive


def test_fixed_line_and_toll_free_are_not_mobile() -> None:
    assert sms_block_reason(parse_phone("22 123 45 67", "PL"), None) == "not_mobile"
    assert sms_block_reason(parse_phone("+48 800 123 456", None), None) == "not_mobile"


def test_premium_and_shared_cost_are_blocked_first() -> None:
    assert sms_block_reason(parse_phone("+48 701 234 567", None), {"PL"}) == "premium_rate"
    assert sms_block_reason(parse_phone("+48 801 234 567", None), {"DE"}) == "premium_rate"


def test_country_not_allowed() -> None:
    turkish = parse_phone("+90 532 123 45 67", None)
    assert sms_block_reason(turkish, {"PL", "CZ"}) == "country_not_allowed"
    assert sms_block_reason(turkish, set()) == "country_not_allowed"
    assert sms_block_reason(turkish, {"TR"}) is None


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("mobile", None), ("fixed_line_or_mobile", None), ("personal_number", None),
     ("unknown", None), ("fixed_line", "not_mobile"), ("voip", "not_mobile"),
     ("pager", "not_mobile"), ("uan", "not_mobile"), ("voicemail", "not_mobile"),
     ("toll_free", "not_mobile"), ("premium_rate", "premium_rate"),
     ("shared_cost", "premium_rate")],
)  # fmt: skip
def test_block_reason_by_kind(kind: str, reason: str | None) -> None:
    assert sms_block_reason(Phone(e164="+48501234567", region="PL", kind=kind), None) == reason


def test_number_without_region_is_not_in_any_allowed_list() -> None:
    phone = Phone(e164="+80012345678", region=None, kind="unknown")
    assert sms_block_reason(phone, None) is None
    assert sms_block_reason(phone, {"PL"}) == "country_not_allowed"


# --- e-mail ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("jan@example.com", "jan@example.com"),
        ("  jan@example.com  ", "jan@example.com"),
        ("Jan.Kowalski@Example.PL", "Jan.Kowalski@example.pl"),
        ("zamowienia+sklep@shop.example.cz", "zamowienia+sklep@shop.example.cz"),
        ("jan@żółw.pl", "jan@żółw.pl"),  # IDN domain kept in Unicode; SMTP encodes it
    ],
)
def test_parse_email_valid(raw: str, expected: str) -> None:
    assert parse_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["not-an-email", "jan@", "@example.com", "jan@@example.com", "jan@localhost",
     "jan kowalski@example.com", "jan@exa mple.com", "jan@.example.com"],
)  # fmt: skip
def test_parse_email_invalid(raw: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_email(raw, field="customer.email")
    assert info.value.message.startswith("is not a valid e-mail address: ")
    assert info.value.field == "customer.email"


@pytest.mark.parametrize(
    "raw",
    ["jan@example.com\r\nBcc: victim@example.org", "jan@example.com\nBcc: x@example.org",
     "jan@example.com\rX: y", "jan\x00@example.com"],
)  # fmt: skip
def test_parse_email_refuses_header_injection(raw: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_email(raw)
    assert info.value.message == "must not contain line breaks or NUL characters"
    assert info.value.field == "email"


def test_parse_email_trailing_newline_is_whitespace() -> None:
    """A line break only at the end is stripped like any whitespace: nothing can follow it."""
    assert parse_email("jan@example.com\r\n") == "jan@example.com"


@pytest.mark.parametrize(("raw", "message"), [("", "must not be empty"), ("  ", "must not be empty"),
                                              (None, "must be a string"), (42, "must be a string")])  # fmt: skip
def test_parse_email_empty_or_not_a_string(raw: object, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_email(raw)
    assert info.value.message == message


@given(local_part=st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True),
       domain=st.from_regex(r"[a-z]{2,15}\.(pl|cz|com|pt)", fullmatch=True),
       junk=st.sampled_from(["\r", "\n", "\x00"]))  # fmt: skip
def test_no_address_with_a_line_break_inside_is_accepted(
    local_part: str, domain: str, junk: str
) -> None:
    assert parse_email(f"{local_part}@{domain}") == f"{local_part}@{domain}"
    with pytest.raises(InvalidInput):
        parse_email(f"{local_part}@{domain}{junk}X-Injected: 1")


# --- header values ----------------------------------------------------------------------------------


def test_check_header_value_passes_clean_values_unchanged() -> None:
    assert check_header_value("Zamówienie A-1 — gotowe", "subject") == "Zamówienie A-1 — gotowe"
    assert check_header_value("", "subject") == ""


@pytest.mark.parametrize("value", ["a\rb", "a\nb", "a\r\nBcc: x@y.pl", "a\x00b", "\n"])
def test_check_header_value_refuses_breaks(value: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_header_value(value, "subject")
    assert info.value.field == "subject"


# --- sender names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["StockMount", "Easystone11", "ABCDEFGHIJK", "A", "Jan's Shop!", "A&B_Shop-1.",
     "48501234567", "+48501234567", "123", "+123456789012345", "Shop 24"],
)  # fmt: skip
def test_sender_names_accepted(value: str) -> None:
    assert check_sender_name(value) == value


def test_sender_name_is_stripped() -> None:
    assert check_sender_name("  Sklep  ") == "Sklep"


def test_twelve_characters_refused() -> None:
    with pytest.raises(InvalidInput) as info:
        check_sender_name("ABCDEFGHIJKL")
    assert info.value.message == "is 12 characters: an alphanumeric sender has at most 11"
    assert info.value.field == "sms_sender"


@pytest.mark.parametrize("value", ["Żabka", "Sklep Łódź", "Café", "Müller", "Shop€", "Shop²",
                                   "Shop@Home", "A/B", "Shop\tX", "Ｓｈｏｐ"])  # fmt: skip
def test_non_ascii_or_odd_characters_refused(value: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_sender_name(value)
    assert "contains characters a sender name cannot have" in info.value.message


@pytest.mark.parametrize("value", ["٠١٢٣٤٥", "１２３４５", "+٤٨٥٠١٢٣٤٥٦٧", "१२३४५"])
def test_non_ascii_digits_are_not_a_number_sender(value: str) -> None:
    """Arabic-Indic, full-width or Devanagari digits are not a phone number a network accepts."""
    with pytest.raises(InvalidInput):
        check_sender_name(value)


@pytest.mark.parametrize("value", ["12", "1 2 3", "501 234 567", "+12", "-_-", "1234567890123456"])
def test_alphanumeric_sender_needs_a_letter(value: str) -> None:
    with pytest.raises(InvalidInput):
        check_sender_name(value)


@pytest.mark.parametrize(("value", "message"), [("", "must not be empty"), ("   ", "must not be empty"),
                                                (None, "must be a string"), (123, "must be a string")])  # fmt: skip
def test_sender_name_empty_or_not_a_string(value: object, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_sender_name(value, field="settings.sms_sender")
    assert info.value.message == message
    assert info.value.field == "settings.sms_sender"


@given(st.text(max_size=20))
def test_every_accepted_sender_is_ascii_and_well_formed(value: str) -> None:
    try:
        result = check_sender_name(value)
    except InvalidInput:
        return
    assert result.isascii()
    assert result == value.strip()
    if result.lstrip("+").isdigit():
        assert 3 <= len(result.lstrip("+")) <= 15
    else:
        assert len(result) <= 11
        assert any(c.isalpha() for c in result)
        assert all(c.isalnum() or c in " .-_&'!" for c in result)
