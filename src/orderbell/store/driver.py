"""Hot-path SQL run on the database driver's connection, for SQLite and PostgreSQL alike.

SQLAlchemy Core compiles (from its cache), binds and post-processes every statement in
Python: 50-150 µs a call plus a processor call per value. On the paths that run for every
event and every message — ingest, and the dispatcher's claim and finish — that was most of
the time. There statements are SQL text in qmark style (``?``), rewritten once for psycopg's
``%s``, executed on the DBAPI connection under the SQLAlchemy one (so inside its transaction,
holding its SQLite write lock). Values are converted here exactly as the column types of
:mod:`orderbell.store.schema` would: aware UTC datetimes (naive UTC text on SQLite), JSON,
money as SQLAlchemy binds it (a Decimal on PostgreSQL), booleans; Python-side column
defaults are applied on insert.
Everything else keeps using SQLAlchemy Core.
"""

from __future__ import annotations

import json
import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from sqlalchemy import JSON, Boolean, Connection, Numeric, Table
from sqlalchemy import exc as sqlalchemy_exc

from orderbell.store.schema import UtcDateTime


def _errors(name: str) -> tuple[type[Exception], ...]:
    """SQLAlchemy's exception class `name` and the DB-API drivers' ones (sqlite3, psycopg)."""
    import psycopg

    found: tuple[type[Exception], ...] = (
        getattr(sqlalchemy_exc, "DBAPIError" if name == "Error" else name),
        getattr(sqlite3, name),
        getattr(psycopg, name),
    )
    return found


#: A unique or foreign-key violation as SQLAlchemy raises it, or as the DB-API driver does
#: under the Driver's raw cursors (sqlite3, psycopg): `except INTEGRITY_ERRORS`.
INTEGRITY_ERRORS = _errors("IntegrityError")
#: Any error the database (or its driver) raised, either way.
DATABASE_ERRORS = _errors("Error")


@lru_cache(maxsize=1024)
def _format_style(sql: str) -> str:
    """qmark (``?``) → format (``%s``) for psycopg; literal ``%`` doubled."""
    return sql.replace("%", "%%").replace("?", "%s")


@lru_cache(maxsize=1024)
def _sqlite_time(value: datetime) -> str:
    """An aware UTC datetime as SQLite's UtcDateTime text. Cached: a row's times, and the
    rows one transaction writes, mostly share one `now`. (Keyed on UTC values only: two
    local times an hour apart that differ only in `fold` compare equal.)"""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def marks(count: int) -> str:
    """``?, ?, ?`` for an IN list of `count` values."""
    return ", ".join("?" * count)


class JsonText(str):
    """A value for a JSON column that is already JSON text (made for another purpose,
    e.g. an event body's canonical form, which is hashed too): not serialised again."""

    __slots__ = ()


def _null(_value: None) -> None:
    return None


# sqlite3 binds exact ints, floats, strs and bytearrays as they are; any other value — None too —
# first goes through its adapters: one registered for the value's type is called, and
# without one, `__adapt__` and `__conform__` are looked up, each a miss raised and cleared
# inside the module (~0.25 us a value here, and ~2,500 instructions; a settled message binds
# seven NULLs, a planned one's ledger entry three or four). Registered, these are one call.
# (Not int, float or str themselves: adapting one of those slows down every value.)
sqlite3.register_adapter(type(None), _null)
sqlite3.register_adapter(bool, int)
sqlite3.register_adapter(JsonText, str)


