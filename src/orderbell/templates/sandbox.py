"""Sandboxed rendering of shop-written templates.

Shop owners write the templates, so they run in an immutable Jinja sandbox with no globals,
a short list of filters, no attribute or item access, no calls, capped ``*``/``**``/``%``,
a loop budget and a cap on the rendered length. Context values are data: they are passed
to the template and never rendered as templates themselves.
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, nodes, pass_context
from jinja2 import filters as jinja_filters
from jinja2.environment import Template
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import TemplateError as JinjaError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup, escape

from orderbell.domain.model import Channel, TemplateKind
from orderbell.errors import TemplateError

MAX_STRING = 10_000  #: longest text one expression or filter may produce
MAX_NUMBER = 10**6  #: largest result of ``**``
MAX_LOOP_DEPTH = 2
MAX_LOOP_ITERATIONS = 10_000  #: all loops of one render together
MAX_RENDER_SECONDS = 0.5  #: checked while loops run
MAX_OUTPUT = {"body": 20_000, "subject": 1_000, "html": 200_000}  #: rendered characters
ALLOWED_FILTERS = frozenset(
    {"default", "upper", "lower", "title", "capitalize", "trim", "truncate"}
    | {"replace", "length", "join", "e", "escape"}
)
FORBIDDEN_NAMES = frozenset(
    {"range", "lipsum", "cycler", "joiner", "namespace", "dict", "self", "caller"}
    | {"varargs", "kwargs", "loop"}
)
_LOOP_BUDGET = "_orderbell_loop_budget"
#: Statements that could grow output or time beyond the runtime limits (or load files).
UNSAFE_STATEMENTS = (
    nodes.Macro, nodes.CallBlock, nodes.Assign, nodes.AssignBlock, nodes.With, nodes.Include,
    nodes.Import, nodes.FromImport, nodes.Extends, nodes.Block, nodes.FilterBlock,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TemplateSource:
    """The parts of a template as the shop wrote them."""

    channel: Channel
    kind: TemplateKind
    body: str
    subject: str | None = None
    html: str | None = None


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered message."""

    text: str
    subject: str | None
    html: str | None


def source_parts(source: TemplateSource) -> list[tuple[str, str]]:
    """The non-empty parts of a template as (field, text): body, subject, html."""
    parts = [("body", source.body)]
    if source.subject:
        parts.append(("subject", source.subject))
    if source.html:
        parts.append(("html", source.html))
    return parts


# --- resource limits ------------------------------------------------------------------------


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(base, int | float) and isinstance(exponent, int | float):
        size = abs(base)
        if size not in (0, 1) and exponent * math.log10(size) > math.log10(MAX_NUMBER):
            raise SecurityError(f"the number is too large (the limit is {MAX_NUMBER})")


def _bits(left: int, right: int) -> int:
    return left.bit_length() + right.bit_length()


def safe_binop(operator: str, left: Any, right: Any) -> Any:
    """Apply ``*``, ``**`` or ``%`` unless the result would be too large."""
    if operator == "*":
        for seq, count in ((left, right), (right, left)):
            sized = isinstance(seq, str | list | tuple) and isinstance(count, int)
            if sized and len(seq) * count > MAX_STRING:
                raise SecurityError(
                    f"the repeated text is too large ({len(seq) * count} characters; "
                    f"the limit is {MAX_STRING})"
                )
        if isinstance(left, int) and isinstance(right, int) and _bits(left, right) > 256:
            raise SecurityError("the number is too large")
        return left * right
    if operator == "**":
        _check_power(left, right)
        return left**right
    if operator == "%":
        if isinstance(left, str):
            raise SecurityError("string formatting with % is not allowed")
        return left % right
    raise SecurityError(f"the operator {operator} is not allowed")


def _capped(func: Callable[..., Any]) -> Callable[..., Any]:
    """A filter whose text result may not exceed MAX_STRING (keeps Jinja's pass_* marker)."""

    @functools.wraps(func)
    def capped(*args: Any, **kwargs: Any) -> Any:
        result = func(*args, **kwargs)
        if isinstance(result, str) and len(result) > MAX_STRING:
            raise SecurityError(f"the text is too large (the limit is {MAX_STRING} characters)")
        return result

    return capped


def _replace(value: Any, old: str, new: str, count: int | None = None) -> str:
    text = value if isinstance(value, str) else str(value)
    old, new = str(old), str(new)
    hits = len(text) + 1 if not old else text.count(old)
    if count is not None:
        hits = min(hits, max(int(count), 0))
    if len(text) + hits * (len(new) - len(old)) > MAX_STRING:
        raise SecurityError(f"the text is too large (the limit is {MAX_STRING} characters)")
    return text.replace(old, new, -1 if count is None else int(count))


