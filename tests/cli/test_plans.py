"""`orderbell plan …` as an operator runs it — real processes on the same database the API
serves (SQLite and PostgreSQL) — and what the shops on a plan are then charged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.cli.test_cli import orderbell, user_env
from tests.conftest import make_shop
from tests.support import messages, rule, template

from orderbell.compose import Services


@pytest.fixture
def operator(database_url: str, tmp_path: Path) -> dict[str, str]:
    """The operator's environment, on the database the API client uses."""
    return {**user_env(tmp_path), "ORDERBELL_DATABASE_URL": database_url}


def ok(env: dict[str, str], *args: str) -> str:
    done = orderbell(env, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def prices(client: TestClient, shop: dict[str, Any]) -> dict[tuple[str, str], tuple[str, str]]:
    """The shop's effective prices: (channel, country) → (unit price, where it comes from)."""
    r = client.get("/v1/credits/prices", headers=shop["auth"])
    assert r.status_code == 200, r.text
    return {(p["channel"], p["country"]): (p["unit_price"], p["source"]) for p in r.json()["items"]}


def test_a_plan_is_created_priced_and_assigned_to_many_shops(
    client: TestClient, services: Services, operator: dict[str, str]
) -> None:
    shops = [make_shop(client, slug) for slug in ("anna-shop", "omer-shop", "solo-shop")]
    assert "created" in ok(operator, "plan", "create", "Poland retail")
    ok(operator, "plan", "price", "Poland retail", "--channel", "sms", "--country", "pl",
       "--unit-price", "0.065")  # fmt: skip
    ok(operator, "plan", "price", "Poland retail", "--channel", "sms", "--country", "*",
       "--unit-price", "0.09")  # fmt: skip
    # a second price for the same line replaces the first
    ok(operator, "plan", "price", "Poland retail", "--channel", "sms", "--country", "PL",
       "--unit-price", "0.0625")  # fmt: skip
    for shop in shops[:2]:
        ok(operator, "plan", "assign", "Poland retail", "--shop", shop["slug"])
    shown = json.loads(ok(operator, "plan", "show", "Poland retail", "--json"))
    assert shown["prices"] == [
        {"channel": "sms", "country": "*", "unit_price": "0.0900"},
        {"channel": "sms", "country": "PL", "unit_price": "0.0625"},
    ]
    assert shown["shops"] == ["anna-shop", "omer-shop"]
    # the plan's "*" covers every SMS country, so only the e-mail default shows through
    assert shown["defaults_used"] == [{"channel": "email", "country": "*", "unit_price": "0.0500"}]
    table = ok(operator, "plan", "show", "Poland retail")
    assert "0.0625" in table and "anna-shop, omer-shop" in table
    assert "Poland retail" in ok(operator, "plan", "list")

    on_plan = prices(client, shops[0])
    assert on_plan[("sms", "PL")] == ("0.0625", "plan")
    assert on_plan[("sms", "*")] == ("0.0900", "plan")
    assert on_plan[("email", "*")] == ("0.0500", "default")
    assert prices(client, shops[2])[("sms", "PL")] == ("0.0700", "default")  # not on the plan
    # a shop's own price still wins over its plan's
    own = client.put("/v1/credits/prices", headers=shops[1]["auth"],
                     json={"prices": [{"channel": "sms", "country": "PL", "unit_price": "0.05"}]})  # fmt: skip
    assert own.status_code == 200, own.text
    assert prices(client, shops[1])[("sms", "PL")] == ("0.0500", "shop")
    assert prices(client, shops[0])[("sms", "PL")] == ("0.0625", "plan")


def test_a_shop_moves_between_plans(client: TestClient, operator: dict[str, str]) -> None:
    shop = make_shop(client, "mover")
    for name, price in (("basic", "0.08"), ("volume", "0.04")):
        ok(operator, "plan", "create", name)
        ok(operator, "plan", "price", name, "--channel", "sms", "--country", "TR",
           "--unit-price", price)  # fmt: skip
    ok(operator, "plan", "assign", "basic", "--shop", "mover")
    assert prices(client, shop)[("sms", "TR")] == ("0.0800", "plan")
    ok(operator, "plan", "assign", "volume", "--shop", "mover")
    assert prices(client, shop)[("sms", "TR")] == ("0.0400", "plan")
    assert json.loads(ok(operator, "plan", "show", "basic", "--json"))["shops"] == []


def test_a_price_the_operator_changes_is_charged_at_once_by_a_running_server(
    client: TestClient, operator: dict[str, str]
) -> None:
    """The API process caches a shop's configuration, prices included: `plan price`, run in
    another process, marks every shop on the plan changed, so the next event pays the new
    price (not only what `GET /v1/credits/prices` shows)."""
    shop = make_shop(client, "repriced", topup="10")
    body = template(client, shop, "Order {{ order_code }} received", name="t")
    rule(client, shop, name="new", trigger={"event_type": "order.created"},
         action={"channel": "sms", "template_id": body})  # fmt: skip
    ok(operator, "plan", "create", "gold")
    ok(operator, "plan", "price", "gold", "--channel", "sms", "--country", "TR",
       "--unit-price", "0.02")  # fmt: skip
    ok(operator, "plan", "assign", "gold", "--shop", "repriced")

    def charged(code: str) -> str:
        event = {"type": "order.created", "occurred_at": "2026-11-20T10:00:00+03:00",
                 "order": {"code": code}, "customer": {"id": code, "phone": "+905321234567"}}  # fmt: skip
        r = client.post("/v1/events", headers=shop["auth"], json=event)
        assert r.status_code == 201, r.text
        assert len(r.json()["messages"]) == 1
        return str(messages(client, shop)[-1]["cost"])

    assert charged("G-1") == "0.0200"
    ok(operator, "plan", "price", "gold", "--channel", "sms", "--country", "TR",
       "--unit-price", "0.30")  # fmt: skip
    assert charged("G-2") == "0.3000"
    assert prices(client, shop)[("sms", "TR")] == ("0.3000", "plan")
    # off the plan while it is repriced, then back on it: the new price, not the one cached
    # under the plan — moved by the operator's CLI, then by the shop's settings
    ok(operator, "plan", "create", "silver")
    ok(operator, "plan", "assign", "silver", "--shop", "repriced")
    ok(operator, "plan", "price", "gold", "--channel", "sms", "--country", "TR",
       "--unit-price", "0.40")  # fmt: skip
    ok(operator, "plan", "assign", "gold", "--shop", "repriced")
    assert charged("G-3") == "0.4000"
    off = client.patch("/v1/credits/settings", headers=shop["auth"], json={"clear_plan": True})
    assert off.status_code == 200, off.text
    ok(operator, "plan", "price", "gold", "--channel", "sms", "--country", "TR",
       "--unit-price", "0.45")  # fmt: skip
    back = client.patch("/v1/credits/settings", headers=shop["auth"], json={"plan": "gold"})
    assert back.status_code == 200, back.text
    assert charged("G-4") == "0.4500"


BAD = [
    pytest.param(["plan", "create", "Standard"], "NAME", "exists", id="plan-exists"),
    pytest.param(["plan", "create", "  "], "NAME", "must not be empty", id="empty-name"),
    pytest.param(["plan", "price", "Standard", "--channel", "sms", "--country", "QQ",
                  "--unit-price", "0.07"], "--country", "unknown country code", id="country"),
    pytest.param(["plan", "price", "Standard", "--channel", "sms", "--country", "Poland",
                  "--unit-price", "0.07"], "--country", "two-letter", id="country-name"),
    pytest.param(["plan", "price", "Standard", "--channel", "email", "--country", "PL",
                  "--unit-price", "0.07"], "--country", "no destination country", id="email-country"),
    pytest.param(["plan", "price", "Standard", "--channel", "fax", "--country", "PL",
                  "--unit-price", "0.07"], "--channel", "not a channel", id="channel"),
    pytest.param(["plan", "price", "Standard", "--channel", "sms", "--country", "PL",
                  "--unit-price", "0.07001"], "--unit-price", "decimal places", id="places"),
    pytest.param(["plan", "price", "Standard", "--channel", "sms", "--country", "PL",
                  "--unit-price", "0"], "--unit-price", "greater than zero", id="zero"),
    pytest.param(["plan", "price", "Standard", "--channel", "sms", "--country", "PL",
                  "--unit-price", "-0.01"], "--unit-price", "greater than zero", id="negative"),
    pytest.param(["plan", "price", "Standard", "--channel", "sms", "--country", "PL",
                  "--unit-price", "cheap"], "--unit-price", "not a number", id="not-a-number"),
    pytest.param(["plan", "price", "Nope", "--channel", "sms", "--country", "PL",
                  "--unit-price", "0.07"], "NAME", "no price plan", id="unknown-plan-price"),
    pytest.param(["plan", "show", "Nope"], "NAME", "no price plan", id="unknown-plan-show"),
    pytest.param(["plan", "assign", "Nope", "--shop", "my-shop"], "NAME", "no price plan",
                 id="unknown-plan-assign"),
    pytest.param(["plan", "assign", "Standard", "--shop", "nope"], "--shop", "no shop",
                 id="unknown-shop"),
]  # fmt: skip


@pytest.fixture(scope="module")
def standard(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An operator with one shop and one plan whose SMS to PL costs 0.07."""
    env = user_env(tmp_path_factory.mktemp("plans"))
    ok(env, "shop", "create", "--name", "My Shop", "--slug", "my-shop", "--country", "PL")
    ok(env, "plan", "create", "Standard")
    ok(env, "plan", "price", "Standard", "--channel", "sms", "--country", "PL",
       "--unit-price", "0.07")  # fmt: skip
    return env


@pytest.mark.parametrize(("args", "field", "reason"), BAD)
def test_bad_input_names_the_field(
    standard: dict[str, str], args: list[str], field: str, reason: str
) -> None:
    done = orderbell(standard, *args)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert f"error in {field}" in done.stderr, done.stderr
    assert reason in done.stderr, done.stderr


def test_bad_input_changed_nothing(standard: dict[str, str]) -> None:
    for case in BAD:
        orderbell(standard, *case.values[0])  # type: ignore[arg-type]
    shown = json.loads(ok(standard, "plan", "show", "Standard", "--json"))
    assert shown["prices"] == [{"channel": "sms", "country": "PL", "unit_price": "0.0700"}]
    assert shown["shops"] == []
    assert "Standard" in ok(standard, "plan", "list")


def test_the_api_assigns_only_a_plan_that_exists(
    client: TestClient, operator: dict[str, str]
) -> None:
    shop = make_shop(client, "api-shop")
    ok(operator, "plan", "create", "Standard")
    ok(operator, "plan", "price", "Standard", "--channel", "email", "--country", "*",
       "--unit-price", "0.04")  # fmt: skip
    bad = client.patch("/v1/credits/settings", headers=shop["auth"], json={"plan": "Nope"})
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "plan"
    assert "no price plan" in bad.json()["error"]["message"]
    good = client.patch("/v1/credits/settings", headers=shop["auth"], json={"plan": "Standard"})
    assert good.status_code == 200, good.text
    assert prices(client, shop)[("email", "*")] == ("0.0400", "plan")
    assert json.loads(ok(operator, "plan", "show", "Standard", "--json"))["shops"] == ["api-shop"]
    # and off it again: the default list
    off = client.patch("/v1/credits/settings", headers=shop["auth"], json={"clear_plan": True})
    assert off.status_code == 200, off.text
    assert prices(client, shop)[("email", "*")] == ("0.0500", "default")
    assert json.loads(ok(operator, "plan", "show", "Standard", "--json"))["shops"] == []
