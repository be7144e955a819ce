"""Template preview with a stored order or sample data."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from orderbell.api.schemas import PreviewIn
from orderbell.domain import sms_text
from orderbell.domain.model import Channel, CustomerInfo, Shop, TemplateKind
from orderbell.integrations.tracking import tracking_url
from orderbell.store import customers as customer_store
from orderbell.store import orders as order_store
from orderbell.store import templates as template_store
from orderbell.store.schema import customers, orders
from orderbell.templates.catalogue import build_context, sample_context
from orderbell.templates.validation import render_preview, validate


def preview(
    conn: Connection, shop: Shop, template: dict[str, Any], data: PreviewIn
) -> dict[str, Any]:
    """Render a stored template; for SMS also the text as sent, its encoding and segments,
    and the variants as written and transliterated."""
    source = template_store.source(template)
    kind = TemplateKind(template["kind"])
    if data.event_type:
        validate(source, event_types=[data.event_type])
    if data.order_code:
        order = conn.execute(
            select(orders).where(orders.c.shop_id == shop.id, orders.c.code == data.order_code)
        ).first()
        if order is None:
            from orderbell.errors import NotFound

            raise NotFound("order not found", field="order_code")
        snap = order_store.snapshot(order)
        customer = CustomerInfo()
        if order.customer_id:
            row = conn.execute(select(customers).where(customers.c.id == order.customer_id)).one()
            customer = customer_store.info(row)
        context = build_context(
            kind,
            shop=shop,
            order=snap,
            customer=customer,
            locale=customer.locale or template["locale"],
            tracking_url=tracking_url(
                snap.courier,
                snap.tracking_number,
                country=shop.country,
                locale=shop.locale,
                platform_url=snap.tracking_url,
            ),
        )
    else:
        context = sample_context(kind, shop)
    context.update(data.variables)
    rendered = render_preview(source, context)
    out: dict[str, Any] = {
        "template_id": template["id"],
        "version": template["version"],
        "subject": rendered.subject,
        "text": rendered.text,
        "html": rendered.html,
        "sample": data.order_code is None,
    }
    if source.channel is Channel.SMS:
        # as sent under the shop's settings, and both variants: as written and transliterated
        out["sms"] = sms_text.describe(shop, rendered.text)
    return out
