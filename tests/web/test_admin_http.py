"""The admin's guarantees that need no browser: tenancy, idempotent sends, safe redirects,
sessions that end, and errors that are pages — on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import threading
from typing import Any

from fastapi.testclient import TestClient
from tests.conftest import Outbox, make_shop
from tests.support import drain, template
from tests.web.http_support import PASSWORD, create_user, log_in

from orderbell.compose import Services


def owner(client: TestClient, services: Services, shop: dict[str, Any], email: str) -> str:
    """Create a login for the shop, log the client in, return the session's CSRF token."""
    create_user(services, shop, email)
    return log_in(client, email)


def customer(client: TestClient, shop: dict[str, Any], ext: str, phone: str, **consent: Any) -> int:
    r = client.post(
        "/v1/customers",
        headers=shop["auth"],
        json={"id": ext, "name": ext.title(), "phone": phone, "consent": consent},
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_a_send_is_planned_once_per_preview_and_the_worker_sends_it(
    client: TestClient, services: Services, shop: dict[str, Any], outbox: Outbox
) -> None:
    csrf = owner(client, services, shop, "owner@shop.test")
    ids = [
        customer(client, shop, "anna", "+905321234567"),
        customer(client, shop, "omer", "+905327654321", sms_transactional=False),
    ]
    tpl = template(client, shop, "Hi {{ customer_name }}, news from {{ shop_name }}")
    form = {"csrf_token": csrf, "ids": [str(i) for i in ids], "template_id": str(tpl)}
    preview = client.post("/admin/customers/bulk/preview", data=form)
    assert "1 to send" in preview.text and "1 skipped" in preview.text
    nonce = re.search(r'name="nonce" value="([^"]+)"', preview.text)
    assert nonce
    sent = [
        client.post(
            "/admin/customers/bulk/send",
            data={**form, "nonce": nonce.group(1)},
            follow_redirects=False,
        )
        for _ in range(2)
    ]
    assert sent[0].headers["location"] == sent[1].headers["location"]  # a double click: one send
    worker = threading.Thread(target=drain, args=(services,))  # its own event loop
    worker.start()
    worker.join(30)
    progress = client.get(sent[0].headers["location"])
    assert "Done" in progress.text
    assert "1 sent" in progress.text and "1 skipped" in progress.text
    texts = [m for m in outbox.lines() if "news from" in str(m)]
    assert len(texts) == 1, texts


def test_one_shop_never_sees_or_sends_to_another_shops_customers(
    client: TestClient, services: Services, shop: dict[str, Any]
) -> None:
    theirs = customer(client, shop, "anna", "+905321234567")
    other = make_shop(client, "other")
    csrf = owner(client, services, other, "owner@other.test")
    page = client.get(f"/admin/customers/{theirs}")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "Anna" not in page.text
    mine = template(client, other, "Hello {{ customer_name }}")
    r = client.post(
        "/admin/customers/bulk/preview",
        data={"csrf_token": csrf, "ids": [str(theirs)], "template_id": str(mine)},
    )
    assert "not one of your customers" in r.text
    assert "Anna" not in r.text


def test_login_goes_only_to_admin_pages_and_logout_ends_the_session(
    client: TestClient, services: Services, shop: dict[str, Any]
) -> None:
    csrf = owner(client, services, shop, "owner@shop.test")
    client.cookies.delete("ob_session")
    form = client.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token
    r = client.post(
        "/admin/login",
        data={
            "csrf_token": token.group(1),
            "email": "OWNER@shop.test",
            "password": PASSWORD,
            "next": "https://evil.example/",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/admin/"
    session = client.cookies.get("ob_session")
    page = client.get("/admin/")
    csrf = re.search(r'"X-CSRF-Token": "([^"]+)"', page.text)
    assert csrf and session
    out = client.post("/admin/logout", data={"csrf_token": csrf.group(1)}, follow_redirects=False)
    assert out.status_code == 303
    client.cookies.set("ob_session", session)  # the old cookie, replayed
    again = client.get("/admin/", follow_redirects=False)
    assert again.status_code == 303 and "/admin/login" in again.headers["location"]


ERROR_CASES = [
    ("get", "/admin/rules/abc", 404, "Not found"),
    ("get", "/admin/messages/999999", 404, "message not found"),
    ("get", "/admin/nowhere", 404, "no such page"),
    ("get", "/admin/customers/bulk/999999", 404, "no such send"),
    ("post", "/admin/rules/new", 422, "must not be empty"),
    ("post", "/admin/templates/new", 422, "must not be empty"),
    ("post", "/admin/customers/new", 422, "must not be empty"),
    ("post", "/admin/settings/shop", 422, "must not be empty"),
    ("get", "/admin/messages/?date_from=yesterday", 200, "YYYY-MM-DD"),
    ("get", "/admin/messages/?before=99999999999999999999", 404, "no such page"),  # > BIGINT
    ("get", "/admin/messages/?before=0", 404, "no such page"),
    ("get", "/admin/customers/?after=99999999999999999999", 404, "no such page"),
    # a filter's id: ASCII digits for a number a BIGINT holds, or named
    ("get", "/admin/messages/?rule=99999999999999999999", 200, "must be an id"),
    ("get", "/admin/messages/?customer=%C2%B2", 200, "must be an id"),  # "²"
    ("get", "/admin/messages/?order=%D9%A3", 200, "must be an id"),  # Arabic-Indic 3
    ("get", "/admin/messages/?batch=0", 200, "must be an id"),
    ("get", "/admin/customers/?consent=bogus&q=%00", 200, "No customers match"),
]


def test_errors_are_readable_pages_never_json_or_a_crash(
    client: TestClient, services: Services, shop: dict[str, Any]
) -> None:
    csrf = owner(client, services, shop, "owner@shop.test")
    for method, path, status, text in ERROR_CASES:
        form = {"csrf_token": csrf}
        r = client.post(path, data=form) if method == "post" else client.get(path)
        assert r.status_code == status, (path, r.text[:500])
        assert r.headers["content-type"].startswith("text/html"), path
        assert text in r.text, (path, r.text[:2000])
        assert r.headers["x-frame-options"] == "DENY"
        assert "script-src 'self'" in r.headers["content-security-policy"]
