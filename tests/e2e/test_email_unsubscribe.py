"""Marketing e-mail carries RFC 8058 one-click unsubscribe; the link really opts the
customer out (planner and pre-send re-check), GET changes nothing, forged tokens are
refused; transactional e-mail carries no List-Unsubscribe. Also the shop's From name and
Reply-To on the wire."""

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

AT = "2026-11-20T10:00:00+01:00"
CUSTOMER = {"id": "c1", "name": "Jan", "email": "jan@customer.example"}


@pytest.fixture
def smtp(services: Services) -> Iterator[Server]:
    server = start_server()
    provider = SmtpProvider(server.settings(from_address="orders@shop.example"))
    services.providers[Channel.EMAIL] = provider
    yield server
    asyncio.run(provider.close())
    server.controller.stop()


@pytest.fixture
def shop(client: TestClient, clock: ManualClock) -> dict[str, Any]:
    clock.set(datetime.fromisoformat(AT))
    shop = make_shop(
        client,
        "mailshop",
        timezone="Europe/Warsaw",
        country="PL",
        email_from="orders@shop.example",
        email_from_name="Kwiaciarnia, Jan & Co",
        email_reply_to="help@shop.example",
    )
    r = client.post(
        "/v1/customers",
        headers=shop["auth"],
        json={**CUSTOMER, "consent": {"email_marketing": True}},
    )
    assert r.status_code == 201, r.text
    shop["customer_id"] = r.json()["id"]
    for category, trigger, delay in (
        ("marketing", "custom.promo", 0),
        ("marketing", "custom.later_promo", 60),
        ("transactional", "order.created", 0),
    ):
        tid = template(
            client,
            shop,
            f"{category} for {{{{ customer_name }}}}",
            channel="email",
            name=trigger,
            subject=f"{category} {{{{ order_code }}}}",
        )
        rule(
            client,
            shop,
            name=trigger,
            trigger={"event_type": trigger},
            action={
                "channel": "email",
                "template_id": tid,
                "category": category,
                "delay_minutes": delay,
            },
        )
    return shop


def send(client: TestClient, shop: dict[str, Any], type_: str, code: str) -> None:
    event(client, shop, type_, AT, code, customer={"id": "c1"})


def unsubscribe_url(services: Services, shop: dict[str, Any]) -> str:
    return "/u/" + services.unsubscribe.token(shop["id"], shop["customer_id"])


