"""The driver-level statements store and read values exactly as SQLAlchemy Core does, on
SQLite and PostgreSQL: rows written one way read back identically the other way."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from tests.support import bare_shop

from orderbell.compose import Services
from orderbell.store.driver import Driver, JsonText
from orderbell.store.schema import customers, ledger, orders, shops

AT = datetime(2026, 3, 29, 0, 59, 59, 123456, tzinfo=UTC)
ISTANBUL = timezone(timedelta(hours=3))


def new_shop(services: Services) -> int:
    return bare_shop(services.engine, "d", AT, stop_scope="all")


def order_values(shop_id: int, code: str) -> dict[str, Any]:
    return {
        "shop_id": shop_id,
        "code": code,
        "status": "accepted",
        "total": Decimal("249.90"),
        "currency": "TRY",
        "placed_at": AT.astimezone(ISTANBUL),  # any offset in; UTC out
        "estimated_delivery": None,
        "preparation_minutes": 45,
        "state_at": AT,
        "created_at": AT,
        "updated_at": AT,
    }


def test_a_row_the_driver_writes_reads_back_through_sqlalchemy_unchanged(
    services: Services,
) -> None:
    shop_id = new_shop(services)
    with services.engine.begin() as conn:
        order_id = Driver(conn).insert(orders, order_values(shop_id, "D-1"))
        customer_id = Driver(conn).insert(
            customers, {"shop_id": shop_id, "external_id": "c1", "created_at": AT,
                        "updated_at": AT}
        )  # fmt: skip
    with services.engine.connect() as conn:
        row = conn.execute(select(orders).where(orders.c.id == order_id)).one()
        person = conn.execute(select(customers).where(customers.c.id == customer_id)).one()
    assert row.total == Decimal("249.900000")
    assert row.placed_at == AT and row.placed_at.tzinfo is not None
    assert row.state_at == AT and row.estimated_delivery is None
    # Python-side column defaults applied as SQLAlchemy would: consent and opt-outs
    assert person.sms_transactional is True and person.sms_marketing is False
    assert person.email_transactional is True and person.email_marketing is False


def test_a_row_sqlalchemy_writes_reads_back_through_the_driver_unchanged(
    services: Services,
) -> None:
    shop_id = new_shop(services)
    with services.engine.begin() as conn:
        conn.execute(orders.insert(), order_values(shop_id, "D-2"))
        conn.execute(
            customers.insert(),
            {"shop_id": shop_id, "external_id": "c2", "created_at": AT, "updated_at": AT},
        )
    with services.engine.begin() as conn:
        db = Driver(conn)
        ours = db.first(orders, {"shop_id": shop_id, "code": "D-2"})
        theirs = conn.execute(select(orders).where(orders.c.code == "D-2")).one()
        person = db.first(customers, {"shop_id": shop_id, "external_id": "c2"}, lock=True)
        shop = db.first(shops, {"id": shop_id})
        assert db.first(orders, {"shop_id": shop_id, "code": "nope"}) is None
    assert ours is not None and person is not None and shop is not None
    assert ours._asdict() == theirs._asdict()
    assert person.sms_transactional is True and person.email_marketing is False
    assert shop.settings == {"stop_scope": "all"} and shop.closed_dates == []


def test_updates_and_bulk_inserts_convert_like_inserts(services: Services) -> None:
    shop_id = new_shop(services)
    later = AT + timedelta(days=200)  # across a DST change: stored times stay UTC
    with services.engine.begin() as conn:
        db = Driver(conn)
        order_id = db.insert(orders, order_values(shop_id, "D-3"))
        db.update(orders, order_id, {"total": Decimal("0.110000"), "updated_at": later})
        db.insert_many(
            ledger,
            [
                {"shop_id": shop_id, "at": AT, "kind": "topup", "credits": Decimal("25.5"),
                 "units": 0, "actor": "test", "reference": "pay_1"},
                {"shop_id": shop_id, "at": later, "kind": "adjustment",
                 "credits": Decimal("-0.11"), "units": 0, "actor": "test", "reference": None},
            ],
        )  # fmt: skip
    with services.engine.connect() as conn:
        row = conn.execute(select(orders).where(orders.c.id == order_id)).one()
        entries = conn.execute(select(ledger.c.credits, ledger.c.at).order_by(ledger.c.id)).all()
    assert row.total == Decimal("0.110000") and row.updated_at == later
    assert [(e.credits, e.at) for e in entries] == [
        (Decimal("25.500000"), AT),
        (Decimal("-0.110000"), later),
    ]


def test_naive_datetimes_are_refused(services: Services) -> None:
    shop_id = new_shop(services)
    values = {**order_values(shop_id, "D-4"), "state_at": AT.replace(tzinfo=None)}
    with services.engine.begin() as conn, pytest.raises(ValueError, match="naive"):
        Driver(conn).insert(orders, values)


def test_none_bools_and_json_text_bind_as_null_integer_and_text(services: Services) -> None:
    """The driver's adapters (one call instead of sqlite3's attribute lookups) store what
    sqlite3 itself would: NULL, 0 / 1, and the JSON text as it is."""
    for kind in (type(None), bool, JsonText):  # found at once, without a miss raised twice
        assert (kind, sqlite3.PrepareProtocol) in sqlite3.adapters
    with services.engine.begin() as conn:
        db = Driver(conn)
        sql = "SELECT ?, ?, ?, ?" if db.sqlite else "SELECT ?::text, ?::boolean, ?, ?::json::text"
        values = (None, True, False, JsonText('{"a": [1, 2]}'))
        got = db.rows(sql, values)[0]
        if db.sqlite:
            kinds = db.rows("SELECT typeof(?), typeof(?), typeof(?), typeof(?)", values)[0]
            assert kinds == ("null", "integer", "integer", "text")
            assert got == (None, 1, 0, '{"a": [1, 2]}')
            assert type(got[3]) is str
        else:
            assert got == (None, True, False, '{"a": [1, 2]}')
