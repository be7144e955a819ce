"""Customers, templates, rules, orders and messages of the calling shop."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from orderbell.api.deps import Read, ServicesDep, ShopId
from orderbell.api.ids import RowId, RowIdFilter
from orderbell.api.schemas import (
    CustomerConsentIn,
    CustomerWrite,
    PreviewIn,
    RuleIn,
    RulePatch,
    TemplateIn,
)
from orderbell.domain.model import Channel, MessageStatus
from orderbell.engine.preview import preview
from orderbell.store import customers as customer_store
from orderbell.store import messages as message_store
from orderbell.store import orders as order_store
from orderbell.store import rules as rule_store
from orderbell.store import shops as shop_store
from orderbell.store import templates as template_store

router = APIRouter(prefix="/v1")
Limit = Annotated[int, Query(ge=1, le=500)]


@router.post("/customers", status_code=201, tags=["customers"])
def create_customer(svc: ServicesDep, shop: ShopId, body: CustomerWrite) -> Any:
    """Create a customer; the phone is stored E.164, the e-mail normalised."""
    with svc.engine.begin() as conn:
        return customer_store.create(conn, shop_store.get(conn, shop), body, svc.clock.now())


@router.get("/customers", tags=["customers"])
def list_customers(
    conn: Read,
    shop: ShopId,
    q: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = 50,
    after: int | None = None,
) -> Any:
    """Search the shop's customers."""
    return {"items": customer_store.search(conn, shop, q=q, limit=limit, after=after)}


@router.get("/customers/{customer_id}", tags=["customers"])
def get_customer(conn: Read, shop: ShopId, customer_id: RowId) -> Any:
    """One customer."""
    return customer_store.get(conn, shop, customer_id)


@router.patch("/customers/{customer_id}/consent", tags=["customers"])
def set_consent(svc: ServicesDep, shop: ShopId, customer_id: RowId, body: CustomerConsentIn) -> Any:
    """Change a customer's consent (opt-out / opt-in per channel and category)."""
    with svc.engine.begin() as conn:
        return customer_store.set_consent(conn, shop, customer_id, body, svc.clock.now())


@router.post("/templates", status_code=201, tags=["templates"])
def create_template(svc: ServicesDep, shop: ShopId, body: TemplateIn) -> Any:
    """Create a template; unknown variables and syntax errors are refused now."""
    with svc.engine.begin() as conn:
        return template_store.create(conn, shop, body, svc.clock.now())


@router.get("/templates", tags=["templates"])
def list_templates(conn: Read, shop: ShopId) -> Any:
    """The shop's templates with their active versions."""
    return {"items": template_store.list_all(conn, shop)}


@router.get("/templates/{template_id}", tags=["templates"])
def get_template(conn: Read, shop: ShopId, template_id: RowId) -> Any:
    """One template."""
    return template_store.get(conn, shop, template_id)


@router.put("/templates/{template_id}", tags=["templates"])
def save_template(svc: ServicesDep, shop: ShopId, template_id: RowId, body: TemplateIn) -> Any:
    """Save a new version; a failed save keeps the previous version active."""
    with svc.engine.begin() as conn:
        return template_store.save_version(conn, shop, template_id, body, svc.clock.now())


@router.post("/templates/{template_id}/preview", tags=["templates"])
def preview_template(conn: Read, shop: ShopId, template_id: RowId, body: PreviewIn) -> Any:
    """Render with a stored order or sample data; SMS previews report encoding and segments."""
    template = template_store.get(conn, shop, template_id)
    return preview(conn, shop_store.get(conn, shop), template, body)


@router.post("/rules", status_code=201, tags=["rules"])
def create_rule(svc: ServicesDep, shop: ShopId, body: RuleIn) -> Any:
    """Create a rule."""
    with svc.engine.begin() as conn:
        return rule_store.create(conn, shop, body, svc.clock.now())


@router.get("/rules", tags=["rules"])
def list_rules(conn: Read, shop: ShopId) -> Any:
    """The shop's rules in evaluation order."""
    return {"items": rule_store.list_all(conn, shop)}


@router.get("/rules/{rule_id}", tags=["rules"])
def get_rule(conn: Read, shop: ShopId, rule_id: RowId) -> Any:
    """One rule."""
    return rule_store.get(conn, shop, rule_id)


@router.patch("/rules/{rule_id}", tags=["rules"])
def patch_rule(svc: ServicesDep, shop: ShopId, rule_id: RowId, body: RulePatch) -> Any:
    """Change a rule (e.g. {"active": false})."""
    with svc.engine.begin() as conn:
        return rule_store.patch(conn, shop, rule_id, body, svc.clock.now())


@router.delete("/rules/{rule_id}", status_code=204, tags=["rules"])
def delete_rule(svc: ServicesDep, shop: ShopId, rule_id: RowId) -> None:
    """Delete a rule; its messages keep their history."""
    with svc.engine.begin() as conn:
        rule_store.remove(conn, shop, rule_id)


@router.get("/orders", tags=["orders"])
def list_orders(
    conn: Read,
    shop: ShopId,
    status: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = 50,
    after: int | None = None,
) -> Any:
    """The shop's orders, newest first."""
    return {"items": order_store.search(conn, shop, status=status, limit=limit, after=after)}


@router.get("/orders/{code}", tags=["orders"])
def get_order(conn: Read, shop: ShopId, code: str) -> Any:
    """One order with its status history."""
    return order_store.get(conn, shop, code)


@router.get("/messages", tags=["messages"])
def list_messages(
    conn: Read,
    shop: ShopId,
    status: MessageStatus | None = None,
    channel: Channel | None = None,
    rule_id: RowIdFilter = None,
    customer_id: RowIdFilter = None,
    order_id: RowIdFilter = None,
    before: int | None = None,
    limit: Limit = 50,
) -> Any:
    """The shop's messages, newest first, filtered; page with ?before=<last id>."""
    items = message_store.search(
        conn,
        shop,
        status=status.value if status else None,
        channel=channel.value if channel else None,
        rule_id=rule_id,
        customer_id=customer_id,
        order_id=order_id,
        before=before,
        limit=limit,
    )
    return {"items": items, "next_before": items[-1]["id"] if len(items) == limit else None}


@router.get("/messages/{message_id}", tags=["messages"])
def get_message(conn: Read, shop: ShopId, message_id: RowId) -> Any:
    """A message with its audit trail: why it was, or wasn't, sent."""
    return message_store.get(conn, shop, message_id)
