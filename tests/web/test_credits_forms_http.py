"""The credits page's forms: a top-up, a package, the credit settings — each written through
the billing functions the API uses, each wrong input named at its field with nothing
written, each refused without the session's CSRF token; where the operator manages billing,
no top-up or package form and a 403 for them. On SQLite and PostgreSQL."""

from __future__ import annotations

import html
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.conftest import make_shop
from tests.web.http_support import field_error as raw_field_error
from tests.web.test_admin_http import owner
from tests.web.test_credits_http import ledger_rows, text_of

from orderbell.billing import credits
from orderbell.compose import Services
from orderbell.store.schema import credit_accounts, ledger, packages

OPERATOR = {"Authorization": "Bearer admin-secret"}


def field_error(r: Any, name: str) -> str:
    """The error shown next to an input, as the owner reads it."""
    return html.unescape(raw_field_error(r, name))


def written(services: Services, shop: dict[str, Any]) -> tuple[Any, ...]:
    """Everything the forms can change for a shop: its ledger, packages and account row."""
    with services.engine.connect() as conn:
        entries = conn.execute(
            select(func.count()).select_from(ledger).where(ledger.c.shop_id == shop["id"])
        ).scalar_one()
        count = conn.execute(
            select(func.count()).select_from(packages).where(packages.c.shop_id == shop["id"])
        ).scalar_one()
        account = conn.execute(
            select(credit_accounts).where(credit_accounts.c.shop_id == shop["id"])
        ).one()
    return entries, count, tuple(account)


@pytest.fixture
def signed_in(client: TestClient, services: Services) -> tuple[dict[str, Any], str]:
    """A shop with 10 credits and its owner logged in; (shop, CSRF token)."""
    shop = make_shop(client, "former", topup="10")
    return shop, owner(client, services, shop, "owner@former.test")


