"""The demo shop: the seed scenarios' rules and templates, and a day of sample orders."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from orderbell.api.schemas import EventIn, RuleIn, ShopIn, TemplateIn
from orderbell.billing import credits
from orderbell.errors import NotFound
from orderbell.store import rules as rule_store
from orderbell.store import shops as shop_store
from orderbell.store import templates as template_store

DEMO_CREDIT = "50"  #: credits the demo shop starts with
DEMO_SLUG = "demo"
SIGNATURE = "{{ shop_name }}"
TEMPLATES: dict[str, dict[str, Any]] = {
    "ships-today": {
        "channel": "sms",
        "body": (
            "Hello {{ customer_name }}, your order {{ order_code }} has been taken. Thank you for "
            "choosing our shop. Your order will be shipped today until 18:00. " + SIGNATURE
        ),
    },
    "ships-tomorrow": {
        "channel": "sms",
        "body": (
            "Hello {{ customer_name }}, your order {{ order_code }} has been taken. Thank you for "
            "choosing our shop. Your order will be shipped tomorrow until 13:00. " + SIGNATURE
        ),
    },
    "ships-monday": {
        "channel": "sms",
        "body": (
            "Hello {{ customer_name }}, your order {{ order_code }} has been taken. We are closed "
            "at the weekend: your order will be shipped on Monday until 13:00. " + SIGNATURE
        ),
    },
    "ships-after-holiday": {
        "channel": "sms",
        "body": (
            "Hello {{ customer_name }}, your order {{ order_code }} has been taken. Today is a "
            "holiday: your order will be shipped on the next working day. " + SIGNATURE
        ),
    },
    "accepted": {
        "channel": "sms",
        "body": (
            "{{ shop_name }}: order {{ order_code }} accepted. Total {{ order_total }} "
            "({{ payment_method }}). Ready in about {{ preparation_time }}."
        ),
    },
    "ready": {
        "channel": "sms",
        "body": ("{{ shop_name }}: order {{ order_code }} is ready and waits for departure."),
    },
    "departed": {
        "channel": "sms",
        "body": (
            "{{ shop_name }}: order {{ order_code }} is on its way. "
            "Expected {{ estimated_delivery }}."
        ),
    },
    "shipped": {
        "channel": "sms",
        "body": (
            "Your order {{ order_code }} was shipped with {{ courier }} ({{ tracking_number }}). "
            "Track it: {{ tracking_url }}"
        ),
    },
    "thank-you": {
        "channel": "sms",
        "body": (
            "2 days ago we delivered your order {{ order_code }}. Thank you! Tell us how it went "
            "and get a discount on your next order. " + SIGNATURE
        ),
    },
    "confirmation-email": {
        "channel": "email",
        "subject": "Order {{ order_code }} confirmed",
        "body": (
            "Hello {{ customer_name }},\n\nthank you for your order {{ order_code }} "
            "({{ order_total }}, {{ payment_method }}).\n\n{{ shop_name }}"
        ),
        "html": (
            "<p>Hello {{ customer_name }},</p><p>thank you for your order "
            "<b>{{ order_code }}</b> ({{ order_total }}, {{ payment_method }}).</p>"
            "<p>{{ shop_name }}</p>"
        ),
    },
}


def _rules(t: dict[str, int]) -> list[dict[str, Any]]:
    weekdays = ["mon", "tue", "wed", "thu", "fri"]
    created = {"event_type": "order.created"}

    def sms(template: str, **extra: Any) -> dict[str, Any]:
        return {"channel": "sms", "template_id": t[template], **extra}

    return [
        {
            "name": "New order on a holiday",
            "group": "new-order",
            "priority": 10,
            "trigger": created,
            "conditions": {"holidays": "only"},
            "action": sms("ships-after-holiday"),
        },
        {
            "name": "New order at the weekend",
            "group": "new-order",
            "priority": 20,
            "trigger": created,
            "conditions": {"weekdays": ["sat", "sun"], "holidays": "exclude"},
            "action": sms("ships-monday"),
        },
        {
            "name": "Ships today (00:00-15:00)",
            "group": "new-order",
            "priority": 30,
            "trigger": created,
            "conditions": {"weekdays": weekdays, "hours": ["00:00-15:00"], "holidays": "exclude"},
            "action": sms("ships-today"),
        },
        {
            "name": "Ships tomorrow (15:00-00:00)",
            "group": "new-order",
            "priority": 40,
            "trigger": created,
            "conditions": {"weekdays": weekdays, "hours": ["15:00-00:00"], "holidays": "exclude"},
            "action": sms("ships-tomorrow"),
        },
        {
            "name": "Order confirmation e-mail",
            "trigger": created,
            "action": {"channel": "email", "template_id": t["confirmation-email"]},
        },
        {
            "name": "Accepted",
            "trigger": {"event_type": "order.status_changed", "to_status": "accepted"},
            "action": sms("accepted", validity_minutes=60),
        },
        {
            "name": "Ready, waiting for departure",
            "trigger": {"event_type": "order.status_changed", "to_status": "ready"},
            "action": sms("ready", delay_minutes=2, validity_minutes=60),
        },
        {
            "name": "Departed",
            "trigger": {"event_type": "order.status_changed", "to_status": "out for delivery"},
            "action": sms("departed", validity_minutes=120),
        },
        {
            "name": "Shipped with tracking",
            "trigger": {"event_type": "order.shipped"},
            "action": sms("shipped", validity_minutes=24 * 60),
        },
        {
            "name": "Thank you, 2 days after delivery",
            "trigger": {"event_type": "order.delivered"},
            "action": sms(
                "thank-you", days_after=2, at_local_time="10:00", validity_minutes=4 * 24 * 60
            ),
        },
    ]


@dataclass(frozen=True, slots=True)
class DemoShop:
    """The demo shop's id and a fresh API key."""

    shop_id: int
    api_key: str
    created: bool


