"""Orders: the latest known state, applied only from events newer than it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from orderbell.api.schemas import OrderIn
from orderbell.domain.model import OrderSnapshot
from orderbell.errors import NotFound
from orderbell.store.driver import Driver
from orderbell.store.schema import order_status_history, orders

SNAPSHOT_FIELDS = (
    "status",
    "total",
    "currency",
    "payment_method",
    "courier",
    "tracking_number",
    "tracking_url",
    "placed_at",
    "estimated_delivery",
    "preparation_minutes",
    "shipping_country",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Applied:
    """What applying an event did to its order."""

    order_id: int
    snapshot: OrderSnapshot
    stale: bool  #: the event is older than the order's known state
    state_at: datetime
    previous_status: str | None


def snapshot(row: Any) -> OrderSnapshot:
    """An orders row as a domain snapshot."""
    return OrderSnapshot(code=row.code, **{f: getattr(row, f) for f in SNAPSHOT_FIELDS})


def apply_event(
    conn: Connection,
    *,
    shop_id: int,
    customer_id: int | None,
    data: OrderIn,
    status: str | None,
    occurred_at: datetime,
    now: datetime,
) -> Applied:
    """Create or update the order from an event unless the event is older than its state."""
    values = {f: getattr(data, f) for f in SNAPSHOT_FIELDS if getattr(data, f) is not None}
    if status:
        values["status"] = status
    db = Driver(conn)
    row = db.first(orders, {"shop_id": shop_id, "code": data.code})
    if row is None:
        order_id = db.insert(
            orders,
            {
                "shop_id": shop_id,
                "code": data.code,
                "customer_id": customer_id,
                "state_at": occurred_at,
                "created_at": now,
                "updated_at": now,
                **values,
            },
        )
        _history(conn, shop_id, order_id, values.get("status"), occurred_at)
        return Applied(
            order_id=order_id,
            snapshot=OrderSnapshot(code=data.code, **{f: values.get(f) for f in SNAPSHOT_FIELDS}),
            stale=False,
            state_at=occurred_at,
            previous_status=None,
        )
    if occurred_at < row.state_at:
        _history(conn, shop_id, row.id, values.get("status"), occurred_at)
        return Applied(
            order_id=row.id,
            snapshot=snapshot(row),
            stale=True,
            state_at=row.state_at,
            previous_status=row.status,
        )
    changes: dict[str, Any] = {k: v for k, v in values.items() if getattr(row, k) != v}
    if customer_id is not None and row.customer_id != customer_id:
        changes["customer_id"] = customer_id
    db.update(orders, row.id, {"state_at": occurred_at, "updated_at": now, **changes})
    if "status" in changes:
        _history(conn, shop_id, row.id, changes["status"], occurred_at)
    merged = {**row._asdict(), **changes}
    return Applied(
        order_id=row.id,
        snapshot=OrderSnapshot(code=row.code, **{f: merged[f] for f in SNAPSHOT_FIELDS}),
        stale=False,
        state_at=occurred_at,
        previous_status=row.status,
    )


def _history(
    conn: Connection, shop_id: int, order_id: int, status: str | None, at: datetime
) -> None:
    if status:
        Driver(conn).insert(
            order_status_history,
            {"shop_id": shop_id, "order_id": order_id, "status": status, "occurred_at": at},
        )


def get(conn: Connection, shop_id: int, code: str) -> dict[str, Any]:
    """An order by code with its status history, scoped to the shop."""
    row = conn.execute(
        select(orders).where(orders.c.shop_id == shop_id, orders.c.code == code)
    ).first()
    if row is None:
        raise NotFound("order not found", field="order_code")
    history = conn.execute(
        select(order_status_history.c.status, order_status_history.c.occurred_at)
        .where(order_status_history.c.order_id == row.id)
        .order_by(order_status_history.c.occurred_at, order_status_history.c.id)
    )
    return {
        **as_json(row),
        "history": [
            {"status": h.status, "occurred_at": h.occurred_at.isoformat()} for h in history
        ],
    }


def search(
    conn: Connection, shop_id: int, *, status: str | None, limit: int, after: int | None
) -> list[dict[str, Any]]:
    """Orders of a shop, newest first."""
    stmt = select(orders).where(orders.c.shop_id == shop_id)
    if status:
        stmt = stmt.where(orders.c.status == status)
    if after:
        stmt = stmt.where(orders.c.id < after)
    return [as_json(r) for r in conn.execute(stmt.order_by(orders.c.id.desc()).limit(limit))]


def as_json(row: Any) -> dict[str, Any]:
    """An orders row as the API shows it."""
    out: dict[str, Any] = {"id": row.id, "code": row.code, "customer_id": row.customer_id}
    for f in SNAPSHOT_FIELDS:
        value = getattr(row, f)
        out[f] = value.isoformat() if isinstance(value, datetime) else value
    out["total"] = str(row.total) if row.total is not None else None
    out["state_at"] = row.state_at.isoformat()
    return out
