"""Shops sending through their own HTTP gateway accounts: routing, failover on errors,
ambiguous timeouts, delivery receipts (also before the send response) and their tenancy."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from tests.conftest import make_shop
from tests.gateway_harness import Gateway, settings_for
from tests.support import drain, event, messages, rule, template

from orderbell.compose import Services
from orderbell.engine import callbacks as callback_engine
from orderbell.store.schema import delivery_receipts, shop_providers
from orderbell.store.schema import messages as messages_table

AT = "2026-11-20T12:00:00+03:00"  # the test clock's "now" in Istanbul


@pytest.fixture
def gw_a() -> Iterator[Gateway]:
    server = Gateway().start()
    yield server
    server.stop()


@pytest.fixture
def gw_b() -> Iterator[Gateway]:
    server = Gateway().start()
    yield server
    server.stop()


def add_provider(
    client: TestClient, shop: dict[str, Any], gw: Gateway, name: str, **settings: Any
) -> dict[str, Any]:
    r = client.post(
        "/v1/providers",
        headers=shop["auth"],
        json={"name": name, "kind": "http", "settings": settings_for(gw, **settings)},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def callback_path(provider: dict[str, Any]) -> str:
    return "/v1/callbacks/" + provider["callback_url"].rsplit("/", 1)[1]


def sms_rule(client: TestClient, shop: dict[str, Any]) -> None:
    body = template(client, shop, "Order {{ order_code }} received", name="created")
    rule(
        client,
        shop,
        name="created-sms",
        trigger={"event_type": "order.created"},
        action={"channel": "sms", "template_id": body},
    )


def detail(client: TestClient, shop: dict[str, Any], message_id: int) -> dict[str, Any]:
    r = client.get(f"/v1/messages/{message_id}", headers=shop["auth"])
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_event_to_gateway_to_receipt_delivered(
    client: TestClient, shop: dict[str, Any], services: Services, gw_a: Gateway, outbox: Any
) -> None:
    provider = add_provider(client, shop, gw_a, "gw-a")
    sms_rule(client, shop)
    event(client, shop, "order.created", AT, "A-1")
    drain(services)
    assert outbox.lines() == []  # not the global console provider
    [request] = gw_a.requests
    [m] = messages(client, shop)
    assert request["json"] == {
        "to": "+905321234567",
        "text": "Order A-1 received",
        "reference": str(m["id"]),
    }
    assert request["headers"]["X-Api-Key"] == "k3y-secret-value"
    assert (m["status"], m["provider"], m["provider_id"]) == ("sent", "gw-a", provider["id"])
    assert m["provider_message_id"] == "gw-1"

    r = client.post(
        callback_path(provider),
        json={"id": "gw-1", "status": "DELIVRD", "time": "2026-11-20T09:00:05Z"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["matched"] == 1
    got = detail(client, shop, m["id"])
    assert got["status"] == "delivered"
    assert got["delivery_code"] == "DELIVRD"
    assert got["delivered_at"].startswith("2026-11-20T09:00:05")
    assert got["ambiguous"] is False
    assert "delivered: gw-a confirmed delivery" in got["audit"][-1]["reason"]


def test_failover_on_500s_and_cooling(
    client: TestClient,
    shop: dict[str, Any],
    services: Services,
    gw_a: Gateway,
    gw_b: Gateway,
) -> None:
    gw_a.mode = "500"
    first = add_provider(client, shop, gw_a, "gw-a")
    add_provider(client, shop, gw_b, "gw-b")
    sms_rule(client, shop)
    for i in range(12):
        event(client, shop, "order.created", AT, f"A-{i}")
    drain(services)
    sent = messages(client, shop)
    assert [m["status"] for m in sent] == ["sent"] * 12
    assert {m["provider"] for m in sent} == {"gw-b"}
    assert len(gw_a.requests) == 12  # each tried once on A (500: nothing was sent) ...
    references = [r["json"]["reference"] for r in gw_b.requests]
    assert sorted(references) == sorted(str(m["id"]) for m in sent)  # ... and sent once on B
    trail = detail(client, shop, sent[0]["id"])["audit"][-1]
    assert trail["detail"]["tries"] == ["error from gw-a (http_500); failing over to gw-b"]
    assert detail(client, shop, sent[0]["id"])["ambiguous"] is False

    # 12 errors in the window tripped A: the next messages skip it (all workers see it)
    with services.engine.connect() as conn:
        cooling = conn.execute(
            select(shop_providers.c.cooling_until).where(shop_providers.c.id == first["id"])
        ).scalar()
    assert cooling is not None
    for i in range(3):
        event(client, shop, "order.created", AT, f"B-{i}")
    drain(services)
    assert len(gw_a.requests) == 12
    assert len(gw_b.requests) == 15


def test_permanent_error_is_not_failed_over(
    client: TestClient, shop: dict[str, Any], services: Services, gw_a: Gateway, gw_b: Gateway
) -> None:
    gw_a.mode = "400"
    add_provider(client, shop, gw_a, "gw-a")
    add_provider(client, shop, gw_b, "gw-b")
    sms_rule(client, shop)
    event(client, shop, "order.created", AT, "A-1")
    drain(services)
    [m] = messages(client, shop)
    assert m["status"] == "failed" and "gw-a rejected it (http_400)" in m["reason"]
    assert gw_b.requests == []


def test_ambiguous_timeout_fails_over_and_flags(
    client: TestClient, shop: dict[str, Any], services: Services, gw_a: Gateway, gw_b: Gateway
) -> None:
    gw_a.mode = "sleep"
    gw_a.sleep_seconds = 4.0
    add_provider(client, shop, gw_a, "gw-a", timeout_seconds=1.0)
    add_provider(client, shop, gw_b, "gw-b")
    sms_rule(client, shop)
    event(client, shop, "order.created", AT, "A-1")
    drain(services)
    [m] = messages(client, shop)
    got = detail(client, shop, m["id"])
    assert got["status"] == "sent", got
    assert len(gw_a.requests) == 1 and len(gw_b.requests) == 1
    assert (got["status"], got["provider"], got["ambiguous"]) == ("sent", "gw-b", True)
    last = got["audit"][-1]
    assert "may arrive twice" in last["reason"]
    assert last["detail"]["ambiguous"] is True
    assert last["detail"]["tries"] == [
        "ambiguous outcome from gw-a (timeout); failing over to gw-b"
    ]
    assert got["billing"] == "debited"  # charged once


def test_receipt_before_send_response_is_reconciled(
    client: TestClient, shop: dict[str, Any], services: Services, gw_a: Gateway
) -> None:
    provider = add_provider(client, shop, gw_a, "gw-a")
    answers: list[dict[str, Any]] = []

    def receipt_first(record: dict[str, Any]) -> None:
        # the gateway reports delivery before it answers our send request
        r = client.post(
            callback_path(provider),
            json={"reference": record["json"]["reference"], "status": "delivered"},
        )
        answers.append(r.json())

    gw_a.before_answer = receipt_first
    sms_rule(client, shop)
    event(client, shop, "order.created", AT, "A-1")
    drain(services)
    assert answers == [
        {
            "ok": True,
            "receipts": 1,
            "matched": 0,
            "waiting": 1,
            "inbound": 0,
            "duplicates": 0,
            "opted_out": 0,
            "opted_in": 0,
        }
    ]
    [m] = messages(client, shop)
    assert m["status"] == "delivered"
    assert m["provider_message_id"] == "gw-1"
    with services.engine.connect() as conn:
        assert conn.execute(select(delivery_receipts.c.applied)).scalars().all() == [True]


def test_receipt_committed_after_the_send_was_recorded_is_applied(
    client: TestClient,
    shop: dict[str, Any],
    services: Services,
    gw_a: Gateway,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race real Kannel showed on PostgreSQL: the callback reads the message still
    `sending`, the dispatcher records the send (its reconcile_sent cannot see the receipt
    yet) and only then the callback commits. The callback's second look applies it."""
    provider = add_provider(client, shop, gw_a, "gw-a")
    sms_rule(client, shop)
    event(client, shop, "order.created", AT, "A-1")
    drain(services)
    [m] = messages(client, shop)
    with services.engine.begin() as conn:
        conn.execute(
            update(messages_table).where(messages_table.c.id == m["id"]).values(status="sending")
        )
    original = callback_engine.apply

    def recorded_meanwhile(conn: Any, *args: Any) -> callback_engine.Applied:
        applied = original(conn, *args)  # sees `sending`: the receipt waits
        conn.execute(
            update(messages_table).where(messages_table.c.id == m["id"]).values(status="sent")
        )
        return applied

    monkeypatch.setattr(callback_engine, "apply", recorded_meanwhile)
    r = client.post(callback_path(provider), json={"id": "gw-1", "status": "delivered"})
    assert r.status_code == 200 and r.json()["waiting"] == 1
    assert messages(client, shop)[0]["status"] == "delivered"


