"""Price plans shared by many shops: created, priced line by line and assigned by operators.

A plan's lines override the default list for every shop on the plan; a shop's own lines
(`PUT /v1/credits/prices`) still win over its plan's (see `billing.prices`).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Connection, func, select, update

from orderbell.billing import credits, prices
from orderbell.domain.model import Channel
from orderbell.errors import Conflict, InvalidInput
from orderbell.store.db import new_id
from orderbell.store.schema import credit_accounts, price_plans, shops
from orderbell.store.schema import prices as price_lines
from orderbell.store.shops import bump_config, bump_config_of_plan

MAX_NAME = 100


def plan_name(name: str, field: str = "name") -> str:
    """A plan name: trimmed, 1–100 printable characters."""
    text = name.strip()
    if not text:
        raise InvalidInput("must not be empty", field=field)
    if len(text) > MAX_NAME or not text.isprintable():
        raise InvalidInput(f"must be at most {MAX_NAME} printable characters", field=field)
    return text


def channel(value: str, field: str = "channel") -> Channel:
    """A channel name ("sms", "email"), or InvalidInput naming the field."""
    try:
        return Channel(value.strip().lower())
    except ValueError:
        names = ", ".join(c.value for c in Channel)
        raise InvalidInput(
            f"{value!r} is not a channel; use one of: {names}", field=field
        ) from None


def unit_price(value: str, field: str = "unit_price") -> Decimal:
    """A plan's price per unit: greater than zero, at most four decimal places."""
    return prices.parse_credits(value, field, maximum=prices.MAX_PRICE, allow_zero=False)


def create(conn: Connection, name: str, now: datetime, field: str = "name") -> int:
    """Create an empty plan (it prices like the default list until lines are added)."""
    name = plan_name(name, field)
    if conn.execute(select(price_plans.c.id).where(price_plans.c.name == name)).first():
        raise Conflict(f"a price plan named {name!r} exists", field=field)
    return new_id(conn.execute(price_plans.insert().values(name=name, created_at=now)))


def find(conn: Connection, name: str, field: str = "name", *, lock: bool = False) -> int:
    """A plan's id by name, or InvalidInput naming the field."""
    query = select(price_plans.c.id).where(price_plans.c.name == name.strip())
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise InvalidInput(f"no price plan named {name.strip()!r}", field=field)
    return int(row.id)


def set_price(
    conn: Connection, plan_id: int, channel: Channel, country: str, price: Decimal
) -> None:
    """Set one line of a plan (replacing the line for the same channel and country); every
    process re-reads the prices of the shops on the plan (their cached configuration)."""
    conn.execute(select(price_plans.c.id).where(price_plans.c.id == plan_id).with_for_update())
    conn.execute(
        price_lines.delete().where(
            price_lines.c.plan_id == plan_id,
            price_lines.c.shop_id.is_(None),
            price_lines.c.channel == channel.value,
            price_lines.c.country == country,
        )
    )
    conn.execute(
        price_lines.insert().values(
            plan_id=plan_id, shop_id=None, channel=channel.value, country=country, unit_price=price
        )
    )
    bump_config_of_plan(conn, plan_id)


def describe(conn: Connection, plan_id: int) -> dict[str, object]:
    """A plan: its name, its own lines, the shops on it, and what it charges in effect."""
    name = conn.execute(select(price_plans.c.name).where(price_plans.c.id == plan_id)).scalar_one()
    lines = conn.execute(
        select(price_lines.c.channel, price_lines.c.country, price_lines.c.unit_price)
        .where(price_lines.c.plan_id == plan_id, price_lines.c.shop_id.is_(None))
        .order_by(price_lines.c.channel, price_lines.c.country)
    ).all()
    slugs = conn.execute(
        select(shops.c.slug)
        .join(credit_accounts, credit_accounts.c.shop_id == shops.c.id)
        .where(credit_accounts.c.plan_id == plan_id)
        .order_by(shops.c.slug)
    ).scalars()
    own = {(r.channel, r.country) for r in lines}
    # a plan's "*" line prices every country of its channel: no default line shows through
    covered = {ch for ch, country in own if country == "*"}
    effective = [
        {"channel": ch.value, "country": country, "unit_price": prices.fmt(price)}
        for (ch, country), price in sorted(prices.DEFAULT_PRICES.items())
        if (ch.value, country) not in own and ch.value not in covered
    ]
    return {
        "name": name,
        "prices": [
            {"channel": r.channel, "country": r.country, "unit_price": prices.fmt(r.unit_price)}
            for r in lines
        ],
        "defaults_used": effective,
        "shops": list(slugs),
    }


def names(conn: Connection) -> list[dict[str, object]]:
    """Every plan with its number of lines and of shops."""
    line_count = (
        select(func.count())
        .select_from(price_lines)
        .where(price_lines.c.plan_id == price_plans.c.id, price_lines.c.shop_id.is_(None))
        .scalar_subquery()
    )
    shop_count = (
        select(func.count())
        .select_from(credit_accounts)
        .where(credit_accounts.c.plan_id == price_plans.c.id)
        .scalar_subquery()
    )
    rows = conn.execute(
        select(price_plans.c.name, line_count.label("lines"), shop_count.label("shops")).order_by(
            price_plans.c.name
        )
    )
    return [{"name": r.name, "prices": int(r.lines), "shops": int(r.shops)} for r in rows]


def assign(conn: Connection, shop_id: int, plan_id: int | None, now: datetime, actor: str) -> None:
    """Put a shop on a plan (None: back to the default list); held messages get a new look."""
    credits.account(conn, shop_id, lock=True)
    conn.execute(
        update(credit_accounts)
        .where(credit_accounts.c.shop_id == shop_id)
        .values(plan_id=plan_id, updated_at=now)
    )
    bump_config(conn, shop_id)  # the prices cached under its plan may be another plan's now
    # a cheaper plan may fund held messages now (as a raised cap does)
    credits.resume_held(conn, shop_id, now, actor=actor)
