"""SMS encoding, length, segments and parts; transliteration to GSM-7."""

from __future__ import annotations

import math
import unicodedata
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orderbell.domain.segments import (
    GSM7,
    GSM7_BASIC,
    GSM7_EXTENSION,
    UCS2,
    analyse,
    is_gsm7,
    transliterate,
)

Form = Literal["NFC", "NFD", "NFKC", "NFKD"]
LIMITS = {GSM7: (160, 153), UCS2: (70, 67)}


def units_of(char: str, encoding: str) -> int:
    """Independent reference: septets in GSM-7, UTF-16 code units in UCS-2."""
    if encoding == GSM7:
        return 2 if char in GSM7_EXTENSION else 1
    return len(char.encode("utf-16-le")) // 2


def part_units(part: str, encoding: str) -> int:
    return sum(units_of(c, encoding) for c in part)


# --- encoding and counting ---------------------------------------------------------------------


def test_empty_text() -> None:
    info = analyse("")
    assert (info.encoding, info.units, info.segments, info.parts) == (GSM7, 0, 0, ())
    assert info.unicode_chars == ()
    assert info.per_segment == 160


def test_plain_ascii_is_gsm7() -> None:
    info = analyse("Order A-1 ships today by 18:00.")
    assert info.encoding == GSM7
    assert info.units == 31
    assert info.segments == 1
    assert info.parts == ("Order A-1 ships today by 18:00.",)


def test_gsm7_national_letters_do_not_force_ucs2() -> None:
    info = analyse("Café Müller: ñ, ü, é, à, Å, Ø, ß, £ @ ¥ § ¿ ¡ Δ Ω")
    assert info.encoding == GSM7
    assert info.unicode_chars == ()


@pytest.mark.parametrize(
    ("length", "segments"),
    [(1, 1), (153, 1), (159, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)],
)
def test_gsm7_segment_boundaries(length: int, segments: int) -> None:
    info = analyse("a" * length)
    assert info.encoding == GSM7
    assert info.units == length
    assert info.segments == segments
    assert info.per_segment == (160 if segments == 1 else 153)
    if segments > 1:
        assert [len(p) for p in info.parts[:-1]] == [153] * (segments - 1)


@pytest.mark.parametrize(
    ("length", "segments"),
    [(1, 1), (67, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)],
)
def test_ucs2_segment_boundaries(length: int, segments: int) -> None:
    text = "ą" * length
    info = analyse(text)
    assert info.encoding == UCS2
    assert info.units == length
    assert info.segments == segments
    assert info.per_segment == (70 if segments == 1 else 67)
    assert "".join(info.parts) == text


def test_one_unicode_character_makes_the_whole_message_ucs2() -> None:
    text = "a" * 100 + "ł"
    info = analyse(text)
    assert info.encoding == UCS2
    assert info.units == 101
    assert info.segments == 2
    assert info.unicode_chars == ("ł",)


def test_unicode_chars_lists_forcing_characters_distinct_in_order_seen() -> None:
    info = analyse("Zażółć gęślą jaźń — café ü")
    assert info.encoding == UCS2
    assert info.unicode_chars == ("ż", "ó", "ł", "ć", "ę", "ś", "ą", "ź", "ń", "—")
    assert "é" not in info.unicode_chars
    assert "ü" not in info.unicode_chars


def test_unicode_chars_never_lists_extension_characters() -> None:
    info = analyse("Cena 10€ [promo] ş")
    assert info.encoding == UCS2
    assert info.unicode_chars == ("ş",)


# --- extension characters ----------------------------------------------------------------------


@pytest.mark.parametrize("char", sorted(GSM7_EXTENSION))
def test_extension_characters_count_two_septets(char: str) -> None:
    info = analyse(f"a{char}b")
    assert info.encoding == GSM7
    assert info.units == 4


def test_extension_characters_at_the_single_limit() -> None:
    assert analyse("€" * 80).segments == 1  # 160 septets
    info = analyse("€" * 81)  # 162 septets
    assert info.units == 162
    assert info.segments == 2
    assert info.parts == ("€" * 76, "€" * 5)  # 152 septets, then 10: a 153rd would split one


def test_extension_character_is_not_split_across_parts() -> None:
    text = "a" * 152 + "€" + "b" * 7  # 161 septets
    info = analyse(text)
    assert info.segments == 2
    assert info.parts == ("a" * 152, "€" + "b" * 7)


