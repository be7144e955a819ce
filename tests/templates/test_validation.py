"""Template validation on save: syntax, variables, events, injection and blow-ups."""

from __future__ import annotations

import time

import pytest

from orderbell.domain.model import Channel, TemplateKind
from orderbell.errors import TemplateError
from orderbell.templates.catalogue import sample_context
from orderbell.templates.sandbox import Rendered, TemplateSource
from orderbell.templates.validation import render_preview, validate

STOCKMOUNT = (
    "Hello {{ customer_name }}, your order {{ order_code }} has been taken. Thank you for "
    "choosing our shop. Your order will be shipped today until 18:00. {{ shop_name }}"
)
JAGATIQ = (
    "{{ shop_name }}: zamówienie {{ order_code }} ({{ order_total }}) będzie gotowe za "
    "{{ preparation_time }}. Dostawa: {{ estimated_delivery }}."
)


def sms(body: str, kind: TemplateKind = TemplateKind.ORDER) -> TemplateSource:
    return TemplateSource(Channel.SMS, kind, body)


def email(
    body: str = "Hi {{ customer_name }}",
    subject: str | None = "Order {{ order_code }}",
    html: str | None = None,
) -> TemplateSource:
    return TemplateSource(Channel.EMAIL, TemplateKind.ORDER, body, subject=subject, html=html)


def test_valid_templates_return_their_variables() -> None:
    assert validate(sms(STOCKMOUNT)) == {"customer_name", "order_code", "shop_name"}
    assert validate(sms(JAGATIQ), event_types=["order.created"]) == {
        "shop_name",
        "order_code",
        "order_total",
        "preparation_time",
        "estimated_delivery",
    }
    source = email(html="<p>{{ customer_first_name|default('there', true) }}</p>")
    assert validate(source) == {"customer_name", "order_code", "customer_first_name"}
    campaign = sms("{{ promotion_name }}: {{ promo_code }}", TemplateKind.CAMPAIGN)
    assert validate(campaign) == {"promotion_name", "promo_code"}


def test_allowed_constructs() -> None:
    body = (
        "{% if status in ('shipped', 'delivered') and order_total %}\n"
        "{{ customer_name|title|truncate(20) }} {{ order_code|length > 3 }}\n"
        "{% elif not status %}-{% else %}{{ status|e }}{% endif %}\n"
        "{% for c in order_code if c != '-' %}{% for d in c %}{{ d }}{% endfor %}{% endfor %}\n"
        "{{ 'x' * 3 ~ 2 ** 8 }} {{ 7 % 2 }} {{ status is string }}{# a comment #}"
    )
    assert validate(sms(body)) == {"status", "order_total", "customer_name", "order_code"}