def _join(value: Iterable[Any], separator: str = "") -> str:
    items = [i if isinstance(i, str) else str(i) for i in value]
    if sum(map(len, items)) + len(separator) * max(len(items) - 1, 0) > MAX_STRING:
        raise SecurityError(f"the text is too large (the limit is {MAX_STRING} characters)")
    if isinstance(separator, Markup) or any(isinstance(i, Markup) for i in items):
        return escape(separator).join(items)
    return str(separator).join(items)


@pass_context
def _loop_guard(context: Context, iterable: Any) -> Iterator[Any]:
    """Wraps every loop's iterable: all loops of a render share one budget and deadline."""
    budget = context.__dict__.get(_LOOP_BUDGET)
    if budget is None:
        budget = context.__dict__[_LOOP_BUDGET] = [0, time.monotonic() + MAX_RENDER_SECONDS]
    return _guarded(iterable, budget)


def _guarded(iterable: Any, budget: list[Any]) -> Iterator[Any]:
    for item in iterable:
        budget[0] += 1
        if budget[0] > MAX_LOOP_ITERATIONS:
            raise SecurityError(f"loops ran too many times (the limit is {MAX_LOOP_ITERATIONS})")
        if budget[0] % 64 == 0 and time.monotonic() > budget[1]:
            raise SecurityError("rendering took too long")
        yield item


_FILTERS: dict[str, Callable[..., Any]] = {
    "default": jinja_filters.do_default,
    "upper": _capped(jinja_filters.do_upper),
    "lower": _capped(jinja_filters.do_lower),
    "title": _capped(jinja_filters.do_title),
    "capitalize": _capped(jinja_filters.do_capitalize),
    "trim": _capped(jinja_filters.do_trim),
    "truncate": _capped(jinja_filters.do_truncate),
    "replace": _replace,
    "length": len,
    "join": _join,
    "e": _capped(escape),
    "escape": _capped(escape),
    "_loop_guard": _loop_guard,  # added by compile_source; templates may not name it
}


class Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with no globals, few filters and capped operators."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(
            autoescape=autoescape,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self.globals.clear()
        self.filters = dict(_FILTERS)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        """No attribute of any object is reachable from a template."""
        return False

    def wrap_str_format(self, value: Any) -> None:
        """``str.format``/``format_map`` are not handed out, not even the sandboxed kind."""
        return None

    def is_safe_callable(self, obj: Any) -> bool:
        """Nothing is callable from a template (filters are not calls)."""
        return False

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """``*``, ``**`` and ``%`` with size limits."""
        return safe_binop(operator, left, right)


TEXT_ENV = Sandbox(autoescape=False)  #: SMS text, e-mail text and subjects
HTML_ENV = Sandbox(autoescape=True)  #: e-mail HTML parts


# --- parsing and compiling ---------------------------------------------------------------------


def column_of(text: str, line: int | None, needle: str | None) -> int | None:
    """The 1-based column of ``needle`` on a line of ``text``, or None."""
    lines = text.splitlines()
    if not needle or line is None or not 1 <= line <= len(lines):
        return None
    found = lines[line - 1].find(needle)
    return found + 1 if found >= 0 else None


def syntax_error(exc: TemplateSyntaxError, text: str, field: str) -> TemplateError:
    """A Jinja syntax error as our TemplateError, with line and a best-effort column."""
    message = exc.message or "syntax error"
    quoted = re.search(r"'([^']+)'", message)
    column = column_of(text, exc.lineno, quoted.group(1) if quoted else None)
    if column is None:  # point at the last tag opened on that line
        lines = text.splitlines() or [""]
        row = lines[min(max(exc.lineno, 1), len(lines)) - 1]
        start = max(row.rfind("{{"), row.rfind("{%"))
        column = start + 1 if start >= 0 else None
    return TemplateError(
        f"syntax error: {message}", field=field, line=exc.lineno or None, column=column
    )


def parse(field: str, text: str, *, html: bool = False) -> nodes.Template:
    """Parse one part; syntax errors become TemplateError with line and column."""
    try:
        return (HTML_ENV if html else TEXT_ENV).parse(text)
    except TemplateSyntaxError as exc:
        raise syntax_error(exc, text, field) from None
    except RecursionError:
        raise TemplateError("the template is nested too deeply", field=field) from None


@dataclass(frozen=True, slots=True)
class CompiledPart:
    """One compiled part of a template."""

    field: str
    template: Template
    streaming: bool  #: has loops: count the output while it is produced
    limit: int


