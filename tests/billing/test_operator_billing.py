"""A platform hosting shops that buy credits from it (`shops_manage_billing=false`): a shop's
own API key cannot mint credit, grant itself packages, price its messages or choose its
terms; the operator does, with the admin token, at /v1/shops/{id}/credits/..."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.conftest import Outbox, make_shop, wire
from tests.support import assert_ledger_adds_up

from orderbell.api.app import create_app
from orderbell.clock import ManualClock
from orderbell.compose import Services
from orderbell.settings import Settings
from orderbell.store.schema import ledger

OPERATOR = {"Authorization": "Bearer admin-secret"}


def _shop(client: TestClient, slug: str = "tenant") -> dict[str, Any]:
    return make_shop(client, slug, topup=None)


#: Every change a shop's key may not make there: (method, path, body, field named).
SHOP_MAY_NOT = [
    ("post", "/v1/credits/topups", {"amount": "5"}, "authorization"),
    ("post", "/v1/credits/adjustments", {"amount": "5", "note": "free"}, "authorization"),
    ("put", "/v1/credits/prices",
     {"prices": [{"channel": "sms", "country": "*", "unit_price": "0"}]}, "authorization"),
    ("post", "/v1/credits/packages",
     {"name": "free", "channel": "sms", "allowance": 1000}, "authorization"),
    ("patch", "/v1/credits/settings", {"mode": "unmetered"}, "mode"),
    ("patch", "/v1/credits/settings", {"plan": "wholesale"}, "plan"),
    ("patch", "/v1/credits/settings", {"clear_plan": True}, "clear_plan"),
    ("patch", "/v1/credits/settings", {"billing_day": 5}, "billing_day"),
    ("patch", "/v1/credits/settings", {"charge_failed_after_submission": False},
     "charge_failed_after_submission"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "field"), SHOP_MAY_NOT)
def test_a_shops_key_cannot_change_what_it_pays_and_changes_nothing(
    hosted: TestClient, platform: Services, method: str, path: str, body: Any, field: str
) -> None:
    shop = _shop(hosted)
    before = hosted.get("/v1/credits", headers=shop["auth"]).json()
    prices = hosted.get("/v1/credits/prices", headers=shop["auth"]).json()
    r = hosted.request(method, path, headers=shop["auth"], json=body)
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "forbidden"
    assert r.json()["error"]["field"] == field
    assert hosted.get("/v1/credits", headers=shop["auth"]).json() == before
    assert hosted.get("/v1/credits/prices", headers=shop["auth"]).json() == prices
    with platform.engine.connect() as conn:
        assert conn.execute(select(ledger.c.id)).first() is None


def test_the_shop_still_reads_its_credits_and_sets_its_own_limits(hosted: TestClient) -> None:
    shop = _shop(hosted)
    r = hosted.patch("/v1/credits/settings", headers=shop["auth"],
                     json={"monthly_cap": "3", "low_balance_thresholds": ["1"],
                           "notify_email": "owner@shop.example"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert (r.json()["monthly_cap"], r.json()["low_balance_thresholds"]) == ("3.0000", ["1"])
    for path in ("/v1/credits", "/v1/credits/ledger", "/v1/credits/prices"):
        assert hosted.get(path, headers=shop["auth"]).status_code == 200


def test_the_operator_tops_up_corrects_prices_and_sets_terms_for_a_shop(
    hosted: TestClient, platform: Services
) -> None:
    shop, other = _shop(hosted), _shop(hosted, "neighbour")
    base = f"/v1/shops/{shop['id']}/credits"
    r = hosted.post(f"{base}/topups", headers=OPERATOR, json={"amount": "10", "reference": "inv-1"})
    assert r.status_code == 201 and r.json()["balance"] == "10.0000", r.text
    again = hosted.post(f"{base}/topups", headers=OPERATOR,
                        json={"amount": "10", "reference": "inv-1"})  # fmt: skip
    assert again.status_code == 200 and again.json()["duplicate"] is True
    r = hosted.post(f"{base}/adjustments", headers=OPERATOR,
                    json={"amount": "-2.5", "note": "credit note 7"})  # fmt: skip
    assert r.status_code == 201 and r.json()["balance"] == "7.5000", r.text
    r = hosted.put(f"{base}/prices", headers=OPERATOR,
                   json={"prices": [{"channel": "sms", "country": "TR", "unit_price": "0.04"}]})  # fmt: skip
    assert r.status_code == 200, r.text
    r = hosted.post(f"{base}/packages", headers=OPERATOR,
                    json={"name": "1000 SMS", "channel": "sms", "allowance": 1000})  # fmt: skip
    assert r.status_code == 201, r.text
    r = hosted.patch(f"{base}/settings", headers=OPERATOR, json={"billing_day": 5})
    assert r.status_code == 200 and r.json()["billing_day"] == 5, r.text
    mine = hosted.get("/v1/credits/ledger", headers=shop["auth"]).json()["items"]
    assert {(e["kind"], e["actor"]) for e in mine} >= {("topup", "operator"),
                                                        ("adjustment", "operator")}  # fmt: skip
    listed = hosted.get("/v1/credits/prices", headers=shop["auth"]).json()["items"]
    assert {"channel": "sms", "country": "TR", "unit_price": "0.0400", "source": "shop"} in listed
    # the neighbour is untouched
    assert hosted.get("/v1/credits", headers=other["auth"]).json()["balance"] == "0.0000"
    assert hosted.get("/v1/credits/ledger", headers=other["auth"]).json()["items"] == []
    assert_ledger_adds_up(platform)


#: Every operator route, with a body it would take.
OPERATOR_ROUTES = [
    ("post", "topups", {"amount": "5"}),
    ("post", "adjustments", {"amount": "5", "note": "n"}),
    ("put", "prices", {"prices": [{"channel": "sms", "country": "*", "unit_price": "0"}]}),
    ("post", "packages", {"name": "p", "channel": "sms", "allowance": 10}),
    ("patch", "settings", {"mode": "unmetered"}),
    ("get", "", None),
    ("get", "ledger", None),
    ("get", "statement?month=2026-11", None),
    ("get", "prices", None),
]


@pytest.mark.parametrize(("method", "route", "body"), OPERATOR_ROUTES)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "admin-secret"}, "shop"],
    ids=["none", "wrong", "no-bearer-scheme", "the-shops-own-key"],
)
def test_operator_routes_need_the_admin_token(
    hosted: TestClient, platform: Services, method: str, route: str, body: Any, headers: Any
) -> None:
    shop = _shop(hosted)
    before = hosted.get("/v1/credits", headers=shop["auth"]).json()
    r = hosted.request(method, f"/v1/shops/{shop['id']}/credits/{route}".rstrip("/"),
                       headers=shop["auth"] if headers == "shop" else headers, json=body)  # fmt: skip
    assert r.status_code == 401, r.text
    assert r.json()["error"]["field"] == "authorization"
    assert hosted.get("/v1/credits", headers=shop["auth"]).json() == before
    with platform.engine.connect() as conn:
        assert conn.execute(select(ledger.c.id)).first() is None


def test_the_operator_reads_a_shops_credits_ledger_statement_and_prices(
    hosted: TestClient, platform: Services
) -> None:
    """What the shop reads of its own credits, the operator reads of any shop's."""
    shop, other = _shop(hosted), _shop(hosted, "neighbour")
    base = f"/v1/shops/{shop['id']}/credits"
    r = hosted.post(f"{base}/topups", headers=OPERATOR, json={"amount": "10"})
    assert r.status_code == 201, r.text
    for route in ("", "/ledger", "/statement?month=2026-11", "/prices"):
        mine = hosted.get(f"/v1/credits{route}", headers=shop["auth"])
        theirs = hosted.get(f"{base}{route}", headers=OPERATOR)
        assert theirs.status_code == 200 and theirs.json() == mine.json(), (route, theirs.text)
    csv = hosted.get(f"{base}/statement", headers=OPERATOR,
                     params={"month": "2026-11", "format": "csv"})  # fmt: skip
    assert csv.status_code == 200 and csv.text.startswith("month,channel,country")
    bad = hosted.get(f"{base}/ledger", headers=OPERATOR, params={"kind": "nonsense"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "kind"
    neighbour = hosted.get(f"/v1/shops/{other['id']}/credits", headers=OPERATOR).json()
    assert neighbour["balance"] == "0.0000"


def test_a_blank_admin_token_is_no_token(
    database_url: str, clock: ManualClock, outbox: Outbox
) -> None:
    """An unset variable expanded into ORDERBELL_ADMIN_TOKEN must not let a request without
    credentials (an empty token) create shops or credit them."""
    assert Settings(admin_token="  ").admin_token is None
    svc = wire(database_url, clock, outbox, admin_token="", shops_manage_billing=False)
    try:
        with TestClient(create_app(svc, embedded_worker=False)) as c:
            made = c.post("/v1/shops", json={"name": "S", "slug": "s3", "timezone": "UTC",
                                             "country": "TR"})  # fmt: skip
            assert made.status_code == 401, made.text
            r = c.post("/v1/shops/1/credits/topups", json={"amount": "1000"})
            assert r.status_code == 401, r.text
            r = c.post("/v1/shops/1/credits/topups", json={"amount": "1000"},
                       headers={"Authorization": "Bearer "})  # fmt: skip
            assert r.status_code == 401, r.text
    finally:
        svc.engine.dispose()


@pytest.mark.parametrize(("shop_id", "status"), [(999, 404), (0, 422), (2**63, 422)])
def test_an_operator_route_for_no_such_shop_is_a_404_or_422(
    hosted: TestClient, shop_id: int, status: int
) -> None:
    r = hosted.post(f"/v1/shops/{shop_id}/credits/topups", headers=OPERATOR, json={"amount": "5"})
    assert r.status_code == status, r.text
    assert r.json()["error"]["field"] == ("shop" if status == 404 else "shop_id")


def test_the_operator_sets_a_shops_terms_and_its_package_grants_name_the_operator(
    hosted: TestClient, platform: Services
) -> None:
    shop = _shop(hosted)
    base = f"/v1/shops/{shop['id']}/credits"
    r = hosted.patch(f"{base}/settings", headers=OPERATOR,
                     json={"mode": "unmetered", "charge_failed_after_submission": False})  # fmt: skip
    assert r.status_code == 200, r.text
    assert (r.json()["mode"], r.json()["charge_failed_after_submission"]) == ("unmetered", False)
    r = hosted.patch(f"{base}/settings", headers=OPERATOR, json={"mode": "prepaid"})
    assert r.status_code == 200 and r.json()["mode"] == "prepaid", r.text
    r = hosted.post(f"{base}/packages", headers=OPERATOR,
                    json={"name": "1000 SMS", "channel": "sms", "allowance": 1000})  # fmt: skip
    assert r.status_code == 201, r.text
    granted = hosted.get("/v1/credits/ledger", headers=shop["auth"],
                         params={"kind": "allowance"}).json()["items"]  # fmt: skip
    assert [(e["units"], e["actor"]) for e in granted] == [(1000, "operator")]
    # the shop and the operator list the package; another shop sees none of it
    for path, headers in (("/v1/credits/packages", shop["auth"]),
                          (f"{base}/packages", OPERATOR)):  # fmt: skip
        r = hosted.get(path, headers=headers)
        assert r.status_code == 200, r.text
        assert [(p["name"], p["allowance"], p["carry_over"], p["price"])
                for p in r.json()["items"]] == [("1000 SMS", 1000, "unlimited", None)]  # fmt: skip
    other = _shop(hosted, "other")
    assert hosted.get("/v1/credits/packages", headers=other["auth"]).json() == {"items": []}
    assert_ledger_adds_up(platform)


def test_where_shops_manage_billing_the_operator_routes_work_too(
    client: TestClient, services: Services
) -> None:
    """The default (a shop running orderbell for itself): its key tops up, as before, and
    the operator may act for it as well."""
    shop = make_shop(client, topup="1")
    r = client.post(f"/v1/shops/{shop['id']}/credits/topups", headers=OPERATOR,
                    json={"amount": "2"})  # fmt: skip
    assert r.status_code == 201 and r.json()["balance"] == "3.0000", r.text
    assert_ledger_adds_up(services)