BAD = [
    pytest.param(sms("{{ ''.__class__.__mro__ }}"), "body", "attribute access", id="mro"),
    pytest.param(
        sms("{{ cycler.__init__.__globals__ }}"), "body", "attribute access", id="globals"
    ),
    pytest.param(sms("{{ customer_name|attr('format') }}"), "body", "'attr'", id="attr-format"),
    pytest.param(sms("{{ customer_name.__class__ }}"), "body", "attribute", id="var-attribute"),
    pytest.param(sms("{{ customer_name.upper() }}"), "body", "calling", id="method"),
    pytest.param(sms("{{ customer_name[0] }}"), "body", "item access", id="item"),
    pytest.param(sms("{{ customer_name[1:] }}"), "body", "item access", id="slice"),
    pytest.param(sms("{{ 'A' * 10**9 }}"), "body", "too large", id="string-blowup"),
    pytest.param(sms("{{ 'A' * 100000 }}"), "body", "too large", id="string-repeat"),
    pytest.param(sms("{{ 'AB' * (99999 + 1) }}"), "body", "too large", id="sum-repeat"),
    pytest.param(sms("{{ 9 ** 9 ** 9 }}"), "body", "too large", id="power-tower"),
    pytest.param(sms("{{ -10 ** 99 }}"), "body", "too large", id="negative-power"),
    pytest.param(sms("{{ '%0999999999d' % 1 }}"), "body", "% is not allowed", id="percent"),
    pytest.param(
        sms("{% for a in range(10**6) %}{% for b in range(10**6) %}x{% endfor %}{% endfor %}"),
        "body",
        "'range' is not allowed",
        id="nested-range",
    ),
    pytest.param(sms("{{ range }}"), "body", "'range' is not allowed", id="range-name"),
    pytest.param(sms("{{ lipsum(1000) }}"), "body", "'lipsum' is not allowed", id="lipsum"),
    pytest.param(sms("{{ namespace }}"), "body", "'namespace' is not allowed", id="namespace"),
    pytest.param(
        sms(
            "{% for a in order_code %}{% for b in order_code %}{% for c in order_code %}"
            "{% endfor %}{% endfor %}{% endfor %}"
        ),
        "body",
        "nested deeper than 2",
        id="loops-3-deep",
    ),
    pytest.param(
        sms("{% for a in order_code recursive %}{{ loop(a) }}{% endfor %}"),
        "body",
        "recursive",
        id="recursive-loop",
    ),
    pytest.param(sms("{% set x = 1 %}{{ x }}"), "body", "{% set %}", id="set"),
    pytest.param(sms("{% with x = 1 %}{% endwith %}"), "body", "{% with %}", id="with"),
    pytest.param(
        sms("{% macro m(n) %}{{ m(n) }}{{ m(n) }}{% endmacro %}{{ m(1) }}"),
        "body",
        "{% macro %}",
        id="macro",
    ),
    pytest.param(sms("{% include 'x.txt' %}"), "body", "{% include %}", id="include"),
    pytest.param(sms("{% extends 'base' %}"), "body", "{% extends %}", id="extends"),
    pytest.param(sms("{% filter upper %}x{% endfilter %}"), "body", "{% filter %}", id="filter"),
    pytest.param(
        sms("{% autoescape false %}x{% endautoescape %}"), "body", "autoescape", id="autoescape"
    ),
    pytest.param(sms("{{ customer_name|safe }}"), "body", "'safe'", id="safe-filter"),
    pytest.param(sms("{{ customer_name|format(1) }}"), "body", "'format'", id="format-filter"),
    pytest.param(sms("{{ {'a': 1} }}"), "body", "dict", id="dict"),
    pytest.param(sms("{{ customer_name is foo }}"), "body", "unknown test", id="unknown-test"),
    pytest.param(sms("{{ status|join(*order_code) }}"), "body", "*args", id="dyn-args"),
    pytest.param(sms("Hi {{ customer_nme }}"), "body", "did you mean 'customer_name'", id="typo"),
    pytest.param(sms("{{ promo_code }}"), "body", "only available in campaign", id="other-kind"),
    pytest.param(sms("{{ qwerty }}"), "body", "unknown variable 'qwerty'", id="unknown-var"),
    pytest.param(sms("Hi {{ customer_name"), "body", "syntax error", id="syntax"),
    pytest.param(sms("{% if x %}"), "body", "syntax error", id="unclosed-if"),
    pytest.param(sms("x" * 10_001), "body", "too long", id="body-too-long"),
    pytest.param(sms("a\x00b"), "body", "NUL", id="nul-body"),
    pytest.param(sms("a\ud800b"), "body", "surrogate", id="surrogate-body"),
    pytest.param(email(subject="Hi\x00"), "subject", "NUL", id="nul-subject"),
    pytest.param(email(html="<p>\udfff</p>"), "html", "surrogate", id="surrogate-html"),
    pytest.param(email(html="{{ ''.__class__ }}"), "html", "attribute", id="html-injection"),
    pytest.param(email(subject="{{ x }"), "subject", "syntax error", id="subject-syntax"),
    pytest.param(email(subject="Hi\r\nBcc: x@example.com"), "subject", "single line", id="crlf"),
    pytest.param(
        TemplateSource(Channel.SMS, TemplateKind.ORDER, "x", subject="s"),
        "subject",
        "SMS templates have no subject",
        id="sms-subject",
    ),
    pytest.param(
        TemplateSource(Channel.SMS, TemplateKind.ORDER, "x", html="<p>x</p>"),
        "html",
        "SMS templates have no html",
        id="sms-html",
    ),
    pytest.param(email(subject=None), "subject", "need a subject", id="email-no-subject"),
    pytest.param(email(subject="  "), "subject", "need a subject", id="email-blank-subject"),
    pytest.param(sms("  \n "), "body", "empty", id="empty-body"),
]


