"""SMS text: GSM 03.38 / UCS-2 encoding, length, segments and transliteration.

GSM-7 when every character is in the GSM 03.38 basic set or its extension table (the
extension characters count as two septets); UCS-2 otherwise, counted in UTF-16 code units.
A single message holds 160 septets / 70 units; a concatenated one 153 / 67 per part. Parts
never split an escape sequence or a surrogate pair.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
    "".replace("\x1b", "")
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7 = "GSM-7"
UCS2 = "UCS-2"

_LIMITS = {GSM7: (160, 153), UCS2: (70, 67)}


@dataclass(frozen=True, slots=True, kw_only=True)
class SmsInfo:
    """How an SMS text is encoded and billed."""

    encoding: str  #: "GSM-7" or "UCS-2"
    units: int  #: septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int  #: parts the network sends (0 for empty text)
    parts: tuple[str, ...]  #: the text of each part
    unicode_chars: tuple[str, ...]  #: distinct characters that forced UCS-2, in order seen

    @property
    def per_segment(self) -> int:
        """Units one part can hold for this text (single or concatenated)."""
        single, multi = _LIMITS[self.encoding]
        return single if self.segments <= 1 else multi

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly summary."""
        return {
            "encoding": self.encoding,
            "length": self.units,
            "segments": self.segments,
            "per_segment": self.per_segment,
            "unicode_chars": list(self.unicode_chars),
        }


def is_gsm7(char: str) -> bool:
    """True when the character can be sent in GSM-7."""
    return char in GSM7_BASIC or char in GSM7_EXTENSION


def _cost(char: str, encoding: str) -> int:
    if encoding == GSM7:
        return 2 if char in GSM7_EXTENSION else 1
    return 2 if ord(char) > 0xFFFF else 1


def _even_parts(text: str, single: int, multi: int) -> tuple[str, ...]:
    if len(text) <= single:
        return (text,) if text else ()
    return tuple(text[i : i + multi] for i in range(0, len(text), multi))


def analyse(text: str) -> SmsInfo:
    """Encoding, length in units, segment count, parts and the characters forcing UCS-2."""
    chars = set(text)
    if chars <= GSM7_BASIC:  # the common case: one septet per character, plain slicing
        parts = _even_parts(text, 160, 153)
        return SmsInfo(
            encoding=GSM7, units=len(text), segments=len(parts), parts=parts, unicode_chars=()
        )
    if not chars & GSM7_EXTENSION and max(chars) <= "\uffff":  # no surrogate pairs
        outside = chars - GSM7_BASIC
        forcing = [c for c in dict.fromkeys(text) if c in outside]
        if forcing:  # UCS-2 without surrogate pairs: one unit per character
            parts = _even_parts(text, 70, 67)
            return SmsInfo(
                encoding=UCS2,
                units=len(text),
                segments=len(parts),
                parts=parts,
                unicode_chars=tuple(forcing),
            )
    return _analyse_slow(text)


def _analyse_slow(text: str) -> SmsInfo:
    """Texts with extension characters or surrogate pairs: parts never split them."""
    forcing: list[str] = []
    seen: set[str] = set()
    for char in text:
        if not is_gsm7(char) and char not in seen:
            seen.add(char)
            forcing.append(char)
    encoding = UCS2 if forcing else GSM7
    costs = [_cost(c, encoding) for c in text]
    units = sum(costs)
    single, multi = _LIMITS[encoding]
    if units == 0:
        return SmsInfo(encoding=encoding, units=0, segments=0, parts=(), unicode_chars=())
    if units <= single:
        return SmsInfo(
            encoding=encoding, units=units, segments=1, parts=(text,), unicode_chars=tuple(forcing)
        )
    parts: list[str] = []
    current: list[str] = []
    used = 0
    for char, cost in zip(text, costs, strict=True):
        if used + cost > multi:
            parts.append("".join(current))
            current, used = [], 0
        current.append(char)
        used += cost
    if current:
        parts.append("".join(current))
    return SmsInfo(
        encoding=encoding,
        units=units,
        segments=len(parts),
        parts=tuple(parts),
        unicode_chars=tuple(forcing),
    )


# Letters of Polish, Czech, Slovak, Turkish and Portuguese outside GSM-7, and common
# typography, mapped to their closest GSM-7 spelling.
_TRANSLIT = {
    # Polish
    "ą": "a", "ć": "c", "ę": "e", "ł": "l", "ń": "n", "ó": "o", "ś": "s", "ź": "z", "ż": "z",
    "Ą": "A", "Ć": "C", "Ę": "E", "Ł": "L", "Ń": "N", "Ó": "O", "Ś": "S", "Ź": "Z", "Ż": "Z",
    # Czech and Slovak
    "á": "a", "č": "c", "ď": "d", "ě": "e", "í": "i", "ň": "n", "ř": "r", "š": "s", "ť": "t",
    "ú": "u", "ů": "u", "ý": "y", "ž": "z", "ĺ": "l", "ľ": "l", "ŕ": "r", "ô": "o",
    "Á": "A", "Č": "C", "Ď": "D", "Ě": "E", "Í": "I", "Ň": "N", "Ř": "R", "Š": "S", "Ť": "T",
    "Ú": "U", "Ů": "U", "Ý": "Y", "Ž": "Z", "Ĺ": "L", "Ľ": "L", "Ŕ": "R", "Ô": "O",
    # Turkish
    "ç": "c", "ğ": "g", "ı": "i", "ş": "s", "Ğ": "G", "İ": "I", "Ş": "S", "î": "i", "û": "u",
    # Portuguese
    "ã": "a", "õ": "o", "â": "a", "ê": "e", "Ã": "A", "Õ": "O", "Â": "A", "Ê": "E",
    "À": "A", "È": "E", "Ì": "I", "Ò": "O", "Ù": "U", "ë": "e", "ï": "i", "Ë": "E", "Ï": "I",
    # currency: the Turkish lira sign is outside GSM-7 (zł and Kč lose their accents above)
    "₺": "TL",
    # typography
    "„": '"', "“": '"', "”": '"', "«": '"', "»": '"', "‘": "'", "’": "'", "‚": "'",
    "–": "-", "—": "-", "…": "...", "\u00a0": " ", "\u2009": " ", "\u202f": " ",
}  # fmt: skip


def transliterate(text: str) -> str:
    """The text with every non-GSM-7 letter replaced by its closest GSM-7 spelling.

    Characters GSM-7 already has (é, ü, ñ, à …) are kept. Anything else that decomposes
    to a GSM-7 base letter loses its accent; what remains (emoji, other scripts) is kept,
    so the analysis still reports it as forcing UCS-2.

    Decomposed text (an accent typed or pasted as a separate combining mark, as macOS and
    some forms produce) is composed first; an accent that still stands alone after a letter
    GSM-7 spells plainly is dropped rather than left to force UCS-2.
    """
    out: list[str] = []
    for char in unicodedata.normalize("NFC", text):
        if unicodedata.combining(char) and out and is_gsm7(out[-1][-1]):
            continue
        if is_gsm7(char):
            out.append(char)
        elif char in _TRANSLIT:
            out.append(_TRANSLIT[char])
        else:
            base = "".join(
                c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)
            )
            out.append(base if base and all(is_gsm7(c) for c in base) else char)
    return "".join(out)
