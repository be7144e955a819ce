"""Sandboxed rendering: output, escaping, caching and the runtime limits."""

from __future__ import annotations

import time
import timeit

import pytest

from orderbell.domain.model import Channel, TemplateKind
from orderbell.errors import TemplateError
from orderbell.templates.sandbox import (
    ALLOWED_FILTERS,
    HTML_ENV,
    MAX_LOOP_ITERATIONS,
    TEXT_ENV,
    Rendered,
    Renderer,
    TemplateSource,
    compile_source,
    safe_binop,
)

STOCKMOUNT = (
    "Hello {{ customer_name }}, your order {{ order_code }} has been taken. Thank you for "
    "choosing our shop. Your order will be shipped today until 18:00. {{ shop_name }}"
)
CTX = {
    "customer_name": "Ayşe Yılmaz",
    "customer_first_name": "Ayşe",
    "order_code": "SM-7781",
    "shop_name": "StockMount Demo",
    "order_total": "129,90 zł",
    "status": "shipped",
}


def sms(body: str) -> TemplateSource:
    return TemplateSource(Channel.SMS, TemplateKind.ORDER, body)


def email(
    body: str, subject: str = "Order {{ order_code }}", html: str | None = None
) -> TemplateSource:
    return TemplateSource(Channel.EMAIL, TemplateKind.ORDER, body, subject=subject, html=html)


def render(source: TemplateSource, ctx: dict[str, str] | None = None) -> Rendered:
    return Renderer().render("key", source, CTX if ctx is None else ctx)


def test_stockmount_text() -> None:
    out = render(sms(STOCKMOUNT))
    assert out == Rendered(
        "Hello Ayşe Yılmaz, your order SM-7781 has been taken. Thank you for choosing our shop. "
        "Your order will be shipped today until 18:00. StockMount Demo",
        None,
        None,
    )


def test_email_parts_and_html_escaping() -> None:
    ctx = {**CTX, "customer_name": "<script>alert(1)</script> & Co"}
    out = render(email("Hi {{ customer_name }}", html="<p>Hi {{ customer_name }}</p>"), ctx)
    assert out.subject == "Order SM-7781"
    assert out.text == "Hi <script>alert(1)</script> & Co"
    assert out.html == "<p>Hi &lt;script&gt;alert(1)&lt;/script&gt; &amp; Co</p>"


def test_context_values_are_never_rendered_as_templates() -> None:
    ctx = {**CTX, "customer_name": "{{ shop_name }}{% for a in b %}{{ ''.__class__ }}"}
    assert render(sms("{{ customer_name }}"), ctx).text == ctx["customer_name"]


def test_filters_and_blocks() -> None:
    body = (
        "{% if status == 'shipped' %}\n"
        "{{ customer_first_name|upper }} {{ shop_name|lower|replace('demo', 'shop') }}\n"
        "{% endif %}\n"
        "{{ missing_ok|default('-', true) }} {{ order_code|length }} {{ 'a-b'|join('.') }}"
    )
    ctx = {**CTX, "missing_ok": ""}
    assert render(sms(body), ctx).text == "AYŞE stockmount shop\n- 7 a.-.b"


def test_sandbox_has_no_globals_and_few_filters() -> None:
    for env in (TEXT_ENV, HTML_ENV):
        assert env.globals == {}
        assert set(env.filters) == ALLOWED_FILTERS | {"_loop_guard"}
    assert TEXT_ENV.autoescape is False and HTML_ENV.autoescape is True


def test_renderer_caches_by_key() -> None:
    renderer = Renderer()
    renderer.compile(("t", 1), sms("v1 {{ order_code }}"))
    # a cached key is rendered from the cache; the source is only used on a miss
    assert renderer.render(("t", 1), sms("ignored"), CTX).text == "v1 SM-7781"
    assert renderer.render(("t", 2), sms("v2 {{ order_code }}"), CTX).text == "v2 SM-7781"


