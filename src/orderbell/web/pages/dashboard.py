"""The dashboard: today's messages by status, delivery rate, credit, what is next, what failed."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy import Connection, func, select

from orderbell.billing import credits
from orderbell.domain.calendar import at_local, local
from orderbell.domain.model import PENDING_STATUSES, MessageStatus
from orderbell.store import messages as message_store
from orderbell.store import shops as shop_store
from orderbell.store.schema import customers, messages, rules
from orderbell.web.core import Me, Svc, render

router = APIRouter()
DELIVERED = ("sent", "delivered")
ATTEMPTED = ("sent", "delivered", "undelivered", "failed", "expired")
ATTENTION = ("failed", "undelivered", "held")


def _counts(conn: Connection, shop_id: int, since: datetime, until: datetime) -> dict[str, int]:
    rows = conn.execute(
        select(messages.c.status, func.count())
        .where(
            messages.c.shop_id == shop_id,
            messages.c.created_at >= since,
            messages.c.created_at < until,
        )
        .group_by(messages.c.status)
    ).all()
    return {str(s): int(n) for s, n in rows}


def _rate(counts: dict[str, int]) -> float | None:
    attempted = sum(counts.get(s, 0) for s in ATTEMPTED)
    if not attempted:
        return None
    return 100.0 * sum(counts.get(s, 0) for s in DELIVERED) / attempted


def _listing(conn: Connection, shop_id: int, where: Any, order: Any, limit: int) -> list[Any]:
    return list(
        conn.execute(
            select(
                messages.c.id,
                messages.c.status,
                messages.c.reason,
                messages.c.channel,
                messages.c.due_at,
                messages.c.updated_at,
                customers.c.name.label("customer"),
                rules.c.name.label("rule"),
            )
            .outerjoin(customers, customers.c.id == messages.c.customer_id)
            .outerjoin(rules, rules.c.id == messages.c.rule_id)
            .where(messages.c.shop_id == shop_id, where)
            .order_by(order)
            .limit(limit)
        ).all()
    )


@router.get("/")
def dashboard(request: Request, svc: Svc, me: Me) -> Response:
    """Today at a glance."""
    now = svc.clock.now()
    with svc.engine.connect() as conn:
        shop = shop_store.get(conn, me.shop_id)
        today = local(now, shop.timezone).date()
        start = at_local(today, datetime.min.time(), shop.timezone)
        end = at_local(today + timedelta(days=1), datetime.min.time(), shop.timezone)
        counts = _counts(conn, shop.id, start, end)
        month = _counts(conn, shop.id, now - timedelta(days=30), now + timedelta(seconds=1))
        pending = sorted(s.value for s in PENDING_STATUSES)
        upcoming = _listing(conn, shop.id, messages.c.status.in_(pending), messages.c.due_at, 8)
        failures = _listing(
            conn,
            shop.id,
            messages.c.status.in_(ATTENTION) & (messages.c.updated_at >= now - timedelta(days=7)),
            messages.c.updated_at.desc(),
            10,
        )
        summary = credits.summary(conn, shop.id, now)
        last = message_store.search(conn, shop.id, limit=1)
    return render(
        request,
        "dashboard.html",
        me=me,
        tz=shop.timezone,
        today=today,
        counts=counts,
        total=sum(counts.values()),
        statuses=[s.value for s in MessageStatus],
        rate_today=_rate(counts),
        rate_month=_rate(month),
        upcoming=upcoming,
        failures=failures,
        credit=summary,
        empty=not last,
    )
