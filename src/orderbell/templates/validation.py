"""Checks a template when a shop saves it, with messages that point at the fault."""

from __future__ import annotations

import difflib
import functools
import operator as op
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jinja2 import meta, nodes
from jinja2.exceptions import SecurityError

from orderbell.domain.model import Channel, TemplateKind
from orderbell.errors import TemplateError
from orderbell.templates.catalogue import available, variables
from orderbell.templates.sandbox import (
    ALLOWED_FILTERS,
    FORBIDDEN_NAMES,
    MAX_LOOP_DEPTH,
    TEXT_ENV,
    Rendered,
    TemplateSource,
    column_of,
    compile_source,
    parse,
    safe_binop,
    source_parts,
)

MAX_SOURCE = {"body": 10_000, "subject": 1_000, "html": 100_000}  #: characters per part
_SURROGATE = re.compile("[\ud800-\udfff]")

_ALLOWED_NODES = (
    nodes.Template, nodes.Output, nodes.TemplateData, nodes.Const, nodes.Name, nodes.Filter,
    nodes.Test, nodes.If, nodes.For, nodes.CondExpr, nodes.Concat, nodes.BinExpr,
    nodes.UnaryExpr, nodes.Compare, nodes.Operand, nodes.Tuple, nodes.List, nodes.Keyword,
)  # fmt: skip
_LABELS: dict[type[nodes.Node], str] = {
    nodes.Getattr: "attribute access", nodes.Getitem: "item access", nodes.Slice: "slicing",
    nodes.Call: "calling functions", nodes.Macro: "{% macro %}", nodes.CallBlock: "{% call %}",
    nodes.Assign: "{% set %}", nodes.AssignBlock: "{% set %}", nodes.With: "{% with %}",
    nodes.FilterBlock: "{% filter %}", nodes.Include: "{% include %}", nodes.Block: "{% block %}",
    nodes.Import: "{% import %}", nodes.FromImport: "{% from %}", nodes.Extends: "{% extends %}",
    nodes.ScopedEvalContextModifier: "{% autoescape %}", nodes.Scope: "{% autoescape %}",
    nodes.Dict: "dict literals",
}  # fmt: skip
_CONST_OPS: dict[type[nodes.Node], Callable[[Any, Any], Any]] = {
    nodes.Add: op.add,
    nodes.Sub: op.sub,
    nodes.Mul: functools.partial(safe_binop, "*"),
    nodes.Pow: functools.partial(safe_binop, "**"),
    nodes.Mod: functools.partial(safe_binop, "%"),
}
_NOT_CONST = object()


def _const(node: nodes.Node) -> Any:
    """The value of a literal expression; raises SecurityError on a literal blow-up."""
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, nodes.Neg | nodes.Pos):
        value = _const(node.node)
        if value is _NOT_CONST or not isinstance(value, int | float):
            return _NOT_CONST
        return -value if isinstance(node, nodes.Neg) else value
    func = _CONST_OPS.get(type(node))
    if func is not None and isinstance(node, nodes.BinExpr):
        left, right = _const(node.left), _const(node.right)
        if left is _NOT_CONST or right is _NOT_CONST:
            return _NOT_CONST
        try:
            return func(left, right)
        except SecurityError:
            raise
        except Exception:  # a render-time error (TypeError, ZeroDivisionError …)
            return _NOT_CONST
    return _NOT_CONST


def _fail(
    message: str, field: str, text: str, node: nodes.Node, needle: str | None
) -> TemplateError:
    line = getattr(node, "lineno", None)
    return TemplateError(message, field=field, line=line, column=column_of(text, line, needle))


