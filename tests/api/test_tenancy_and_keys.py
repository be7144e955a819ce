"""One shop never sees another's data; API keys are stored hashed, shown once, revocable."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from tests.conftest import make_shop
from tests.support import drain, event, rule, template

from orderbell.clock import ManualClock
from orderbell.compose import Services
from orderbell.store.schema import api_keys
from orderbell.store.shops import KeyCache


def test_other_shops_ids_answer_404(
    client: TestClient, services: Services, shop: dict[str, Any], clock: ManualClock
) -> None:
    tid = template(client, shop, "Hi {{ customer_name }}")
    rid = rule(
        client,
        shop,
        name="r",
        trigger={"event_type": "order.created"},
        action={"channel": "sms", "template_id": tid},
    )
    clock.set(datetime.fromisoformat("2026-11-20T10:00:00+03:00"))
    result = event(client, shop, "order.created", "2026-11-20T10:00:00+03:00", "A1")
    drain(services)
    mid = result["messages"][0]["id"]
    customer_id = client.get("/v1/customers", headers=shop["auth"]).json()["items"][0]["id"]

    intruder = make_shop(client, "intruder")
    for path in (
        f"/v1/templates/{tid}",
        f"/v1/rules/{rid}",
        f"/v1/messages/{mid}",
        f"/v1/customers/{customer_id}",
        "/v1/orders/A1",
    ):
        r = client.get(path, headers=intruder["auth"])
        assert r.status_code == 404, path
        assert r.json()["error"]["code"] == "not_found"
    assert client.get("/v1/messages", headers=intruder["auth"]).json()["items"] == []
    assert client.get("/v1/customers", headers=intruder["auth"]).json()["items"] == []
    r = client.patch(f"/v1/rules/{rid}", headers=intruder["auth"], json={"active": False})
    assert r.status_code == 404
    assert client.get(f"/v1/rules/{rid}", headers=shop["auth"]).json()["active"] is True


def test_keys_are_hashed_shown_once_and_revocable(
    client: TestClient, services: Services, shop: dict[str, Any]
) -> None:
    created = client.post("/v1/api-keys", headers=shop["auth"], json={"name": "ci"})
    assert created.status_code == 201
    key = created.json()["api_key"]
    with services.engine.connect() as conn:
        stored = [r.secret_hash for r in conn.execute(select(api_keys.c.secret_hash))]
    assert all(key.split("_", 2)[2] not in h for h in stored)
    listed = client.get("/v1/api-keys", headers=shop["auth"]).json()["items"]
    assert all("api_key" not in k and "secret_hash" not in k for k in listed)
    new_auth = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/shop", headers=new_auth).status_code == 200
    assert (
        client.delete(f"/v1/api-keys/{created.json()['id']}", headers=shop["auth"]).status_code
        == 204
    )
    r = client.get("/v1/shop", headers=new_auth)
    assert r.status_code == 401 and r.json()["error"]["field"] == "authorization"


def test_a_key_revoked_elsewhere_stops_working_within_the_cache_ttl(
    client: TestClient, services: Services, shop: dict[str, Any]
) -> None:
    ticks = [0.0]
    services.api_keys = KeyCache(5.0, now=lambda: ticks[0])
    created = client.post("/v1/api-keys", headers=shop["auth"], json={"name": "other"}).json()
    auth = {"Authorization": f"Bearer {created['api_key']}"}
    assert client.get("/v1/shop", headers=auth).status_code == 200  # verified, now cached
    with services.engine.begin() as conn:  # as another API process would revoke it
        conn.execute(
            update(api_keys).where(api_keys.c.id == created["id"]).values(revoked_at=func.now())
        )
    ticks[0] = 4.9
    assert client.get("/v1/shop", headers=auth).status_code == 200  # trusted for the TTL
    ticks[0] = 5.0
    r = client.get("/v1/shop", headers=auth)
    assert r.status_code == 401 and r.json()["error"]["field"] == "authorization"
    ticks[0] = 99.0  # a failure is never cached: still refused, and the others still work
    assert client.get("/v1/shop", headers=auth).status_code == 401
    assert client.get("/v1/shop", headers=shop["auth"]).status_code == 200

    services.api_keys = KeyCache(0)  # ORDERBELL_API_KEY_CACHE_SECONDS=0: every request looks
    again = client.post("/v1/api-keys", headers=shop["auth"], json={"name": "x"}).json()
    auth = {"Authorization": f"Bearer {again['api_key']}"}
    assert client.get("/v1/shop", headers=auth).status_code == 200
    with services.engine.begin() as conn:
        conn.execute(
            update(api_keys).where(api_keys.c.id == again["id"]).values(revoked_at=func.now())
        )
    assert client.get("/v1/shop", headers=auth).status_code == 401


def test_a_lookup_that_began_before_a_revocation_is_not_cached() -> None:
    cache = KeyCache(60.0)
    started = cache.generation  # a request reads the key from the database ...
    cache.clear()  # ... while the key is revoked through this process
    cache.put("ob_key_secret", 1, started)  # the stale answer arrives after the clear
    assert cache.get("ob_key_secret") is None
    cache.put("ob_key_secret", 1, cache.generation)
    assert cache.get("ob_key_secret") == 1


def test_missing_and_wrong_credentials(client: TestClient, shop: dict[str, Any]) -> None:
    assert client.get("/v1/messages").status_code == 401
    bad = {"Authorization": "Bearer ob_nothere_secret"}
    assert client.get("/v1/messages", headers=bad).status_code == 401
    wrong_secret = shop["api_key"][:-3] + "xyz"
    assert (
        client.get("/v1/messages", headers={"Authorization": f"Bearer {wrong_secret}"}).status_code
        == 401
    )
    for header in ("Bearer nope", "admin-secret", "Basic admin-secret", ""):  # (no scheme)
        r = client.post("/v1/shops", json={"name": "x", "slug": "x1"},
                        headers={"Authorization": header})  # fmt: skip
        assert r.status_code == 401, (header, r.text)
        assert r.json()["error"]["field"] == "authorization"