def test_renderer_cache_is_bounded() -> None:
    renderer = Renderer(max_entries=2)
    for version in range(5):
        renderer.compile(("t", version), sms(f"v{version}"))
    assert renderer.render(("t", 4), sms("new"), CTX).text == "v4"
    assert renderer.render(("t", 0), sms("recompiled"), CTX).text == "recompiled"


def test_render_accepts_any_mapping() -> None:
    from types import MappingProxyType

    assert render(sms("{{ order_code }}"), MappingProxyType(CTX)).text == "SM-7781"  # type: ignore[arg-type]


RENDER_ERRORS = [
    pytest.param(sms("{{ missing }}"), "body", "undefined", id="undefined-variable"),
    pytest.param(sms("{{ 'A' * 10**9 }}"), "body", "too large", id="string-blowup"),
    pytest.param(sms("{{ 'A' * 100000 }}"), "body", "too large", id="string-repeat"),
    pytest.param(sms("{{ [1] * 100000 }}"), "body", "too large", id="list-repeat"),
    pytest.param(sms("{{ 10 ** 10 ** 10 }}"), "body", "too large", id="power-tower"),
    pytest.param(sms("{{ customer_name * 9999 }}"), "body", "too large", id="variable-repeat"),
    pytest.param(sms("{{ '%099999999d' % 1 }}"), "body", "not allowed", id="percent-format"),
    pytest.param(sms("{{ ''.__class__.__mro__ }}"), "body", "unsafe", id="mro"),
    pytest.param(sms("{{ order_code.format }}"), "body", "unsafe", id="str-format-attr"),
    pytest.param(sms("{{ cycler.__init__.__globals__ }}"), "body", "not allowed", id="globals"),
    pytest.param(sms("{{ lipsum() }}"), "body", "not allowed", id="lipsum"),
    pytest.param(sms("{{ range(3) }}"), "body", "not allowed", id="range"),
    pytest.param(sms("{{ order_code.format(1) }}"), "body", "not allowed", id="str-format-call"),
    pytest.param(sms("{{ order_code.upper() }}"), "body", "not allowed", id="method-call"),
    pytest.param(sms("{{ x|attr('format') }}"), "body", "attr", id="attr-filter"),
    pytest.param(sms("{{ x|format(1) }}"), "body", "format", id="format-filter"),
    pytest.param(sms("{% set a = 'x' %}"), "body", "not allowed", id="set"),
    pytest.param(sms("{% macro m() %}{% endmacro %}"), "body", "not allowed", id="macro"),
    pytest.param(sms("{% include 'x' %}"), "body", "not allowed", id="include"),
    pytest.param(sms("{{ x"), "body", "syntax error", id="syntax"),
    pytest.param(
        sms("{{ customer_name|replace('', customer_name * 900) }}"),
        "body",
        "too large",
        id="replace-blowup",
    ),
    pytest.param(
        sms("{{ (customer_name * 900)|join(customer_name * 900) }}"),
        "body",
        "too large",
        id="join-blowup",
    ),
    pytest.param(
        sms(
            "{% for a in customer_name * 900 %}{% for b in customer_name * 900 %}"
            "{% endfor %}{% endfor %}"
        ),
        "body",
        "loops ran too many times",
        id="loop-budget",
    ),
    pytest.param(
        sms("{% for a in customer_name * 900 %}{{ customer_name * 900 }}{% endfor %}"),
        "body",
        "rendered text is too long",
        id="loop-output-cap",
    ),
    pytest.param(sms("{{ 'x' * 9000 }}" * 3), "body", "rendered text is too long", id="output-cap"),
    pytest.param(email("x", subject="{{ missing }}"), "subject", "undefined", id="subject-error"),
    pytest.param(email("x", html="{{ 'A' * 10**9 }}"), "html", "too large", id="html-error"),
    pytest.param(email("x", subject="A\n{{ order_code }}"), "subject", "single line", id="subj-lf"),
    pytest.param(email("x", subject="{{ nl }}"), "subject", "single line", id="subject-crlf-value"),
]


