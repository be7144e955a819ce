"""Settings → Users over HTTP: the shop's logins listed, added, removed, and your own password
changed — with CSRF on every form, errors next to their field, and never another shop's users;
on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.conftest import make_shop
from tests.web.http_support import OWNER, PASSWORD, can_log_in, create_user, field_error, log_in

from orderbell.compose import Services
from orderbell.errors import InvalidInput
from orderbell.store.schema import admin_users
from orderbell.web import accounts


@pytest.fixture
def csrf(client: TestClient, services: Services, shop: dict[str, Any]) -> str:
    """The shop owner, logged in."""
    create_user(services, shop, OWNER)
    return log_in(client, OWNER)


def test_the_page_lists_only_this_shops_users(
    client: TestClient, services: Services, shop: dict[str, Any], csrf: str
) -> None:
    create_user(services, shop, "clerk@shop.test")
    other = make_shop(client, "other")
    create_user(services, other, "rival@other.test")
    page = client.get("/admin/settings/users/")
    assert page.status_code == 200
    assert OWNER in page.text and "clerk@shop.test" in page.text
    assert "rival@other.test" not in page.text
    # every visible input has a label
    for name in re.findall(r'<input type="(?!hidden)[^"]+" id="f-([\w-]+)"', page.text):
        assert f'<label for="f-{name}">' in page.text, name


def test_add_a_user_who_then_logs_in_with_an_argon2_hashed_password(
    client: TestClient, services: Services, csrf: str
) -> None:
    r = client.post(
        "/admin/settings/users/",
        data={
            "csrf_token": csrf,
            "user_email": " Clerk@Shop.test ",
            "user_name": "Clerk",
            "user_password": "clerk password 1",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    page = client.get(r.headers["location"])
    assert "User clerk@shop.test added." in page.text
    assert "clerk@shop.test" in page.text
    with services.engine.connect() as conn:
        stored = conn.execute(
            select(admin_users.c.password_hash).where(admin_users.c.email == "clerk@shop.test")
        ).scalar_one()
    assert stored.startswith("$argon2id$") and "clerk password" not in stored
    assert can_log_in(client, "clerk@shop.test", "clerk password 1")


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        pytest.param({"user_email": "", "user_password": PASSWORD}, "user_email",
                     "enter the e-mail", id="no-email"),
        pytest.param({"user_email": "not an address", "user_password": PASSWORD}, "user_email",
                     "must be an e-mail address", id="bad-email"),
        pytest.param({"user_email": OWNER, "user_password": PASSWORD}, "user_email",
                     "exists", id="taken"),
        pytest.param({"user_email": "new@shop.test", "user_password": "short"}, "user_password",
                     "at least 10 characters", id="short-password"),
        pytest.param({"user_email": "new@shop.test", "user_password": ""}, "user_password",
                     "enter an initial password", id="no-password"),
    ],
)  # fmt: skip
def test_bad_new_users_are_refused_with_the_error_next_to_the_field(
    client: TestClient, csrf: str, form: dict[str, str], field: str, message: str
) -> None:
    r = client.post("/admin/settings/users/", data={"csrf_token": csrf, **form})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("text/html")
    assert message in field_error(r, field)
    assert "new@shop.test" not in r.text.split('id="users"')[1].split("</table>")[0]


def test_remove_a_user_ends_their_sessions_but_never_yourself(
    client: TestClient, services: Services, shop: dict[str, Any], csrf: str
) -> None:
    clerk = create_user(services, shop, "clerk@shop.test")
    clerk_client = TestClient(client.app)
    log_in(clerk_client, "clerk@shop.test")
    with services.engine.connect() as conn:
        me = conn.execute(select(admin_users.c.id).where(admin_users.c.email == OWNER)).scalar()
    myself = client.post(f"/admin/settings/users/{me}/remove", data={"csrf_token": csrf})
    assert myself.status_code == 422
    assert "cannot remove yourself" in myself.text
    r = client.post(
        f"/admin/settings/users/{clerk}/remove",
        data={"csrf_token": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert "User clerk@shop.test removed." in client.get(r.headers["location"]).text
    gone = clerk_client.get("/admin/", follow_redirects=False)
    assert gone.status_code == 303 and "/admin/login" in gone.headers["location"]
    assert not can_log_in(client, "clerk@shop.test", PASSWORD)
    assert client.get("/admin/settings/users/").status_code == 200  # still logged in


def test_another_shops_users_cannot_be_removed(
    client: TestClient, services: Services, csrf: str
) -> None:
    other = make_shop(client, "other")
    rival = create_user(services, other, "rival@other.test")
    create_user(services, other, "rival2@other.test")
    r = client.post(f"/admin/settings/users/{rival}/remove", data={"csrf_token": csrf})
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "rival@other.test" not in r.text
    assert can_log_in(client, "rival@other.test", PASSWORD)


def test_the_last_user_of_a_shop_is_never_removed(services: Services, shop: dict[str, Any]) -> None:
    only = create_user(services, shop, OWNER)
    with services.engine.begin() as conn, pytest.raises(InvalidInput, match="last user"):
        accounts.remove_user(conn, shop["id"], only, acting_user_id=0)
    with services.engine.connect() as conn:
        assert [u["email"] for u in accounts.list_users(conn, shop["id"])] == [OWNER]


def test_every_form_needs_the_csrf_token(
    client: TestClient, services: Services, shop: dict[str, Any], csrf: str
) -> None:
    clerk = create_user(services, shop, "clerk@shop.test")
    forms: list[tuple[str, dict[str, str]]] = [
        ("/admin/settings/users/", {"user_email": "x@shop.test", "user_password": PASSWORD}),
        (f"/admin/settings/users/{clerk}/remove", {}),
        (
            "/admin/settings/users/password",
            {"current_password": PASSWORD, "new_password": "x" * 12, "repeat_password": "x" * 12},
        ),
    ]
    for path, form in forms:
        for token in ({}, {"csrf_token": "guess"}):
            r = client.post(path, data={**form, **token})
            assert r.status_code == 403, path
            assert "CSRF" in r.text
    with services.engine.connect() as conn:
        assert len(accounts.list_users(conn, shop["id"])) == 2
    assert can_log_in(client, OWNER, PASSWORD)


def test_change_your_own_password(client: TestClient, services: Services, csrf: str) -> None:
    other_browser = TestClient(client.app)
    log_in(other_browser, OWNER)
    url = "/admin/settings/users/password"
    new = "a brand new passphrase"
    wrong = client.post(url, data={"csrf_token": csrf, "current_password": "nope",
                                   "new_password": new, "repeat_password": new})  # fmt: skip
    assert wrong.status_code == 422
    assert "not your current password" in field_error(wrong, "current_password")
    differ = client.post(url, data={"csrf_token": csrf, "current_password": PASSWORD,
                                    "new_password": new, "repeat_password": new + "!"})  # fmt: skip
    assert "differ" in field_error(differ, "repeat_password")
    short = client.post(url, data={"csrf_token": csrf, "current_password": PASSWORD,
                                   "new_password": "short", "repeat_password": "short"})  # fmt: skip
    assert "at least 10" in field_error(short, "new_password")
    done = client.post(url, data={"csrf_token": csrf, "current_password": PASSWORD,
                                  "new_password": new, "repeat_password": new},
                       follow_redirects=False)  # fmt: skip
    assert done.status_code == 303
    assert "Password changed." in client.get(done.headers["location"]).text
    assert not can_log_in(client, OWNER, PASSWORD)
    assert can_log_in(client, OWNER, new)
    # this session goes on; the one in the other browser ended
    assert client.get("/admin/settings/users/").status_code == 200
    assert other_browser.get("/admin/", follow_redirects=False).status_code == 303