class Driver:
    """One connection's raw statements and the conversions its dialect needs."""

    __slots__ = ("_raw", "sqlite")
    _raw: Any

    def __init__(self, conn: Connection) -> None:
        self.sqlite = conn.dialect.name == "sqlite"
        raw: Any = conn.connection.dbapi_connection
        self._raw = raw

    def _sql(self, sql: str) -> str:
        return sql if self.sqlite else _format_style(sql)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a query; its rows as tuples."""
        cur = self._raw.cursor()
        try:
            cur.execute(self._sql(sql), tuple(params))
            return list(cur.fetchall())
        finally:
            cur.close()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        cur = self._raw.cursor()
        try:
            cur.execute(self._sql(sql), tuple(params))
            return int(cur.rowcount)
        finally:
            cur.close()

    @contextmanager
    def savepoint(self, name: str = "orderbell_item") -> Iterator[None]:
        """A savepoint in plain SQL (SQLAlchemy's compiles a statement each time): if the
        block raises, its changes alone are rolled back and the transaction goes on."""
        self.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self.execute(f"ROLLBACK TO SAVEPOINT {name}")
            self.execute(f"RELEASE SAVEPOINT {name}")
            raise
        self.execute(f"RELEASE SAVEPOINT {name}")

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per parameter set (psycopg pipelines them)."""
        batch = [tuple(p) for p in params]
        if not batch:
            return
        cur = self._raw.cursor()
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
        if self.sqlite:  # the cache is keyed on the UTC instant: a local time's fold
            return _sqlite_time(value if value.tzinfo is UTC else value.astimezone(UTC))
        return value

    def money(self, value: Any) -> Any:
        """A Numeric value as SQLAlchemy binds it: a float on SQLite (no decimal type there,
        so stored values stay identical), the Decimal itself on PostgreSQL (numeric)."""
        if value is None or not self.sqlite:
            return value
        return float(value)

    @staticmethod
    def json(value: Any) -> Any:
        """A value for a JSON column (`JsonText`: already serialised, goes in as it is)."""
        if value is None or isinstance(value, JsonText):
            return value
        return json.dumps(value)

    # ------------------------------------------------------- whole rows of a table

    def insert(self, table: Table, values: Mapping[str, Any]) -> int:
        """Insert one row (column defaults applied); returns its id."""
        shape = _insert_shape(table, tuple(values))
        cur = self._raw.cursor()
        try:
            cur.execute(self._sql(shape.sql), shape.params(self, values))
            new: tuple[Any, ...] = cur.fetchone()
            return int(new[0])
        finally:
            cur.close()

    def insert_many(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows that all give the same columns (column defaults applied)."""
        if not rows:
            return
        shape = _insert_shape(table, tuple(rows[0]))
        self.executemany(shape.sql_many, [shape.params(self, row) for row in rows])

    def update(self, table: Table, row_id: int, values: Mapping[str, Any]) -> None:
        """Set columns of one row by id."""
        keys = tuple(values)
        converters = _converters(table)
        sets = ", ".join(f"{k} = ?" for k in keys)
        self.execute(
            f"UPDATE {table.name} SET {sets} WHERE id = ?",  # noqa: S608 - names from the schema
            [*(converters[k][0](self, values[k]) for k in keys), row_id],
        )

    def first(self, table: Table, where: Mapping[str, Any], *, lock: bool = False) -> Any | None:
        """The first row matching equalities on columns, with every column, or None;
        `lock` takes a row lock on PostgreSQL (SQLite's writer already holds the database)."""
        shape = _select_shape(table, tuple(where))
        sql = shape.sql + (" FOR UPDATE" if lock and not self.sqlite else "")
        found = self.rows(sql, [where[k] for k in where])
        if not found:
            return None
        return shape.row(*(out(v) for out, v in zip(shape.outs, found[0], strict=True)))


# ----------------------------------------------------------------- values out


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


def money_out(value: Any) -> Decimal | None:
    """A Numeric column's value as SQLAlchemy gives it (SQLite keeps a float: 6 places)."""
    if value is None or isinstance(value, Decimal):
        return value
    return Decimal(f"{value:.6f}")


# ------------------------------------------------------ per-table conversions

In = Callable[[Driver, Any], Any]
Out = Callable[[Any], Any]


def _plain(_db: Driver, value: Any) -> Any:
    return value


def _identity(value: Any) -> Any:
    return value


@lru_cache(maxsize=64)
def _converters(table: Table) -> dict[str, tuple[In, Out]]:
    """Per column: how a value goes in and comes out."""
    out: dict[str, tuple[In, Out]] = {}
    for column in table.columns:
        kind = column.type
        if isinstance(kind, UtcDateTime):
            out[column.name] = (Driver.time, time_out)
        elif isinstance(kind, JSON):
            out[column.name] = (lambda _db, v: Driver.json(v), json_out)
        elif isinstance(kind, Boolean):
            out[column.name] = (_plain, bool_out)
        elif isinstance(kind, Numeric) and kind.asdecimal:
            out[column.name] = (Driver.money, money_out)
        else:
            out[column.name] = (_plain, _identity)
    return out


def _default_value(default: Any) -> Any:
    """A column's Python-side default value (the schema's are constants: 0, True, dict...)."""
    arg = getattr(default, "arg", None)
    if getattr(default, "is_scalar", False):
        return arg
    if getattr(default, "is_callable", False) and callable(arg):
        return arg(None)
    raise TypeError(f"a default the driver cannot apply: {default!r}")  # pragma: no cover


def new_row(table: Table) -> dict[str, Any]:
    """A row of `table` with every column at its Python-side default (None where none)."""
    return {
        c.name: None if c.default is None or c.primary_key else _default_value(c.default)
        for c in table.columns
    }


class _InsertShape:
    """An INSERT for one set of given columns: its SQL and how its parameters are made."""

    def __init__(self, table: Table, keys: tuple[str, ...]) -> None:
        converters = _converters(table)
        unknown = [k for k in keys if k not in converters]
        if unknown:
            raise KeyError(f"{table.name} has no column {unknown[0]!r}")
        #: given columns whose values need converting (the others go in as they are)
        self.converted = [
            (i, k, converters[k][0]) for i, k in enumerate(keys) if converters[k][0] is not _plain
        ]
        self.keys = keys
        self.defaults: list[tuple[Any, In]] = []
        names = list(keys)
        for column in table.columns:
            if column.name in keys or column.default is None or column.primary_key:
                continue
            self.defaults.append((_default_value(column.default), converters[column.name][0]))
            names.append(column.name)
        self._default_params: dict[bool, list[Any]] = {}
        self.sql_many = (
            f"INSERT INTO {table.name} ({', '.join(names)}) "  # noqa: S608 - schema names
            f"VALUES ({marks(len(names))})"
        )
        self.sql = f"{self.sql_many} RETURNING id"

    def params(self, db: Driver, values: Mapping[str, Any]) -> list[Any]:
        """The parameters of one row, in column order."""
        out = [values[k] for k in self.keys]
        for i, k, convert in self.converted:
            out[i] = convert(db, values[k])
        defaults = self._default_params.get(db.sqlite)
        if defaults is None:  # the same on every row: converted once per dialect
            defaults = [convert(db, value) for value, convert in self.defaults]
            self._default_params[db.sqlite] = defaults
        return out + defaults


@lru_cache(maxsize=256)
def _insert_shape(table: Table, keys: tuple[str, ...]) -> _InsertShape:
    return _InsertShape(table, keys)


class _SelectShape:
    def __init__(self, table: Table, keys: tuple[str, ...]) -> None:
        converters = _converters(table)
        names = [c.name for c in table.columns]
        self.outs = [converters[n][1] for n in names]
        self.row = namedtuple(f"{table.name}_row", names)  # type: ignore[misc]
        where = " AND ".join(f"{k} = ?" for k in keys)
        self.sql = f"SELECT {', '.join(names)} FROM {table.name} WHERE {where} LIMIT 1"  # noqa: S608


@lru_cache(maxsize=256)
def _select_shape(table: Table, keys: tuple[str, ...]) -> _SelectShape:
    return _SelectShape(table, keys)