def ensure_demo_shop(conn: Connection, now: datetime) -> DemoShop:
    """Create the demo shop with the seed rules and templates, or reuse it; new API key."""
    try:
        row = shop_store.by_slug(conn, DEMO_SLUG)
        _, key = shop_store.create_key(conn, row.id, "demo", now)
        return DemoShop(row.id, key, False)
    except NotFound:
        pass
    row = shop_store.create(
        conn,
        ShopIn(
            name="Demo Shop",
            slug=DEMO_SLUG,
            timezone="Europe/Istanbul",
            country="TR",
            locale="en",
            currency="TRY",
            sms_sender="DemoShop",
            email_from="orders@demo.example",
            quiet_hours="08:00-21:00",
            transactional_obeys_quiet_hours=True,
        ),
        now,
    )
    ids: dict[str, int] = {}
    for name, spec in TEMPLATES.items():
        created = template_store.create(conn, row.id, TemplateIn(name=name, **spec), now)
        ids[name] = created["id"]
    for spec in _rules(ids):
        rule_store.create(conn, row.id, RuleIn.model_validate(spec), now)
    credits.topup(conn, row.id, DEMO_CREDIT, reference="demo credit", actor="demo", now=now)
    _, key = shop_store.create_key(conn, row.id, "demo", now)
    return DemoShop(row.id, key, True)


def sample_day(day: datetime) -> list[EventIn]:
    """A day of sample events for the demo shop (Istanbul time), in time order."""
    tz = ZoneInfo("Europe/Istanbul")
    base = datetime(day.year, day.month, day.day, tzinfo=tz)
    customers = [
        {"id": "c1", "name": "Ayşe Yılmaz", "phone": "+905321234567", "email": "ayse@example.com"},
        {"id": "c2", "name": "Mehmet Demir", "phone": "0532 765 43 21"},
        {"id": "c3", "name": "Jan Kowalski", "phone": "+48600700800", "email": "jan@example.pl"},
    ]
    items: list[dict[str, Any]] = []

    def add(at: timedelta, type_: str, code: str, cust: int, **more: Any) -> None:
        order = {
            "code": code,
            "total": "249.90",
            "currency": "TRY",
            "payment_method": "card",
            "preparation_minutes": 45,
            **more.pop("order", {}),
        }
        items.append(
            {
                "id": f"{code}-{type_}-{len(items)}",
                "type": type_,
                "occurred_at": (base + at).isoformat(),
                "order": order,
                "customer": customers[cust],
                **more,
            }
        )

    add(timedelta(hours=9, minutes=12), "order.created", "1001", 0)
    add(timedelta(hours=14, minutes=59, seconds=59), "order.created", "1002", 1)
    add(timedelta(hours=15), "order.created", "1003", 2)
    add(timedelta(hours=15, minutes=5), "order.status_changed", "1001", 0, status="accepted")
    add(timedelta(hours=15, minutes=40), "order.status_changed", "1001", 0, status="ready")
    add(
        timedelta(hours=16),
        "order.shipped",
        "1001",
        0,
        order={"courier": "Yurtiçi Kargo", "tracking_number": "YK123456789"},
    )
    add(timedelta(hours=22, minutes=30), "order.status_changed", "1002", 1, status="accepted")
    add(timedelta(hours=23, minutes=59), "order.created", "1004", 0)
    return [EventIn.model_validate(i) for i in items]
