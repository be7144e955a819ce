"""Carrier tracking links, kept as data: one URL template and an alias list per carrier.

URL templates use the placeholders ``{number}`` (URL-encoded tracking number), ``{locale}``
(``en_US``), ``{lang}`` (``en``), ``{cc}`` (``us``) and ``{CC}`` (``US``). They are filled by
plain substitution, never by ``str.format``, so shop overrides cannot reach attributes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from babel.core import get_global
from babel.languages import get_official_languages

_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
_PLACEHOLDER = re.compile(r"\{(number|locale|lang|cc|CC)\}")
_UNSAFE_URL = re.compile(r"[\x00-\x20\x7f]")


def normalise(name: str) -> str:
    """Lowercase, strip accents, spaces and punctuation: "Yurtiçi Kargo" → "yurticikargo"."""
    folded = name.replace("ı", "i").replace("ł", "l").replace("Ł", "l").casefold()
    plain = "".join(
        c for c in unicodedata.normalize("NFKD", folded) if not unicodedata.combining(c)
    )
    return _NOT_ALNUM.sub("", plain)


@dataclass(frozen=True, slots=True)
class Carrier:
    """One carrier: its display name, URL template and the names it goes by."""

    id: str
    name: str
    url: str
    aliases: frozenset[str]
    by_country: Mapping[str, str] = field(default_factory=dict)  #: country → URL template
    langs: frozenset[str] | None = None  #: languages the site offers; others fall back to "en"


def _carrier(
    id: str,
    name: str,
    url: str,
    aliases: tuple[str, ...],
    *,
    by_country: Mapping[str, str] | None = None,
    langs: tuple[str, ...] | None = None,
) -> Carrier:
    names = frozenset(normalise(a) for a in (id, name, *aliases))
    return Carrier(
        id, name, url, names, dict(by_country or {}), frozenset(langs) if langs else None
    )


_GLS = "https://gls-group.eu/"

CARRIERS: Mapping[str, Carrier] = {
    c.id: c
    for c in (
        _carrier(
            "ups",
            "UPS",
            "https://www.ups.com/track?loc={locale}&tracknum={number}",
            ("united parcel service", "ups ground", "ups express"),
        ),
        _carrier(
            "usps",
            "USPS",
            "https://tools.usps.com/go/TrackConfirmAction?tLabels={number}",
            ("us postal service", "united states postal service"),
        ),
        _carrier(
            "fedex",
            "FedEx",
            "https://www.fedex.com/fedextrack/?trknbr={number}",
            ("federal express", "fedex ground", "fedex express"),
        ),
        _carrier(
            "dhl",
            "DHL Express",
            "https://www.dhl.com/{cc}-{lang}/home/tracking/tracking-express.html"
            "?submit=1&tracking-id={number}",
            ("dhl", "dhl express", "dhl global", "dhl.com", "dhl international"),
            langs=("en", "de", "pl", "cs", "sk", "tr", "fr", "es", "it", "nl"),
        ),
        _carrier(
            "dhl_paket",
            "DHL Paket",
            "https://www.dhl.de/de/privatkunden/pakete-empfangen/verfolgen.html?piececode={number}",
            ("dhl paket", "dhl de", "dhl germany", "dhl deutschland", "deutsche post dhl"),
        ),
        _carrier(
            "dpd",
            "DPD",
            "https://tracking.dpd.de/status/{locale}/parcel/{number}",
            ("dpd", "dpd de", "dpd group", "dpd germany", "dpd cz", "dpd nl"),
        ),
        _carrier(
            "dpd_pl",
            "DPD Polska",
            "https://tracktrace.dpd.com.pl/parcelDetails?p1={number}",
            ("dpd pl", "dpd polska", "dpd poland"),
        ),
        _carrier(
            "dpd_uk",
            "DPD UK",
            "https://track.dpd.co.uk/parcels/{number}",
            ("dpd uk", "dpd gb", "dpd local", "dpd united kingdom"),
        ),
        _carrier(
            "gls",
            "GLS",
            _GLS + "EU/en/parcel-tracking?match={number}",
            ("gls", "general logistics systems", "gls group"),
            by_country={
                "DE": _GLS + "DE/de/paketverfolgung?match={number}",
                "CZ": _GLS + "CZ/cs/sledovani-zasilek?match={number}",
                "NL": _GLS + "NL/nl/pakket-volgen?match={number}",
            },
        ),
        _carrier(
            "inpost",
            "InPost",
            "https://inpost.pl/sledzenie-przesylek?number={number}",
            ("inpost paczkomaty", "paczkomaty", "paczkomat inpost", "inpost kurier"),
        ),
        _carrier(
            "royal_mail",
            "Royal Mail",
            "https://www.royalmail.com/track-your-item#/tracking-results/{number}",
            ("royal mail", "royalmail", "royal mail tracked"),
        ),
        _carrier(
            "yurtici",
            "Yurtiçi Kargo",
            "https://www.yurticikargo.com/tr/online-servisler/gonderi-sorgula?code={number}",
            ("yurtici", "yurtiçi kargo", "yurtici kargo"),
        ),
        _carrier(
            "aras",
            "Aras Kargo",
            "https://kargotakip.araskargo.com.tr/mainpage.aspx?code={number}",
            ("aras kargo", "araskargo"),
        ),
        _carrier(
            "ppl",
            "PPL",
            "https://www.ppl.cz/vyhledat-zasilku?shipmentId={number}",
            ("ppl cz", "ppl czech", "professional parcel logistic"),
        ),
        _carrier(
            "packeta",
            "Packeta",
            "https://tracking.packeta.com/{lang}/?id={number}",
            ("zasilkovna", "zásilkovna", "packeta", "zasielkovna", "zásielkovňa"),
            langs=("cs", "sk", "en", "pl", "hu", "ro", "de", "uk"),
        ),
        _carrier(
            "poczta_polska",
            "Poczta Polska",
            "https://emonitoring.poczta-polska.pl/?numer={number}",
            ("poczta polska", "pocztex", "polish post"),
        ),
        _carrier(
            "ceska_posta",
            "Česká pošta",
            "https://www.postaonline.cz/trackandtrace/-/zasilka/cislo?parcelNumbers={number}",
            ("česká pošta", "ceska posta", "czech post"),
        ),
    )
}

#: A generic name that means a national branch in some countries ("DPD" from a Polish shop).
COUNTRY_VARIANTS: Mapping[str, Mapping[str, str]] = {
    "dpd": {"PL": "dpd_pl", "GB": "dpd_uk", "UK": "dpd_uk"},
    "dhl": {"DE": "dhl_paket"},
}

_ALIASES: Mapping[str, str] = {alias: c.id for c in CARRIERS.values() for alias in c.aliases}


def carrier_id(name: str | None, country: str | None = None) -> str | None:
    """The carrier id a courier name means (for the shop's country), or None when unknown."""
    if not name:
        return None
    key = normalise(name)
    found = _ALIASES.get(key)
    if found is None:
        return None
    variant = COUNTRY_VARIANTS.get(key, {}).get((country or "").upper())
    return variant or found


def _is_http(url: str | None) -> bool:
    if not url:
        return False
    lowered = url.strip().lower()
    return lowered.startswith(("https://", "http://")) and not _UNSAFE_URL.search(url.strip())


def _locale_parts(locale: str, country: str | None) -> tuple[str, str]:
    """(language, territory) from "pl", "pl-PL", "en_GB"; the territory is guessed if absent."""
    parts = [p for p in re.split(r"[-_]", locale or "") if p]
    lang = parts[0].lower() if parts and parts[0].isalpha() else "en"
    territory = next((p.upper() for p in parts[1:] if len(p) == 2 and p.isalpha()), "")
    if not territory and country and lang in get_official_languages(country.upper()):
        territory = country.upper()
    if not territory:
        likely = str(get_global("likely_subtags").get(lang, "en_US")).split("_")
        territory = likely[-1] if len(likely[-1]) == 2 else "US"
    return lang, territory


def _fill(
    template: str, number: str, locale: str, country: str | None, carrier: Carrier | None
) -> str:
    lang, territory = _locale_parts(locale, country)
    cc = (country or territory).upper()
    if carrier is not None and carrier.langs is not None and lang not in carrier.langs:
        lang = "en"
    if ("{cc}" in template or "{CC}" in template) and lang not in get_official_languages(cc):
        lang = "en"  # e.g. dhl.com has "pl-pl" and "pl-en", but no "us-pl"
    values = {
        "number": quote(number, safe=""),
        "locale": f"{lang}_{territory}",
        "lang": lang,
        "cc": cc.lower(),
        "CC": cc,
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def tracking_url(
    courier: str | None,
    number: str | None,
    *,
    country: str | None = None,
    locale: str = "en",
    overrides: Mapping[str, str] | None = None,
    platform_url: str | None = None,
) -> str | None:
    """The tracking link: the platform's own http(s) URL, else the shop's override, else ours."""
    if platform_url is not None and _is_http(platform_url):
        return platform_url.strip()
    number = (number or "").strip()
    if not number or not courier:
        return None
    cid = carrier_id(courier, country)
    carrier = CARRIERS.get(cid) if cid else None
    own = {normalise(k): v for k, v in (overrides or {}).items()}
    template = None
    for key in (cid, normalise(courier)):
        if key and _is_http(own.get(key)):
            template = own[key].strip()
            break
    if template is None and carrier is not None:
        template = carrier.by_country.get((country or "").upper(), carrier.url)
    if template is None:
        return None
    return _fill(template, number, locale, country, carrier)
