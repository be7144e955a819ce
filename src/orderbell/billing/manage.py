"""Changes to a shop's billing terms as the API, the CLI and the admin make them alike: its
credit settings, its own price lines and its packages. Each runs in the caller's transaction
and returns what the API answers (the CLI prints the same JSON)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Connection, select, update

from orderbell.api.schemas import CreditSettingsIn, PackageIn, PricesIn
from orderbell.billing import credits, prices
from orderbell.domain.model import Channel
from orderbell.store.schema import credit_accounts
from orderbell.store.schema import packages as package_rows
from orderbell.store.schema import prices as price_lines
from orderbell.store.shops import bump_config

log = structlog.get_logger("orderbell.credits")


def change_settings(
    conn: Connection,
    shop: int,
    body: CreditSettingsIn,
    now: datetime,
    *,
    billing: bool,
    actor: str,
) -> dict[str, Any]:
    """Billing mode and day, spending cap, low-balance thresholds and notice address,
    charging policy, price plan (`billing`: whether this deployment bills at all). Held
    messages the new terms can pay for go out; a change of mode bills what is waiting on
    the new terms. Returns the account's summary."""
    values: dict[str, Any] = {}
    acct = credits.account(conn, shop, lock=True)
    if body.mode is not None:
        values["mode"] = body.mode
    if body.billing_day is not None:
        values["billing_day"] = body.billing_day
    if body.clear_monthly_cap:
        values["monthly_cap"] = None
    elif body.monthly_cap is not None:
        values["monthly_cap"] = credits.parse_amount(body.monthly_cap, field="monthly_cap")
    if body.low_balance_thresholds is not None:
        thresholds = {
            credits.parse_amount(t, field=f"low_balance_thresholds[{i}]")
            for i, t in enumerate(body.low_balance_thresholds)
        }
        values["low_balance_thresholds"] = [str(t) for t in sorted(thresholds)]
        # a threshold kept stays notified (its e-mail went out for this crossing); a new
        # one is checked against the balance at the next change
        values["low_balance_below"] = [
            str(t) for t in sorted(set(acct.low_balance_below) & thresholds)
        ]
    if body.charge_failed_after_submission is not None:
        values["charge_failed_after_submission"] = body.charge_failed_after_submission
    if body.clear_notify_email:
        values["notify_email"] = None
    elif body.notify_email is not None:
        from orderbell.domain.addresses import parse_email

        values["notify_email"] = parse_email(body.notify_email, field="notify_email")
    if body.clear_plan:
        values["plan_id"] = None
    elif body.plan is not None:
        values["plan_id"] = prices.plan_id(conn, body.plan)
    if values:
        conn.execute(
            update(credit_accounts).where(credit_accounts.c.shop_id == shop).values(**values)
        )
        log.info("credit_settings_set", shop_id=shop, actor=actor, fields=sorted(values))
        if values.get("plan_id", acct.plan_id) != acct.plan_id:
            # every process drops the prices it cached for the shop (keyed by plan: a plan
            # repriced while the shop was off it would otherwise charge the old price)
            bump_config(conn, shop)
        if billing and values.get("mode", acct.mode) != acct.mode:
            # what is waiting to be sent is billed on the new terms
            credits.mode_changed(conn, shop, now, actor=actor)
        # a raised cap, a cheaper plan or a switch to unmetered may fund held messages now
        credits.resume_held(conn, shop, now, actor=actor)
    return credits.summary(conn, shop, now)


def replace_prices(conn: Connection, shop: int, body: PricesIn, *, actor: str) -> dict[str, Any]:
    """Replace the shop's own price lines; returns every price that applies to it."""
    prices.set_shop_prices(conn, shop, [p.model_dump(mode="json") for p in body.prices])
    # (no ledger entry: who changed what a shop pays is kept in the log)
    log.info("shop_prices_set", shop_id=shop, actor=actor, lines=len(body.prices))
    return effective_prices(conn, shop)


def effective_prices(conn: Connection, shop: int) -> dict[str, Any]:
    """Every price that applies to the shop: its own, its plan's, or the default list."""
    return {"items": prices.effective(conn, shop, credits.account(conn, shop).plan_id)}


def own_prices(conn: Connection, shop: int) -> list[dict[str, Any]]:
    """The shop's own price lines, as `PricesIn` takes them."""
    rows = conn.execute(
        select(price_lines.c.channel, price_lines.c.country, price_lines.c.unit_price)
        .where(price_lines.c.shop_id == shop)
        .order_by(price_lines.c.channel, price_lines.c.country)
    ).all()
    return [
        {"channel": r.channel, "country": r.country, "unit_price": prices.fmt(r.unit_price)}
        for r in rows
    ]


def package_list(conn: Connection, shop: int) -> list[dict[str, Any]]:
    """The shop's packages, oldest first: what each grants a month and how unused
    allowance carries over (the allowance left is in `credits.summary`)."""
    rows = conn.execute(
        select(package_rows).where(package_rows.c.shop_id == shop).order_by(package_rows.c.id)
    ).all()
    return [
        {
            "id": r.id,
            "name": r.name,
            "channel": r.channel,
            "allowance": r.allowance,
            "carry_over": r.carry_over,
            "carry_cap": r.carry_cap,
            "carry_months": r.carry_months,
            "price": None if r.price is None else prices.fmt(r.price),
            "active": r.active,
            "created_at": r.created_at.isoformat(),
        }
        for r in rows
    ]


def add_package(
    conn: Connection, shop: int, body: PackageIn, now: datetime, *, actor: str
) -> dict[str, Any]:
    """Add a monthly package; this period's allowance is granted at once."""
    package_id = credits.add_package(
        conn,
        shop,
        name=body.name,
        channel=Channel(body.channel),
        allowance=body.allowance,
        carry_over=body.carry_over,
        carry_cap=body.carry_cap,
        carry_months=body.carry_months,
        price=None if body.price is None else credits.parse_package_price(body.price),
        now=now,
        actor=actor,
    )
    return {"id": package_id, **credits.summary(conn, shop, now)}
