"""Messages held over a shop's SMS segment cap, and their release.

An SMS that would pass the shop's cap is ``held`` with the reason ``segment_cap: N segments,
the shop's cap is M`` — when it is planned (nothing is reserved) or when the worker re-checks
it (its reservation is released). The shop acts on it by raising or removing the cap, or by
turning transliteration on: then the held messages are looked at again, oldest first. Each is
rendered as the worker would send it; one that fits now has its cost reserved like a new
message (without the credit it becomes a credit hold, released by the next top-up) and is
scheduled; one still over the cap keeps its hold with the current count; one whose validity
ended expires. A top-up never releases a segment-cap hold: only the shop's settings can.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, select

from orderbell.billing import credits
from orderbell.billing.prices import quote
from orderbell.domain.model import Channel, MessageStatus, Shop, TemplateKind
from orderbell.domain.sms_text import HOLD_REASON, decide
from orderbell.errors import TemplateError
from orderbell.store import messages as message_store
from orderbell.store.schema import messages, template_versions, templates
from orderbell.templates.sandbox import Renderer, TemplateSource

_HELD = (
    select(
        messages.c.id,
        messages.c.rule_id,
        messages.c.recipient,
        messages.c.context,
        messages.c.due_at,
        messages.c.expires_at,
        messages.c.reason,
        messages.c.template_id,
        messages.c.billing,
        templates.c.active,
        templates.c.version,
        templates.c.kind,
        template_versions.c.body,
    )
    .select_from(messages)
    .outerjoin(templates, templates.c.id == messages.c.template_id)
    .outerjoin(
        template_versions,
        and_(
            template_versions.c.template_id == templates.c.id,
            template_versions.c.version == templates.c.version,
        ),
    )
)


def release(
    conn: Connection,
    shop: Shop,
    renderer: Renderer,
    now: datetime,
    *,
    billing: bool,
    actor: str,
) -> int:
    """Schedule the shop's segment-capped messages that fit its settings now, oldest first;
    returns how many were scheduled."""
    # The account lock first (as credits.resume_held takes it): two saves of the settings at
    # once must not both read the same held row and reserve it twice.
    plan_id = credits.account(conn, shop.id, lock=True).plan_id if billing else None
    rows = conn.execute(
        _HELD.where(
            messages.c.shop_id == shop.id,
            messages.c.status == MessageStatus.HELD.value,
            messages.c.reason.like(f"{HOLD_REASON}:%"),
        ).order_by(messages.c.due_at, messages.c.id)
    ).all()
    released = 0
    for row in rows:
        if _release_one(conn, shop, renderer, row, now, plan_id, billing=billing, actor=actor):
            released += 1
    return released


def _release_one(
    conn: Connection,
    shop: Shop,
    renderer: Renderer,
    row: Any,
    now: datetime,
    plan_id: int | None,
    *,
    billing: bool,
    actor: str,
) -> bool:
    """Look at one held message again; True when it was scheduled."""

    def move(status: MessageStatus, reason: str, **columns: Any) -> None:
        message_store.set_status(conn, row.id, now, status, reason, **columns)

    if row.expires_at is not None and row.expires_at <= now:
        move(MessageStatus.EXPIRED, "expired: validity ended while held over the segment cap")
        return False
    if row.active is not True or row.body is None or row.kind is None:
        move(MessageStatus.SUPPRESSED, "template_inactive: the template is not active")
        return False
    source = TemplateSource(channel=Channel.SMS, kind=TemplateKind(row.kind), body=row.body)
    try:
        rendered = renderer.render((row.template_id, row.version), source, row.context or {})
    except TemplateError as exc:
        move(MessageStatus.FAILED, f"render_error: {exc.message}")
        return False
    sms = decide(shop, rendered.text)
    if sms.hold is not None:
        if sms.hold != row.reason:  # e.g. transliteration saved segments, still too many
            move(MessageStatus.HELD, sms.hold, segments=sms.segments)
        return False
    # a message already debited (an ambiguous attempt that may have gone out) is not
    # reserved again: its next send is not charged twice
    if billing and row.billing != "debited":
        price = quote(conn, shop.id, plan_id, Channel.SMS, row.recipient, sms.segments)
        hold = credits.reserve(
            conn,
            shop_id=shop.id,
            message_id=row.id,
            rule_id=row.rule_id,
            channel=Channel.SMS,
            quote=price,
            now=now,
            actor=actor,
        )
        if hold is not None:  # fits the cap, not the credit: a top-up releases it
            move(MessageStatus.HELD, hold, segments=sms.segments)
            return False
    move(
        MessageStatus.SCHEDULED,
        f"released: it fits the shop's SMS settings now ({sms.segments} segments)",
        due_at=max(row.due_at, now),
        segments=sms.segments,
    )
    return True
