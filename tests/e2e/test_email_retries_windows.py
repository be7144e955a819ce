"""The whole pipeline with a real SMTP server on loopback: e-mail rules, transient and
permanent refusals (backoff, bounded by validity and attempts), quiet hours that defer
instead of dropping, and a daylight-saving change day."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.conftest import make_shop
from tests.smtp_harness import Server, start_server
from tests.support import drain, event, messages, rule, template

from orderbell.channels.smtp import SmtpProvider
from orderbell.clock import ManualClock
from orderbell.compose import Services
from orderbell.domain.model import Channel

pytestmark = pytest.mark.smtp

CUSTOMER = {"id": "c1", "name": "<b>Jan</b> & Co", "email": "jan@customer.example"}


@pytest.fixture
def smtp(services: Services) -> Iterator[Server]:
    """A real aiosmtpd server; the services send e-mail through it."""
    server = start_server()
    provider = SmtpProvider(server.settings(from_address="orders@shop.example"))
    services.providers[Channel.EMAIL] = provider
    yield server
    asyncio.run(provider.close())
    server.controller.stop()


def email_shop(client: TestClient, **more: Any) -> dict[str, Any]:
    shop = make_shop(
        client,
        "mailshop",
        timezone="Europe/Warsaw",
        country="PL",
        email_from="orders@shop.example",
        **more,
    )
    body = template(
        client,
        shop,
        "Hello {{ customer_name }}, order {{ order_code }} left with {{ courier }}: "
        "{{ tracking_number }}",
        channel="email",
        name="shipped",
        subject="Order {{ order_code }} shipped",
        html="<p>Hello {{ customer_name }}, order <b>{{ order_code }}</b> shipped.</p>",
    )
    rule(
        client,
        shop,
        name="shipped-mail",
        trigger={"event_type": "order.shipped"},
        action={"channel": "email", "template_id": body, "validity_minutes": 60},
    )
    return shop


def shipped(client: TestClient, shop: dict[str, Any], at: str, code: str = "A-1") -> None:
    event(
        client,
        shop,
        "order.shipped",
        at,
        code,
        order={"courier": "inpost", "tracking_number": "620000000000000000000001"},
        customer=CUSTOMER,
    )


def test_email_rule_sends_text_and_escaped_html(
    client: TestClient, services: Services, clock: ManualClock, smtp: Server
) -> None:
    shop = email_shop(client)
    clock.set(datetime.fromisoformat("2026-11-20T10:00:00+01:00"))
    shipped(client, shop, "2026-11-20T10:00:00+01:00")
    assert drain(services) == 1
    [received] = smtp.handler.received
    mail = received.parsed()
    assert received.rcpt_tos == ["jan@customer.example"]
    assert mail["Subject"] == "Order A-1 shipped"
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert text is not None and html is not None
    assert "Hello <b>Jan</b> & Co, order A-1 left with inpost" in text.get_content()
    assert "&lt;b&gt;Jan&lt;/b&gt; &amp; Co" in html.get_content()
    assert "<b>Jan</b>" not in html.get_content()
    [message] = messages(client, shop)
    assert message["status"] == "sent"


def test_transient_refusal_backs_off_then_sends(
    client: TestClient, services: Services, clock: ManualClock, smtp: Server
) -> None:
    shop = email_shop(client)
    start = datetime.fromisoformat("2026-11-20T10:00:00+01:00")
    clock.set(start)
    shipped(client, shop, start.isoformat())
    smtp.handler.rcpt_replies["jan"] = "451 4.7.1 Greylisted, try again later"
    drain(services)
    [message] = messages(client, shop)
    assert message["status"] == "deferred"
    assert "451" in message["reason"] or "transient" in message["reason"]
    detail = client.get(f"/v1/messages/{message['id']}", headers=shop["auth"]).json()
    retry_at = datetime.fromisoformat(detail["due_at"])
    # full jitter after the first attempt: somewhere in [now, now + base]
    assert start <= retry_at <= start + timedelta(seconds=services.settings.retry_base_seconds)
    assert smtp.handler.received == []

    del smtp.handler.rcpt_replies["jan"]
    clock.set(retry_at + timedelta(seconds=1))
    drain(services)
    detail = client.get(f"/v1/messages/{message['id']}", headers=shop["auth"]).json()
    assert detail["status"] == "sent"
    assert [a["outcome"] for a in detail["attempts"]] == ["retryable", "accepted"]
    assert len(smtp.handler.received) == 1


def test_permanent_refusal_fails_with_the_servers_code(
    client: TestClient, services: Services, clock: ManualClock, smtp: Server
) -> None:
    shop = email_shop(client)
    clock.set(datetime.fromisoformat("2026-11-20T10:00:00+01:00"))
    shipped(client, shop, "2026-11-20T10:00:00+01:00")
    smtp.handler.rcpt_replies["jan"] = "550 5.1.1 No such user"
    drain(services)
    [message] = messages(client, shop)
    assert message["status"] == "failed"
    detail = client.get(f"/v1/messages/{message['id']}", headers=shop["auth"]).json()
    [attempt] = detail["attempts"]
    assert attempt["outcome"] == "permanent"
    assert "550" in (attempt["error_code"] or "") + (attempt["error_message"] or "")
    assert smtp.handler.received == []


def test_retries_stop_at_validity_and_never_send_late(
    client: TestClient, services: Services, clock: ManualClock, smtp: Server
) -> None:
    shop = email_shop(client)
    start = datetime.fromisoformat("2026-11-20T10:00:00+01:00")
    clock.set(start)
    shipped(client, shop, start.isoformat())
    smtp.handler.rcpt_replies["jan"] = "421 4.3.2 Service shutting down"
    # keep retrying while the server refuses; validity is 60 minutes
    for _ in range(40):
        drain(services)
        [message] = messages(client, shop)
        if message["status"] != "deferred":
            break
        detail = client.get(f"/v1/messages/{message['id']}", headers=shop["auth"]).json()
        clock.set(datetime.fromisoformat(detail["due_at"]) + timedelta(seconds=1))
    assert message["status"] in {"expired", "failed"}
    assert clock.now() <= start + timedelta(minutes=61)
    del smtp.handler.rcpt_replies["jan"]
    clock.advance(timedelta(hours=2))
    drain(services)
    assert smtp.handler.received == []
    assert messages(client, shop)[0]["status"] in {"expired", "failed"}


def test_quiet_hours_defer_sms_to_the_next_opening(
    client: TestClient, services: Services, clock: ManualClock, outbox: Any
) -> None:
    shop = make_shop(
        client,
        "quiet",
        timezone="Europe/Warsaw",
        country="PL",
        quiet_hours="08:00-21:00",
        transactional_obeys_quiet_hours=True,
    )
    sms = template(client, shop, "Order {{ order_code }} accepted", name="acc")
    rule(
        client,
        shop,
        name="accepted",
        trigger={"event_type": "order.status_changed", "to_status": "accepted"},
        action={"channel": "sms", "template_id": sms},
    )
    at = "2026-11-20T22:30:00+01:00"
    clock.set(datetime.fromisoformat(at))
    event(
        client,
        shop,
        "order.status_changed",
        at,
        "Q-1",
        status="accepted",
        customer={"id": "k", "name": "Jan", "phone": "+48600700800"},
    )
    [message] = messages(client, shop)
    assert message["status"] == "deferred"
    detail = client.get(f"/v1/messages/{message['id']}", headers=shop["auth"]).json()
    assert datetime.fromisoformat(detail["due_at"]) == datetime.fromisoformat(
        "2026-11-21T08:00:00+01:00"
    )
    clock.set(datetime.fromisoformat("2026-11-21T07:59:00+01:00"))
    assert drain(services) == 0
    assert outbox.lines() == []
    clock.set(datetime.fromisoformat("2026-11-21T08:00:00+01:00"))
    assert drain(services) == 1
    assert [line["to"] for line in outbox.lines()] == ["+48600700800"]
    assert messages(client, shop)[0]["status"] == "sent"


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        # 2026-03-29: Warsaw springs forward 02:00 CET -> 03:00 CEST
        pytest.param("2026-03-29T00:59:59Z", "today", id="01:59:59-CET"),
        pytest.param("2026-03-29T01:00:00Z", "today", id="03:00:00-CEST"),
        pytest.param("2026-03-29T12:59:59Z", "today", id="14:59:59-CEST"),
        pytest.param("2026-03-29T13:00:00Z", "tomorrow", id="15:00:00-CEST"),
        pytest.param("2026-03-29T21:59:00Z", "tomorrow", id="23:59-CEST"),
        pytest.param("2026-03-29T22:00:00Z", "today", id="00:00-next-day"),
        # 2026-10-25: back to CET; 02:30 happens twice
        pytest.param("2026-10-25T00:30:00Z", "today", id="02:30-first"),
        pytest.param("2026-10-25T01:30:00Z", "today", id="02:30-second"),
        pytest.param("2026-10-25T13:59:59Z", "today", id="14:59:59-CET"),
        pytest.param("2026-10-25T14:00:00Z", "tomorrow", id="15:00-CET"),
    ],
)
def test_hour_ranges_follow_local_time_on_dst_change_days(
    client: TestClient, services: Services, clock: ManualClock, at: str, expected: str
) -> None:
    shop = make_shop(client, "dst", timezone="Europe/Warsaw", country="PL")
    texts = {"today": "ships today by 18:00", "tomorrow": "ships tomorrow by 13:00"}
    for name, hours in (("today", "00:00-15:00"), ("tomorrow", "15:00-00:00")):
        rule(
            client,
            shop,
            name=name,
            group="ship",
            trigger={"event_type": "order.created"},
            conditions={"hours": [hours]},
            action={
                "channel": "sms",
                "template_id": template(client, shop, texts[name], name=name),
            },
        )
    result = client.post(
        "/v1/simulate",
        headers=shop["auth"],
        json={
            "type": "order.created",
            "occurred_at": at,
            "order": {"code": "D-1"},
            "customer": {"id": "k", "phone": "+48600700800"},
        },
    )
    assert result.status_code == 200, result.text
    planned = result.json()["messages"]
    assert [m["rule"] for m in planned] == [expected]
    assert planned[0]["text"] == texts[expected]


def test_follow_up_days_later_keeps_local_time_across_dst(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    shop = make_shop(client, "thanks", timezone="Europe/Warsaw", country="PL")
    rule(
        client,
        shop,
        name="thanks",
        trigger={"event_type": "order.delivered"},
        action={
            "channel": "sms",
            "template_id": template(client, shop, "Thank you!", name="thanks"),
            "days_after": 2,
            "at_local_time": "12:00",
        },
    )
    at = "2026-10-24T18:00:00+02:00"  # Saturday, CEST; Monday is CET
    clock.set(datetime.fromisoformat(at))
    event(
        client,
        shop,
        "order.delivered",
        at,
        "T-1",
        customer={"id": "k", "name": "Jan", "phone": "+48600700800"},
    )
    [message] = messages(client, shop)
    detail = client.get(f"/v1/messages/{message['id']}", headers=shop["auth"]).json()
    assert datetime.fromisoformat(detail["due_at"]) == datetime.fromisoformat(
        "2026-10-26T12:00:00+01:00"
    )
