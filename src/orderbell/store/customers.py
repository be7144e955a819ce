"""Customers: contact details normalised on the way in, consent per channel and category."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, func, or_, select, update

from orderbell.api.schemas import CustomerConsentIn, CustomerIn, CustomerWrite
from orderbell.domain.addresses import parse_email, parse_phone
from orderbell.domain.model import Consent, CustomerInfo, Shop
from orderbell.errors import Conflict, NotFound
from orderbell.store.db import new_id
from orderbell.store.driver import Driver, new_row
from orderbell.store.schema import customers

CONSENT_FIELDS = ("sms_transactional", "sms_marketing", "email_transactional", "email_marketing")


def normalise(shop: Shop, data: CustomerIn, prefix: str = "") -> dict[str, Any]:
    """Validated, normalised contact fields (phone E.164, e-mail normalised)."""
    values: dict[str, Any] = {}
    if data.name is not None:
        values["name"] = data.name
    if data.phone is not None:
        values["phone"] = parse_phone(data.phone, shop.country, field=f"{prefix}phone").e164
    if data.email is not None:
        values["email"] = parse_email(data.email, field=f"{prefix}email")
    if data.locale is not None:
        values["locale"] = data.locale
    return values


def external_id(data: CustomerIn, values: dict[str, Any]) -> str | None:
    """The key a customer is known by: the shop's id, else the phone, else the e-mail."""
    if data.id:
        return data.id
    if values.get("phone"):
        return f"phone:{values['phone']}"
    if values.get("email"):
        return f"email:{values['email']}"
    return None


def upsert_from_event(
    conn: Connection, shop: Shop, data: CustomerIn, now: datetime
) -> tuple[int | None, CustomerInfo]:
    """Create or update the event's customer; returns its id and what the rules need."""
    values = normalise(shop, data, prefix="customer.")
    key = external_id(data, values)
    if key is None:
        return None, CustomerInfo()
    db = Driver(conn)
    row = db.first(customers, {"shop_id": shop.id, "external_id": key})
    if row is None:
        inserted = {"shop_id": shop.id, "external_id": key, "created_at": now, "updated_at": now}
        inserted.update(values)
        customer_id = db.insert(customers, inserted)
        # The new row as stored, without reading it back: columns not given take their defaults.
        fresh = {**_NEW_ROW, **inserted, "id": customer_id}
        return customer_id, info(SimpleNamespace(**fresh))
    changed = {k: v for k, v in values.items() if getattr(row, k) != v}
    if changed:
        db.update(customers, row.id, {"updated_at": now, **changed})
        return int(row.id), info(SimpleNamespace(**{**row._asdict(), **changed}))
    return int(row.id), info(row)


#: A customers row with every column at its default (None where there is none).
_NEW_ROW = new_row(customers)


def info(row: Any) -> CustomerInfo:
    """A customers row as the domain sees it."""
    return CustomerInfo(
        name=row.name,
        phone=row.phone,
        email=row.email,
        locale=row.locale,
        consent=Consent(
            **{f: getattr(row, f) for f in CONSENT_FIELDS}, email_opt_out=row.email_opt_out
        ),
        sms_opt_out=row.sms_opt_out,
    )


def create(conn: Connection, shop: Shop, data: CustomerWrite, now: datetime) -> dict[str, Any]:
    """Create a customer through the API."""
    values = normalise(shop, data)
    exists = conn.execute(
        select(customers.c.id).where(
            customers.c.shop_id == shop.id, customers.c.external_id == data.id
        )
    ).first()
    if exists:
        raise Conflict(f"customer {data.id!r} exists", field="id")
    values.update(data.consent.model_dump(exclude_none=True))
    customer_id = new_id(
        conn.execute(
            customers.insert().values(
                shop_id=shop.id, external_id=data.id, created_at=now, updated_at=now, **values
            )
        )
    )
    return get(conn, shop.id, customer_id)


def set_consent(
    conn: Connection, shop_id: int, customer_id: int, data: CustomerConsentIn, now: datetime
) -> dict[str, Any]:
    """Change consent flags of one customer."""
    get(conn, shop_id, customer_id)
    values = data.model_dump(exclude_none=True)
    if values:
        conn.execute(
            update(customers)
            .where(customers.c.id == customer_id, customers.c.shop_id == shop_id)
            .values(updated_at=now, **values)
        )
    return get(conn, shop_id, customer_id)


def get(conn: Connection, shop_id: int, customer_id: int) -> dict[str, Any]:
    """One customer, scoped to the shop."""
    row = conn.execute(
        select(customers).where(customers.c.id == customer_id, customers.c.shop_id == shop_id)
    ).first()
    if row is None:
        raise NotFound("customer not found", field="customer_id")
    return as_json(row)


def search(
    conn: Connection, shop_id: int, *, q: str | None, limit: int, after: int | None
) -> list[dict[str, Any]]:
    """Customers of a shop, optionally matching a text, by id."""
    stmt = select(customers).where(customers.c.shop_id == shop_id)
    if q:
        like = f"%{q.lower()}%"
        stmt = stmt.where(
            or_(
                func.lower(customers.c.name).like(like),
                func.lower(customers.c.email).like(like),
                customers.c.phone.like(like),
                customers.c.external_id.like(like),
            )
        )
    if after:
        stmt = stmt.where(customers.c.id > after)
    return [as_json(r) for r in conn.execute(stmt.order_by(customers.c.id).limit(limit))]


def as_json(row: Any) -> dict[str, Any]:
    """A customers row as the API shows it."""
    return {
        "id": row.id,
        "external_id": row.external_id,
        "name": row.name,
        "phone": row.phone,
        "email": row.email,
        "locale": row.locale,
        "consent": {f: getattr(row, f) for f in CONSENT_FIELDS},
        "email_opt_out": row.email_opt_out,
        "sms_opt_out": row.sms_opt_out,
        "sms_opt_out_at": row.sms_opt_out_at.isoformat() if row.sms_opt_out_at else None,
        "created_at": row.created_at.isoformat(),
    }
