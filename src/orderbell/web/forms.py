"""HTML forms: URL-encoded bodies in, field errors out — named like the API's error fields.

The pages validate with the same pydantic schemas and store functions as the API, so an
error's field (``action.validity_minutes``, ``conditions.hours.1``) is also the name of the
input it belongs next to.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from pydantic import ValidationError

from orderbell.api.ids import parse_row_id
from orderbell.errors import OrderbellError, TemplateError

FORM_ERROR = "_form"  #: errors that belong to no single field
MAX_FORM_BYTES = 1_000_000


@dataclass(slots=True)
class Form:
    """A submitted form: every field as a list of strings."""

    data: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, body: bytes) -> Form:
        """Parse an application/x-www-form-urlencoded body."""
        text = body[:MAX_FORM_BYTES].decode("utf-8", errors="replace")
        return cls(parse_qs(text, keep_blank_values=True, max_num_fields=20_000))

    def get(self, name: str, default: str = "") -> str:
        """The first value of a field ("" when absent), with CRLF turned into LF."""
        values = self.data.get(name)
        return values[0].replace("\r\n", "\n") if values else default

    def opt(self, name: str) -> str | None:
        """The trimmed value of a field, or None when it is absent or blank."""
        value = self.get(name).strip()
        return value or None

    def getlist(self, name: str) -> list[str]:
        """Every value of a field."""
        return list(self.data.get(name, []))

    def flag(self, name: str) -> bool:
        """A checkbox: ticked or not."""
        return self.get(name) not in ("", "0", "false", "off")

    def ints(self, name: str) -> list[int]:
        """The values of a field that are row ids (others are ignored)."""
        return [i for v in self.getlist(name) if (i := parse_row_id(v)) is not None]


def _loc(loc: Iterable[Any]) -> str:
    parts = [str(p) for p in loc]
    parts = [p for p in parts if not p.startswith(("function-", "constrained-", "json-or-python"))]
    return ".".join(parts) or FORM_ERROR


def _message(err: dict[str, Any]) -> str:
    if err.get("type") == "string_too_short" and (err.get("ctx") or {}).get("min_length") == 1:
        return "must not be empty"
    if err.get("type") == "missing":
        return "is required"
    return str(err.get("msg", "invalid value")).removeprefix("Value error, ")


@dataclass(slots=True)
class Errors:
    """Errors by field name; the first error of a field wins."""

    by_field: dict[str, str] = field(default_factory=dict)

    def add(self, name: str | None, message: str) -> None:
        """Record an error for a field (or the whole form)."""
        self.by_field.setdefault(name or FORM_ERROR, message)

    def add_validation(self, exc: ValidationError, prefix: str = "") -> None:
        """Record pydantic's errors under their dotted field paths."""
        for err in exc.errors():
            self.add(prefix + _loc(err.get("loc", ())), _message(dict(err)))

    def add_orderbell(self, exc: OrderbellError) -> None:
        """Record a store or domain error under its field; templates get their line."""
        message = exc.message
        if isinstance(exc, TemplateError) and exc.line is not None:
            where = f"line {exc.line}" + (f", column {exc.column}" if exc.column else "")
            message = f"{where}: {message}"
        self.add(exc.field, message)

    def __bool__(self) -> bool:
        return bool(self.by_field)

    def get(self, name: str) -> str | None:
        """The error of a field, or None."""
        return self.by_field.get(name)

    def under(self, prefix: str) -> list[tuple[str, str]]:
        """Errors of a field and everything below it (``conditions`` → ``conditions.x``)."""
        return [
            (k, v) for k, v in self.by_field.items() if k == prefix or k.startswith(prefix + ".")
        ]
