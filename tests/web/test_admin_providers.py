"""Settings → Providers in Chromium: the owner adds an SMSAPI account through the form, sees it
listed with its token set (never shown), and a bad one is refused next to its field."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.web.support import Server, log_in, playwright_expect, shot

expect = playwright_expect()

TOKEN = "smsapi-Browser-Token-42"


@pytest.fixture
def no_accounts_left(server: Server) -> Iterator[None]:
    """Whatever happens, the shared test shop goes back to the default (console) providers."""
    yield
    auth = {"Authorization": f"Bearer {server.api_key}"}
    listed = httpx.get(f"{server.url}/v1/providers", headers=auth, timeout=10).json()["items"]
    for account in listed:
        httpx.delete(f"{server.url}/v1/providers/{account['id']}", headers=auth, timeout=10)


def test_owner_adds_an_smsapi_account_and_a_bad_one_is_refused_at_its_field(
    page: Any, server: Server, tmp_path: Path, no_accounts_left: None
) -> None:
    log_in(page, server)
    page.goto(f"{server.admin}/settings/")
    page.get_by_role("link", name="Providers", exact=True).click()
    expect(page.get_by_role("heading", name="Providers", exact=True)).to_be_visible()
    defaults = page.locator("section:has(#h-defaults)")
    expect(defaults).to_contain_text("console")
    expect(defaults).to_contain_text("yes: no active account of yours")

    # pick the kind: the next page shows SMSAPI's own fields, the token as a password input
    page.get_by_label("Provider", exact=True).select_option("smsapi")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="New SMSAPI.pl account")).to_be_visible()
    token = page.get_by_label("Access token")
    expect(token).to_have_attribute("type", "password")
    expect(page.get_by_label("Sender name")).to_be_visible()
    page.get_by_label("Name (required)").fill("smsapi-main")
    token.fill(TOKEN)
    page.get_by_label("Sender name").fill("StockTest")
    page.get_by_label("Rate (messages per second)").fill("10")
    page.get_by_role("button", name="Add account").click()

    expect(page.locator(".flash")).to_have_text("Provider account “smsapi-main” added.")
    account = page.locator("li.account", has_text="smsapi-main")
    expect(account).to_contain_text("SMSAPI.pl")
    expect(account).to_contain_text("access_token set")
    expect(account).to_contain_text("10.000 messages per second")
    expect(account).to_contain_text(f"{server.url}/v1/callbacks/")
    expect(defaults).to_contain_text("no: your accounts send")
    assert TOKEN not in page.content()
    shot(page, tmp_path, "providers-added")

    # a bad token: refused, the error right next to the token field, the name kept
    page.get_by_label("Provider", exact=True).select_option("smsapi")
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Name (required)").fill("smsapi-backup")
    page.get_by_label("Access token").fill("not a token!")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Add account").click()
    assert answer.value.status == 422
    error = page.locator(".field:has(#f-settings-access_token) .field-error")
    expect(error).to_have_text("access_token has an invalid format")
    expect(page.get_by_label("Access token")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Access token")).to_have_value("")  # never echoed back
    expect(page.get_by_label("Name (required)")).to_have_value("smsapi-backup")
    expect(page.locator("#error-summary")).to_be_focused()
    shot(page, tmp_path, "providers-refused")

    page.get_by_role("link", name="Back to providers").click()
    expect(page.locator("li.account")).to_have_count(1)
    # removing asks first
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Remove smsapi-main").click()
    expect(page.locator(".flash")).to_have_text("Provider account “smsapi-main” removed.")
    expect(page.locator("li.account")).to_have_count(0)
