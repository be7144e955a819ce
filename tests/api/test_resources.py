"""The API's resources as an integrator uses them: customers and consent, template preview,
batches and idempotency, filtered order and message lists, and the same pipeline from Python."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.support import drain, event, messages, rule, template

from orderbell.client import Orderbell
from orderbell.clock import ManualClock
from orderbell.compose import Services
from orderbell.errors import InvalidInput

AT = "2026-11-20T10:00:00+03:00"


def test_customer_phone_is_stored_e164_and_consent_can_be_withdrawn(
    client: TestClient, shop: dict[str, Any], services: Services, clock: ManualClock
) -> None:
    created = client.post(
        "/v1/customers",
        headers=shop["auth"],
        json={"id": "c-7", "name": "Ayşe", "phone": "0532 123 45 67", "email": "A@Example.COM"},
    )
    assert created.status_code == 201, created.text
    customer = created.json()
    assert customer["phone"] == "+905321234567"
    assert customer["email"] == "A@example.com"
    assert customer["consent"]["sms_transactional"] is True
    assert customer["consent"]["sms_marketing"] is False

    found = client.get("/v1/customers", headers=shop["auth"], params={"q": "Ayş"}).json()
    assert [c["id"] for c in found["items"]] == [customer["id"]]

    off = client.patch(
        f"/v1/customers/{customer['id']}/consent",
        headers=shop["auth"],
        json={"sms_transactional": False},
    )
    assert off.status_code == 200 and off.json()["consent"]["sms_transactional"] is False

    body = template(client, shop, "Order {{ order_code }} received")
    rule(client, shop, name="new", trigger={"event_type": "order.created"},
         action={"channel": "sms", "template_id": body})  # fmt: skip
    clock.set(datetime.fromisoformat(AT))
    event(client, shop, "order.created", AT, "X-1", customer={"id": "c-7"})
    drain(services)
    [message] = messages(client, shop)
    assert message["status"] == "suppressed" and message["reason"].startswith("opted_out")


def test_invalid_phone_is_refused_when_the_customer_is_saved(
    client: TestClient, shop: dict[str, Any]
) -> None:
    r = client.post(
        "/v1/customers", headers=shop["auth"], json={"id": "c-8", "phone": "call me maybe"}
    )
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "phone"
    assert "letters" in r.json()["error"]["message"]
    assert client.get("/v1/customers", headers=shop["auth"]).json()["items"] == []


def test_sms_preview_reports_encoding_segments_and_forcing_characters(
    client: TestClient, shop: dict[str, Any]
) -> None:
    gsm = template(client, shop, "Order {{ order_code }} ships today", name="gsm")
    uni = template(client, shop, "Sipariş {{ order_code }} bugün kargoda " + "x" * 60, name="uni")
    r = client.post(f"/v1/templates/{gsm}/preview", headers=shop["auth"], json={})
    assert r.status_code == 200, r.text
    preview = r.json()
    assert preview["sample"] is True and preview["text"].startswith("Order ")
    assert preview["sms"]["encoding"] == "GSM-7" and preview["sms"]["segments"] == 1
    r = client.post(f"/v1/templates/{uni}/preview", headers=shop["auth"], json={})
    sms = r.json()["sms"]
    assert sms["encoding"] == "UCS-2"
    assert sms["segments"] == 2  # > 70 UCS-2 units
    assert sms["unicode_chars"] == ["ş"]  # ü is in GSM-7, ş is not
    # what it costs: with sample data, an SMS to the shop's own country, per segment
    assert r.json()["cost"] == {"cost": "0.1000", "unit_price": "0.0500", "units": 2,
                                "country": "TR", "destination": "sample"}  # fmt: skip
    email = template(client, shop, "Order {{ order_code }}", name="mail", channel="email",
                     subject="Your order")  # fmt: skip
    r = client.post(f"/v1/templates/{email}/preview", headers=shop["auth"], json={})
    assert r.status_code == 200, r.text
    assert r.json()["cost"] == {"cost": "0.0500", "unit_price": "0.0500", "units": 1,
                                "country": None, "destination": None}  # fmt: skip


def test_preview_with_a_stored_order(
    client: TestClient, shop: dict[str, Any], clock: ManualClock
) -> None:
    body = template(client, shop, "{{ customer_name }}: {{ order_code }} via {{ courier }}",
                    name="ship")  # fmt: skip
    clock.set(datetime.fromisoformat(AT))
    event(client, shop, "order.shipped", AT, "S-1", order={"courier": "Aras Kargo"})
    r = client.post(
        f"/v1/templates/{body}/preview", headers=shop["auth"], json={"order_code": "S-1"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["text"] == "Ayşe Yılmaz: S-1 via Aras Kargo"
    # priced to the order's customer: a +1 number is an SMS to the US (0.11 a segment)
    us = client.post(
        "/v1/customers", headers=shop["auth"], json={"id": "c-us", "phone": "+12025550123"}
    )
    assert us.status_code in (200, 201), us.text
    event(client, shop, "order.created", AT, "S-2", customer={"id": "c-us"})
    r = client.post(
        f"/v1/templates/{body}/preview", headers=shop["auth"], json={"order_code": "S-2"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["cost"] == {"cost": "0.1100", "unit_price": "0.1100", "units": 1,
                                "country": "US", "destination": "the order's customer"}  # fmt: skip
    missing = client.post(
        f"/v1/templates/{body}/preview", headers=shop["auth"], json={"order_code": "nope"}
    )
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "order_code"


def test_batch_of_events_and_replays(
    client: TestClient, shop: dict[str, Any], clock: ManualClock
) -> None:
    body = template(client, shop, "Order {{ order_code }} received")
    rule(client, shop, name="new", trigger={"event_type": "order.created"},
         action={"channel": "sms", "template_id": body})  # fmt: skip
    clock.set(datetime.fromisoformat(AT))
    batch = [
        {"id": f"e-{i}", "type": "order.created", "occurred_at": AT,
         "order": {"code": f"B-{i}"}, "customer": {"id": f"c{i}", "phone": "+905321234567"}}
        for i in range(5)
    ]  # fmt: skip
    first = client.post("/v1/events", headers=shop["auth"], json=batch)
    assert first.status_code == 201, first.text
    results = first.json()["results"]
    assert len(results) == 5 and not any(r["duplicate"] for r in results)
    again = client.post("/v1/events", headers=shop["auth"], json=batch).json()["results"]
    assert [r["event_id"] for r in again] == [r["event_id"] for r in results]
    assert all(r["duplicate"] for r in again)
    assert len(messages(client, shop)) == 5
    empty = client.post("/v1/events", headers=shop["auth"], json=[])
    assert empty.status_code == 422 and empty.json()["error"]["field"] == "body"


def test_idempotency_key_replay_returns_the_original_result(
    client: TestClient, shop: dict[str, Any], clock: ManualClock
) -> None:
    clock.set(datetime.fromisoformat(AT))
    headers = {**shop["auth"], "Idempotency-Key": "order-77-created"}
    body = {"type": "order.created", "occurred_at": AT, "order": {"code": "77"},
            "customer": {"id": "c1"}}  # fmt: skip
    first = client.post("/v1/events", headers=headers, json=body)
    second = client.post("/v1/events", headers=headers, json=body)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["event_id"] == first.json()["event_id"]
    assert second.json()["duplicate"] is True


def test_orders_and_messages_are_filtered_and_paged(
    client: TestClient, shop: dict[str, Any], services: Services, clock: ManualClock
) -> None:
    sms = template(client, shop, "Order {{ order_code }} {{ status }}", name="s")
    mail = template(client, shop, "Order {{ order_code }}", channel="email", name="m",
                    subject="Order {{ order_code }}")  # fmt: skip
    rule(client, shop, name="sms", trigger={"event_type": "order.status_changed"},
         action={"channel": "sms", "template_id": sms})  # fmt: skip
    rule(client, shop, name="mail", trigger={"event_type": "order.status_changed"},
         action={"channel": "email", "template_id": mail})  # fmt: skip
    clock.set(datetime.fromisoformat(AT))
    for i, status in enumerate(["accepted", "accepted", "cancelled"]):
        event(client, shop, "order.status_changed", AT, f"F-{i}", status=status)
    drain(services)
    orders = client.get("/v1/orders", headers=shop["auth"], params={"status": "accepted"}).json()
    assert sorted(o["code"] for o in orders["items"]) == ["F-0", "F-1"]
    by_channel = messages(client, shop, channel="email")
    assert len(by_channel) == 3 and {m["channel"] for m in by_channel} == {"email"}
    page = client.get("/v1/messages", headers=shop["auth"], params={"limit": 4}).json()
    assert len(page["items"]) == 4 and page["next_before"] == page["items"][-1]["id"]
    rest = client.get(
        "/v1/messages", headers=shop["auth"], params={"limit": 4, "before": page["next_before"]}
    ).json()
    assert len(rest["items"]) == 2 and rest["next_before"] is None
    ids = [m["id"] for m in page["items"] + rest["items"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 6
    bad = client.get("/v1/messages", headers=shop["auth"], params={"status": "lost"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "status"


def test_python_call_uses_the_same_pipeline(
    client: TestClient, shop: dict[str, Any], services: Services, clock: ManualClock, outbox: Any
) -> None:
    body = template(client, shop, "Order {{ order_code }} received")
    rule(client, shop, name="new", trigger={"event_type": "order.created"},
         action={"channel": "sms", "template_id": body})  # fmt: skip
    clock.set(datetime.fromisoformat(AT))
    ob = Orderbell(services)
    event_body = {"type": "order.created", "occurred_at": AT, "order": {"code": "P-1"},
                  "customer": {"id": "c1", "phone": "+905321234567"}}  # fmt: skip
    simulated = ob.simulate(shop["slug"], event_body)
    assert [m["text"] for m in simulated["messages"]] == ["Order P-1 received"]
    assert messages(client, shop) == []  # simulate stores nothing
    result = ob.send_event(shop["slug"], event_body, idempotency_key="p-1")
    assert ob.send_event(shop["slug"], event_body, idempotency_key="p-1")["duplicate"] is True
    assert ob.dispatch() == 1
    assert [line["text"] for line in outbox.lines()] == ["Order P-1 received"]
    assert result["event_id"] > 0
    with pytest.raises(InvalidInput) as refused:
        ob.send_event(shop["slug"], {**event_body, "type": "order.exploded"})
    assert refused.value.field == "type"
