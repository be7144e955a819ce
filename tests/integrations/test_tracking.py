"""Carrier tracking links: the carrier table, name matching, encoding and overrides."""

from __future__ import annotations

import pytest

from orderbell.integrations.tracking import CARRIERS, carrier_id, normalise, tracking_url

URLS = [
    pytest.param("ups", "US", "en", "https://www.ups.com/track?loc=en_US&tracknum=N1", id="ups"),
    pytest.param(
        "usps", "US", "en", "https://tools.usps.com/go/TrackConfirmAction?tLabels=N1", id="usps"
    ),
    pytest.param("fedex", "US", "en", "https://www.fedex.com/fedextrack/?trknbr=N1", id="fedex"),
    pytest.param(
        "DHL Express",
        "PL",
        "pl",
        "https://www.dhl.com/pl-pl/home/tracking/tracking-express.html?submit=1&tracking-id=N1",
        id="dhl-pl",
    ),
    pytest.param(
        "DHL Express",
        "US",
        "pl",
        "https://www.dhl.com/us-en/home/tracking/tracking-express.html?submit=1&tracking-id=N1",
        id="dhl-us-falls-back-to-en",
    ),
    pytest.param(
        "DHL Paket",
        "DE",
        "de",
        "https://www.dhl.de/de/privatkunden/pakete-empfangen/verfolgen.html?piececode=N1",
        id="dhl-paket",
    ),
    pytest.param("DPD", "DE", "de", "https://tracking.dpd.de/status/de_DE/parcel/N1", id="dpd"),
    pytest.param("DPD", "CZ", "cs", "https://tracking.dpd.de/status/cs_CZ/parcel/N1", id="dpd-cz"),
    pytest.param("dpd", "NL", "en", "https://tracking.dpd.de/status/en_US/parcel/N1", id="dpd-en"),
    pytest.param(
        "DPD", "PL", "pl", "https://tracktrace.dpd.com.pl/parcelDetails?p1=N1", id="dpd-pl"
    ),
    pytest.param("DPD", "GB", "en", "https://track.dpd.co.uk/parcels/N1", id="dpd-uk"),
    pytest.param(
        "GLS", "DE", "de", "https://gls-group.eu/DE/de/paketverfolgung?match=N1", id="gls-de"
    ),
    pytest.param(
        "GLS", "CZ", "cs", "https://gls-group.eu/CZ/cs/sledovani-zasilek?match=N1", id="gls-cz"
    ),
    pytest.param(
        "GLS", "FR", "fr", "https://gls-group.eu/EU/en/parcel-tracking?match=N1", id="gls-other"
    ),
    pytest.param(
        "InPost", "PL", "pl", "https://inpost.pl/sledzenie-przesylek?number=N1", id="inpost"
    ),
    pytest.param(
        "Royal Mail",
        "GB",
        "en",
        "https://www.royalmail.com/track-your-item#/tracking-results/N1",
        id="royal-mail",
    ),
    pytest.param(
        "Yurtiçi Kargo",
        "TR",
        "tr",
        "https://www.yurticikargo.com/tr/online-servisler/gonderi-sorgula?code=N1",
        id="yurtici",
    ),
    pytest.param(
        "Aras Kargo",
        "TR",
        "tr",
        "https://kargotakip.araskargo.com.tr/mainpage.aspx?code=N1",
        id="aras",
    ),
    pytest.param("PPL", "CZ", "cs", "https://www.ppl.cz/vyhledat-zasilku?shipmentId=N1", id="ppl"),
    pytest.param(
        "Zásilkovna", "CZ", "cs", "https://tracking.packeta.com/cs/?id=N1", id="packeta-cs"
    ),
    pytest.param(
        "Packeta", "TR", "tr", "https://tracking.packeta.com/en/?id=N1", id="packeta-en-fallback"
    ),
    pytest.param(
        "Poczta Polska",
        "PL",
        "pl",
        "https://emonitoring.poczta-polska.pl/?numer=N1",
        id="poczta-polska",
    ),
    pytest.param(
        "Česká pošta",
        "CZ",
        "cs",
        "https://www.postaonline.cz/trackandtrace/-/zasilka/cislo?parcelNumbers=N1",
        id="ceska-posta",
    ),
]


@pytest.mark.parametrize(("courier", "country", "locale", "expected"), URLS)
def test_tracking_url_per_carrier(courier: str, country: str, locale: str, expected: str) -> None:
    assert tracking_url(courier, "N1", country=country, locale=locale) == expected


def test_every_carrier_has_an_https_template_with_the_number() -> None:
    expected = {
        "ups", "usps", "fedex", "dhl", "dhl_paket", "dpd", "dpd_pl", "dpd_uk", "gls", "inpost",
        "royal_mail", "yurtici", "aras", "ppl", "packeta", "poczta_polska", "ceska_posta",
    }  # fmt: skip
    assert set(CARRIERS) == expected
    for carrier in CARRIERS.values():
        for url in (carrier.url, *carrier.by_country.values()):
            assert url.startswith("https://") and "{number}" in url


