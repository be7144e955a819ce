"""Failed logins are slowed, then refused for a while — per e-mail and per client address —
without telling whether an account exists; on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.web.http_support import submit_login

from orderbell.clock import ManualClock
from orderbell.compose import Services
from orderbell.web import accounts
from orderbell.web.throttle import PER_ADDRESS, PER_EMAIL, Limit, LoginThrottle

PASSWORD = "a long enough password"
OWNER = "owner@shop.test"


def admin_app(client: TestClient) -> FastAPI:
    """The admin sub-application mounted at /admin."""
    mount = next(r for r in client.app.routes if getattr(r, "path", "") == "/admin")  # type: ignore[attr-defined]
    app = mount.app  # type: ignore[attr-defined]
    assert isinstance(app, FastAPI)
    return app


@pytest.fixture
def delays(client: TestClient) -> list[float]:
    """The delays failed logins asked for (recorded instead of waited)."""
    asked: list[float] = []

    async def record(seconds: float) -> None:
        asked.append(seconds)

    throttle: LoginThrottle = admin_app(client).state.login_throttle
    throttle.sleep = record
    return asked


@pytest.fixture
def owner(services: Services, shop: dict[str, Any]) -> str:
    """A login of the shop."""
    with services.engine.begin() as conn:
        accounts.create_user(conn, shop["id"], OWNER, PASSWORD, services.clock.now())
    return OWNER


def log_in(client: TestClient, email: str, password: str) -> httpx.Response:
    """Submit the login form as a browser does (fresh form, its CSRF cookie and token)."""
    client.cookies.clear()
    return submit_login(client, email, password)


def fail(client: TestClient, email: str, times: int) -> None:
    for _ in range(times):
        r = log_in(client, email, "wrong password!")
        assert r.status_code == 400, r.text
        assert "wrong e-mail or password" in r.text


def refusal(r: httpx.Response) -> str:
    found = re.search(r'<p class="field-error" role="alert" id="err-_form">([^<]+)</p>', r.text)
    assert found, r.text
    return found.group(1)


def test_five_failures_lock_the_email_for_15_minutes_even_with_the_right_password(
    client: TestClient, owner: str, clock: ManualClock, delays: list[float]
) -> None:
    fail(client, owner, PER_EMAIL.failures)
    locked = log_in(client, owner, PASSWORD)
    assert locked.status_code == 429
    assert locked.headers["content-type"].startswith("text/html")
    assert "Too many failed logins" in refusal(locked)
    assert "15 minutes" in refusal(locked)
    assert "ob_session" not in locked.cookies
    # the failed answers were slowed before the lockout: 0, 0 … then growing
    assert delays[0] == 0 and delays[-1] > delays[2] > 0, delays
    clock.advance(timedelta(minutes=14))
    assert log_in(client, owner, PASSWORD).status_code == 429
    clock.advance(timedelta(minutes=1, seconds=1))
    again = log_in(client, owner, PASSWORD)
    assert again.status_code == 303, again.text
    assert client.get("/admin/").status_code == 200


def test_the_lockout_does_not_tell_whether_the_account_exists(
    client: TestClient, owner: str, delays: list[float]
) -> None:
    fail(client, owner, PER_EMAIL.failures)
    fail(client, "nobody@shop.test", PER_EMAIL.failures)
    real = log_in(client, owner, PASSWORD)
    ghost = log_in(client, "nobody@shop.test", PASSWORD)
    assert (real.status_code, refusal(real)) == (ghost.status_code, refusal(ghost))
    assert delays[: PER_EMAIL.failures] == delays[PER_EMAIL.failures :]


def test_a_successful_login_resets_the_count(
    client: TestClient, owner: str, delays: list[float]
) -> None:
    fail(client, owner, PER_EMAIL.failures - 1)
    assert log_in(client, owner, PASSWORD).status_code == 303
    fail(client, owner.upper(), PER_EMAIL.failures - 1)  # the same login, however it is typed
    assert log_in(client, owner, PASSWORD).status_code == 303


def test_one_address_trying_many_emails_is_locked_but_others_are_not(
    client: TestClient, owner: str, delays: list[float]
) -> None:
    for i in range(PER_ADDRESS.failures):
        fail(client, f"guess{i}@shop.test", 1)
    blocked = log_in(client, owner, PASSWORD)
    assert blocked.status_code == 429 and "Too many failed logins" in refusal(blocked)
    elsewhere = TestClient(client.app, client=("203.0.113.7", 50000))
    assert log_in(elsewhere, owner, PASSWORD).status_code == 303


NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def test_the_throttle_forgets_old_failures_and_stays_bounded() -> None:
    limit = Limit(failures=3, window=timedelta(minutes=10), lockout=timedelta(minutes=5))
    throttle = LoginThrottle(per_email=limit, per_address=limit, max_keys=100)
    throttle.failed("a@x.test", None, NOW)
    throttle.failed("a@x.test", None, NOW + timedelta(minutes=1))
    # the window passed: the third failure is a first one again
    throttle.failed("a@x.test", None, NOW + timedelta(minutes=11))
    assert throttle.locked_until("a@x.test", None, NOW + timedelta(minutes=11)) is None
    for _ in range(2):
        throttle.failed("a@x.test", None, NOW + timedelta(minutes=12))
    assert throttle.locked_until("a@x.test", None, NOW + timedelta(minutes=12)) == NOW + timedelta(
        minutes=17
    )
    for i in range(1_000):
        throttle.failed(f"spray{i}@x.test", None, NOW)
    assert len(throttle._entries) <= 100