def _check(node: nodes.Node, field: str, text: str, depth: int = 0) -> None:
    """Raise TemplateError for anything outside the allowed subset of Jinja."""
    if isinstance(node, nodes.For):
        depth += 1
        if node.recursive:
            raise _fail("recursive loops are not allowed", field, text, node, "recursive")
        if depth > MAX_LOOP_DEPTH:
            message = f"loops nested deeper than {MAX_LOOP_DEPTH} levels are not allowed"
            raise _fail(message, field, text, node, "for")
    elif isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name):
        name = node.node.name
        raise _fail(f"'{name}' is not allowed in templates", field, text, node, name)
    elif not isinstance(node, _ALLOWED_NODES):
        label = _LABELS.get(type(node), f"'{type(node).__name__}'")
        needle = label.split()[1] if label.startswith("{%") else None
        if isinstance(node, nodes.Getattr | nodes.Getitem):
            needle = f".{node.attr}" if isinstance(node, nodes.Getattr) else "["
        raise _fail(f"{label} is not allowed in templates", field, text, node, needle)
    if isinstance(node, nodes.Name) and node.name in FORBIDDEN_NAMES:
        raise _fail(f"'{node.name}' is not allowed in templates", field, text, node, node.name)
    if isinstance(node, nodes.Filter) and node.name not in ALLOWED_FILTERS:
        allowed = ", ".join(sorted(ALLOWED_FILTERS))
        message = f"the filter '{node.name}' is not allowed (allowed: {allowed})"
        raise _fail(message, field, text, node, node.name)
    if isinstance(node, nodes.Test) and node.name not in TEXT_ENV.tests:
        raise _fail(f"unknown test '{node.name}'", field, text, node, node.name)
    if isinstance(node, nodes.Filter | nodes.Test) and (node.dyn_args or node.dyn_kwargs):
        raise _fail("*args and **kwargs are not allowed", field, text, node, "*")
    if isinstance(node, nodes.Mod) and isinstance(_const(node.left), str):
        raise _fail("string formatting with % is not allowed", field, text, node, "%")
    if isinstance(node, nodes.Mul | nodes.Pow | nodes.Mod):
        try:
            _const(node)
        except SecurityError as exc:
            raise _fail(str(exc), field, text, node, node.operator) from None
    for child in node.iter_child_nodes():
        _check(child, field, text, depth)


def _at(text: str, index: int) -> tuple[int, int]:
    """(line, column), both 1-based, of a character index."""
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _check_text(field: str, text: str) -> None:
    if "\x00" in text:
        line, column = _at(text, text.index("\x00"))
        raise TemplateError(
            f"the {field} contains a NUL character", field=field, line=line, column=column
        )
    bad = _SURROGATE.search(text)
    if bad is not None:
        line, column = _at(text, bad.start())
        message = f"the {field} contains a lone surrogate (invalid Unicode)"
        raise TemplateError(message, field=field, line=line, column=column)
    if len(text) > MAX_SOURCE[field]:
        raise TemplateError(
            f"the {field} is too long ({len(text)} characters; the limit is {MAX_SOURCE[field]})",
            field=field,
        )


def _check_shape(source: TemplateSource) -> None:
    for field, value in (("body", source.body), ("subject", source.subject), ("html", source.html)):
        if value is not None:
            _check_text(field, value)
    if source.channel is Channel.SMS:
        for field, value in (("subject", source.subject), ("html", source.html)):
            if value:
                raise TemplateError(f"SMS templates have no {field}", field=field)
    elif not (source.subject or "").strip():
        raise TemplateError("e-mail templates need a subject", field="subject")
    elif "\n" in (source.subject or "") or "\r" in (source.subject or ""):
        raise TemplateError("the subject must be a single line", field="subject")
    if not source.body.strip():
        raise TemplateError("the body is empty", field="body")


def _unknown(name: str, kind: TemplateKind, known: Mapping[str, object]) -> str:
    message = f"unknown variable '{name}'"
    others = [k for k in TemplateKind if k != kind and name in variables(k)]
    if others:
        return f"{message} (it is only available in {others[0].value} templates)"
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    if close:
        return f"{message} (did you mean '{close[0]}'?)"
    return f"{message} (known: {', '.join(known)})"


def validate(source: TemplateSource, *, event_types: Iterable[str] | None = None) -> set[str]:
    """Check a template on save; returns the variables it uses. Raises TemplateError."""
    _check_shape(source)
    known = variables(source.kind)
    where: dict[str, tuple[str, int, int | None]] = {}
    for field, text in source_parts(source):
        tree = parse(field, text, html=field == "html")
        try:
            _check(tree, field, text)
            names = meta.find_undeclared_variables(tree)
            for node in tree.find_all(nodes.Name):
                if node.name in names and node.name not in where:
                    where[node.name] = (field, node.lineno, column_of(text, node.lineno, node.name))
        except RecursionError:
            raise TemplateError("the template is nested too deeply", field=field) from None
        for name in [n for n in where if n in names]:  # in the order they appear
            if name not in known:
                _, line, column = where[name]
                message = _unknown(name, source.kind, known)
                raise TemplateError(message, field=field, line=line, column=column)
    for event in event_types or ():
        missing = set(where) - available(source.kind, event)
        for name in [n for n in where if n in missing]:
            field, line, column = where[name]
            message = f"{name} is not available at {event}"
            raise TemplateError(message, field=field, line=line, column=column)
    compile_source(source)
    return set(where)


def render_preview(source: TemplateSource, context: Mapping[str, str]) -> Rendered:
    """Validate a template and render it once, without caching (for previews)."""
    validate(source)
    return compile_source(source).render(context)