ALIASES = [
    pytest.param("DHL Express", None, "dhl", id="dhl-express"),
    pytest.param("dhl", "US", "dhl", id="dhl-us"),
    pytest.param("DHL", "DE", "dhl_paket", id="dhl-in-germany-is-paket"),
    pytest.param("Zásilkovna", None, "packeta", id="zasilkovna"),
    pytest.param("Yurtiçi Kargo", None, "yurtici", id="yurtici-accents"),
    pytest.param("YURTİÇİ KARGO", None, "yurtici", id="yurtici-turkish-capitals"),
    pytest.param("DPD", "PL", "dpd_pl", id="dpd-pl-by-country"),
    pytest.param("DPD", "gb", "dpd_uk", id="dpd-gb-by-country"),
    pytest.param("DPD", "DE", "dpd", id="dpd-de"),
    pytest.param("DPD Polska", "DE", "dpd_pl", id="dpd-polska-anywhere"),
    pytest.param("Royal-Mail", None, "royal_mail", id="punctuation"),
    pytest.param("  in post ", None, "inpost", id="spaces"),
    pytest.param("Česká pošta", None, "ceska_posta", id="ceska-posta"),
    pytest.param("Pigeon Express", None, None, id="unknown"),
    pytest.param("", None, None, id="empty"),
    pytest.param(None, None, None, id="none"),
]


@pytest.mark.parametrize(("name", "country", "expected"), ALIASES)
def test_carrier_id(name: str | None, country: str | None, expected: str | None) -> None:
    assert carrier_id(name, country) == expected


def test_normalise() -> None:
    assert normalise("DHL Express") == "dhlexpress"
    assert normalise("Zásilkovna") == "zasilkovna"
    assert normalise("Yurtiçi Kargo") == "yurticikargo"
    assert normalise("Poczta Polska (Pocztex)") == "pocztapolskapocztex"


def test_number_is_url_encoded() -> None:
    url = tracking_url("InPost", "AB 12/3?x=1&y#", country="PL")
    assert url == "https://inpost.pl/sledzenie-przesylek?number=AB%2012%2F3%3Fx%3D1%26y%23"


def test_number_is_stripped_and_required() -> None:
    assert tracking_url("InPost", "  123  ") == "https://inpost.pl/sledzenie-przesylek?number=123"
    assert tracking_url("InPost", "") is None
    assert tracking_url("InPost", None) is None
    assert tracking_url(None, "123") is None


def test_unknown_courier_gives_none() -> None:
    assert tracking_url("Pigeon Express", "123", country="PL") is None


@pytest.mark.parametrize(
    ("platform_url", "expected"),
    [
        pytest.param("https://shop.example/track/1", "https://shop.example/track/1", id="https"),
        pytest.param("HTTP://shop.example/t", "HTTP://shop.example/t", id="http-upper"),
        pytest.param(" https://shop.example/t ", "https://shop.example/t", id="stripped"),
        pytest.param(
            "javascript:alert(1)", "https://inpost.pl/sledzenie-przesylek?number=9", id="js"
        ),
        pytest.param(
            "ftp://example.com/x", "https://inpost.pl/sledzenie-przesylek?number=9", id="ftp"
        ),
        pytest.param("https://a b/c", "https://inpost.pl/sledzenie-przesylek?number=9", id="space"),
        pytest.param("", "https://inpost.pl/sledzenie-przesylek?number=9", id="empty"),
    ],
)
def test_platform_url_preferred_when_http(platform_url: str, expected: str) -> None:
    assert tracking_url("InPost", "9", country="PL", platform_url=platform_url) == expected


def test_platform_url_without_courier_or_number() -> None:
    assert tracking_url(None, None, platform_url="https://x.example/t") == "https://x.example/t"


def test_shop_override_by_carrier_id_or_name() -> None:
    overrides = {"aras": "https://kargotakip.araskargo.com.tr/?gonderitakipno={number}"}
    assert (
        tracking_url("Aras Kargo", "7 7", country="TR", overrides=overrides)
        == "https://kargotakip.araskargo.com.tr/?gonderitakipno=7%207"
    )
    own = {"Pigeon Express": "https://pigeon.example/{lang}/{number}"}
    assert (
        tracking_url("pigeon express", "1", locale="pl", overrides=own)
        == "https://pigeon.example/pl/1"
    )


def test_override_must_be_http_and_cannot_reach_attributes() -> None:
    bad = {"inpost": "javascript:{number}"}
    assert tracking_url("InPost", "1", overrides=bad) == (
        "https://inpost.pl/sledzenie-przesylek?number=1"
    )
    sneaky = {"inpost": "https://x.example/{number.__class__}/{number}"}
    assert tracking_url("InPost", "1", overrides=sneaky) == (
        "https://x.example/{number.__class__}/1"
    )


@pytest.mark.parametrize(
    ("locale", "country", "expected"),
    [
        pytest.param("de", "AT", "de_AT", id="lang-official-in-country"),
        pytest.param("pl", "DE", "pl_PL", id="lang-likely-territory"),
        pytest.param("en", "CZ", "en_US", id="lang-not-official-in-country"),
        pytest.param("de-AT", "DE", "de_AT", id="explicit-territory"),
        pytest.param("en_GB", None, "en_GB", id="underscore"),
        pytest.param("", None, "en_US", id="empty"),
        pytest.param("!!", "DE", "en_US", id="garbage"),
    ],
)
def test_locale_placeholder(locale: str, country: str | None, expected: str) -> None:
    url = tracking_url("DPD", "1", country=country, locale=locale)
    assert url == f"https://tracking.dpd.de/status/{expected}/parcel/1"
