"""The simulator: what would an event send, when, with what text, and why — storing nothing."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, select

from orderbell.api.schemas import EventIn
from orderbell.billing import credits
from orderbell.billing.prices import Quote, quote
from orderbell.clock import Clock
from orderbell.domain import sms_text
from orderbell.domain.model import Channel, CustomerInfo, MessageStatus, OrderSnapshot, Shop
from orderbell.engine.ingest import event_status, is_pending, to_event
from orderbell.engine.planner import PlannedMessage, plan
from orderbell.engine.shop_config import template_infos
from orderbell.errors import TemplateError
from orderbell.store import customers as customer_store
from orderbell.store import orders as order_store
from orderbell.store import rules as rule_store
from orderbell.store import shops as shop_store
from orderbell.store import templates as template_store
from orderbell.store.schema import customers, orders
from orderbell.templates.sandbox import Renderer


class Simulator:
    """Answers "what would happen?" for an event, read-only."""

    def __init__(self, engine: Engine, clock: Clock, renderer: Renderer) -> None:
        self._engine = engine
        self._clock = clock
        self._renderer = renderer

    def simulate(self, shop_id: int, data: EventIn) -> dict[str, Any]:
        """Plan the event as ingest would, render each message, store nothing."""
        with self._engine.connect() as conn:
            shop = shop_store.get(conn, shop_id)
            contact = customer_store.normalise(shop, data.customer, prefix="customer.")
            customer = CustomerInfo(
                name=contact.get("name"),
                phone=contact.get("phone"),
                email=contact.get("email"),
                locale=contact.get("locale"),
            )
            key = customer_store.external_id(data.customer, contact)
            if key is not None:
                row = conn.execute(
                    select(customers).where(
                        customers.c.shop_id == shop_id, customers.c.external_id == key
                    )
                ).first()
                if row is not None:
                    stored = customer_store.info(row)
                    customer = CustomerInfo(
                        name=customer.name or stored.name,
                        phone=customer.phone or stored.phone,
                        email=customer.email or stored.email,
                        locale=customer.locale or stored.locale,
                        consent=stored.consent,
                        sms_opt_out=stored.sms_opt_out,
                    )
            order_row = conn.execute(
                select(orders).where(orders.c.shop_id == shop_id, orders.c.code == data.order.code)
            ).first()
            base = (
                order_store.snapshot(order_row)
                if order_row
                else OrderSnapshot(code=data.order.code)
            )
            given = {
                f: getattr(data.order, f)
                for f in order_store.SNAPSHOT_FIELDS
                if getattr(data.order, f) is not None
            }
            status = event_status(data)
            if status:
                given["status"] = status
            snapshot = OrderSnapshot(
                code=data.order.code,
                **{f: given.get(f, getattr(base, f)) for f in order_store.SNAPSHOT_FIELDS},
            )
            rules = rule_store.for_event(conn, shop_id, data.type)
            verdicts, planned = plan(
                shop=shop,
                rules=rules,
                event=to_event(data, snapshot, customer),
                customer=customer,
                templates=template_infos(conn, shop_id, rules),
                now=min(self._clock.now(), data.occurred_at),
            )
            out: list[dict[str, Any]] = []
            # paid for as ingest would now (a cap's month, an allowance's expiry), whatever
            # instant the event carries
            funds = _Funds(credits.account(conn, shop_id), self._clock.now())
            for p in planned:
                template = template_store.get(conn, shop_id, p.rule.action.template_id)
                item: dict[str, Any] = {
                    "rule_id": p.rule.id,
                    "rule": p.rule.name,
                    "channel": p.channel.value,
                    "status": p.status.value,
                    "reason": p.reason,
                    "send_at": p.due_at.isoformat(),
                    "expires_at": p.expires_at.isoformat() if p.expires_at else None,
                    "recipient": p.recipient,
                    "notes": list(p.notes),
                }
                try:
                    self._render(conn, shop, funds, p, template, item)
                except TemplateError as exc:
                    item.update(text=None, error=exc.as_dict()["error"])
                out.append(item)
        return {
            "verdicts": [v.as_dict() for v in verdicts],
            "messages": out,
        }

    def _render(
        self,
        conn: Connection,
        shop: Shop,
        funds: _Funds,
        p: PlannedMessage,
        template: dict[str, Any],
        item: dict[str, Any],
    ) -> None:
        """Fill in a message's text, SMS analysis, cost and funding as ingest and the worker
        decide them: an SMS over the shop's segment cap is held, not priced; one the shop
        cannot pay for now is held too (`insufficient_credit`, `spending_cap`)."""
        rendered = self._renderer.render(
            (template["id"], template["version"]), template_store.source(template), p.context
        )
        item.update(text=rendered.text, subject=rendered.subject, html=rendered.html)
        segments = None
        if p.channel is Channel.SMS:
            item["sms"] = sms = sms_text.describe(shop, rendered.text)
            item["text"], segments = sms["text"], sms["segments"]
            if sms["hold"] and is_pending(p.status):
                item.update(status=MessageStatus.HELD.value, reason=sms["hold"], cost=None)
                return
        quoted = quote(conn, shop.id, funds.account.plan_id, p.channel, p.recipient, segments)
        item["cost"] = quoted.as_dict()
        if is_pending(p.status):
            hold, item["funding"] = funds.decide(conn, p, quoted)
            if hold is not None:
                item.update(status=MessageStatus.HELD.value, reason=hold)


class _Funds:
    """The shop's account as the simulated event's messages would draw on it, in order:
    moved in memory, written nowhere."""

    def __init__(self, account: credits.Account, now: datetime) -> None:
        self.account, self.now = account, now
        self._buckets = credits.Reservations()  # (its queued entries are never written)
        self._queued = Decimal(0)

    def decide(
        self, conn: Connection, p: PlannedMessage, quoted: Quote
    ) -> tuple[str | None, str | None]:
        """(the hold reason, or None) and how the message would be paid for."""
        funding = credits.decide(
            conn, self.account, p.channel, quoted, self.now, queued=self._queued,
            cache=self._buckets, keep=False,
        )  # fmt: skip
        if funding.hold is not None:
            return funding.hold, None
        if funding.bucket_id is not None:
            self._buckets.reserve_units(
                conn, self.account.shop_id, p.channel, funding.bucket_id, quoted.units,
                now=self.now, actor="simulate", country=quoted.country, message_id=None,
                rule_id=p.rule.id,
            )  # fmt: skip
        elif funding.funding is not None:
            self.account = self.account.moved(quoted.cost)
            self._queued += quoted.cost
        return None, funding.funding