def test_marketing_email_has_one_click_headers_and_transactional_has_none(
    client: TestClient, services: Services, shop: dict[str, Any], smtp: Server
) -> None:
    send(client, shop, "custom.promo", "P-1")
    send(client, shop, "order.created", "A-1")
    assert drain(services) == 2
    by_subject = {r.parsed()["Subject"]: r.parsed() for r in smtp.handler.received}
    promo, order = by_subject["marketing P-1"], by_subject["transactional A-1"]
    token = services.unsubscribe.token(shop["id"], shop["customer_id"])
    # (a long header is folded after the colon, hence the strip)
    assert promo["List-Unsubscribe"].strip() == f"<http://127.0.0.1:8000/u/{token}>"
    assert promo["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert order["List-Unsubscribe"] is None and order["List-Unsubscribe-Post"] is None
    for mail in (promo, order):
        [sender] = mail["From"].addresses
        assert (sender.display_name, sender.addr_spec) == (
            "Kwiaciarnia, Jan & Co",
            "orders@shop.example",
        )
        assert mail["Reply-To"] == "help@shop.example"


def test_one_click_post_opts_out_of_marketing_only(
    client: TestClient, services: Services, shop: dict[str, Any], smtp: Server
) -> None:
    url = unsubscribe_url(services, shop)
    page = client.get(url)
    assert page.status_code == 200
    assert 'method="post"' in page.text and "Shop mailshop" in page.text
    customer = client.get(f"/v1/customers/{shop['customer_id']}", headers=shop["auth"]).json()
    assert customer["email_opt_out"] is None  # GET changed nothing

    r = client.post(
        url,
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"unsubscribed": True, "channel": "email", "scope": "marketing"}
    customer = client.get(f"/v1/customers/{shop['customer_id']}", headers=shop["auth"]).json()
    assert customer["email_opt_out"] == "marketing"
    assert customer["consent"]["email_marketing"] is False
    again = client.post(url, data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200  # idempotent

    send(client, shop, "custom.promo", "P-2")
    send(client, shop, "order.created", "A-2")
    drain(services)
    statuses = {m["status"]: m for m in messages(client, shop)}
    assert statuses["suppressed"]["reason"].startswith("opted_out")
    assert statuses["sent"]["channel"] == "email"
    assert [r.parsed()["Subject"] for r in smtp.handler.received] == ["transactional A-2"]


def test_the_pre_send_recheck_suppresses_a_planned_marketing_email(
    client: TestClient,
    services: Services,
    shop: dict[str, Any],
    smtp: Server,
    clock: ManualClock,
) -> None:
    send(client, shop, "custom.later_promo", "P-3")  # due in an hour
    [planned] = messages(client, shop)
    assert planned["status"] == "scheduled"
    r = client.post(
        unsubscribe_url(services, shop),
        files={"List-Unsubscribe": (None, "One-Click")},  # multipart/form-data, as RFC 8058
    )
    assert r.status_code == 200, r.text
    clock.advance(timedelta(hours=2))
    drain(services)
    [message] = messages(client, shop)
    assert message["status"] == "suppressed"
    assert message["reason"].startswith("opted_out")
    assert smtp.handler.received == []


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), id="tampered-signature"),
        pytest.param(lambda t: "9" + t, id="other-shop"),
        pytest.param(lambda t: t.replace(".e.", ".s."), id="other-channel"),
        pytest.param(lambda t: "garbage", id="garbage"),
        pytest.param(lambda t: t + "%0d%0aX", id="crlf"),
    ],
)
def test_a_bad_token_is_refused_and_changes_nothing(
    client: TestClient, services: Services, shop: dict[str, Any], mangle: Any
) -> None:
    url = "/u/" + mangle(services.unsubscribe.token(shop["id"], shop["customer_id"]))
    assert client.get(url).status_code == 400
    r = client.post(url, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 400
    assert r.json()["error"]["field"] == "token"
    customer = client.get(f"/v1/customers/{shop['customer_id']}", headers=shop["auth"]).json()
    assert customer["email_opt_out"] is None


def test_a_post_without_the_one_click_body_changes_nothing(
    client: TestClient, services: Services, shop: dict[str, Any]
) -> None:
    r = client.post(unsubscribe_url(services, shop), content=b"")
    assert r.status_code == 400
    assert r.json()["error"]["field"] == "List-Unsubscribe"
    customer = client.get(f"/v1/customers/{shop['customer_id']}", headers=shop["auth"]).json()
    assert customer["email_opt_out"] is None


def test_a_token_for_a_customer_of_another_shop_is_not_valid_there(
    client: TestClient, services: Services, shop: dict[str, Any]
) -> None:
    other = make_shop(client, "other")
    r = client.post(
        "/v1/customers", headers=other["auth"], json={"id": "c1", "email": "x@other.example"}
    )
    forged = services.unsubscribe.token(other["id"], shop["customer_id"])  # right sig, wrong shop
    resp = client.post(f"/u/{forged}", data={"List-Unsubscribe": "One-Click"})
    assert resp.status_code == 404
    assert r.status_code == 201
    customer = client.get(f"/v1/customers/{shop['customer_id']}", headers=shop["auth"]).json()
    assert customer["email_opt_out"] is None


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        pytest.param({"email_reply_to": "a@b.c\r\nBcc: x@y.z"}, "email_reply_to", id="reply-crlf"),
        pytest.param({"email_reply_to": "nobody"}, "email_reply_to", id="reply-invalid"),
        pytest.param({"email_from_name": "Shop\nBcc: x@y.z"}, "email_from_name", id="name-lf"),
        pytest.param({"email_from_name": "Shop <a@b.c>"}, "email_from_name", id="name-angle"),
        pytest.param({"email_from_name": "x" * 101}, "email_from_name", id="name-long"),
    ],
)
def test_bad_from_name_or_reply_to_is_refused(
    client: TestClient, shop: dict[str, Any], patch: dict[str, Any], field: str
) -> None:
    r = client.patch("/v1/shop", headers=shop["auth"], json=patch)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field
    current = client.get("/v1/shop", headers=shop["auth"]).json()
    assert current["email_reply_to"] == "help@shop.example"
    assert current["email_from_name"] == "Kwiaciarnia, Jan & Co"


def test_reply_to_and_from_name_can_be_cleared(client: TestClient, shop: dict[str, Any]) -> None:
    r = client.patch(
        "/v1/shop", headers=shop["auth"], json={"email_reply_to": None, "name": "Renamed"}
    )
    assert r.status_code == 200
    assert (r.json()["email_reply_to"], r.json()["email_from_name"]) == (
        None,
        "Kwiaciarnia, Jan & Co",
    )
