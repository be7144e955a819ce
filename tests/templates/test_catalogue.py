"""The variable catalogue and the contexts built from orders."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from orderbell.domain.model import Channel, CustomerInfo, OrderSnapshot, Shop, TemplateKind
from orderbell.templates.catalogue import (
    Variable,
    available,
    build_context,
    sample_context,
    variables,
)
from orderbell.templates.sandbox import Renderer, TemplateSource
from orderbell.templates.validation import validate

ORDER_VARS = {
    "customer_name", "customer_first_name", "shop_name", "order_code", "order_total",
    "payment_method", "product_name", "courier", "tracking_number", "tracking_url",
    "estimated_delivery", "preparation_time", "status",
}  # fmt: skip
CAMPAIGN_VARS = {"promotion_name", "promo_code", "customer_name", "shop_name", "unsubscribe_url"}
SHIPPING = {"courier", "tracking_number", "tracking_url"}

JAGATIQ = Shop(
    id=7,
    name="Jagatiq Bistro",
    slug="jagatiq",
    timezone="Europe/Warsaw",
    country="PL",
    locale="pl",
    currency="PLN",
)
US_SHOP = Shop(id=8, name="Gadget Barn", slug="barn", timezone="America/New_York")


def test_catalogue_names() -> None:
    assert set(variables(TemplateKind.ORDER)) == ORDER_VARS
    assert set(variables(TemplateKind.CAMPAIGN)) == CAMPAIGN_VARS
    for kind in TemplateKind:
        for name, var in variables(kind).items():
            assert isinstance(var, Variable) and var.name == name
            assert var.description and var.example


def test_variables_are_frozen() -> None:
    var = variables(TemplateKind.ORDER)["courier"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        var.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        variables(TemplateKind.ORDER)["x"] = var  # type: ignore[index]


@pytest.mark.parametrize(
    ("event", "has_shipping"),
    [
        pytest.param("order.created", False, id="created"),
        pytest.param("order.shipped", True, id="shipped"),
        pytest.param("order.delivered", True, id="delivered"),
        pytest.param("order.status_changed", True, id="status-changed"),
        pytest.param("custom.picked_up", True, id="custom"),
        pytest.param("custom.", False, id="bare-custom-prefix"),
        pytest.param(None, True, id="any-event"),
    ],
)
def test_available(event: str | None, has_shipping: bool) -> None:
    names = available(TemplateKind.ORDER, event)
    assert names >= SHIPPING if has_shipping else not names & SHIPPING
    assert names >= ORDER_VARS - SHIPPING


def _jagatiq_order(**changes: object) -> OrderSnapshot:
    base = OrderSnapshot(
        code="JG-1042",
        status="preparing",
        total=Decimal("129.90"),
        currency="PLN",
        payment_method="karta",
        estimated_delivery=datetime(2025, 3, 12, 13, 30, tzinfo=UTC),
        preparation_minutes=30,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_jagatiq_context_in_polish() -> None:
    ctx = build_context(
        TemplateKind.ORDER,
        shop=JAGATIQ,
        order=_jagatiq_order(),
        customer=CustomerInfo(name="Anna Kowalska"),
    )
    assert ctx["order_total"] == "129,90 zł"
    assert ctx["preparation_time"] == "30 min"
    assert ctx["estimated_delivery"] == "12 mar 2025, 14:30"  # 13:30 UTC is 14:30 in Warsaw
    assert ctx["customer_first_name"] == "Anna"
    assert ctx["courier"] == ctx["tracking_number"] == ctx["tracking_url"] == ""


def test_us_context_in_english() -> None:
    order = OrderSnapshot(
        code="1001",
        total=Decimal("409.94"),
        estimated_delivery=datetime(2025, 7, 4, 18, 0, tzinfo=UTC),
        preparation_minutes=90,
    )
    ctx = build_context(TemplateKind.ORDER, shop=US_SHOP, order=order, customer=CustomerInfo())
    assert ctx["order_total"] == "$409.94"
    assert ctx["estimated_delivery"] == "Jul 4, 2025, 2:00 PM"
    assert ctx["preparation_time"] == "1 hr 30 min"
    assert ctx["customer_name"] == ctx["customer_first_name"] == ""


def test_values_are_plain_json_strings_without_no_break_spaces() -> None:
    ctx = build_context(
        TemplateKind.ORDER,
        shop=JAGATIQ,
        order=_jagatiq_order(total=Decimal("1234567.5")),
        customer=CustomerInfo(name="Jan"),
    )
    assert set(ctx) == ORDER_VARS
    assert all(type(v) is str for v in ctx.values())
    assert json.loads(json.dumps(ctx)) == ctx
    assert "\u00a0" not in ctx["order_total"] and "\u202f" not in ctx["order_total"]
    assert ctx["order_total"] == "1 234 567,50 zł"


def test_missing_order_gives_empty_strings() -> None:
    ctx = build_context(TemplateKind.ORDER, shop=JAGATIQ, order=None, customer=CustomerInfo())
    assert ctx["shop_name"] == "Jagatiq Bistro"
    assert all(ctx[name] == "" for name in ORDER_VARS - {"shop_name"})


@pytest.mark.parametrize(
    ("locale", "shop_locale", "expected"),
    [
        pytest.param("en", "pl", "PLN129.90", id="explicit-locale"),
        pytest.param("en-GB", "pl", "PLN129.90", id="dash-locale"),
        pytest.param("xx_YY_bogus", "pl", "129,90 zł", id="bad-locale-uses-shop"),
        pytest.param("!!", "also bad", "PLN129.90", id="both-bad-use-en"),
        pytest.param(None, "pl", "129,90 zł", id="none-uses-shop"),
    ],
)
def test_locale_fallbacks(locale: str | None, shop_locale: str, expected: str) -> None:
    shop = dataclasses.replace(JAGATIQ, locale=shop_locale)
    ctx = build_context(
        TemplateKind.ORDER,
        shop=shop,
        order=_jagatiq_order(),
        customer=CustomerInfo(),
        locale=locale,
    )
    assert ctx["order_total"] == expected


def test_bad_timezone_falls_back_to_utc() -> None:
    shop = dataclasses.replace(JAGATIQ, timezone="Mars/Olympus")
    ctx = build_context(
        TemplateKind.ORDER, shop=shop, order=_jagatiq_order(), customer=CustomerInfo()
    )
    assert ctx["estimated_delivery"] == "12 mar 2025, 13:30"


def test_order_currency_wins_over_shop_currency() -> None:
    ctx = build_context(
        TemplateKind.ORDER,
        shop=JAGATIQ,
        order=_jagatiq_order(currency="EUR", total=Decimal("10")),
        customer=CustomerInfo(),
        locale="en",
    )
    assert ctx["order_total"] == "€10.00"


def test_tracking_url_argument_and_platform_fallback() -> None:
    order = _jagatiq_order(courier="InPost", tracking_number="68", tracking_url="javascript:x")
    given = "https://inpost.pl/sledzenie-przesylek?number=68"
    ctx = build_context(
        TemplateKind.ORDER, shop=JAGATIQ, order=order, customer=CustomerInfo(), tracking_url=given
    )
    assert ctx["tracking_url"] == given
    ctx = build_context(TemplateKind.ORDER, shop=JAGATIQ, order=order, customer=CustomerInfo())
    assert ctx["tracking_url"] == ""  # a non-http platform URL is never passed on
    order = dataclasses.replace(order, tracking_url="https://shop.example/t/68")
    ctx = build_context(TemplateKind.ORDER, shop=JAGATIQ, order=order, customer=CustomerInfo())
    assert ctx["tracking_url"] == "https://shop.example/t/68"


def test_extra_fills_known_variables_only() -> None:
    ctx = build_context(
        TemplateKind.CAMPAIGN,
        shop=JAGATIQ,
        order=None,
        customer=CustomerInfo(name="Ewa"),
        extra={"promo_code": "WIOSNA", "self": "x", "__class__": "y"},
    )
    assert ctx == {
        "promotion_name": "",
        "promo_code": "WIOSNA",
        "customer_name": "Ewa",
        "shop_name": "Jagatiq Bistro",
        "unsubscribe_url": "",
    }


def test_customer_data_stays_data() -> None:
    name = "{{ shop_name }} {% for x in y %}"
    ctx = build_context(
        TemplateKind.ORDER, shop=JAGATIQ, order=None, customer=CustomerInfo(name=name)
    )
    source = TemplateSource(Channel.SMS, TemplateKind.ORDER, "Hi {{ customer_name }}")
    assert Renderer().render(1, source, ctx).text == "Hi " + name


@pytest.mark.parametrize("kind", list(TemplateKind))
@pytest.mark.parametrize("shop", [JAGATIQ, US_SHOP], ids=["pl", "us"])
def test_sample_context_fills_every_variable(kind: TemplateKind, shop: Shop) -> None:
    ctx = sample_context(kind, shop)
    assert set(ctx) == set(variables(kind))
    assert all(isinstance(v, str) and v for v in ctx.values())
    body = " ".join("{{ " + name + " }}" for name in ctx)
    source = TemplateSource(Channel.SMS, kind, body)
    validate(source)
    assert Renderer().render(("sample", kind), source, ctx).text == " ".join(ctx.values())


def test_sample_context_is_localised() -> None:
    ctx = sample_context(TemplateKind.ORDER, JAGATIQ)
    assert ctx["order_total"] == "129,90 zł"
    assert ctx["courier"] == "InPost"
    assert ctx["tracking_url"].startswith("https://inpost.pl/")
    assert sample_context(TemplateKind.ORDER, US_SHOP)["order_total"] == "$129.90"
