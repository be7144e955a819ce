"""The provider account form: a kind's declared settings as inputs, and a posted form back into
the ``settings`` that the store checks with the kind's own ``validate()``.

Inputs are named like the errors the kinds raise (``settings.access_token``), so an error
lands next to its input without a mapping table. Credentials are password inputs that are
never filled in: left empty on edit they keep the stored value, and "forget" drops an
optional one. Nothing here judges a value; it only turns text into numbers and JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orderbell.channels import registry
from orderbell.web.forms import Errors, Form

PREFIX = "settings."
FORGET = "forget."
_BAD = object()  #: what _loads gives for text that is not JSON


@dataclass(frozen=True, slots=True, kw_only=True)
class Input:
    """One input of a kind's settings."""

    name: str  #: the form field, and the field its errors name: "settings.<key>"
    key: str  #: the key in the account's settings
    label: str
    type: str  #: text | number | choice | json | secret
    required: bool = False
    hint: str = ""
    choices: tuple[str, ...] = ()


def inputs(kind: registry.Kind) -> list[Input]:
    """The kind's declared settings as inputs (every configurable kind declares FIELDS)."""
    return [
        Input(
            name=PREFIX + s.name,
            key=s.name,
            label=s.label,
            type="secret" if s.name in kind.secret_fields else s.type,
            required=s.required,
            hint=s.hint,
            choices=s.choices,
        )
        for s in kind.fields
    ]


def shown(kind: registry.Kind, stored: Mapping[str, Any]) -> dict[str, str]:
    """What the inputs show for stored (non-secret) settings; secrets are never shown."""
    values: dict[str, str] = {}
    for item in inputs(kind):
        value = stored.get(item.key)
        if item.type == "secret" or value is None:
            continue
        values[item.name] = _json(value) if item.type == "json" else str(value)
    return values


def echoed(form: Form, kind: registry.Kind) -> dict[str, str]:
    """What the inputs show again after a refused post: what was typed, except secrets."""
    return {i.name: form.get(i.name) for i in inputs(kind) if i.type != "secret"}


def settings_from(
    form: Form,
    kind: registry.Kind,
    errors: Errors,
    stored: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The posted settings. New account (`stored` None): only what was filled in. Edit: a
    cleared setting becomes None (back to its default), a secret left empty is left out
    (kept), a forgotten one becomes None — the store's patch merges exactly that way."""
    editing = stored is not None
    out: dict[str, Any] = {}
    for item in inputs(kind):
        raw = form.get(item.name)
        if item.type == "secret":
            if editing and form.flag(FORGET + item.key):
                out[item.key] = None
            elif raw.strip():
                out[item.key] = raw
            continue
        text = raw.strip()
        if not text:
            if editing:
                out[item.key] = None
        elif item.type == "number":
            out[item.key] = _number(text)
        elif item.type == "json":
            value = _loads(text, item.name, errors)
            if value is not _BAD:
                out[item.key] = value
        else:
            out[item.key] = text
    return out


def error_field(field: str | None, kind: registry.Kind) -> str | None:
    """The input an error of the store or of the kind's validate() belongs next to."""
    if field is None or not field.startswith(PREFIX):
        return field  # name, channel, rate_per_second …: inputs of the same name
    name = ".".join(field.split(".")[:2])
    return name if name in {i.name for i in inputs(kind)} else None


def _number(text: str) -> int | float | str:
    """ "12" → 12, "1.5" → 1.5; anything else stays text for validate() to refuse by name."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def _loads(text: str, name: str, errors: Errors) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        errors.add(name, f"is not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})")
        return _BAD


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