def test_extension_character_fitting_exactly_stays_in_the_part() -> None:
    text = "a" * 151 + "€" + "b" * 10  # the € ends exactly at septet 153
    info = analyse(text)
    assert info.parts == ("a" * 151 + "€", "b" * 10)


def test_extension_characters_in_ucs2_count_one_unit() -> None:
    info = analyse("ą€[]")
    assert info.encoding == UCS2
    assert info.units == 4


def test_text_with_extension_fits_one_message_by_septets() -> None:
    info = analyse("a" * 158 + "€")  # 160 septets
    assert info.segments == 1
    assert info.parts == ("a" * 158 + "€",)


# --- emoji and surrogate pairs ------------------------------------------------------------------


def test_emoji_counts_two_units() -> None:
    info = analyse("Hi 😀")
    assert info.encoding == UCS2
    assert info.units == 5
    assert info.unicode_chars == ("😀",)


def test_emoji_boundaries() -> None:
    assert analyse("😀" * 35).segments == 1  # 70 units
    info = analyse("😀" * 36)  # 72 units
    assert info.segments == 2
    assert info.parts == ("😀" * 33, "😀" * 3)  # 66 units: a 34th would split a pair


def test_emoji_is_never_split_across_parts() -> None:
    text = "a" * 66 + "😀" + "b" * 10
    info = analyse(text)
    assert info.parts == ("a" * 66, "😀" + "b" * 10)
    for part in info.parts:
        part.encode("utf-16-le")  # no lone surrogate in any part
        assert part_units(part, UCS2) <= 67


def test_bmp_symbol_is_one_unit() -> None:
    info = analyse("★" * 70)
    assert info.encoding == UCS2
    assert info.units == 70
    assert info.segments == 1


# --- as_dict / is_gsm7 --------------------------------------------------------------------------


def test_as_dict() -> None:
    assert analyse("a" * 161 + "ć").as_dict() == {
        "encoding": UCS2,
        "length": 162,
        "segments": 3,
        "per_segment": 67,
        "unicode_chars": ["ć"],
    }


@pytest.mark.parametrize(("char", "gsm"), [("a", True), ("€", True), ("\n", True), ("é", True),
                                           ("ą", False), ("😀", False), ("\x1b", False),
                                           ("ç", False), ("Ç", True)])  # fmt: skip
def test_is_gsm7(char: str, gsm: bool) -> None:
    assert is_gsm7(char) is gsm


def test_gsm7_basic_table_has_127_printable_entries() -> None:
    """128 code points minus the escape (which introduces the extension table)."""
    assert len(GSM7_BASIC) == 127
    assert "\x1b" not in GSM7_BASIC
    assert not GSM7_BASIC & GSM7_EXTENSION


# --- properties ----------------------------------------------------------------------------------

ALPHABET = st.one_of(
    st.sampled_from(sorted(GSM7_BASIC)),
    st.sampled_from(sorted(GSM7_EXTENSION)),
    st.sampled_from(list("ąćęłńóśźżčřšžťďňůğışİ—“”")),
    st.sampled_from(["😀", "🎉", "👍", "\U0001f3fd", "𝄞"]),
)
TEXTS = st.one_of(
    st.text(alphabet=st.sampled_from(sorted(GSM7_BASIC)), max_size=500),
    st.text(alphabet=ALPHABET, max_size=400),
    st.text(max_size=300),
)


@settings(max_examples=400)
@given(text=TEXTS)
def test_parts_rebuild_the_text_and_fit_their_limit(text: str) -> None:
    info = analyse(text)
    assert "".join(info.parts) == text
    assert info.segments == len(info.parts)
    expected_encoding = GSM7 if all(is_gsm7(c) for c in text) else UCS2
    assert info.encoding == expected_encoding
    assert info.units == sum(units_of(c, info.encoding) for c in text)
    single, multi = LIMITS[info.encoding]
    assert info.per_segment == (single if info.segments <= 1 else multi)
    for part in info.parts:
        assert part
        assert part_units(part, info.encoding) <= info.per_segment
    if not text:
        assert info.segments == 0
    elif info.units <= single:
        assert info.segments == 1
    else:
        # greedy packing: at most one unit lost per part boundary (a split 2-unit char)
        assert info.segments >= math.ceil(info.units / multi)
        for part, following in zip(info.parts, info.parts[1:], strict=False):
            assert part_units(part, info.encoding) + units_of(following[0], info.encoding) > multi
    forcing = [c for c in dict.fromkeys(text) if not is_gsm7(c)]
    assert list(info.unicode_chars) == forcing


