"""What the admin's HTTP-level tests share: logins through the real form, and reading the
error shown next to an input."""

from __future__ import annotations

import re
from typing import Any

import httpx
from fastapi.testclient import TestClient

from orderbell.compose import Services
from orderbell.web import accounts

PASSWORD = "a long enough password"
OWNER = "owner@shop.test"


def create_user(services: Services, shop: dict[str, Any], email: str) -> int:
    """An admin login of the shop, with PASSWORD."""
    with services.engine.begin() as conn:
        return accounts.create_user(conn, shop["id"], email, PASSWORD, services.clock.now())


def submit_login(client: TestClient, email: str, password: str) -> httpx.Response:
    """Submit the login form as a browser does (a fresh form: its CSRF cookie and token)."""
    form = client.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token
    return client.post(
        "/admin/login",
        data={"csrf_token": token.group(1), "email": email, "password": password},
        follow_redirects=False,
    )


def log_in(client: TestClient, email: str, password: str = PASSWORD) -> str:
    """Log the client in; returns the session's CSRF token."""
    client.cookies.clear()
    r = submit_login(client, email, password)
    assert r.status_code == 303, r.text
    csrf = re.search(r'"X-CSRF-Token": "([^"]+)"', client.get("/admin/").text)
    assert csrf
    return csrf.group(1)


def can_log_in(client: TestClient, email: str, password: str) -> bool:
    """Does the login form take this e-mail and password (in a fresh client)?"""
    return submit_login(TestClient(client.app), email, password).status_code == 303


def field_error(r: httpx.Response, name: str) -> str:
    """The error shown right below an input (tied to it by aria-describedby)."""
    field = re.search(
        rf'<(?:input|textarea|select)[^>]*id="f-{name}"'
        rf'[^>]*aria-describedby="[^"]*err-{name}[^"]*"'
        rf'[^>]*aria-invalid="true".*?<p class="field-error" id="err-{name}">([^<]+)</p>',
        r.text,
        re.S,
    )
    assert field, f"no error next to {name}: {r.text[:3000]}"
    return field.group(1)