@pytest.mark.parametrize(("source", "field", "reason"), RENDER_ERRORS)
def test_render_errors(source: TemplateSource, field: str, reason: str) -> None:
    ctx = {**CTX, "x": "x", "nl": "Hi\r\nBcc: evil@example.com"}
    started = time.monotonic()
    with pytest.raises(TemplateError) as info:
        render(source, ctx)
    assert info.value.field == field
    assert reason in info.value.message
    assert time.monotonic() - started < 2


def test_render_errors_carry_the_line() -> None:
    with pytest.raises(TemplateError) as info:
        render(sms("Hi\n\n{{ missing }}"))
    assert (info.value.field, info.value.line) == ("body", 3)
    assert "'missing' is undefined" in info.value.message


def test_process_survives_a_billion_character_blowup() -> None:
    """Never validated (e.g. an old stored row): the render is refused, quickly, at runtime."""
    started = time.monotonic()
    for _ in range(3):
        with pytest.raises(TemplateError, match="too large"):
            Renderer().render(1, sms("{{ 'A' * 10**9 }}"), CTX)
    assert time.monotonic() - started < 1


def test_loops_within_budget_work() -> None:
    body = "{% for c in customer_first_name %}[{{ c }}]{% else %}none{% endfor %}"
    assert render(sms(body)).text == "[A][y][ş][e]"
    ctx = {**CTX, "customer_first_name": "x" * (MAX_LOOP_ITERATIONS - 1)}
    assert render(sms("{% for c in customer_first_name %}{% endfor %}ok"), ctx).text == "ok"


def test_loop_budget_is_per_render() -> None:
    renderer = Renderer()
    source = sms("{% for c in customer_name * 400 %}{% endfor %}{{ order_code }}")
    for _ in range(5):  # 4,400 iterations each; the budget does not leak between renders
        assert renderer.render(1, source, CTX).text == "SM-7781"


@pytest.mark.parametrize(
    ("operator", "left", "right", "expected"),
    [
        pytest.param("*", "ab", 3, "ababab", id="repeat"),
        pytest.param("*", 3, "ab", "ababab", id="repeat-reversed"),
        pytest.param("*", 6, 7, 42, id="multiply"),
        pytest.param("**", 10, 6, 10**6, id="power-at-limit"),
        pytest.param("**", 2, -2, 0.25, id="negative-exponent"),
        pytest.param("**", 1, 10**9, 1, id="one-to-anything"),
        pytest.param("%", 7, 3, 1, id="modulo"),
    ],
)
def test_safe_binop_allows(operator: str, left: object, right: object, expected: object) -> None:
    assert safe_binop(operator, left, right) == expected


@pytest.mark.parametrize(
    ("operator", "left", "right"),
    [
        pytest.param("*", "a", 10_001, id="repeat"),
        pytest.param("**", 10, 7, id="power"),
        pytest.param("**", 2.0, 1e9, id="float-power"),
        pytest.param("*", 2**200, 2**200, id="big-multiply"),
        pytest.param("%", "%s", "x", id="string-format"),
    ],
)
def test_safe_binop_refuses(operator: str, left: object, right: object) -> None:
    from jinja2.exceptions import SecurityError

    with pytest.raises(SecurityError):
        safe_binop(operator, left, right)


def test_compile_source_renders_without_cache() -> None:
    compiled = compile_source(email("T {{ order_total }}", html="<b>{{ order_total }}</b>"))
    assert compiled.render(CTX) == Rendered("T 129,90 zł", "Order SM-7781", "<b>129,90 zł</b>")


def test_hot_path_is_not_slower_than_a_bare_sandboxed_render() -> None:
    template = TEXT_ENV.from_string(STOCKMOUNT)
    renderer = Renderer()
    source = sms(STOCKMOUNT)
    renderer.compile(42, source)
    assert renderer.render(42, source, CTX).text == template.render(**CTX)
    bare = min(timeit.repeat(lambda: template.render(**CTX), number=2000, repeat=5))
    ours = min(timeit.repeat(lambda: renderer.render(42, source, CTX), number=2000, repeat=5))
    assert bare / ours >= 0.8, (bare, ours)
