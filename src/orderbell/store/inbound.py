"""Inbound messages of a shop (SMS replies, STOP / START), newest first."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from orderbell.store.schema import inbound_messages, shop_providers


def search(
    conn: Connection,
    shop_id: int,
    *,
    customer_id: int | None = None,
    before: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """A page of the shop's inbound messages; page with `before` = the last id seen."""
    stmt = (
        select(inbound_messages, shop_providers.c.name.label("provider"))
        .outerjoin(shop_providers, shop_providers.c.id == inbound_messages.c.provider_id)
        .where(inbound_messages.c.shop_id == shop_id)
    )
    if customer_id is not None:
        stmt = stmt.where(inbound_messages.c.customer_id == customer_id)
    if before is not None:
        stmt = stmt.where(inbound_messages.c.id < before)
    rows = conn.execute(stmt.order_by(inbound_messages.c.id.desc()).limit(limit))
    return [
        {
            "id": r.id,
            "channel": r.channel,
            "sender": r.sender,
            "recipient": r.recipient,
            "text": r.text,
            "intent": r.intent,
            "customer_id": r.customer_id,
            "order_id": r.order_id,
            "provider_id": r.provider_id,
            "provider": r.provider,
            "provider_message_id": r.provider_message_id,
            "received_at": r.received_at.isoformat(),
            "read_at": r.read_at.isoformat() if r.read_at else None,
        }
        for r in rows
    ]
