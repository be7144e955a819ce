"""An SMS template's worst case against the shop's segment cap: variables at their catalogue
maximum, in characters their charset may carry, branches both ways — pure, no database."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from babel import Locale
from hypothesis import given, settings
from hypothesis import strategies as st

from orderbell.domain.model import Channel, CustomerInfo, OrderSnapshot, Shop, TemplateKind
from orderbell.domain.segments import GSM7, UCS2, analyse
from orderbell.domain.sms_text import Charset, decide
from orderbell.errors import TemplateError
from orderbell.templates import catalogue
from orderbell.templates.catalogue import variables
from orderbell.templates.sandbox import TemplateSource, compile_source
from orderbell.templates.worst_case import check_cap, worst_case


def sms(body: str, kind: TemplateKind = TemplateKind.ORDER) -> TemplateSource:
    return TemplateSource(channel=Channel.SMS, kind=kind, body=body)


def shop(*, transliterate: bool = False, cap: int | None = 10, name: str = "Flower Shop") -> Shop:
    return Shop(id=1, name=name, slug="s", sms_transliterate=transliterate, sms_max_segments=cap)


def test_every_variable_has_a_documented_bound() -> None:
    for kind in TemplateKind:
        for var in variables(kind).values():
            assert 1 <= var.max_length <= 300, var.name
            assert isinstance(var.charset, Charset)
    order = variables(TemplateKind.ORDER)
    bounds = {n: order[n].max_length for n in ("customer_name", "order_code", "tracking_url")}
    assert bounds == {"customer_name": 100, "order_code": 64, "tracking_url": 300}


@pytest.mark.parametrize("locale", ["pl", "cs", "sk", "tr", "pt_BR", "en", "de"])
def test_formatted_values_stay_within_their_bounds(locale: str) -> None:
    order = variables(TemplateKind.ORDER)
    loc, zone = Locale.parse(locale), ZoneInfo("Europe/Warsaw")
    totals = [
        catalogue.format_money(Decimal("999999999999.99"), currency, loc)
        for currency in ("PLN", "CZK", "EUR", "TRY", "BRL", "USD", "GBP")
    ]
    dates = [
        catalogue.format_local(datetime(2026, month, 28, 23, 59, tzinfo=UTC), zone, loc)
        for month in range(1, 13)
    ]
    assert max(map(len, totals)) <= order["order_total"].max_length
    assert max(map(len, dates)) <= order["estimated_delivery"].max_length
    longest_wait = catalogue.format_minutes(100_000, loc)  # the API's limit
    assert len(longest_wait) <= order["preparation_time"].max_length


def test_product_name_comes_from_the_event_data() -> None:
    context = catalogue.build_context(
        TemplateKind.ORDER,
        shop=shop(),
        order=OrderSnapshot(code="1"),
        customer=CustomerInfo(),
        extra={"product_name": "Bukiet 21 róż"},
    )
    assert context["product_name"] == "Bukiet 21 róż"


WORST = [
    # name (LATIN, 100): Unicode unless transliterated, which covers it
    pytest.param("Hi {{ customer_name }}", False, UCS2, 103, 2, id="name-off"),
    pytest.param("Hi {{ customer_name }}", True, GSM7, 103, 1, id="name-on"),
    # links and codes (GSM): never force Unicode
    pytest.param("Track: {{ tracking_url }}", False, GSM7, 307, 3, id="url"),
    pytest.param("{{ order_code }}", False, GSM7, 64, 1, id="code"),
    # free text that may be any script (ANY): Unicode even when transliterated
    pytest.param("{{ product_name }}", True, UCS2, 100, 2, id="product-any-script"),
    # a static letter outside GSM-7 makes the whole text Unicode ...
    pytest.param("Teşekkürler: {{ tracking_url }}", False, UCS2, 313, 5, id="static-turkish"),
    # ... unless transliteration spells it
    pytest.param("Sipariş {{ tracking_url }}", True, GSM7, 308, 3, id="static-turkish-on"),
    # the shop's name is known: counted as it is (ó is not GSM-7)
    pytest.param("{{ shop_name }}", False, GSM7, 11, 1, id="shop-name-as-is"),
    # filters count as they render
    pytest.param("Hi {{ customer_name | truncate(20) }}", True, GSM7, 23, 1, id="truncated"),
    pytest.param("{{ customer_name | upper }}", True, GSM7, 100, 1, id="upper"),
    # the empty render takes the else-branch
    pytest.param(
        "{% if courier %}Sent.{% else %}" + "Not shipped yet, sorry. " * 8 + "{% endif %}",
        False,
        GSM7,
        192,
        2,
        id="else-branch-longer",
    ),
    pytest.param(
        "{% if courier %}With {{ courier }}: {{ tracking_url }}{% else %}Soon.{% endif %}",
        True,
        GSM7,
        357,
        3,
        id="if-branch-longer",
    ),
]


@pytest.mark.parametrize(("body", "on", "encoding", "units", "segments"), WORST)
def test_worst_case(body: str, on: bool, encoding: str, units: int, segments: int) -> None:
    worst = worst_case(sms(body), shop(transliterate=on))
    assert worst is not None
    assert (worst.info.encoding, worst.info.units, worst.segments) == (encoding, units, segments)


def test_the_shops_real_name_counts() -> None:
    worst = worst_case(sms("{{ shop_name }}"), shop(name="Kwiaciarnia Róża"))
    assert worst is not None and worst.text == "Kwiaciarnia Róża"
    assert worst.info.encoding == UCS2


def test_arithmetic_on_a_stand_in_is_left_to_the_send_time_check() -> None:
    worst = worst_case(sms("{{ order_code - 1 }}"), shop())
    assert worst is None


CAP_CASES = [
    pytest.param("Hi {{ customer_name }}", 1, False, "2 SMS segments (UCS-2", id="name-over-1"),
    pytest.param(
        "Teşekkürler: {{ tracking_url }}", 4, False, "5 SMS segments (UCS-2, 313", id="turkish-url"
    ),
    pytest.param(
        "{% for c in tracking_url %}{{ tracking_url }}{% endfor %}",
        10,
        False,
        "passes 20000 characters",
        id="loop-blow-up",
    ),
]


@pytest.mark.parametrize(("body", "cap", "on", "message"), CAP_CASES)
def test_check_cap_refuses_a_template_over_the_cap(
    body: str, cap: int, on: bool, message: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        check_cap(sms(body), shop(cap=cap, transliterate=on))
    assert caught.value.field == "body"
    assert message in caught.value.message
    assert f"cap of {cap}" in caught.value.message


FITS = [
    pytest.param("Hi {{ customer_name }}", 1, True, id="transliteration-covers-the-name"),
    pytest.param("Teşekkürler: {{ tracking_url }}", None, False, id="no-cap"),
    pytest.param("Teşekkürler: {{ tracking_url }}", 5, False, id="at-the-cap"),
]


@pytest.mark.parametrize(("body", "cap", "on"), FITS)
def test_check_cap_lets_a_fitting_template_through(body: str, cap: int | None, on: bool) -> None:
    check_cap(sms(body), shop(cap=cap, transliterate=on))


def test_email_templates_have_no_segment_cap() -> None:
    source = TemplateSource(
        channel=Channel.EMAIL,
        kind=TemplateKind.ORDER,
        body="{{ tracking_url }}" * 20,
        subject="Order {{ order_code }}",
    )
    check_cap(source, shop(cap=1))


def _value(charset: Charset, length: int) -> st.SearchStrategy[str]:
    # characters that cost one unit, as the stand-ins do (emoji and GSM-7's € ~ { } cost two)
    alphabet = {
        Charset.GSM: "abcXYZ019-/.:?=&_",
        Charset.LATIN: "abc ąęłśżčřšğışçãõÓ",
        Charset.ANY: "abc ąęłжшфΩ日本",
    }[charset]
    return st.text(alphabet=alphabet, max_size=length)


BODY = (
    "Dzień dobry {{ customer_name }}! {{ product_name }} z zamówienia {{ order_code }} "
    "({{ order_total }}) jedzie z {{ courier }}: {{ tracking_url }} {{ tracking_number }}"
)


@settings(max_examples=60, deadline=None)
@given(st.data(), st.booleans())
def test_no_real_values_within_the_bounds_cost_more_than_the_worst_case(
    data: st.DataObject, on: bool
) -> None:
    the_shop = shop(transliterate=on, cap=None)
    known = variables(TemplateKind.ORDER)
    context = {n: data.draw(_value(v.charset, v.max_length), label=n) for n, v in known.items()}
    context["shop_name"] = the_shop.name
    real = decide(the_shop, compile_source(sms(BODY)).render(context).text)
    worst = worst_case(sms(BODY), the_shop)
    assert worst is not None
    assert real.segments <= worst.segments
    assert analyse(real.text).units <= worst.info.units
