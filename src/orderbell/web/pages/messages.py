"""The message log with its filters, and one message with its audit trail as a timeline."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from sqlalchemy import Select, func, or_, select

from orderbell.api.ids import RowId, RowIdFilter, parse_row_id
from orderbell.domain.calendar import at_local
from orderbell.domain.model import Channel, MessageStatus
from orderbell.store import messages as message_store
from orderbell.store import rules as rule_store
from orderbell.store.schema import customers, events, messages, rules, templates
from orderbell.web.core import Me, Svc, render, shop_tz
from orderbell.web.forms import Errors

router = APIRouter(prefix="/messages")
PAGE = 50


def _day(value: str, name: str, errors: Errors) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        errors.add(name, "must be a date, YYYY-MM-DD")
        return None


def _int(value: str, name: str, errors: Errors) -> int | None:
    if not value:
        return None
    number = parse_row_id(value)
    if number is None:
        errors.add(name, "must be an id: a whole number from 1")
    return number


def log_query(shop_id: int, f: dict[str, str], tz: str, errors: Errors) -> Select[Any]:
    """The shop's messages matching the log's filters, newest first."""
    stmt = (
        select(
            messages,
            customers.c.name.label("customer_name"),
            rules.c.name.label("rule_name"),
            templates.c.name.label("template_name"),
            events.c.type.label("event_type"),
        )
        .outerjoin(customers, customers.c.id == messages.c.customer_id)
        .outerjoin(rules, rules.c.id == messages.c.rule_id)
        .outerjoin(templates, templates.c.id == messages.c.template_id)
        .outerjoin(events, events.c.id == messages.c.event_id)
        .where(messages.c.shop_id == shop_id)
    )
    if f["status"] in {s.value for s in MessageStatus}:
        stmt = stmt.where(messages.c.status == f["status"])
    elif f["status"]:
        errors.add("status", "unknown status")
    if f["channel"] in {c.value for c in Channel}:
        stmt = stmt.where(messages.c.channel == f["channel"])
    elif f["channel"]:
        errors.add("channel", "unknown channel")
    if f["rule"] == "manual":
        stmt = stmt.where(messages.c.rule_id.is_(None))
    elif (rule_id := _int(f["rule"], "rule", errors)) is not None:
        stmt = stmt.where(messages.c.rule_id == rule_id)
    for key, column in (
        ("customer", messages.c.customer_id),
        ("order", messages.c.order_id),
        ("batch", messages.c.event_id),
    ):
        if (value := _int(f[key], key, errors)) is not None:
            stmt = stmt.where(column == value)
    if f["who"]:
        like = f"%{f['who'].lower()}%"
        stmt = stmt.where(
            or_(
                func.lower(customers.c.name).like(like),
                func.lower(messages.c.recipient).like(like),
            )
        )
    start = _day(f["date_from"], "date_from", errors)
    end = _day(f["date_to"], "date_to", errors)
    if start:
        stmt = stmt.where(messages.c.created_at >= at_local(start, time(0), tz))
    if end:
        stmt = stmt.where(messages.c.created_at < at_local(end + timedelta(days=1), time(0), tz))
    if start and end and end < start:
        errors.add("date_to", "is before the start date")
    return stmt


FILTERS = ("status", "channel", "rule", "customer", "order", "batch", "who", "date_from", "date_to")


@router.get("/")
def message_log(request: Request, svc: Svc, me: Me, before: RowIdFilter = None) -> Response:
    """Every message of the shop, filtered by status, channel, rule, customer and date."""
    tz = shop_tz(svc, me.shop_id)
    f = {k: request.query_params.get(k, "").strip()[:100] for k in FILTERS}
    errors = Errors()
    stmt = log_query(me.shop_id, f, tz, errors)
    if before:
        stmt = stmt.where(messages.c.id < before)
    with svc.engine.connect() as conn:
        rows = conn.execute(stmt.order_by(messages.c.id.desc()).limit(PAGE)).all()
        rule_options = [(r["id"], r["name"]) for r in rule_store.list_all(conn, me.shop_id)]
    query = urlencode({k: v for k, v in f.items() if v})
    return render(
        request,
        "messages/list.html",
        me=me,
        tz=tz,
        errors=errors,
        f=f,
        rows=rows,
        statuses=[s.value for s in MessageStatus],
        rule_options=rule_options,
        next_before=rows[-1].id if len(rows) == PAGE else None,
        query=query,
        filtered=any(f.values()),
    )


@router.get("/{message_id}")
def message_page(request: Request, svc: Svc, me: Me, message_id: RowId) -> Response:
    """One message: what was sent (or why not), and its timeline."""
    tz = shop_tz(svc, me.shop_id)
    with svc.engine.connect() as conn:
        m = message_store.get(conn, me.shop_id, message_id)
        names = conn.execute(
            select(
                customers.c.name.label("customer_name"),
                rules.c.name.label("rule_name"),
                templates.c.name.label("template_name"),
                events.c.type.label("event_type"),
            )
            .select_from(messages)
            .outerjoin(customers, customers.c.id == messages.c.customer_id)
            .outerjoin(rules, rules.c.id == messages.c.rule_id)
            .outerjoin(templates, templates.c.id == messages.c.template_id)
            .outerjoin(events, events.c.id == messages.c.event_id)
            .where(messages.c.id == message_id)
        ).one()
    timeline = [{**entry, "at_dt": datetime.fromisoformat(entry["at"])} for entry in m["audit"]]
    return render(
        request,
        "messages/detail.html",
        me=me,
        tz=tz,
        m=m,
        names=names,
        timeline=timeline,
    )
