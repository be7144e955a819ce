"""Manual and bulk sends: one template to customers the shop picked, planned like event messages.

The planner decides each message exactly as it does for an order event (consent, address,
validity, sending window), so an opted-out customer gets a *suppressed* message with its reason
instead of a silent skip. A send is stored as one ``manual.send`` event row: its idempotency key
makes a double-clicked "Send" a no-op, and its messages (``messages.event_id``) are the batch
whose progress the admin shows. The worker sends them like any other message.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, update

from orderbell.billing import credits
from orderbell.billing.prices import Quote, fmt, quote
from orderbell.domain.model import (
    Action,
    Category,
    Channel,
    MessageStatus,
    OrderEvent,
    OrderSnapshot,
    Rule,
    Shop,
    TemplateKind,
    Trigger,
)
from orderbell.domain.segments import SmsInfo
from orderbell.domain.sms_text import decide
from orderbell.engine.planner import PlannedMessage, TemplateInfo, plan
from orderbell.errors import InvalidInput, TemplateError
from orderbell.store import customers as customer_store
from orderbell.store import messages as message_store
from orderbell.store import orders as order_store
from orderbell.store import templates as template_store
from orderbell.store.db import new_id
from orderbell.store.schema import customers, events, messages, orders
from orderbell.templates.sandbox import Renderer

MANUAL_EVENT = "manual.send"  #: the event type a manual or bulk send is stored as
MAX_RECIPIENTS = 5000  #: customers in one send
IN_FLIGHT = (MessageStatus.SCHEDULED.value, MessageStatus.DEFERRED.value, "sending")


@dataclass(frozen=True, slots=True, kw_only=True)
class ManualMessage:
    """One customer's message of a manual send, as planned and rendered."""

    customer_id: int
    customer_name: str | None
    order_id: int | None
    planned: PlannedMessage
    text: str | None
    subject: str | None
    html: str | None
    error: str | None  #: why the template could not be rendered
    sms: SmsInfo | None  #: of the text as sent (transliterated when the shop chose so)
    quote: Quote | None  #: None when the message will not be sent
    hold: str | None = None  #: why it is held instead (over the shop's segment cap)

    @property
    def sendable(self) -> bool:
        """Will the worker pick it up (not suppressed, expired, held or unrenderable)?"""
        return (
            self.error is None
            and self.hold is None
            and self.planned.status in (MessageStatus.SCHEDULED, MessageStatus.DEFERRED)
        )


def category_of(kind: TemplateKind) -> Category:
    """Order templates are transactional; campaign templates need marketing consent."""
    return Category.MARKETING if kind is TemplateKind.CAMPAIGN else Category.TRANSACTIONAL


def _latest_order(conn: Connection, shop_id: int, customer_id: int) -> Any:
    return conn.execute(
        select(orders)
        .where(orders.c.shop_id == shop_id, orders.c.customer_id == customer_id)
        .order_by(orders.c.state_at.desc(), orders.c.id.desc())
        .limit(1)
    ).first()


def plan_manual(
    conn: Connection,
    shop: Shop,
    template: dict[str, Any],
    customer_ids: Sequence[int],
    *,
    extra: Mapping[str, str],
    now: datetime,
    renderer: Renderer,
) -> list[ManualMessage]:
    """Plan and render one message per customer (the shop's own customers only)."""
    if len(customer_ids) > MAX_RECIPIENTS:
        raise InvalidInput(f"at most {MAX_RECIPIENTS} customers per send", field="customers")
    kind = TemplateKind(template["kind"])
    channel = Channel(template["channel"])
    rule = Rule(
        id=0,
        name=f"manual send of '{template['name']}'",
        trigger=Trigger(event_type=MANUAL_EVENT),
        action=Action(channel=channel, template_id=template["id"], category=category_of(kind)),
    )
    info = TemplateInfo(
        id=template["id"],
        kind=kind,
        channel=channel,
        active=template["active"],
        locale=template["locale"],
    )
    rows = conn.execute(
        select(customers)
        .where(customers.c.shop_id == shop.id, customers.c.id.in_(list(customer_ids)))
        .order_by(customers.c.id)
    ).all()
    source = template_store.source(template)
    plan_id = credits.account(conn, shop.id).plan_id
    out: list[ManualMessage] = []
    for row in rows:
        customer = customer_store.info(row)
        order_row = _latest_order(conn, shop.id, row.id)
        snapshot = order_store.snapshot(order_row) if order_row else OrderSnapshot(code="")
        event = OrderEvent(
            type=MANUAL_EVENT, occurred_at=now, order=snapshot, customer=customer, data=dict(extra)
        )
        _, planned = plan(
            shop=shop,
            rules=[rule],
            event=event,
            customer=customer,
            templates={info.id: info},
            now=now,
        )
        p = planned[0]
        text = subject = html = error = hold = None
        sms = None
        try:
            rendered = renderer.render((template["id"], template["version"]), source, p.context)
            text, subject, html = rendered.text, rendered.subject, rendered.html
            if channel is Channel.SMS:
                decided = decide(shop, text)
                text, sms, hold = decided.text, decided.info, decided.hold
        except TemplateError as exc:
            error = exc.message
        price = None
        pending = p.status in (MessageStatus.SCHEDULED, MessageStatus.DEFERRED)
        if error is None and hold is None and pending:
            segments = sms.segments if sms else None
            price = quote(conn, shop.id, plan_id, channel, p.recipient, segments)
        out.append(
            ManualMessage(
                customer_id=row.id,
                customer_name=row.name,
                order_id=order_row.id if order_row else None,
                planned=p,
                text=text,
                subject=subject,
                html=html,
                error=error,
                sms=sms,
                quote=price,
                hold=hold if pending else None,
            )
        )
    return out