# --- transliteration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Zażółć gęślą jaźń. ZAŻÓŁĆ GĘŚLĄ JAŹŃ", "Zazolc gesla jazn. ZAZOLC GESLA JAZN"),
        ("Příliš žluťoučký kůň úpěl ďábelské ódy", "Prilis zlutoucky kun upel dabelské ody"),
        ("Ďakujeme, ľúbi, ôsmy, Ŕ, ĺ", "Dakujeme, lubi, osmy, R, l"),
        ("Iğdır'da şoför çay içti. İSTANBUL ŞİŞLİ", "Igdir'da soför cay icti. ISTANBUL SISLI"),
        (
            "Não há condições, Ótimo! Você está à espera",
            "Nao ha condicoes, Otimo! Voce esta à espera",
        ),
        ("„Zamówienie” – gotowe…", '"Zamowienie" - gotowe...'),
    ],
)
def test_transliterate_examples(text: str, expected: str) -> None:
    result = transliterate(text)
    assert result == expected
    assert analyse(result).encoding == GSM7


def test_transliterate_keeps_gsm7_letters_and_what_cannot_be_mapped() -> None:
    assert transliterate("Müller, Ñandú, café, Øre") == "Müller, Ñandu, café, Øre"
    assert transliterate("Dzięki 😀") == "Dzieki 😀"
    assert analyse(transliterate("Dzięki 😀")).unicode_chars == ("😀",)
    assert transliterate("Привет") == "Привет"  # another script stays as it is


def test_transliterate_falls_back_to_unicode_decomposition() -> None:
    assert transliterate("őű ŐŰ") == "ou OU"


def test_transliterate_decomposed_text() -> None:
    """Accents typed as separate combining marks (NFD, e.g. pasted from macOS) are handled."""
    text = unicodedata.normalize("NFD", "Zamówienie gotowe, dziękujemy! Příliš, Não, Şişli")
    assert text != unicodedata.normalize("NFC", text)
    result = transliterate(text)
    assert result == "Zamowienie gotowe, dziekujemy! Prilis, Nao, Sisli"
    assert analyse(result).encoding == GSM7
    # a mark that composes with nothing is dropped after a GSM-7 letter …
    assert transliterate("ą\u030a") == "a"
    # … but kept after a character of another script, which stays UCS-2 anyway
    assert transliterate("ж\u0301") == "ж\u0301"


LANGUAGE_LETTERS = (
    "aąbcćdeęfghijklłmnńoóprsśtuwyzźż" "AĄBCĆDEĘFGHIJKLŁMNŃOÓPRSŚTUWYZŹŻ"  # Polish
    "áčďéěíňóřšťúůýž" "ÁČĎÉĚÍŇÓŘŠŤÚŮÝŽ"  # Czech
    "äĺľôŕ" "ÄĹĽÔŔ"  # Slovak
    "çğıöşüâîû" "ÇĞİÖŞÜÂÎÛ"  # Turkish
    "ãõâêôàç" "ÃÕÂÊÔÀÇ"  # Portuguese
    " .,!?-'0123456789\n"
    "„“”«»‘’‚–—…\u00a0\u2009\u202f"  # typography
)  # fmt: skip


@given(
    text=st.text(alphabet=LANGUAGE_LETTERS, max_size=200),
    form=st.sampled_from(["NFC", "NFD", "NFKC", "NFKD"]),
)
def test_transliterated_european_text_is_gsm7_only(text: str, form: Form) -> None:
    result = transliterate(unicodedata.normalize(form, text))
    assert all(is_gsm7(c) for c in result)
    assert analyse(result).encoding == GSM7


@given(text=TEXTS)
def test_transliterate_is_idempotent_and_keeps_gsm7_text(text: str) -> None:
    once = transliterate(text)
    assert transliterate(once) == once
    if all(is_gsm7(c) for c in text):
        assert once == text
    # it never adds UCS-2 forcing characters that were not there (up to canonical equivalence:
    # the text is composed first, and U+F900 豈 composes to U+8C48 豈)
    composed = unicodedata.normalize("NFC", text)
    assert set(analyse(once).unicode_chars) <= set(analyse(composed).unicode_chars)