def _compile_part(field: str, text: str) -> CompiledPart:
    html = field == "html"
    tree = parse(field, text, html=html)
    try:
        for bad in tree.find_all(UNSAFE_STATEMENTS):  # a safety net; validation explains better
            message = f"{type(bad).__name__} statements are not allowed in templates"
            raise TemplateError(message, field=field, line=bad.lineno)
        loops = False
        for loop in tree.find_all(nodes.For):
            loops = True
            guarded = nodes.Filter(loop.iter, "_loop_guard", [], [], None, None)
            loop.iter = guarded.set_lineno(loop.lineno)
        template = (HTML_ENV if html else TEXT_ENV).from_string(tree)
    except TemplateSyntaxError as exc:
        raise syntax_error(exc, text, field) from None
    except RecursionError:
        raise TemplateError("the template is nested too deeply", field=field) from None
    except JinjaError as exc:
        raise TemplateError(f"the template does not compile: {exc}", field=field) from None
    return CompiledPart(field, template, loops, MAX_OUTPUT[field])


def _render_error(part: CompiledPart, exc: Exception) -> TemplateError:
    if isinstance(exc, TemplateError):
        return exc
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_globals.get("__jinja_template__") is part.template:
            line = part.template.get_corresponding_lineno(tb.tb_lineno)
        tb = tb.tb_next
    if isinstance(exc, UndefinedError):
        message = f"undefined variable: {exc.message}"
    elif isinstance(exc, SecurityError):
        message = f"not allowed: {exc}"
    elif isinstance(exc, RecursionError):
        message = "the template is nested too deeply"
    elif isinstance(exc, MemoryError):
        message = "rendered text is too long"
    else:
        message = f"could not render: {type(exc).__name__}: {exc}"
    return TemplateError(message, field=part.field, line=line)


def _too_long(part: CompiledPart) -> TemplateError:
    return TemplateError(
        f"rendered text is too long (the limit is {part.limit} characters)", field=part.field
    )


def _stream(part: CompiledPart, pieces: Iterable[str]) -> str:
    out: list[str] = []
    total = 0
    for piece in pieces:
        total += len(piece)
        if total > part.limit:
            raise _too_long(part)
        out.append(piece)
    return "".join(out)


def render_part(part: CompiledPart, context: dict[str, Any]) -> str:
    """Render one compiled part with the context as data."""
    template = part.template
    try:
        pieces = template.root_render_func(template.new_context(context, shared=True))
        text = _stream(part, pieces) if part.streaming else "".join(pieces)
    except Exception as exc:
        raise _render_error(part, exc) from None
    if len(text) > part.limit:
        raise _too_long(part)
    return text


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    """All compiled parts of one template version."""

    body: CompiledPart
    subject: CompiledPart | None
    html: CompiledPart | None

    def render(self, context: Mapping[str, Any]) -> Rendered:
        """Render every part; the context is data, never a template."""
        data = context if type(context) is dict else dict(context or {})
        text = render_part(self.body, data)
        subject = None
        if self.subject is not None:
            subject = render_part(self.subject, data)
            if "\n" in subject or "\r" in subject:
                raise TemplateError("the subject must be a single line", field="subject")
        html = None if self.html is None else render_part(self.html, data)
        return Rendered(text, subject, html)


def compile_source(source: TemplateSource) -> CompiledTemplate:
    """Parse, check and compile every part of a template."""
    parts = {field: _compile_part(field, text) for field, text in source_parts(source)}
    return CompiledTemplate(parts["body"], parts.get("subject"), parts.get("html"))


class Renderer:
    """Compiles each template version once and renders it many times."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._cache: dict[Hashable, CompiledTemplate] = {}
        self._max_entries = max_entries

    def compile(self, key: Hashable, source: TemplateSource) -> None:
        """Compile a template and keep it under ``key`` (e.g. (template_id, version))."""
        self._store(key, source)

    def _store(self, key: Hashable, source: TemplateSource) -> CompiledTemplate:
        compiled = compile_source(source)
        while len(self._cache) >= self._max_entries:
            try:  # drop the oldest entry
                del self._cache[next(iter(self._cache))]
            except (StopIteration, KeyError, RuntimeError):
                break
        self._cache[key] = compiled
        return compiled

    def render(self, key: Hashable, source: TemplateSource, context: Mapping[str, Any]) -> Rendered:
        """Render the template kept under ``key``, compiling ``source`` on first use."""
        compiled = self._cache.get(key)
        if compiled is None:
            compiled = self._store(key, source)
        return compiled.render(context)
