"""Settings → Providers over HTTP: a shop's own gateway accounts added, refused with the error
next to the field that caused it, edited (a credential left empty is kept), reordered and
removed — credentials never rendered back, CSRF on every form, never another shop's account;
on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.conftest import make_shop
from tests.web.http_support import OWNER, create_user, field_error, log_in

from orderbell.compose import Services
from orderbell.store import providers as provider_store
from orderbell.store.schema import messages, shop_providers

TOKEN = "smsapi-token-Secret-0123"  # what SMSAPI's panel would give: write-only
PAGE = "/admin/settings/providers/"


@pytest.fixture
def csrf(client: TestClient, services: Services, shop: dict[str, Any]) -> str:
    """The shop owner, logged in."""
    create_user(services, shop, OWNER)
    return log_in(client, OWNER)


def smsapi(csrf: str, name: str = "smsapi-main", **settings: str) -> dict[str, str]:
    """The add form for an SMSAPI account, as the browser posts it."""
    fields = {"access_token": TOKEN, "sender": "StockMount", **settings}
    return {
        "csrf_token": csrf,
        "kind": "smsapi",
        "name": name,
        "active": "1",
        "rate_per_second": "",
        "concurrency": "",
        **{f"settings.{k}": v for k, v in fields.items()},
    }


def add(client: TestClient, form: dict[str, str]) -> httpx.Response:
    return client.post(PAGE, data=form, follow_redirects=False)


def stored(services: Services, name: str) -> Any:
    with services.engine.connect() as conn:
        return conn.execute(select(shop_providers).where(shop_providers.c.name == name)).one()


def account_names(client: TestClient) -> list[str]:
    """The accounts on the list page, in the order shown (failover order)."""
    return re.findall(
        r'<h3><a href="/admin/settings/providers/\d+">([^<]+)</a>', client.get(PAGE).text
    )


def test_add_an_smsapi_account_listed_with_its_credentials_set_never_shown(
    client: TestClient, services: Services, csrf: str
) -> None:
    new = client.get(f"{PAGE}new", params={"kind": "smsapi"})
    assert new.status_code == 200
    assert re.search(r'<input type="password" id="f-settings-access_token"[^>]*value=""', new.text)
    for name in re.findall(
        r'<(?:input|select|textarea) (?:type="(?!hidden)[^"]+" )?id="f-([\w-]+)"', new.text
    ):
        assert f'<label for="f-{name}">' in new.text, name

    r = add(client, {**smsapi(csrf), "rate_per_second": "5"})
    assert r.status_code == 303, r.text
    page = client.get(r.headers["location"])
    assert "Provider account “smsapi-main” added." in page.text
    assert "SMSAPI.pl" in page.text
    assert re.search(r'<span class="mono">access_token</span> set<', page.text)
    row = stored(services, "smsapi-main")
    assert row.secrets == {"access_token": TOKEN} and "access_token" not in row.settings
    assert row.settings["sender"] == "StockMount" and str(row.rate_per_second) == "5.000"
    assert f"http://127.0.0.1:8000/v1/callbacks/{row.callback_token}" in page.text
    assert "5.000 messages per second" in page.text
    # the environment's providers stay shown, as the default the shop no longer uses for SMS
    defaults = page.text.split('id="h-defaults"')[1]
    assert "console" in defaults and "no: your accounts send" in defaults
    assert TOKEN not in page.text
    assert TOKEN not in client.get(f"{PAGE}{row.id}").text


#: (kind, what the form says, the input the error stands next to, the error), named by id
BAD_INPUT = [
    pytest.param("smsapi", {"settings.access_token": "no!"}, "settings-access_token",
                 "access_token has an invalid format", id="smsapi-bad-token"),
    pytest.param("smsapi", {"settings.access_token": ""}, "settings-access_token",
                 "access_token is required", id="smsapi-no-token"),
    pytest.param("smsapi", {"settings.sender": "Far too long a sender"}, "settings-sender",
                 "sender has an invalid format", id="smsapi-bad-sender"),
    pytest.param("smsapi", {"settings.timeout_seconds": "soon"}, "settings-timeout_seconds",
                 "timeout_seconds must be a number", id="smsapi-bad-timeout"),
    pytest.param("smsapi", {"name": "main gateway!"}, "name",
                 "should match pattern", id="bad-name"),
    pytest.param("smsapi", {"rate_per_second": "0"}, "rate_per_second",
                 "greater than 0", id="zero-rate"),
    pytest.param("smsapi", {"concurrency": "many"}, "concurrency",
                 "valid integer", id="bad-concurrency"),
    pytest.param("twilio", {"settings.account_sid": "AC" + "0" * 32,
                            "settings.auth_token": "a" * 32,
                            "settings.from_number": "+48500100200",
                            "settings.api_key_sid": "SK" + "1" * 32}, "settings-api_key_secret",
                 "api_key_sid and api_key_secret go together", id="twilio-half-api-key"),
    pytest.param("smtp", {"settings.host": "mail.example.com",
                          "settings.from_address": "not an address"},
                 "settings-from_address", "e-mail address", id="smtp-bad-from"),
    pytest.param("http", {"settings.url": "https://gw.example/sms",
                          "settings.fields": "{to: phone}"}, "settings-fields",
                 "is not valid JSON", id="http-not-json"),
    pytest.param("http", {"settings.url": "ftp://gw.example/sms"}, "settings-url",
                 "must be an http:// or https:// URL", id="http-bad-url"),
]  # fmt: skip


def test_bad_input_is_refused_with_the_error_next_to_the_field(
    client: TestClient, services: Services, csrf: str
) -> None:
    """One login for the whole case table (argon2 makes each login slow on purpose)."""
    for case in BAD_INPUT:
        kind, form, field, message = case.values
        base = smsapi(csrf) if kind == "smsapi" else {"csrf_token": csrf, "name": "gw"}
        r = add(client, {**base, "kind": kind, **form})
        assert r.status_code == 422, (case.id, r.text[:500])
        assert r.headers["content-type"].startswith("text/html")
        assert message in field_error(r, field), case.id
        assert 'id="error-summary"' in r.text
        assert TOKEN not in r.text  # a typed credential is not echoed back, even when refused
    with services.engine.connect() as conn:
        assert conn.execute(select(shop_providers)).first() is None


def test_a_refused_form_keeps_what_was_typed_except_credentials(
    client: TestClient, csrf: str
) -> None:
    r = add(client, smsapi(csrf, name="bad name!", sender="Shop1"))
    assert r.status_code == 422
    assert 'value="bad name!"' in r.text and 'value="Shop1"' in r.text
    assert TOKEN not in r.text
    # a name already taken is named too
    assert add(client, smsapi(csrf)).status_code == 303
    taken = add(client, smsapi(csrf))
    assert "exists" in field_error(taken, "name")


def test_edit_keeps_a_credential_left_empty_and_replaces_a_typed_one(
    client: TestClient, services: Services, csrf: str
) -> None:
    add(client, smsapi(csrf))
    row = stored(services, "smsapi-main")
    edit = client.get(f"{PAGE}{row.id}")
    assert 'value="StockMount"' in edit.text
    assert "Set. Leave it empty to keep it" in edit.text
    form = {**smsapi(csrf, sender="NewSender"), "settings.access_token": "", "concurrency": "7"}
    form.pop("kind")
    r = client.post(f"{PAGE}{row.id}", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert "Provider account “smsapi-main” saved." in client.get(r.headers["location"]).text
    after = stored(services, "smsapi-main")
    assert after.secrets == {"access_token": TOKEN}  # kept
    assert after.settings["sender"] == "NewSender" and after.concurrency == 7
    # a cleared setting goes back to its default (the shop's sender name)
    form["settings.sender"] = ""
    client.post(f"{PAGE}{row.id}", data=form)
    assert stored(services, "smsapi-main").settings["sender"] is None
    # a bad edit is refused next to its field and changes nothing
    bad = client.post(f"{PAGE}{row.id}", data={**form, "settings.access_token": "no!"})
    assert bad.status_code == 422
    assert "invalid format" in field_error(bad, "settings-access_token")
    assert stored(services, "smsapi-main").secrets == {"access_token": TOKEN}
    form["settings.access_token"] = "a-new-token-4567"
    client.post(f"{PAGE}{row.id}", data=form)
    assert stored(services, "smsapi-main").secrets == {"access_token": "a-new-token-4567"}
    assert "a-new-token-4567" not in client.get(f"{PAGE}{row.id}").text
    assert "a-new-token-4567" not in client.get(PAGE).text


def test_an_optional_credential_can_be_forgotten(
    client: TestClient, services: Services, csrf: str
) -> None:
    smtp = {
        "csrf_token": csrf,
        "kind": "smtp",
        "name": "mail",
        "active": "1",
        "settings.host": "smtp.example.com",
        "settings.security": "starttls",
        "settings.username": "shop",
        "settings.password": "smtp-password-1",
        "settings.from_address": "shop@example.com",
    }
    assert add(client, smtp).status_code == 303
    row = stored(services, "mail")
    assert row.channel == "email" and row.secrets == {"password": "smtp-password-1"}
    edit = client.get(f"{PAGE}{row.id}")
    assert "Forget the stored password" in edit.text and "smtp-password-1" not in edit.text
    smtp.pop("kind")
    forget = {**smtp, "settings.password": "", "forget.password": "1"}
    r = client.post(f"{PAGE}{row.id}", data=forget, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert stored(services, "mail").secrets == {}
    assert re.search(r'<span class="mono">password</span> not set<', client.get(PAGE).text)


def test_reorder_moves_an_account_in_its_channels_failover_order(
    client: TestClient, services: Services, csrf: str
) -> None:
    for name in ("first", "second", "third"):
        assert add(client, smsapi(csrf, name=name)).status_code == 303
    assert account_names(client) == ["first", "second", "third"]
    third = stored(services, "third").id
    r = client.post(
        f"{PAGE}{third}/move", data={"csrf_token": csrf, "direction": "up"}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"].endswith(f"#account-{third}")
    assert account_names(client) == ["first", "third", "second"]
    client.post(f"{PAGE}{third}/move", data={"csrf_token": csrf, "direction": "up"})
    client.post(f"{PAGE}{third}/move", data={"csrf_token": csrf, "direction": "up"})  # stays first
    assert account_names(client) == ["third", "first", "second"]
    assert [stored(services, n).position for n in ("third", "first", "second")] == [0, 1, 2]
    first = stored(services, "first").id
    client.post(f"{PAGE}{first}/move", data={"csrf_token": csrf, "direction": "down"})
    assert account_names(client) == ["third", "second", "first"]
    # the first has no "up" button, the last no "down" one
    page = client.get(PAGE).text
    assert 'aria-label="Move third up' not in page and 'aria-label="Move first down' not in page
    assert 'aria-label="Move second up' in page and 'aria-label="Move second down' in page
    # equal positions (the API allows them) still move one place per click
    with services.engine.begin() as conn:
        conn.execute(shop_providers.update().values(position=5))
    assert account_names(client) == ["first", "second", "third"]  # ties: oldest first
    client.post(f"{PAGE}{third}/move", data={"csrf_token": csrf, "direction": "up"})
    assert account_names(client) == ["first", "third", "second"]
    # an e-mail account has its own order: moving it leaves the SMS accounts alone
    mail = {"csrf_token": csrf, "kind": "smtp", "name": "mail", "active": "1",
            "settings.host": "smtp.example.com", "settings.from_address": "shop@example.com"}  # fmt: skip
    assert add(client, mail).status_code == 303
    assert stored(services, "mail").position == 0
    client.post(
        f"{PAGE}{stored(services, 'mail').id}/move", data={"csrf_token": csrf, "direction": "up"}
    )
    assert account_names(client) == ["mail", "first", "third", "second"]  # e-mail listed first


def test_health_shows_cooling_down_and_the_last_days_outcomes(
    client: TestClient, services: Services, shop: dict[str, Any], csrf: str
) -> None:
    add(client, smsapi(csrf))
    row = stored(services, "smsapi-main")
    assert re.search(r"<dt>Health</dt><dd>\s*ok", client.get(PAGE).text)
    now = services.clock.now()
    with services.engine.begin() as conn:
        provider_store.set_cooling(conn, row.id, now + timedelta(minutes=5))
        for status in ("sent", "delivered", "failed", "sent"):
            conn.execute(
                messages.insert().values(
                    shop_id=shop["id"], channel="sms", category="transactional", status=status,
                    due_at=now, context={}, created_at=now, updated_at=now, provider_id=row.id,
                )
            )  # fmt: skip
    page = client.get(PAGE).text
    assert "cooling down after errors until Fri 2026-11-20 12:05" in page  # Istanbul time
    assert "last 24 h: 1 delivered, 1 failed, 2 sent" in page


def test_remove_an_account(client: TestClient, services: Services, csrf: str) -> None:
    add(client, smsapi(csrf))
    row = stored(services, "smsapi-main")
    page = client.get(PAGE).text
    assert 'data-confirm="Remove the provider account “smsapi-main”?' in page
    r = client.post(f"{PAGE}{row.id}/remove", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    after = client.get(r.headers["location"]).text
    assert "Provider account “smsapi-main” removed." in after
    assert account_names(client) == []
    assert "No accounts of your own yet" in after
    with services.engine.connect() as conn:
        assert conn.execute(select(shop_providers)).first() is None


def test_another_shops_account_is_not_found(
    client: TestClient, services: Services, csrf: str
) -> None:
    other = make_shop(client, "other")
    created = client.post(
        "/v1/providers",
        headers=other["auth"],
        json={"name": "rival", "kind": "smsapi", "settings": {"access_token": TOKEN}},
    )
    assert created.status_code == 201, created.text
    rival = created.json()["id"]
    assert "rival" not in client.get(PAGE).text
    attempts = [
        client.get(f"{PAGE}{rival}"),
        client.post(
            f"{PAGE}{rival}", data={**smsapi(csrf, name="mine"), "settings.access_token": ""}
        ),
        client.post(f"{PAGE}{rival}/move", data={"csrf_token": csrf, "direction": "up"}),
        client.post(f"{PAGE}{rival}/remove", data={"csrf_token": csrf}),
    ]
    for r in attempts:
        assert r.status_code == 404, r.request.url
        assert r.headers["content-type"].startswith("text/html")
        assert "rival" not in r.text and TOKEN not in r.text
    row = stored(services, "rival")
    assert row.secrets == {"access_token": TOKEN} and row.position == 0


def test_every_form_needs_the_csrf_token(client: TestClient, services: Services, csrf: str) -> None:
    add(client, smsapi(csrf))
    pid = stored(services, "smsapi-main").id
    forms: list[tuple[str, dict[str, str]]] = [
        (PAGE, smsapi("", name="sneaky")),
        (f"{PAGE}{pid}", {**smsapi("", name="renamed"), "settings.access_token": ""}),
        (f"{PAGE}{pid}/move", {"direction": "down"}),
        (f"{PAGE}{pid}/remove", {}),
    ]
    for path, form in forms:
        for token in ("", "guess"):
            r = client.post(path, data={**form, "csrf_token": token})
            assert r.status_code == 403, path
            assert "CSRF" in r.text
    assert account_names(client) == ["smsapi-main"]


def test_an_unknown_kind_is_not_found(client: TestClient, csrf: str) -> None:
    for kind in ("carrier-pigeon", "console", ""):
        r = client.get(f"{PAGE}new", params={"kind": kind})
        assert r.status_code == 404, kind
    page = client.get(PAGE).text
    options = re.findall(r'<option value="(\w+)"', page)
    assert {"smsapi", "serwersms", "twilio", "http", "smtp"} <= set(options)
    assert "console" not in options