def test_a_top_up_adds_credit_once_per_reference_and_the_ledger_says_who(
    client: TestClient, services: Services, signed_in: tuple[dict[str, Any], str]
) -> None:
    shop, csrf = signed_in
    form = {"csrf_token": csrf, "amount": " 25.5 ", "reference": "pay-77"}
    r = client.post("/admin/credits/topup", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/admin/credits/"
    page = client.get("/admin/credits/")
    assert "Added 25.50 credits." in page.text
    assert "35.50 available" in text_of(page.text)
    top = ledger_rows(page)[0]
    assert (top["Kind"], top["Credits"], top["Reference"]) == ("topup", "+25.50", "pay-77")
    assert top["By"] == "admin:owner@former.test"
    # the same payment notice again: nothing added, and said so
    again = client.post("/admin/credits/topup", data=form)
    assert "Reference pay-77 was already credited: nothing was added." in again.text
    assert "35.50 available" in text_of(again.text)
    # the reference with another amount: refused at the reference
    before = written(services, shop)
    other = client.post("/admin/credits/topup", data={**form, "amount": "30"})
    assert other.status_code == 422
    assert "already used by a top-up of 25.5000" in field_error(other, "reference")
    assert written(services, shop) == before
    assert 'value="30"' in other.text  # the form keeps what was typed


TOPUP = {"amount": "5", "reference": ""}
TOPUP_ERRORS = [
    pytest.param({"amount": ""}, "amount", "enter the credits to add", id="amount-missing"),
    pytest.param({"amount": "abc"}, "amount", "is not a number", id="amount-text"),
    pytest.param({"amount": "0"}, "amount", "greater than zero", id="amount-zero"),
    pytest.param({"amount": "-5"}, "amount", "greater than zero", id="amount-negative"),
    pytest.param({"amount": "1.23456"}, "amount", "more than 4 decimal places",
                 id="amount-places"),
    pytest.param({"amount": "1e3"}, "amount", "is not a number", id="amount-exponent"),
    pytest.param({"amount": "1000000001"}, "amount", "must be at most", id="amount-too-big"),
    pytest.param({"reference": "r" * 201}, "reference", "at most 200 characters",
                 id="reference-long"),
    pytest.param({"reference": "pay\x00x"}, "reference", "must not contain NUL bytes",
                 id="reference-nul"),
]  # fmt: skip


def test_both_wrong_top_up_fields_are_named_at_once(
    client: TestClient, signed_in: tuple[dict[str, Any], str]
) -> None:
    _, csrf = signed_in
    data = {"csrf_token": csrf, "amount": "abc", "reference": "r" * 201}
    r = client.post("/admin/credits/topup", data=data)
    assert "is not a number" in field_error(r, "amount")
    assert "at most 200 characters" in field_error(r, "reference")


def test_a_package_is_added_with_this_periods_allowance(
    client: TestClient, services: Services, signed_in: tuple[dict[str, Any], str]
) -> None:
    _, csrf = signed_in
    r = client.post(
        "/admin/credits/packages",
        data={"csrf_token": csrf, "package_name": "1000 SMS", "package_channel": "sms",
              "package_allowance": "1000", "package_carry_over": "cap",
              "package_carry_cap": "500", "package_carry_months": "", "package_price": "31"},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303 and r.headers["location"] == "/admin/credits/#packages"
    page = client.get("/admin/credits/")
    shown = text_of(page.text)
    assert "Package “1000 SMS” added: 1000 sms this period." in shown
    assert "1000 SMS 1000 sms carry over, at most 500 31.00" in shown  # the package
    assert "1000 SMS 1000 sms 2026-11 never" in shown  # its allowance
    top = ledger_rows(page)[0]
    assert (top["Kind"], top["Allowance"], top["By"]) == (
        "allowance", "1000", "admin:owner@former.test"
    )  # fmt: skip


PACKAGE = {"package_name": "Mail", "package_channel": "email", "package_allowance": "100",
           "package_carry_over": "unlimited", "package_carry_cap": "",
           "package_carry_months": "", "package_price": ""}  # fmt: skip
PACKAGE_ERRORS = [
    pytest.param({"package_name": " "}, "package_name", "is required", id="no-name"),
    pytest.param({"package_name": "n" * 101}, "package_name", "at most 100 characters",
                 id="name-longer-than-kept"),
    pytest.param({"package_channel": "fax"}, "package_channel", "'sms' or 'email'",
                 id="channel"),
    pytest.param({"package_allowance": ""}, "package_allowance", "is required",
                 id="no-allowance"),
    pytest.param({"package_allowance": "many"}, "package_allowance", "valid integer",
                 id="allowance-text"),
    pytest.param({"package_allowance": "0"}, "package_allowance", "greater than or equal to 1",
                 id="allowance-zero"),
    pytest.param({"package_allowance": "1_000"}, "package_allowance", "written in digits",
                 id="allowance-underscore"),
    pytest.param({"package_allowance": "100.0"}, "package_allowance", "written in digits",
                 id="allowance-point"),
    pytest.param({"package_carry_over": "cap"}, "package_carry_cap", "needs carry_cap",
                 id="cap-without-limit"),
    pytest.param({"package_carry_over": "expire"}, "package_carry_months",
                 "needs carry_months", id="expire-without-months"),
    pytest.param({"package_carry_over": "forever"}, "package_carry_over", "'none'",
                 id="carry-over"),
    pytest.param({"package_price": "abc"}, "package_price", "is not a number", id="price-text"),
    pytest.param({"package_price": "1.00001"}, "package_price", "more than 4 decimal places",
                 id="price-places"),
]  # fmt: skip


def test_the_credit_settings_are_saved_and_a_cap_can_be_removed(
    client: TestClient, services: Services, signed_in: tuple[dict[str, Any], str]
) -> None:
    shop, csrf = signed_in
    form = {"csrf_token": csrf, "monthly_cap": "40", "low_balance_thresholds": "20, 5;7.5",
            "notify_email": "Billing@Former.Example", "charge_failed_after_submission": "refund"}  # fmt: skip
    r = client.post("/admin/credits/settings", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/admin/credits/#settings"
    with services.engine.connect() as conn:
        acct = credits.account(conn, shop["id"])
    assert acct.monthly_cap is not None and acct.monthly_cap == credits.parse_amount("40")
    assert [str(t) for t in acct.low_balance_thresholds] == ["5", "7.5", "20"]
    assert acct.notify_email == "Billing@former.example"
    assert acct.charge_failed_after_submission is False
    page = client.get("/admin/credits/")
    assert "Credit settings saved." in page.text
    assert 'value="40.00"' in page.text and 'value="5.00, 7.50, 20.00"' in page.text
    assert '<option value="refund" selected>' in page.text
    # the cap emptied: no cap; the thresholds emptied: no notices
    r = client.post("/admin/credits/settings", data={**form, "monthly_cap": "",
                                                     "low_balance_thresholds": ""})  # fmt: skip
    assert r.status_code == 200 and "Monthly cap none" in text_of(r.text)
    with services.engine.connect() as conn:
        acct = credits.account(conn, shop["id"])
    assert (acct.monthly_cap, acct.low_balance_thresholds) == (None, ())


SETTINGS = {"monthly_cap": "40", "low_balance_thresholds": "5", "notify_email": "",
            "charge_failed_after_submission": "charge"}  # fmt: skip
SETTINGS_ERRORS = [
    pytest.param({"monthly_cap": "forty"}, "monthly_cap", "is not a number", id="cap-text"),
    pytest.param({"monthly_cap": "0"}, "monthly_cap", "greater than zero", id="cap-zero"),
    pytest.param({"low_balance_thresholds": "5, x"}, "low_balance_thresholds",
                 "'x' is not a number", id="threshold-text"),
    pytest.param({"low_balance_thresholds": "5, 0"}, "low_balance_thresholds",
                 "0: must be greater than zero", id="threshold-zero"),
    pytest.param({"low_balance_thresholds": "9" * 3000}, "low_balance_thresholds",
                 f"{'9' * 40}…: must be at most", id="threshold-huge-shown-cut"),
    pytest.param({"low_balance_thresholds": ", ".join(str(n) for n in range(1, 12))},
                 "low_balance_thresholds", "at most 10 items", id="eleven-thresholds"),
    pytest.param({"notify_email": "not-an-address"}, "notify_email",
                 "is not a valid e-mail address", id="email"),
    pytest.param({"charge_failed_after_submission": "maybe"},
                 "charge_failed_after_submission", "choose charge or refund", id="charging"),
]  # fmt: skip


#: Each form with what it is sent when right, and its wrong inputs.
FORMS = [
    ("/admin/credits/topup", TOPUP, TOPUP_ERRORS),
    ("/admin/credits/packages", PACKAGE, PACKAGE_ERRORS),
    ("/admin/credits/settings", SETTINGS, SETTINGS_ERRORS),
]


@pytest.mark.parametrize(
    ("path", "right", "changed", "field", "message"),
    [
        pytest.param(path, right, *case.values, id=f"{path.rsplit('/', 1)[1]}-{case.id}")
        for path, right, cases in FORMS
        for case in cases
    ],
)
def test_a_wrong_input_is_named_at_its_field_and_nothing_is_written(
    client: TestClient,
    services: Services,
    signed_in: tuple[dict[str, Any], str],
    path: str,
    right: dict[str, str],
    changed: dict[str, str],
    field: str,
    message: str,
) -> None:
    shop, csrf = signed_in
    before = written(services, shop)
    r = client.post(path, data={"csrf_token": csrf, **right, **changed})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("text/html")
    assert message in field_error(r, field)
    assert 'class="error-summary"' in r.text
    assert written(services, shop) == before


def test_an_emptied_notice_address_sends_notices_to_the_shop_again(
    client: TestClient, services: Services, signed_in: tuple[dict[str, Any], str]
) -> None:
    """An empty address field means the shop's own (as the form says): emptied, the
    address set before is cleared — unless another field is wrong, when nothing changes."""
    shop, csrf = signed_in
    r = client.patch("/v1/credits/settings", headers=shop["auth"],
                     json={"notify_email": "billing@former.example"})  # fmt: skip
    assert r.status_code == 200, r.text
    before = written(services, shop)
    r = client.post("/admin/credits/settings",
                    data={"csrf_token": csrf, **SETTINGS, "monthly_cap": "x",
                          "notify_email": ""})  # fmt: skip
    assert "is not a number" in field_error(r, "monthly_cap")
    assert written(services, shop) == before
    r = client.post("/admin/credits/settings",
                    data={"csrf_token": csrf, **SETTINGS, "notify_email": ""})  # fmt: skip
    assert r.status_code in (200, 303), r.text
    summary = client.get("/v1/credits", headers=shop["auth"]).json()
    assert summary["notify_email"] is None


@pytest.mark.parametrize(("path", "data"), [(path, right) for path, right, _ in FORMS])
def test_a_form_without_the_sessions_csrf_token_is_refused(
    client: TestClient,
    services: Services,
    signed_in: tuple[dict[str, Any], str],
    path: str,
    data: dict[str, str],
) -> None:
    shop, _ = signed_in
    before = written(services, shop)
    for token in ({}, {"csrf_token": "forged"}):
        r = client.post(path, data={**data, **token})
        assert r.status_code == 403
        assert "Form refused" in r.text
    assert written(services, shop) == before


def test_where_the_operator_manages_billing_there_is_no_top_up_or_package_form(
    hosted: TestClient, platform: Services
) -> None:
    services = platform
    shop = make_shop(hosted, "tenant", topup=None)
    paid = hosted.post(f"/v1/shops/{shop['id']}/credits/topups", headers=OPERATOR,
                       json={"amount": "8", "reference": "invoice-1"})  # fmt: skip
    assert paid.status_code == 201, paid.text
    csrf = owner(hosted, services, shop, "owner@tenant.test")
    page = hosted.get("/admin/credits/")
    shown = text_of(page.text)
    assert "managed by the operator of this orderbell server" in shown
    assert "8.00 available" in shown and "invoice-1" in shown  # reading is the same
    assert "/admin/credits/topup" not in page.text
    assert "/admin/credits/packages" not in page.text
    assert 'name="charge_failed_after_submission"' not in page.text
    before = written(services, shop)
    for path, data in (
        ("/admin/credits/topup", {"amount": "5", "reference": "free"}),
        ("/admin/credits/packages", PACKAGE),
        ("/admin/credits/settings", {**SETTINGS, "charge_failed_after_submission": "refund"}),
    ):
        r = hosted.post(path, data={"csrf_token": csrf, **data})
        assert r.status_code == 403, path
        assert "managed by the operator" in r.text, path
    assert written(services, shop) == before
    # what the API lets such a shop set itself, the page does too: its cap and notices
    r = hosted.post("/admin/credits/settings",
                    data={"csrf_token": csrf, "monthly_cap": "6", "low_balance_thresholds": "2",
                          "notify_email": ""}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    with services.engine.connect() as conn:
        acct = credits.account(conn, shop["id"])
    assert acct.monthly_cap == credits.parse_amount("6")
    assert acct.charge_failed_after_submission is True  # unchanged
