"""Our render call against a bare cached sandboxed Jinja2 render of the same template."""

from __future__ import annotations

from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bench.common import Figure, median_of, timed
from bench.pipeline import TEXT
from orderbell.domain.model import Channel, TemplateKind
from orderbell.templates.sandbox import Renderer, TemplateSource

CONTEXT = {"customer_name": "Ayşe Yılmaz", "order_code": "1001", "order_total": "₺249,90"}


def render_figure(count: int = 50_000, runs: int = 5) -> Figure:
    source = TemplateSource(channel=Channel.SMS, kind=TemplateKind.ORDER, body=TEXT)
    renderer = Renderer()
    renderer.render(("t", 1), source, CONTEXT)
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    bare = env.from_string(TEXT)
    assert renderer.render(("t", 1), source, CONTEXT).text == bare.render(CONTEXT)

    def ours() -> int:
        for _ in range(count):
            renderer.render(("t", 1), source, CONTEXT)
        return count

    def baseline() -> int:
        for _ in range(count):
            bare.render(CONTEXT)
        return count

    base, base_runs = median_of(runs, lambda: timed(baseline))
    our, our_runs = median_of(runs, lambda: timed(ours))
    return Figure(
        name="render calls/s vs bare cached sandboxed Jinja2",
        unit="renders/s",
        ours=our,
        baseline=base,
        target=">=0.8x",
        passed=our / base >= 0.8,
        notes={"ours_runs": our_runs, "bare_runs": base_runs},
    )
