"""The destination country an SMS is priced by: answered from the calling code where one
region has it, and always the country phonenumbers' parser gives; and amounts as written."""

from __future__ import annotations

from decimal import Decimal

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orderbell.billing import prices
from orderbell.billing.prices import destination_country
from orderbell.domain.model import Channel
from orderbell.errors import InvalidInput

CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


def parsed(recipient: str) -> str | None:
    """The country as phonenumbers' parser gives it: what `destination_country` must say."""
    try:
        number = phonenumbers.parse(recipient, None)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.region_code_for_number(number)


def e164(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def test_every_regions_example_numbers_get_the_parsers_country() -> None:
    """Its own region, but where regions share a calling code and their numbers look the
    same (AX and FI on +358): then phonenumbers names the code's main region, and so do we."""
    checked, others = 0, set()
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            number = e164(example)
            assert destination_country(Channel.SMS, number) == parsed(number), number
            if parsed(number) != region:
                others.add(region)
                assert len(phonenumbers.COUNTRY_CODE_TO_REGION_CODE[example.country_code]) > 1
            checked += 1
    assert checked > 400  # every region with an example, mobile and fixed line
    assert len(others) < 10, others


@pytest.mark.parametrize(
    ("number", "country"),
    [
        ("+905321234567", "TR"),  # a code of one region: no parsing needed
        ("+48601234567", "PL"),
        ("+12015550123", "US"),  # +1 is shared: the area code says which
        ("+15062345678", "CA"),
        ("+447400123456", "GB"),  # +44 is shared with JE, GG and IM
        ("+447797123456", "JE"),
        ("+79123456789", "RU"),  # +7 is shared with KZ
        ("+77012345678", "KZ"),
        ("+80012345678", "001"),  # non-geographic (freephone), as phonenumbers names it
    ],
)
def test_shared_and_unshared_calling_codes(number: str, country: str) -> None:
    assert destination_country(Channel.SMS, number) == country
    assert parsed(number) == country


@pytest.mark.parametrize(
    "recipient",
    ["+", "+0123456789", "+9", "+90", "+999123456789", "905321234567", "+90 532 123 45 67",
     "+90532123456789012345", "tel:+905321234567", "+90532abc4567", "+９０５３２１２３４５６７"],
)  # fmt: skip
def test_what_is_not_plain_e164_is_left_to_the_parser(recipient: str) -> None:
    assert destination_country(Channel.SMS, recipient) == parsed(recipient)


@given(code=st.sampled_from(CODES), rest=st.text("0123456789", min_size=0, max_size=16))
def test_any_digits_after_any_calling_code_get_the_parsers_country(code: int, rest: str) -> None:
    recipient = f"+{code}{rest}"
    assert destination_country(Channel.SMS, recipient) == parsed(recipient)


def test_no_country_for_email_or_a_missing_number() -> None:
    assert destination_country(Channel.EMAIL, "+905321234567") is None
    assert destination_country(Channel.SMS, None) is None
    assert destination_country(Channel.SMS, "") is None


@pytest.mark.parametrize(
    "written",
    ["1e5", "1E+2", "1_000", "\u0661\u0660", "NaN", "Infinity", "+5", ".5", "5.", "0x10",
     "1,5", "", " ", Decimal("NaN"), Decimal("Infinity")],
)  # fmt: skip
def test_an_amount_not_written_as_digits_is_refused_naming_the_field(written: object) -> None:
    """The CLI's amounts are parsed as the API's are (`DecimalText`): an exponent, digit
    separators or another script's digits would otherwise read as a number."""
    with pytest.raises(InvalidInput) as refused:
        prices.parse_credits(written, "--amount", maximum=Decimal(10**9), allow_zero=True)
    assert refused.value.field == "--amount"


@pytest.mark.parametrize(
    ("written", "amount"),
    [("25", Decimal("25")), (" 0.0700 ", Decimal("0.07")), (7, Decimal(7)),
     (Decimal("1E+1"), Decimal(10)), (Decimal("0.05"), Decimal("0.05"))],
)  # fmt: skip
def test_an_amount_written_as_digits_is_read_exactly(written: object, amount: Decimal) -> None:
    assert prices.parse_credits(written, "x", maximum=Decimal(100), allow_zero=True) == amount
