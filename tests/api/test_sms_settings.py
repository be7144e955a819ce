"""The shop's SMS settings (transliteration, segment cap) through PATCH/GET /v1/shop, and SMS
templates refused at save — or when a rule links them — when their worst case passes the cap."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.support import rule, template

from orderbell.compose import Services
from orderbell.store import shops as shop_store

# 300-character link in a Turkish (UCS-2) text: 5 segments at worst, 3 when transliterated
SHIPPED = "Siparişiniz yolda: {{ tracking_url }}"


def patch(client: TestClient, shop: dict[str, Any], **body: Any) -> Any:
    return client.patch("/v1/shop", headers=shop["auth"], json=body)


def get_shop(client: TestClient, shop: dict[str, Any]) -> dict[str, Any]:
    r = client.get("/v1/shop", headers=shop["auth"])
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_defaults_and_round_trip(
    client: TestClient, services: Services, shop: dict[str, Any]
) -> None:
    seen = get_shop(client, shop)
    assert (seen["sms_transliterate"], seen["sms_max_segments"]) == (False, 10)

    r = patch(client, shop, sms_transliterate=True, sms_max_segments=3)
    assert r.status_code == 200, r.text
    assert (r.json()["sms_transliterate"], r.json()["sms_max_segments"]) == (True, 3)
    # another setting leaves them as they are
    assert patch(client, shop, stop_scope="all").status_code == 200
    seen = get_shop(client, shop)
    assert (seen["sms_transliterate"], seen["sms_max_segments"]) == (True, 3)
    with services.engine.connect() as conn:
        domain = shop_store.get(conn, shop["id"])
    assert (domain.sms_transliterate, domain.sms_max_segments) == (True, 3)

    # null is "no cap", kept as such (not the default)
    assert patch(client, shop, sms_max_segments=None).json()["sms_max_segments"] is None
    assert get_shop(client, shop)["sms_max_segments"] is None
    with services.engine.connect() as conn:
        assert shop_store.get(conn, shop["id"]).sms_max_segments is None


BAD = [
    pytest.param({"sms_max_segments": 0}, "sms_max_segments", "greater than or equal to 1",
                 id="cap-zero"),
    pytest.param({"sms_max_segments": 11}, "sms_max_segments", "less than or equal to 10",
                 id="cap-eleven"),
    pytest.param({"sms_max_segments": -3}, "sms_max_segments", "greater than", id="negative"),
    pytest.param({"sms_max_segments": "3"}, "sms_max_segments", "integer", id="cap-as-text"),
    pytest.param({"sms_max_segments": 2.5}, "sms_max_segments", "integer", id="fraction"),
    pytest.param({"sms_max_segments": True}, "sms_max_segments", "integer", id="cap-bool"),
    pytest.param({"sms_max_segments": 10**30}, "sms_max_segments", "less than", id="huge"),
    pytest.param({"sms_transliterate": "yes"}, "sms_transliterate", "boolean", id="flag-text"),
    pytest.param({"sms_transliterate": 1}, "sms_transliterate", "boolean", id="flag-number"),
    pytest.param({"sms_transliterate": [True]}, "sms_transliterate", "boolean", id="flag-list"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "field", "reason"), BAD)
def test_bad_values_are_refused_naming_the_field(
    client: TestClient, shop: dict[str, Any], body: dict[str, Any], field: str, reason: str
) -> None:
    r = patch(client, shop, **body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == field
    assert reason in error["message"]
    seen = get_shop(client, shop)
    assert (seen["sms_transliterate"], seen["sms_max_segments"]) == (False, 10)


SAVES = [
    # (settings, body, refused?, what the message says)
    pytest.param({"sms_max_segments": 4}, SHIPPED, "5 SMS segments (UCS-2", id="ucs2-over-4"),
    pytest.param({"sms_max_segments": 2, "sms_transliterate": True}, SHIPPED,
                 "3 SMS segments (GSM-7", id="gsm7-over-2"),
    pytest.param({"sms_max_segments": 3, "sms_transliterate": True}, SHIPPED, None,
                 id="transliteration-brings-it-under-3"),
    pytest.param({"sms_max_segments": 5}, SHIPPED, None, id="at-the-cap"),
    pytest.param({"sms_max_segments": None}, SHIPPED * 5, None, id="no-cap"),
    pytest.param({}, SHIPPED * 3, "15 SMS segments", id="default-cap-10"),
    pytest.param({"sms_max_segments": 1}, "Hi {{ product_name }}!", "2 SMS segments",
                 id="free-text-budget"),
]  # fmt: skip


@pytest.mark.parametrize(("settings", "body", "refused"), SAVES)
def test_template_save_against_the_cap(
    client: TestClient,
    shop: dict[str, Any],
    settings: dict[str, Any],
    body: str,
    refused: str | None,
) -> None:
    if settings:
        assert patch(client, shop, **settings).status_code == 200
    r = client.post("/v1/templates", headers=shop["auth"],
                    json={"name": "t", "channel": "sms", "body": body})  # fmt: skip
    if refused is None:
        assert r.status_code == 201, r.text
        return
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_template", "body")
    assert refused in error["message"]
    cap = settings.get("sms_max_segments", 10)
    assert f"the shop's cap of {cap} (sms_max_segments)" in error["message"]


def test_a_new_version_over_the_cap_keeps_the_previous_one(
    client: TestClient, shop: dict[str, Any]
) -> None:
    assert patch(client, shop, sms_max_segments=2).status_code == 200
    tid = template(client, shop, "Order {{ order_code }} is on its way")
    r = client.put(f"/v1/templates/{tid}", headers=shop["auth"],
                   json={"name": "t", "channel": "sms", "body": SHIPPED})  # fmt: skip
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "body"
    stored = client.get(f"/v1/templates/{tid}", headers=shop["auth"]).json()
    assert (stored["version"], stored["body"]) == (1, "Order {{ order_code }} is on its way")


def test_e_mail_templates_are_not_capped(client: TestClient, shop: dict[str, Any]) -> None:
    assert patch(client, shop, sms_max_segments=1).status_code == 200
    template(client, shop, SHIPPED * 10, channel="email", subject="Order {{ order_code }}")


def test_a_rule_cannot_link_a_template_that_predates_a_lower_cap(
    client: TestClient, shop: dict[str, Any]
) -> None:
    tid = template(client, shop, SHIPPED)  # fits the default cap of 10
    shipped = {"event_type": "order.shipped"}
    rid = rule(client, shop, name="ship", trigger=shipped,
               action={"channel": "sms", "template_id": tid})  # fmt: skip
    assert patch(client, shop, sms_max_segments=3).status_code == 200  # lowering is allowed

    r = client.post("/v1/rules", headers=shop["auth"],
                    json={"name": "again", "trigger": shipped,
                          "action": {"channel": "sms", "template_id": tid}})  # fmt: skip
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == "action.template_id"
    assert f"template {tid}: the worst case is 5 SMS segments" in error["message"]

    # the existing link stays editable; relinking to a fitting template is checked and fine
    r = client.patch(f"/v1/rules/{rid}", headers=shop["auth"], json={"priority": 5})
    assert r.status_code == 200, r.text
    short = template(client, shop, "Order {{ order_code }} shipped", name="short")
    r = client.patch(f"/v1/rules/{rid}", headers=shop["auth"],
                     json={"action": {"channel": "sms", "template_id": short}})  # fmt: skip
    assert r.status_code == 200, r.text
    r = client.patch(f"/v1/rules/{rid}", headers=shop["auth"],
                     json={"action": {"channel": "sms", "template_id": tid}})  # fmt: skip
    assert r.status_code == 422 and r.json()["error"]["field"] == "action.template_id"
