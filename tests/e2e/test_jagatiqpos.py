"""JagatiqPOS: SMS at chosen stages (accepted, ready, departed, thank-you N days later),
each on or off, with a delay and a validity time; Polish shop, Warsaw time."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.conftest import Outbox, make_shop
from tests.support import drain, event, messages, rule, template

from orderbell.clock import ManualClock
from orderbell.compose import Services

CUSTOMER = {"id": "k1", "name": "Jan Kowalski", "phone": "600 700 800"}
ORDER = {
    "total": "129.90",
    "currency": "PLN",
    "payment_method": "gotówka",
    "preparation_minutes": 40,
}


@pytest.fixture
def pizzeria(client: TestClient) -> dict[str, Any]:
    """A restaurant in Warsaw: stages on, 'departed' off, thank-you 2 days later."""
    shop = make_shop(
        client, "pizzeria", timezone="Europe/Warsaw", country="PL", locale="pl", currency="PLN"
    )
    accepted = template(
        client,
        shop,
        "Zamówienie {{ order_code }} przyjęte. Do zapłaty "
        "{{ order_total }} ({{ payment_method }}), czas {{ preparation_time }}.",
        name="accepted",
    )
    ready = template(
        client, shop, "Zamówienie {{ order_code }} gotowe, czeka na wyjazd.", name="ready"
    )
    departed = template(client, shop, "Zamówienie {{ order_code }} wyjechało.", name="departed")
    thanks = template(
        client, shop, "2 dni temu dostarczylismy Ci pizze. Wypelnij ankiete!", name="thanks"
    )
    status = "order.status_changed"
    rule(
        client,
        shop,
        name="accepted",
        trigger={"event_type": status, "to_status": "accepted"},
        action={"channel": "sms", "template_id": accepted, "validity_minutes": 30},
    )
    rule(
        client,
        shop,
        name="ready",
        trigger={"event_type": status, "to_status": "ready"},
        action={"channel": "sms", "template_id": ready, "delay_minutes": 5, "validity_minutes": 30},
    )
    rule(
        client,
        shop,
        name="departed",
        active=False,
        trigger={"event_type": status, "to_status": "departed"},
        action={"channel": "sms", "template_id": departed},
    )
    rule(
        client,
        shop,
        name="thanks",
        trigger={"event_type": "order.delivered"},
        action={
            "channel": "sms",
            "template_id": thanks,
            "days_after": 2,
            "at_local_time": "12:00",
            "validity_minutes": 3 * 1440,
        },
    )
    return shop


def test_stages_delay_and_switches(
    client: TestClient,
    services: Services,
    pizzeria: dict[str, Any],
    outbox: Outbox,
    clock: ManualClock,
) -> None:
    t0 = datetime.fromisoformat("2026-11-20T18:00:00+01:00")
    clock.set(t0)
    event(
        client,
        pizzeria,
        "order.status_changed",
        t0.isoformat(),
        "P-7",
        status="accepted",
        order=ORDER,
        customer=CUSTOMER,
    )
    drain(services)
    [accepted] = outbox.lines()
    assert accepted["to"] == "+48600700800"
    assert "129,90" in accepted["text"] and "zł" in accepted["text"]
    assert "gotówka" in accepted["text"] and "40" in accepted["text"]

    t1 = t0 + timedelta(minutes=20)
    clock.set(t1)
    event(
        client,
        pizzeria,
        "order.status_changed",
        t1.isoformat(),
        "P-7",
        status="ready",
        customer=CUSTOMER,
    )
    drain(services)
    assert len(outbox.lines()) == 1, "the ready SMS waits for its 5-minute delay"
    clock.advance(timedelta(minutes=4, seconds=59))
    drain(services)
    assert len(outbox.lines()) == 1
    clock.advance(timedelta(seconds=1))
    drain(services)
    assert "gotowe" in outbox.lines()[1]["text"]

    t2 = t1 + timedelta(minutes=30)
    clock.set(t2)
    result = event(
        client,
        pizzeria,
        "order.status_changed",
        t2.isoformat(),
        "P-7",
        status="departed",
        customer=CUSTOMER,
    )
    assert result["messages"] == []
    assert any(v["rule"] == "departed" and "inactive" in v["reason"] for v in result["verdicts"])

    t3 = t2 + timedelta(minutes=25)
    clock.set(t3)
    event(client, pizzeria, "order.delivered", t3.isoformat(), "P-7", customer=CUSTOMER)
    clock.set(datetime.fromisoformat("2026-11-22T11:59:00+01:00"))
    drain(services)
    assert len(outbox.lines()) == 2
    clock.set(datetime.fromisoformat("2026-11-22T12:00:00+01:00"))
    drain(services)
    assert "ankiete" in outbox.lines()[2]["text"]


def test_validity_passes_while_no_worker_runs(
    client: TestClient,
    services: Services,
    pizzeria: dict[str, Any],
    outbox: Outbox,
    clock: ManualClock,
) -> None:
    t0 = datetime.fromisoformat("2026-11-20T18:00:00+01:00")
    clock.set(t0)
    event(
        client,
        pizzeria,
        "order.status_changed",
        t0.isoformat(),
        "P-8",
        status="accepted",
        order=ORDER,
        customer=CUSTOMER,
    )
    clock.advance(timedelta(minutes=30))  # the worker was down for the whole validity
    drain(services)
    assert outbox.lines() == []
    [message] = messages(client, pizzeria)
    assert message["status"] == "expired"
    detail = client.get(f"/v1/messages/{message['id']}", headers=pizzeria["auth"]).json()
    assert [a["status"] for a in detail["audit"]] == ["scheduled", "expired"]
    assert "expired at 2026-11-20 18:30" in detail["audit"][-1]["reason"]


def test_regressed_status_sends_nothing(
    client: TestClient,
    services: Services,
    pizzeria: dict[str, Any],
    outbox: Outbox,
    clock: ManualClock,
) -> None:
    clock.set(datetime.fromisoformat("2026-11-20T18:30:00+01:00"))
    event(
        client,
        pizzeria,
        "order.status_changed",
        "2026-11-20T18:20:00+01:00",
        "P-9",
        status="ready",
        order=ORDER,
        customer=CUSTOMER,
    )
    late = event(
        client,
        pizzeria,
        "order.status_changed",
        "2026-11-20T18:00:00+01:00",
        "P-9",
        status="accepted",
        customer=CUSTOMER,
    )
    assert late["stale"] is True and late["messages"] == []
    order = client.get("/v1/orders/P-9", headers=pizzeria["auth"]).json()
    assert order["status"] == "ready"
    assert [h["status"] for h in order["history"]] == ["accepted", "ready"]


def test_opted_out_customer_is_suppressed_with_reason(
    client: TestClient,
    services: Services,
    pizzeria: dict[str, Any],
    outbox: Outbox,
    clock: ManualClock,
) -> None:
    t0 = datetime.fromisoformat("2026-11-20T18:00:00+01:00")
    clock.set(t0)
    event(
        client,
        pizzeria,
        "order.status_changed",
        t0.isoformat(),
        "P-10",
        status="ready",
        order=ORDER,
        customer=CUSTOMER,
    )
    customer = client.get("/v1/customers", headers=pizzeria["auth"]).json()["items"][0]
    r = client.patch(
        f"/v1/customers/{customer['id']}/consent",
        headers=pizzeria["auth"],
        json={"sms_transactional": False},
    )
    assert r.status_code == 200
    clock.advance(timedelta(minutes=6))
    drain(services)
    assert outbox.lines() == []
    [message] = messages(client, pizzeria)
    assert message["status"] == "suppressed" and message["reason"].startswith("opted_out")