def send_manual(
    conn: Connection,
    shop: Shop,
    template: dict[str, Any],
    customer_ids: Sequence[int],
    *,
    extra: Mapping[str, str],
    key: str,
    actor: str,
    now: datetime,
    renderer: Renderer,
    billing: bool = True,
) -> int:
    """Store a manual send: its event row and one message per customer. Returns the event id.

    The same `key` twice returns the first send's id and stores nothing more.
    """
    idem = f"manual:{key}"
    existing = conn.execute(
        select(events.c.id).where(events.c.shop_id == shop.id, events.c.idempotency_key == idem)
    ).first()
    if existing is not None:
        return int(existing.id)
    planned = plan_manual(
        conn, shop, template, customer_ids, extra=extra, now=now, renderer=renderer
    )
    payload = {
        "template_id": template["id"],
        "template_version": template["version"],
        "customer_ids": sorted(int(c) for c in customer_ids),
        "data": dict(extra),
        "actor": actor,
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    event_id = new_id(
        conn.execute(
            events.insert().values(
                shop_id=shop.id,
                idempotency_key=idem,
                body_hash=digest,
                type=MANUAL_EVENT,
                occurred_at=now,
                order_id=None,
                payload=payload,
                outcome={},
                received_at=now,
                planned_at=now,  # planned here: never one of the accepted events waiting
            )
        )
    )
    account_cache: list[credits.Account] = []
    stored = [
        _store(conn, shop, template, m, event_id, actor, now, billing, account_cache)
        for m in planned
    ]
    conn.execute(update(events).where(events.c.id == event_id).values(outcome={"messages": stored}))
    return event_id


def _store(
    conn: Connection,
    shop: Shop,
    template: dict[str, Any],
    m: ManualMessage,
    event_id: int,
    actor: str,
    now: datetime,
    billing: bool,
    account_cache: list[credits.Account],
) -> dict[str, Any]:
    p = m.planned
    status, reason = p.status, p.reason
    if m.error is not None:
        status, reason = MessageStatus.FAILED, f"render_error: {m.error}"
    elif m.hold is not None:
        status, reason = MessageStatus.HELD, m.hold
    elif m.sendable:
        due = reason.removeprefix(f"rule '{p.rule.name}' matched; ")
        reason = f"manual send of template '{template['name']}' by {actor}; {due}"
    message_id, hold = credits.insert_funded(
        conn,
        {
            "shop_id": shop.id,
            "event_id": event_id,
            "rule_id": None,
            "customer_id": m.customer_id,
            "order_id": m.order_id,
            "template_id": template["id"],
            "channel": p.channel.value,
            "category": p.rule.action.category.value,
            "recipient": p.recipient,
            "status": status.value,
            "reason": reason,
            "due_at": p.due_at,
            "expires_at": p.expires_at,
            "context": p.context,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
            "segments": m.sms.segments if m.sms else None,
        },
        quote=m.quote if billing and m.sendable else None,
        account_cache=account_cache,
        now=now,
        actor=f"manual:{actor}",
    )
    log = [
        message_store.LogEntry(
            message_id=message_id,
            at=now,
            status=status.value,
            reason=reason,
            detail={"event_id": event_id, "manual": True, "actor": actor, "notes": list(p.notes)},
        )
    ]
    if hold is not None:
        status, reason = MessageStatus.HELD, hold
        log.append(
            message_store.LogEntry(
                message_id=message_id, at=now, status=status.value, reason=reason
            )
        )
    message_store.add_log(conn, log)
    return {
        "id": message_id,
        "customer_id": m.customer_id,
        "status": status.value,
        "reason": reason,
        "cost": fmt(m.quote.cost) if m.quote else None,
    }


def progress(conn: Connection, shop_id: int, event_id: int) -> dict[str, int]:
    """How many messages of a send are in each status, with `total` and `in_flight`."""
    rows = conn.execute(
        select(messages.c.status, func.count())
        .where(messages.c.shop_id == shop_id, messages.c.event_id == event_id)
        .group_by(messages.c.status)
    ).all()
    counts = {str(status): int(n) for status, n in rows}
    counts["total"] = sum(n for _, n in rows)
    counts["in_flight"] = sum(counts.get(s, 0) for s in IN_FLIGHT)
    return counts
