"""Hot-path SQL run on the database driver's cursor, for SQLite and PostgreSQL alike.

SQLAlchemy Core compiles (from its cache), binds and post-processes every statement in
Python: about 100-150 µs a call plus a processor call per value. On the paths that run for
every message — the dispatcher's claim and finish — that was most of the time. There the
statements are written once as SQL text in qmark style (``?``), rewritten once for
psycopg's ``%s``, and executed on the DBAPI cursor of the SQLAlchemy connection (so inside
its transaction, with its SQLite write lock). Values are converted here exactly as the
column types would: aware UTC datetimes (stored naive-UTC text on SQLite), JSON, booleans.
Everything else keeps using SQLAlchemy Core.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection


@lru_cache(maxsize=512)
def _format_style(sql: str) -> str:
    """qmark (``?``) → format (``%s``) for psycopg; literal ``%`` doubled."""
    return sql.replace("%", "%%").replace("?", "%s")


def marks(count: int) -> str:
    """``?, ?, ?`` for an IN list of `count` values."""
    return ", ".join("?" * count)


class Driver:
    """One connection's dialect-specific conversions and a cursor to run raw SQL on."""

    __slots__ = ("_conn", "sqlite")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.sqlite = conn.dialect.name == "sqlite"

    def _sql(self, sql: str) -> str:
        return sql if self.sqlite else _format_style(sql)

    def _cursor(self) -> Any:
        return self._conn.connection.cursor()

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a query; its rows as tuples."""
        cur = self._cursor()
        try:
            cur.execute(self._sql(sql), tuple(params))
            return list(cur.fetchall())
        finally:
            cur.close()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        cur = self._cursor()
        try:
            cur.execute(self._sql(sql), tuple(params))
            return int(cur.rowcount)
        finally:
            cur.close()

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per parameter set (psycopg pipelines them)."""
        batch = [tuple(p) for p in params]
        if not batch:
            return
        cur = self._cursor()
        try:
            cur.executemany(self._sql(sql), batch)
        finally:
            cur.close()

    # ------------------------------------------------------------------ values in

    def time(self, value: datetime | None) -> Any:
        """An aware datetime as the UtcDateTime column stores it."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        if self.sqlite:
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        return value

    def json(self, value: Any) -> Any:
        """A value for a JSON column."""
        if value is None:
            return None
        return json.dumps(value)


def time_out(value: Any) -> datetime | None:
    """A UtcDateTime column's value as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
    return value.astimezone(UTC)  # type: ignore[no-any-return]


def json_out(value: Any) -> Any:
    """A JSON column's value (SQLite gives text; psycopg has decoded it already)."""
    if isinstance(value, str | bytes):
        return json.loads(value)
    return value


@lru_cache(maxsize=1024)
def _json_text(value: str) -> Any:
    return json.loads(value)


def shared_json_out(value: Any) -> Any:
    """A JSON column's value that many rows repeat (rule definitions), decoded once per
    distinct text. The result is shared: callers must not modify it."""
    if isinstance(value, str):
        return _json_text(value)
    return value


def bool_out(value: Any) -> bool | None:
    """A Boolean column's value (SQLite stores 0/1)."""
    return None if value is None else bool(value)
