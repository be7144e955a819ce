"""The SMS a shop sends for a rendered text: its transliteration choice and its segment cap.

:func:`decide` is the one place that turns a rendered text into the text that goes out under
the shop's settings. The quote at ingest, the simulator, the preview, manual sends and the
dispatcher all call it, so the segments priced, the text previewed and the text sent agree.

A template's worst case (checked when it is saved) is the same decision over stand-in values:
each variable at its longest, made of a character that costs what its charset can cost
(:func:`filler`), and the costliest of such renders counts (:func:`costliest`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from orderbell.domain.model import Shop
from orderbell.domain.segments import SmsInfo, analyse, transliterate

HOLD_REASON = "segment_cap"  #: how a held message's reason starts


class Charset(enum.StrEnum):
    """Which characters a template variable's value may carry."""

    GSM = "gsm"  #: GSM-7 characters only: digits, codes, links
    LATIN = "latin"  #: Latin-script text: may force UCS-2; transliteration makes it GSM-7
    ANY = "any"  #: any script or emoji: may force UCS-2 even when transliterated


# A letter GSM-7 lacks but transliteration maps one-to-one, and one it cannot map.
_FILLER = {Charset.GSM: "x", Charset.LATIN: "ş", Charset.ANY: "ж"}


def filler(length: int, charset: Charset) -> str:
    """A stand-in for a variable at its longest, in a character its charset may force."""
    return _FILLER[charset] * length


@dataclass(frozen=True, slots=True, kw_only=True)
class SmsText:
    """The SMS a shop sends for one rendered text, and whether its cap lets it go."""

    written: str  #: as the template rendered it
    text: str  #: as it is sent (transliterated when the shop chose so)
    info: SmsInfo  #: encoding and segments of `text`
    cap: int | None  #: the shop's segment cap (None: no cap)

    @property
    def segments(self) -> int:
        """Segments the text is sent (and billed) in."""
        return self.info.segments

    @property
    def hold(self) -> str | None:
        """Why it must not be sent (over the shop's cap), or None."""
        return cap_reason(self.info.segments, self.cap)


def cap_reason(segments: int, cap: int | None) -> str | None:
    """The held reason of a message of `segments` under a cap, or None when it fits."""
    if cap is None or segments <= cap:
        return None
    return f"{HOLD_REASON}: {segments} segments, the shop's cap is {cap}"


def decide(shop: Shop, rendered: str) -> SmsText:
    """The SMS text this shop sends for this rendered text, with its segments and cap."""
    text = transliterate(rendered) if shop.sms_transliterate else rendered
    return SmsText(written=rendered, text=text, info=analyse(text), cap=shop.sms_max_segments)


def describe(shop: Shop, rendered: str) -> dict[str, Any]:
    """What a preview shows: the SMS as sent under the shop's settings, and both variants —
    as written and transliterated — with the characters that force UCS-2 in each."""
    sent = decide(shop, rendered)
    plain = transliterate(rendered)
    return {
        **sent.info.as_dict(),
        "text": sent.text,
        "transliterate": shop.sms_transliterate,
        "max_segments": shop.sms_max_segments,
        "hold": sent.hold,
        "as_written": {"text": rendered, **analyse(rendered).as_dict()},
        "transliterated": {"text": plain, **analyse(plain).as_dict()},
    }


def costliest(shop: Shop, texts: Iterable[str]) -> SmsText | None:
    """The text that costs the most segments as this shop sends it (None for no texts)."""
    decided = [decide(shop, t) for t in texts]
    return max(decided, key=lambda s: (s.segments, s.info.units), default=None)