@pytest.mark.parametrize(("source", "field", "reason"), BAD)
def test_bad_templates_are_rejected(source: TemplateSource, field: str, reason: str) -> None:
    with pytest.raises(TemplateError) as info:
        validate(source)
    assert info.value.field == field
    assert reason in info.value.message


def test_blowup_rejected_at_save_without_evaluating_it() -> None:
    started = time.monotonic()
    with pytest.raises(TemplateError, match="too large"):
        validate(sms("{{ 'A' * 10**9 }}"))
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    ("body", "line", "column"),
    [
        pytest.param("line one\nHi {{ customer_name", 2, 4, id="unclosed-print"),
        pytest.param("ok\n\n{{ x }", 3, 6, id="stray-brace"),
        pytest.param("a\n  {{ customer_nme }}", 2, 6, id="unknown-variable"),
        pytest.param("{{ order_code|attr('x') }}", 1, 15, id="filter"),
        pytest.param("\n{{ ''.__class__ }}", 2, 6, id="attribute"),
        pytest.param("ab\ncd\x00", 2, 3, id="nul"),
    ],
)
def test_errors_carry_line_and_column(body: str, line: int, column: int) -> None:
    with pytest.raises(TemplateError) as info:
        validate(sms(body))
    assert (info.value.line, info.value.column) == (line, column)
    assert info.value.as_dict()["error"]["line"] == line  # type: ignore[index]


def test_variables_must_be_available_at_the_trigger_events() -> None:
    source = sms("Track: {{ tracking_number }} {{ tracking_url }}")
    with pytest.raises(TemplateError) as info:
        validate(source, event_types=["order.created"])
    assert info.value.message == "tracking_number is not available at order.created"
    assert (info.value.field, info.value.line, info.value.column) == ("body", 1, 11)
    for events in (["order.shipped"], ["order.delivered", "custom.picked_up"], None, []):
        assert validate(source, event_types=events) == {"tracking_number", "tracking_url"}
    with pytest.raises(TemplateError, match=r"tracking_number is not available at order\.created"):
        validate(source, event_types=["order.shipped", "order.created"])


def test_availability_is_checked_in_every_part() -> None:
    source = email(body="Hi", subject="Shipped: {{ courier }}")
    with pytest.raises(TemplateError) as info:
        validate(source, event_types=iter(["order.created"]))
    assert info.value.field == "subject"
    assert "courier is not available at order.created" in info.value.message


def test_render_preview_validates_and_renders() -> None:
    from orderbell.domain.model import Shop

    shop = Shop(id=1, name="Jagatiq", slug="j", timezone="Europe/Warsaw", locale="pl")
    shop = Shop(**{**{f: getattr(shop, f) for f in shop.__slots__}, "currency": "PLN"})
    out = render_preview(sms(JAGATIQ), sample_context(TemplateKind.ORDER, shop))
    assert isinstance(out, Rendered)
    assert out.text.startswith("Jagatiq: zamówienie 1001 (129,90 zł) będzie gotowe za 30 min.")
    with pytest.raises(TemplateError, match="did you mean"):
        render_preview(sms("{{ order_cod }}"), {"order_code": "1"})
    with pytest.raises(TemplateError, match="undefined") as info:
        render_preview(sms("{{ order_code }}"), {})
    assert info.value.field == "body"


def test_demo_templates_are_valid() -> None:
    demo = pytest.importorskip("orderbell.engine.demo", exc_type=ImportError)
    for spec in demo.TEMPLATES.values():
        source = TemplateSource(
            Channel(spec["channel"]),
            TemplateKind(spec.get("kind", "order")),
            spec["body"],
            subject=spec.get("subject"),
            html=spec.get("html"),
        )
        assert validate(source)