def test_receipts_that_change_nothing(
    client: TestClient, shop: dict[str, Any], services: Services, gw_a: Gateway, gw_b: Gateway
) -> None:
    secret = "shared-secret-123"
    mine = add_provider(client, shop, gw_a, "gw-a", callback_auth="hmac", callback_secret=secret)
    assert "callback_secret" in mine["secrets_set"] and secret not in json.dumps(mine)
    other_shop = make_shop(client, "other")
    theirs = add_provider(client, other_shop, gw_b, "gw-b")
    sms_rule(client, shop)
    event(client, shop, "order.created", AT, "A-1")
    drain(services)
    [m] = messages(client, shop)

    def signed(body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        raw = json.dumps(body).encode()
        sig = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        return raw, {"content-type": "application/json", "x-signature": sig}

    # another shop's account cannot touch our message, by reference or by provider id
    r = client.post(
        callback_path(theirs), json={"reference": str(m["id"]), "id": "gw-1", "status": "failed"}
    )
    assert r.status_code == 200 and r.json()["matched"] == 0
    # nor can the same shop's other account that did not send it (our id echoed back)
    spare = add_provider(client, shop, gw_b, "gw-spare")
    r = client.post(
        callback_path(spare), json={"reference": str(m["id"]), "id": "x-9", "status": "failed"}
    )
    assert r.status_code == 200 and r.json()["matched"] == 0
    # an unknown id: stored unmatched, answered 200 so the provider stops retrying
    raw, headers = signed({"id": "nope", "status": "delivered"})
    r = client.post(callback_path(mine), content=raw, headers=headers)
    assert r.status_code == 200 and r.json()["matched"] == 0
    # a bad signature: refused, nothing stored
    raw, headers = signed({"id": "gw-1", "status": "delivered"})
    r = client.post(callback_path(mine), content=raw, headers={**headers, "x-signature": "0" * 64})
    assert r.status_code == 403 and r.json()["error"]["code"] == "callback_rejected"
    # an unknown token
    r = client.post("/v1/callbacks/not-a-token", json={"id": "gw-1", "status": "delivered"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"

    got = detail(client, shop, m["id"])
    assert (got["status"], got["delivery_code"]) == ("sent", None)
    with services.engine.connect() as conn:
        stored = conn.execute(
            select(func.count())
            .select_from(delivery_receipts)
            .where(delivery_receipts.c.message_id.is_(None))
        ).scalar()
    assert stored == 3  # the three unmatched ones, kept for the record

    # the right signature from the right account does apply; this shop is not charged
    # for messages that fail after submission, so the debit is refunded
    r = client.patch(
        "/v1/credits/settings",
        headers=shop["auth"],
        json={"charge_failed_after_submission": False},
    )
    assert r.status_code == 200, r.text
    balance = client.get("/v1/credits", headers=shop["auth"]).json()
    raw, headers = signed({"id": "gw-1", "status": "undelivered", "code": "EXPIRED"})
    r = client.post(callback_path(mine), content=raw, headers=headers)
    assert r.json()["matched"] == 1
    got = detail(client, shop, m["id"])
    assert (got["status"], got["delivery_code"]) == ("undelivered", "EXPIRED")
    assert got["billing"] == "refunded"
    assert "refunded" in got["audit"][-1]["reason"]
    after = client.get("/v1/credits", headers=shop["auth"]).json()
    assert Decimal(after["available"]) - Decimal(balance["available"]) == Decimal(m["cost"])
