"""Render: our Renderer.render call against a bare, cached Jinja2 sandbox render of the same
template and context (ImmutableSandboxedEnvironment, Template.render)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bench.common import Figure, interleaved, median, rate
from orderbell.domain.model import Channel, CustomerInfo, OrderSnapshot, Shop, TemplateKind
from orderbell.engine.demo import TEMPLATES
from orderbell.templates.catalogue import build_context
from orderbell.templates.sandbox import Renderer, TemplateSource

#: The demo shop's "ships today" SMS, as a shop owner wrote it.
BODY = str(TEMPLATES["ships-today"]["body"])


def context() -> dict[str, Any]:
    """A message's full variable catalogue, built the way the planner builds it."""
    shop = Shop(
        id=1,
        name="Demo Shop",
        slug="demo",
        timezone="Europe/Istanbul",
        country="TR",
        locale="en",
        currency="TRY",
    )
    order = OrderSnapshot(
        code="1001", total=Decimal("249.90"), currency="TRY", payment_method="card"
    )
    customer = CustomerInfo(name="Ayşe Yılmaz", phone="+905321234567")
    return dict(build_context(TemplateKind.ORDER, shop=shop, order=order, customer=customer))


def render_figure(count: int = 50_000, runs: int = 5) -> Figure:
    """Renders per second, ours against the bare sandbox, `runs` interleaved repetitions."""
    data = context()
    source = TemplateSource(channel=Channel.SMS, kind=TemplateKind.ORDER, body=BODY)
    renderer = Renderer()
    key = (1, 1)  # (template id, version), as the dispatcher keys it
    bare = ImmutableSandboxedEnvironment(undefined=StrictUndefined).from_string(BODY)
    ours_text = renderer.render(key, source, data).text
    if ours_text != bare.render(data):
        raise RuntimeError("ours and the bare sandbox render different texts")

    def ours() -> int:
        for _ in range(count):
            renderer.render(key, source, data)
        return count

    def baseline() -> int:
        for _ in range(count):
            bare.render(data)
        return count

    base_runs, our_runs = interleaved(runs, lambda: rate(baseline), lambda: rate(ours))
    our, base = median(our_runs), median(base_runs)
    return Figure(
        name="render: Renderer.render vs bare cached sandbox",
        unit="renders/s",
        ours=our,
        baseline=base,
        target=">= 0.8x",
        passed=our / base >= 0.8,
        notes={
            "count": count,
            "ours_runs": our_runs,
            "baseline_runs": base_runs,
            "template_chars": len(BODY),
            "context_variables": len(data),
            "rendered_chars": len(ours_text),
        },
    )
