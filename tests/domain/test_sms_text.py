"""The SMS a shop sends for a rendered text: the transliteration choice, the segment cap, the
preview's two variants and the worst case over stand-in values — pure, no database."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orderbell.domain.model import SMS_MAX_SEGMENTS_DEFAULT, Shop
from orderbell.domain.segments import GSM7, UCS2, analyse, transliterate
from orderbell.domain.sms_text import (
    Charset,
    cap_reason,
    costliest,
    decide,
    describe,
    filler,
)

POLISH = "Zamówienie ZK-1 przyjęte. Dziękujemy za zakupy, Łódź!"
TURKISH = "Siparişiniz kargoya verildi, toplam ₺249,90. Teşekkürler!"
RTL = "Order \u202e1001\u202c is ready"


def shop(*, transliterate: bool = False, cap: int | None = SMS_MAX_SEGMENTS_DEFAULT) -> Shop:
    return Shop(
        id=1, name="Shop", slug="shop", sms_transliterate=transliterate, sms_max_segments=cap
    )


def test_a_shop_starts_without_transliteration_and_with_the_default_cap() -> None:
    plain = Shop(id=1, name="Shop", slug="shop")
    assert (plain.sms_transliterate, plain.sms_max_segments) == (False, 10)


CHOICES = [
    pytest.param(POLISH, False, POLISH, UCS2, ("ó", "ę", "ę", "Ł", "ź"), id="polish-off"),
    pytest.param(POLISH, True, transliterate(POLISH), GSM7, (), id="polish-on"),
    pytest.param(TURKISH, False, TURKISH, UCS2, ("ş", "₺", "ş"), id="turkish-off"),
    pytest.param(
        TURKISH,
        True,
        "Siparisiniz kargoya verildi, toplam TL249,90. Tesekkürler!",
        GSM7,
        (),
        id="turkish-on-lira-sign-spelled",
    ),
    pytest.param("Thanks! 😀", True, "Thanks! 😀", UCS2, ("😀",), id="emoji-stays"),
    pytest.param(RTL, True, RTL, UCS2, ("\u202e", "\u202c"), id="rtl-override-stays"),
    pytest.param("Order 1001 shipped", True, "Order 1001 shipped", GSM7, (), id="gsm-unchanged"),
    pytest.param("Order 1001 shipped", False, "Order 1001 shipped", GSM7, (), id="gsm-off"),
]


@pytest.mark.parametrize(("written", "on", "sent", "encoding", "forcing"), CHOICES)
def test_the_text_sent_follows_the_shops_choice(
    written: str, on: bool, sent: str, encoding: str, forcing: tuple[str, ...]
) -> None:
    sms = decide(shop(transliterate=on), written)
    assert sms.written == written
    assert sms.text == sent
    assert sms.info == analyse(sent)
    assert sms.info.encoding == encoding
    assert sms.info.unicode_chars == tuple(dict.fromkeys(forcing))


def test_transliteration_turns_a_polish_text_into_fewer_gsm7_segments() -> None:
    text = (POLISH + " ") * 3
    off, on = decide(shop(), text), decide(shop(transliterate=True), text)
    assert (off.info.encoding, off.segments) == (UCS2, 3)
    assert (on.info.encoding, on.segments) == (GSM7, 2)


CAPS = [
    pytest.param(3, 3, None, id="at-the-cap"),
    pytest.param(4, 3, "segment_cap: 4 segments, the shop's cap is 3", id="one-over"),
    pytest.param(150, 10, "segment_cap: 150 segments, the shop's cap is 10", id="far-over"),
    pytest.param(150, None, None, id="no-cap"),
    pytest.param(1, 1, None, id="cap-one"),
]


@pytest.mark.parametrize(("segments", "cap", "reason"), CAPS)
def test_cap_reason(segments: int, cap: int | None, reason: str | None) -> None:
    assert cap_reason(segments, cap) == reason


def test_the_hold_counts_the_text_as_sent() -> None:
    text = "ś" * 100  # UCS-2: 2 segments; transliterated: 100 GSM-7 characters, 1 segment
    assert decide(shop(cap=1), text).hold == "segment_cap: 2 segments, the shop's cap is 1"
    assert decide(shop(cap=1, transliterate=True), text).hold is None


def test_a_10000_character_value_is_held_by_the_default_cap() -> None:
    sms = decide(shop(), "Your " + "ż" * 10_000 + " is on its way")
    assert sms.info.encoding == UCS2
    assert sms.segments == 150
    assert sms.hold == "segment_cap: 150 segments, the shop's cap is 10"


@pytest.mark.parametrize("on", [False, True], ids=["off", "on"])
def test_describe_shows_both_variants_and_what_is_sent(on: bool) -> None:
    seen = describe(shop(transliterate=on, cap=1), POLISH + " " + POLISH)
    written, plain = seen["as_written"], seen["transliterated"]
    assert (written["encoding"], written["segments"]) == (UCS2, 2)
    assert written["unicode_chars"] == ["ó", "ę", "Ł", "ź"]
    assert (plain["encoding"], plain["segments"], plain["unicode_chars"]) == (GSM7, 1, [])
    sent = plain if on else written
    assert seen["text"] == sent["text"]
    assert (seen["encoding"], seen["segments"]) == (sent["encoding"], sent["segments"])
    assert (seen["transliterate"], seen["max_segments"]) == (on, 1)
    assert seen["hold"] == (None if on else "segment_cap: 2 segments, the shop's cap is 1")


FILLERS = [
    pytest.param(Charset.GSM, False, GSM7, id="gsm-off"),
    pytest.param(Charset.GSM, True, GSM7, id="gsm-on"),
    pytest.param(Charset.LATIN, False, UCS2, id="latin-off"),
    pytest.param(Charset.LATIN, True, GSM7, id="latin-on-covered"),
    pytest.param(Charset.ANY, False, UCS2, id="any-off"),
    pytest.param(Charset.ANY, True, UCS2, id="any-on-not-covered"),
]


@pytest.mark.parametrize(("charset", "on", "encoding"), FILLERS)
def test_a_stand_in_forces_what_its_charset_may(charset: Charset, on: bool, encoding: str) -> None:
    value = filler(100, charset)
    sms = decide(shop(transliterate=on), "Hi " + value)
    assert len(value) == 100
    assert sms.info.encoding == encoding
    assert sms.info.units == 103


def test_costliest_picks_the_text_with_most_segments() -> None:
    short, long = "Hi", "Hi " + filler(100, Charset.LATIN)
    assert costliest(shop(), [short, long]) == decide(shop(), long)
    assert costliest(shop(), [long, short]) == decide(shop(), long)
    assert costliest(shop(), []) is None


LETTERS = st.text(
    alphabet=st.sampled_from("abcdeABCDE 0123456789ąćęłńóśźżčďěňřšťůžçğışÇĞİŞãõâê"), max_size=600
)


@given(LETTERS)
def test_transliterated_letters_never_cost_more_segments(text: str) -> None:
    off, on = decide(shop(cap=None), text), decide(shop(cap=None, transliterate=True), text)
    assert on.info.encoding == GSM7
    assert on.segments <= off.segments
