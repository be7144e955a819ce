"""A shop sending through its own Kannel, end to end and for real: the API app, the dispatcher
and a real database on one side; bearerbox + smsbox + fakesmsc (the phones) on the other.
Kannel calls our app back over real HTTP (uvicorn on a loopback port): delivery reports on the
dlr-url, customers' replies on the sms-service's get-url."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.conftest import Outbox, wire
from tests.kannel_harness import PASSWORD, Kannel, Sms, free_port, wait_until
from tests.support import drain, event, messages, rule, serving, template

from orderbell.api.app import create_app
from orderbell.channels.base import Outcome, OutgoingMessage
from orderbell.channels.kannel import INBOUND_QUERY, with_query
from orderbell.clock import ManualClock
from orderbell.compose import Services
from orderbell.domain.model import Channel
from orderbell.store.schema import delivery_receipts

AT = "2026-11-20T12:00:00+03:00"  # the test clock's "now" in Istanbul
PHONE = "+905321234567"  # the event customer's number
FROM_PHONE = "905321234567"  # how the network hands it to Kannel: no "+"


@pytest.fixture
def app_port() -> int:
    return free_port()


@pytest.fixture
def services(
    database_url: str, clock: ManualClock, outbox: Outbox, app_port: int
) -> Iterator[Services]:
    """orderbell whose public URL (and so every callback URL) is the live app below."""
    svc = wire(database_url, clock, outbox, public_url=f"http://127.0.0.1:{app_port}")
    yield svc
    svc.engine.dispose()


@pytest.fixture
def live_app(services: Services, app_port: int) -> Iterator[str]:
    with serving(create_app(services, embedded_worker=False), app_port) as url:
        yield url


@pytest.fixture
def gateway(
    client: TestClient, shop: dict[str, Any], kannel: Kannel, live_app: str
) -> dict[str, Any]:
    """The shop's Kannel account; Kannel started with our callback URL as its get-url."""
    r = client.post(
        "/v1/providers",
        headers=shop["auth"],
        json={"name": "kannel", "kind": "kannel", "settings": kannel.settings(sender="Shop")},
    )
    assert r.status_code == 201, r.text
    provider = dict(r.json())
    assert provider["secrets_set"] == ["password"] and PASSWORD not in r.text
    assert provider["callback_url"].startswith(live_app + "/v1/callbacks/")
    kannel.start(get_url=with_query(provider["callback_url"], INBOUND_QUERY))
    return provider


def sms_rule(client: TestClient, shop: dict[str, Any], body: str) -> None:
    rule(
        client,
        shop,
        name="created-sms",
        trigger={"event_type": "order.created"},
        action={"channel": "sms", "template_id": template(client, shop, body, name="created")},
    )


def order_sms(
    client: TestClient, shop: dict[str, Any], services: Services, kannel: Kannel, body: str
) -> tuple[Sms, dict[str, Any]]:
    """Rule with this body, order A-1, one drain: the SMS the phone got and the message."""
    sms_rule(client, shop, body)
    event(client, shop, "order.created", AT, "A-1")
    drain(services)
    [sms] = kannel.phone.wait_for(1)
    [m] = messages(client, shop)
    return sms, m


def detail(client: TestClient, shop: dict[str, Any], message_id: int) -> dict[str, Any]:
    r = client.get(f"/v1/messages/{message_id}", headers=shop["auth"])
    assert r.status_code == 200, r.text
    return dict(r.json())


def delivered(client: TestClient, shop: dict[str, Any], message_id: int) -> dict[str, Any]:
    """The message once Kannel's delivery report made it `delivered` (5 s at most)."""
    got: dict[str, Any] = wait_until(
        lambda: (d := detail(client, shop, message_id))["status"] == "delivered" and d,
        f"message {message_id} delivered",
        timeout=5,
    )
    return got


def inbound(client: TestClient, shop: dict[str, Any], count: int) -> list[dict[str, Any]]:
    def stored() -> list[dict[str, Any]] | None:
        items = client.get("/v1/inbound", headers=shop["auth"]).json()["items"]
        return list(items) if len(items) >= count else None

    found: list[dict[str, Any]] = wait_until(stored, f"{count} inbound messages", timeout=5)
    return found


