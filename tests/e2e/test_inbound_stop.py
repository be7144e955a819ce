"""Inbound SMS through a shop's HTTP gateway account: replies stored with the customer and
their latest order; STOP (many spellings) opts out within the request with exactly one
confirmation; START re-subscribes; marketing (or all) SMS to an opted-out number suppressed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.conftest import make_shop
from tests.gateway_harness import Gateway, settings_for
from tests.support import drain, event, messages, rule, template

from orderbell.compose import Services
from orderbell.engine.inbound import intent, phone_candidates

AT = "2026-11-20T10:00:00+01:00"  # the test clock's "now" in Warsaw
PHONE = "+48600100200"
CUSTOMER = {"id": "c1", "name": "Jan", "phone": "600 100 200"}


@pytest.fixture
def gw() -> Iterator[Gateway]:
    server = Gateway().start()
    yield server
    server.stop()


@pytest.fixture
def pl_shop(client: TestClient) -> dict[str, Any]:
    return make_shop(client, "plshop", timezone="Europe/Warsaw", country="PL", currency="PLN")


def setup(client: TestClient, shop: dict[str, Any], gw: Gateway) -> str:
    """An HTTP gateway account; returns its callback path."""
    r = client.post(
        "/v1/providers",
        headers=shop["auth"],
        json={"name": "gw", "kind": "http", "settings": settings_for(gw)},
    )
    assert r.status_code == 201, r.text
    return "/v1/callbacks/" + r.json()["callback_url"].rsplit("/", 1)[1]


def reply(client: TestClient, path: str, text: str, pid: str, sender: str = "48600100200") -> Any:
    r = client.post(path, json={"from": sender, "to": "SHOP", "text": text, "id": pid})
    assert r.status_code == 200, r.text
    return r.json()


def customer(client: TestClient, shop: dict[str, Any]) -> dict[str, Any]:
    [c] = client.get("/v1/customers", headers=shop["auth"]).json()["items"]
    return dict(c)


def test_reply_stored_with_customer_and_latest_order(
    client: TestClient, pl_shop: dict[str, Any], gw: Gateway
) -> None:
    path = setup(client, pl_shop, gw)
    event(client, pl_shop, "order.created", AT, "A-1", customer=CUSTOMER)
    event(client, pl_shop, "order.created", AT, "A-2", customer=CUSTOMER)
    assert reply(client, path, "Where is my parcel?", "in-1")["inbound"] == 1
    [item] = client.get("/v1/inbound", headers=pl_shop["auth"]).json()["items"]
    latest = client.get("/v1/orders/A-2", headers=pl_shop["auth"]).json()
    assert item["sender"] == PHONE  # "48600100200" matched the stored E.164 number
    assert item["customer_id"] == customer(client, pl_shop)["id"]
    assert item["order_id"] == latest["id"]
    assert (item["text"], item["intent"], item["provider"]) == ("Where is my parcel?", None, "gw")
    # another shop sees none of it
    other = make_shop(client, "other")
    assert client.get("/v1/inbound", headers=other["auth"]).json()["items"] == []


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("STOP", id="upper"),
        pytest.param("  stop  ", id="spaces"),
        pytest.param("Stop!", id="punctuation"),
        pytest.param("ＳＴＯＰ", id="full-width"),
        pytest.param("unsubscribe.", id="unsubscribe"),
        pytest.param("StopAll", id="stopall"),
        pytest.param("opt-out", id="optout-hyphen"),
        pytest.param("NIE", id="polish-nie"),
        pytest.param("İptal", id="turkish-iptal"),
        pytest.param("ret", id="turkish-ret"),
        pytest.param("odhlásit", id="czech-odhlasit"),
        pytest.param("«QUIT»", id="quit-quoted"),
    ],
)
def test_stop_opts_out_with_exactly_one_confirmation(
    client: TestClient, pl_shop: dict[str, Any], services: Services, gw: Gateway, text: str
) -> None:
    path = setup(client, pl_shop, gw)
    event(client, pl_shop, "order.created", AT, "A-1", customer=CUSTOMER)
    first = reply(client, path, text, "in-1")
    assert first["opted_out"] == 1
    assert customer(client, pl_shop)["sms_opt_out"] == "marketing"  # within the request
    again = reply(client, path, text, "in-1")  # the provider re-delivers the callback
    assert (again["duplicates"], again["opted_out"]) == (1, 0)
    [confirmation] = messages(client, pl_shop)
    assert confirmation["status"] == "scheduled" and confirmation["recipient"] == PHONE
    drain(services)
    [sent] = gw.requests
    assert sent["json"]["to"] == PHONE
    assert "no longer receive marketing SMS" in sent["json"]["text"]
    assert [
        i["intent"] for i in client.get("/v1/inbound", headers=pl_shop["auth"]).json()["items"]
    ] == ["stop"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("STOP please call me", None),
        ("stopper", None),
        ("UNSTOP", "start"),
        (" start. ", "start"),
        ("ｓｔａｒｔ", "start"),
        ("", None),
    ],
)
def test_intent_words(text: str, expected: str | None) -> None:
    assert intent(text) == expected


def test_phone_candidates() -> None:
    assert phone_candidates("48600100200", "PL") == [PHONE]
    assert phone_candidates("0048600100200", "PL") == [PHONE]
    assert phone_candidates("600100200", "PL") == [PHONE]
    assert phone_candidates("+48 600 100 200", None) == [PHONE]
    assert phone_candidates("SHOP", "PL") == []


def test_start_resubscribes_and_marketing_is_suppressed_meanwhile(
    client: TestClient, pl_shop: dict[str, Any], services: Services, gw: Gateway
) -> None:
    path = setup(client, pl_shop, gw)
    news = template(client, pl_shop, "News for {{ customer_name }}", name="news")
    info = template(client, pl_shop, "Order {{ order_code }} received", name="info")
    rule(
        client,
        pl_shop,
        name="marketing",
        trigger={"event_type": "order.created"},
        action={"channel": "sms", "template_id": news, "category": "marketing"},
    )
    rule(
        client,
        pl_shop,
        name="transactional",
        trigger={"event_type": "order.created"},
        action={"channel": "sms", "template_id": info},
    )
    event(client, pl_shop, "order.created", AT, "A-0", customer=CUSTOMER)
    c = customer(client, pl_shop)
    r = client.patch(
        f"/v1/customers/{c['id']}/consent", headers=pl_shop["auth"], json={"sms_marketing": True}
    )
    assert r.status_code == 200, r.text

    def by_rule(code: str) -> dict[str, str]:
        event(client, pl_shop, "order.created", AT, code, customer=CUSTOMER)
        order_id = client.get(f"/v1/orders/{code}", headers=pl_shop["auth"]).json()["id"]
        rules = {m["rule_id"]: m for m in messages(client, pl_shop) if m["order_id"] == order_id}
        names = {
            r["id"]: r["name"]
            for r in client.get("/v1/rules", headers=pl_shop["auth"]).json()["items"]
        }
        return {names[k]: f"{m['status']}|{m['reason']}" for k, m in rules.items()}

    before = by_rule("A-1")
    assert before["marketing"].startswith("scheduled")

    reply(client, path, "STOP", "in-1")
    during = by_rule("A-2")
    assert during["marketing"].startswith("suppressed|opted_out")
    assert during["transactional"].startswith("scheduled")

    # a message planned before the STOP is caught by the worker's re-check
    drain(services)
    a1 = [m for m in messages(client, pl_shop) if m["body"] is None and m["status"] == "suppressed"]
    assert any(m["reason"].startswith("opted_out") for m in a1)
    assert not any(r["json"]["text"].startswith("News") for r in gw.requests)

    # the shop makes STOP mean all SMS: a new STOP widens it, and transactional stops too
    r = client.patch("/v1/shop", headers=pl_shop["auth"], json={"stop_scope": "all"})
    assert r.status_code == 200, r.text
    assert reply(client, path, "stop", "in-2")["opted_out"] == 1
    assert customer(client, pl_shop)["sms_opt_out"] == "all"
    everything = by_rule("A-3")
    assert everything["transactional"].startswith("suppressed|opted_out")

    assert reply(client, path, "START", "in-3")["opted_in"] == 1
    assert customer(client, pl_shop)["sms_opt_out"] is None
    after = by_rule("A-4")
    assert after["marketing"].startswith("scheduled")
    assert after["transactional"].startswith("scheduled")
