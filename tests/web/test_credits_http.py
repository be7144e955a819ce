"""Credits in the admin: the dashboard's balance, reservations, allowances and cap, and the
bulk-send confirmation's total against the credit there is; on SQLite and PostgreSQL."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from tests.conftest import make_shop
from tests.support import template
from tests.web.test_admin_http import customer, owner

from orderbell.compose import Services


def text_of(html: str) -> str:
    """The page's visible text, in one line."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_dashboard_shows_balance_reservations_allowances_and_cap(
    client: TestClient, services: Services
) -> None:
    shop = make_shop(client, "counted", topup="12.5")
    owner(client, services, shop, "owner@counted.test")
    pkg = client.post("/v1/credits/packages", headers=shop["auth"],
                      json={"name": "1000 SMS", "channel": "sms", "allowance": 1000,
                            "carry_over": "unlimited", "price": "31"})  # fmt: skip
    assert pkg.status_code == 201, pkg.text
    capped = client.patch("/v1/credits/settings", headers=shop["auth"],
                          json={"monthly_cap": "40"})  # fmt: skip
    assert capped.status_code == 200, capped.text
    page = text_of(client.get("/admin/").text)
    assert "12.50 available" in page
    assert "0.00 reserved for scheduled messages" in page
    assert "1000 SMS: 1000 sms left (2026-11)" in page
    assert "Monthly spending cap: 40.00" in page


def test_bulk_confirmation_shows_the_total_and_warns_when_credit_is_short(
    client: TestClient, services: Services
) -> None:
    shop = make_shop(client, "short", topup="0.05")  # one SMS to TR costs 0.05
    csrf = owner(client, services, shop, "owner@short.test")
    ids = [
        customer(client, shop, "anna", "+905321234567"),
        customer(client, shop, "omer", "+905327654321"),
    ]
    tpl = template(client, shop, "Hi {{ customer_name }}")
    form = {"csrf_token": csrf, "ids": [str(i) for i in ids], "template_id": str(tpl)}
    preview = text_of(client.post("/admin/customers/bulk/preview", data=form).text)
    assert "total 0.10 credits" in preview
    assert "Send 2 messages — 0.10 credits" in preview
    assert "more than the 0.05 credits available" in preview
    assert "held until you top up" in preview

    rich = make_shop(client, "rich")
    csrf = owner(client, services, rich, "owner@rich.test")
    ids = [customer(client, rich, "anna", "+905321234567")]
    tpl = template(client, rich, "Hi {{ customer_name }}")
    form = {"csrf_token": csrf, "ids": [str(i) for i in ids], "template_id": str(tpl)}
    preview = text_of(client.post("/admin/customers/bulk/preview", data=form).text)
    assert "Send 1 message — 0.05 credits" in preview
    assert "held until you top up" not in preview