def test_order_sms_through_kannel_is_delivered(
    client: TestClient, shop: dict[str, Any], services: Services, kannel: Kannel, gateway: Any
) -> None:
    sms, m = order_sms(client, shop, services, kannel, "Order {{ order_code }} received")
    assert (sms.sender, sms.receiver, sms.text) == ("Shop", PHONE, "Order A-1 received")
    assert (m["provider"], m["provider_id"]) == ("kannel", gateway["id"])

    got = delivered(client, shop, m["id"])
    assert got["delivery_code"] == "1" and got["ambiguous"] is False
    assert "delivered: kannel confirmed delivery (1)" in [a["reason"] for a in got["audit"]]
    ack = "receipt from kannel: accepted by the network (8:ACK/)"  # may come after the 1
    wait_until(
        lambda: ack in [a["reason"] for a in detail(client, shop, m["id"])["audit"]],
        "the SMSC's ack in the audit trail",
        timeout=5,
    )
    with services.engine.connect() as conn:
        states = conn.execute(
            select(delivery_receipts.c.state).where(delivery_receipts.c.message_id == m["id"])
        ).scalars()
        assert sorted(states) == ["accepted", "delivered"]  # fakesmsc: 8 then 1, once each
    assert len(kannel.phone.received()) == 1


def test_reply_is_stored_with_customer_and_latest_order(
    client: TestClient, shop: dict[str, Any], kannel: Kannel, gateway: Any
) -> None:
    event(client, shop, "order.created", AT, "A-1")
    event(client, shop, "order.created", AT, "A-2")
    kannel.phone.send(FROM_PHONE, "SHOP", "Where  is my parcel?")
    [item] = inbound(client, shop, 1)
    [customer] = client.get("/v1/customers", headers=shop["auth"]).json()["items"]
    latest = client.get("/v1/orders/A-2", headers=shop["auth"]).json()
    assert (item["sender"], item["customer_id"], item["order_id"]) == (
        PHONE,
        customer["id"],
        latest["id"],
    )
    assert (item["text"], item["intent"], item["provider"]) == (
        "Where  is my parcel?",
        None,
        "kannel",
    )
    # Kannel texted nothing back: a marker sent after the reply was stored reaches the phone,
    # and nothing came before it
    marker = OutgoingMessage(id=999, shop_id=0, channel=Channel.SMS, to=PHONE, text="marker")
    [sent] = asyncio.run(send_and_close(kannel.gateway(sender="SHOP"), marker))
    assert sent.outcome is Outcome.ACCEPTED
    assert [sms.text for sms in kannel.phone.wait_for(1)] == ["marker"]


async def send_and_close(gateway: Any, message: OutgoingMessage) -> list[Any]:
    try:
        return list(await gateway.send([message]))
    finally:
        await gateway.close()


def test_stop_opts_out_with_exactly_one_confirmation(
    client: TestClient, shop: dict[str, Any], services: Services, kannel: Kannel, gateway: Any
) -> None:
    event(client, shop, "order.created", AT, "A-1")
    kannel.phone.send(FROM_PHONE, "SHOP", "STOP")
    [item] = inbound(client, shop, 1)
    assert item["intent"] == "stop"
    [customer] = client.get("/v1/customers", headers=shop["auth"]).json()["items"]
    assert customer["sms_opt_out"] == "marketing"
    drain(services)
    [sms] = kannel.phone.wait_for(1)
    assert sms.receiver == PHONE and "no longer receive marketing SMS" in sms.text
    [confirmation] = messages(client, shop)
    delivered(client, shop, confirmation["id"])  # its report's round trip bounds the wait
    assert len(kannel.phone.received()) == 1


def test_unicode_arrives_intact_both_ways(
    client: TestClient, shop: dict[str, Any], services: Services, kannel: Kannel, gateway: Any
) -> None:
    body = "Siparişiniz {{ order_code }} yolda — İğüşöç, Zażółć gęślą 📦"
    sms, m = order_sms(client, shop, services, kannel, body)
    assert sms.text == "Siparişiniz A-1 yolda — İğüşöç, Zażółć gęślą 📦"
    assert delivered(client, shop, m["id"])["segments"] == 1
    kannel.phone.send(FROM_PHONE, "SHOP", "Teşekkürler 🙏 çok güzel, dziękuję")
    [item] = inbound(client, shop, 1)
    assert item["text"] == "Teşekkürler 🙏 çok güzel, dziękuję"


def test_kannel_down_means_retried_not_lost(
    client: TestClient,
    shop: dict[str, Any],
    services: Services,
    clock: ManualClock,
    kannel: Kannel,
    gateway: Any,
) -> None:
    sms_rule(client, shop, "Order {{ order_code }} received")
    kannel.stop_smsbox()
    event(client, shop, "order.created", AT, "A-1")
    drain(services)
    [m] = messages(client, shop)
    got = detail(client, shop, m["id"])
    assert got["status"] == "deferred", got
    assert [a["outcome"] for a in got["attempts"]] == ["retryable"]
    assert kannel.phone.received() == []

    kannel.start_smsbox()
    clock.set(datetime.fromisoformat(got["due_at"]) + timedelta(seconds=1))
    drain(services)
    [sms] = kannel.phone.wait_for(1)
    assert sms.text == "Order A-1 received"
    got = delivered(client, shop, m["id"])
    assert [a["outcome"] for a in got["attempts"]] == ["retryable", "accepted"]
