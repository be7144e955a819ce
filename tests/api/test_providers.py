"""Provider accounts through the API: CRUD, write-only secrets, callback URLs, bad input."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.conftest import make_shop

from orderbell.compose import Services

SECRET = "k3y-secret-value"


def http_provider(**more: Any) -> dict[str, Any]:
    return {
        "name": "main-gw",
        "kind": "http",
        "settings": {
            "url": "https://gw.example/sms",
            "auth_header": "Authorization",
            "auth_value": SECRET,
        },
        **more,
    }


def test_crud_secrets_are_write_only(
    client: TestClient, shop: dict[str, Any], services: Services
) -> None:
    r = client.post("/v1/providers", headers=shop["auth"], json=http_provider(concurrency=20))
    assert r.status_code == 201, r.text
    created = r.json()
    assert SECRET not in r.text
    assert created["secrets_set"] == ["auth_value"]
    assert created["channel"] == "sms" and created["position"] == 0
    assert created["callback_url"].startswith("http://127.0.0.1:8000/v1/callbacks/")
    assert len(created["callback_url"].rsplit("/", 1)[1]) >= 43  # token_urlsafe(32)

    second = client.post(
        "/v1/providers", headers=shop["auth"], json=http_provider(name="backup")
    ).json()
    assert second["position"] == 1  # appended to the failover order

    listed = client.get("/v1/providers", headers=shop["auth"])
    assert [p["name"] for p in listed.json()["items"]] == ["main-gw", "backup"]
    assert SECRET not in listed.text

    pid = created["id"]
    patched = client.patch(
        f"/v1/providers/{pid}",
        headers=shop["auth"],
        json={"position": 5, "rate_per_second": "12.5", "settings": {"timeout_seconds": 3}},
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["position"] == 5 and body["rate_per_second"] == "12.500"
    assert body["settings"]["timeout_seconds"] == 3
    assert body["secrets_set"] == ["auth_value"]  # kept: not given again
    assert SECRET not in patched.text
    # the secret is stored, in its own column
    from sqlalchemy import select

    from orderbell.store.schema import shop_providers

    with services.engine.connect() as conn:
        row = conn.execute(select(shop_providers).where(shop_providers.c.id == pid)).one()
    assert row.secrets == {"auth_value": SECRET} and "auth_value" not in row.settings

    assert client.delete(f"/v1/providers/{pid}", headers=shop["auth"]).status_code == 204
    assert client.get(f"/v1/providers/{pid}", headers=shop["auth"]).status_code == 404


def test_another_shops_provider_is_not_found(client: TestClient, shop: dict[str, Any]) -> None:
    other = make_shop(client, "other")
    pid = client.post("/v1/providers", headers=shop["auth"], json=http_provider()).json()["id"]
    for method in ("get", "delete"):
        r = getattr(client, method)(f"/v1/providers/{pid}", headers=other["auth"])
        assert r.status_code == 404, (method, r.text)
    r = client.patch(f"/v1/providers/{pid}", headers=other["auth"], json={"active": False})
    assert r.status_code == 404
    assert client.get("/v1/providers", headers=other["auth"]).json()["items"] == []
    assert client.get("/v1/providers").status_code == 401


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"kind": "carrier-pigeon"}, "kind", id="unknown-kind"),
        pytest.param({"settings": {"url": "not a url"}}, "settings.url", id="bad-url"),
        pytest.param({"rate_per_second": -1}, "rate_per_second", id="negative-rate"),
        pytest.param({"concurrency": 0}, "concurrency", id="zero-concurrency"),
        pytest.param(
            {"settings": {"url": "https://gw.example", "auth_header": "Authorization"}},
            "settings.auth_value",
            id="missing-secret",
        ),
        pytest.param({"channel": "email"}, "channel", id="wrong-channel"),
        pytest.param({"name": "has space"}, "name", id="bad-name"),
        pytest.param({"settings": "x"}, "settings", id="settings-not-object"),
        pytest.param({"extra": 1}, "extra", id="unknown-field"),
    ],
)
def test_bad_input_names_the_field(
    client: TestClient, shop: dict[str, Any], change: dict[str, Any], field: str
) -> None:
    r = client.post("/v1/providers", headers=shop["auth"], json=http_provider(**change))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field
    assert client.get("/v1/providers", headers=shop["auth"]).json()["items"] == []


def test_duplicate_name_and_bad_patch(client: TestClient, shop: dict[str, Any]) -> None:
    pid = client.post("/v1/providers", headers=shop["auth"], json=http_provider()).json()["id"]
    r = client.post("/v1/providers", headers=shop["auth"], json=http_provider())
    assert r.status_code == 409 and r.json()["error"]["field"] == "name"
    r = client.patch(
        f"/v1/providers/{pid}", headers=shop["auth"], json={"settings": {"auth_value": None}}
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "settings.auth_value"


def test_kind_without_per_shop_configuration_is_refused(
    client: TestClient, shop: dict[str, Any]
) -> None:
    r = client.post("/v1/providers", headers=shop["auth"], json={"name": "c", "kind": "console"})
    assert r.status_code == 422 and r.json()["error"]["field"] in ("kind", "channel")


@pytest.mark.parametrize(
    ("kind", "settings", "query", "body", "media"),
    [
        pytest.param("smsapi", {"access_token": "token-1234"},
                     {"MsgId": "abc", "status": "404", "idx": "1"}, b"OK", "text/plain",
                     id="smsapi-expects-OK"),
        pytest.param("serwersms", {"api_token": "token-1234"},
                     {"type": "message", "message_id": "abc", "status": "delivered",
                      "unique_id": "1"}, b"OK", "text/plain", id="serwersms-expects-OK"),
        pytest.param("http", {"url": "https://gw.example/sms"},
                     {"id": "abc", "status": "delivered"}, None, "application/json",
                     id="http-gets-our-json"),
    ],
)  # fmt: skip
def test_a_callback_is_answered_the_way_its_provider_expects(
    client: TestClient,
    shop: dict[str, Any],
    kind: str,
    settings: dict[str, Any],
    query: dict[str, str],
    body: bytes | None,
    media: str,
) -> None:
    r = client.post(
        "/v1/providers",
        headers=shop["auth"],
        json={"name": kind, "kind": kind, "settings": settings},
    )
    assert r.status_code == 201, r.text
    path = "/v1/callbacks/" + r.json()["callback_url"].rsplit("/", 1)[1]
    answer = client.get(path, params=query)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith(media)
    if body is not None:
        assert answer.content == body
    else:
        assert answer.json()["receipts"] == 1
