"""Template preview with a stored order or sample data."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from orderbell.api.schemas import PreviewIn
from orderbell.billing import credits, prices
from orderbell.billing.prices import destination_country
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
    and the variants as written and transliterated; and what the message would cost."""
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
        phone = customer.phone
    else:
        context = sample_context(kind, shop)
        phone = None
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
    segments = None
    if source.channel is Channel.SMS:
        # as sent under the shop's settings, and both variants: as written and transliterated
        out["sms"] = sms_text.describe(shop, rendered.text)
        segments = out["sms"]["segments"]
    out["cost"] = _cost(conn, shop, source.channel, segments, phone)
    return out


def _cost(
    conn: Connection, shop: Shop, channel: Channel, segments: int | None, phone: str | None
) -> dict[str, Any]:
    """What the message would cost: an SMS to the order's customer's number, or — with
    sample data, or a customer without a number it can price — to a number in the shop's own
    country (what most of its customers have). `destination` says which (None for e-mail)."""
    plan_id = credits.account(conn, shop.id).plan_id
    country = destination_country(channel, phone)
    destination = None  # an e-mail costs the same to any address
    if channel is Channel.SMS:
        destination = "the order's customer"
        if country is None:
            country, destination = shop.country, "sample"
    price = prices.unit_price(conn, shop.id, plan_id, channel, country)
    quoted = prices.priced(price, channel, country, segments)
    return {**quoted.as_dict(), "destination": destination}
