"""Credits in the admin: the dashboard's balance, reservations, allowances and cap, the
bulk-send confirmation's total against the credit there is, and the credits page — its
figures, packages, prices, a month's statement (and its CSV) and the ledger, paged and
filtered, of the shop's own data only; on SQLite and PostgreSQL. (Its forms:
test_credits_forms_http.py.)"""

from __future__ import annotations

import html
import re

import httpx
from fastapi.testclient import TestClient
from tests.conftest import make_shop
from tests.support import drain, event, rule, template
from tests.web.test_admin_http import customer, owner

from orderbell.billing import credits
from orderbell.compose import Services


def text_of(html: str) -> str:
    """The page's visible text, in one line."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_dashboard_shows_balance_reservations_allowances_and_cap(
    client: TestClient, services: Services
) -> None:
    shop = make_shop(client, "counted", topup="12.5")
    owner(client, services, shop, "owner@counted.test")
    pkg = client.post("/v1/credits/packages", headers=shop["auth"],
                      json={"name": "1000 SMS", "channel": "sms", "allowance": 1000,
                            "carry_over": "unlimited", "price": "31"})  # fmt: skip
    assert pkg.status_code == 201, pkg.text
    capped = client.patch("/v1/credits/settings", headers=shop["auth"],
                          json={"monthly_cap": "40"})  # fmt: skip
    assert capped.status_code == 200, capped.text
    page = text_of(client.get("/admin/").text)
    assert "12.50 available" in page
    assert "0.00 reserved for scheduled messages" in page
    assert "1000 SMS: 1000 sms left (2026-11)" in page
    assert "Monthly spending cap: 40.00" in page


def test_bulk_confirmation_shows_the_total_and_warns_when_credit_is_short(
    client: TestClient, services: Services
) -> None:
    shop = make_shop(client, "short", topup="0.05")  # one SMS to TR costs 0.05
    csrf = owner(client, services, shop, "owner@short.test")
    ids = [
        customer(client, shop, "anna", "+905321234567"),
        customer(client, shop, "omer", "+905327654321"),
    ]
    tpl = template(client, shop, "Hi {{ customer_name }}")
    form = {"csrf_token": csrf, "ids": [str(i) for i in ids], "template_id": str(tpl)}
    preview = text_of(client.post("/admin/customers/bulk/preview", data=form).text)
    assert "total 0.10 credits" in preview
    assert "Send 2 messages — 0.10 credits" in preview
    assert "more than the 0.05 credits available" in preview
    assert "held until you top up" in preview

    rich = make_shop(client, "rich")
    csrf = owner(client, services, rich, "owner@rich.test")
    ids = [customer(client, rich, "anna", "+905321234567")]
    tpl = template(client, rich, "Hi {{ customer_name }}")
    form = {"csrf_token": csrf, "ids": [str(i) for i in ids], "template_id": str(tpl)}
    preview = text_of(client.post("/admin/customers/bulk/preview", data=form).text)
    assert "Send 1 message — 0.05 credits" in preview
    assert "held until you top up" not in preview


def ledger_rows(page: httpx.Response) -> list[dict[str, str]]:
    """The ledger table's rows, newest first: each cell's text by its column's label."""
    table = re.search(r'<table[^>]*id="ledger-entries".*?</table>', page.text, re.S)
    if table is None:
        return []
    rows = re.findall(r'<tr data-kind="[^"]*">(.*?)</tr>', table.group(0), re.S)
    return [
        {label: text_of(html.unescape(cell)).strip()
         for label, cell in re.findall(r'<td data-label="([^"]+)">(.*?)</td>', row, re.S)}
        for row in rows
    ]  # fmt: skip


def older_link(page: httpx.Response) -> str | None:
    """Where the ledger's "Older" link goes (None: this is the last page)."""
    found = re.search(r'<a href="([^"]+)" rel="next">Older', page.text)
    return html.unescape(found.group(1)) if found else None


def test_the_credits_page_shows_balance_allowances_packages_prices_and_the_month(
    client: TestClient, services: Services
) -> None:
    shop = make_shop(client, "figures", topup="12.5")
    owner(client, services, shop, "owner@figures.test")
    api = shop["auth"]
    sms = template(client, shop, "Order {{ order_code }} received")
    rule(client, shop, name="Order received", trigger={"event_type": "order.created"},
                   action={"channel": "sms", "template_id": sms})  # fmt: skip
    for r in (
        client.post("/v1/credits/packages", headers=api, json={
            "name": "100 e-mails", "channel": "email", "allowance": 100, "carry_over": "cap",
            "carry_cap": 50, "price": "3.5"}),
        client.patch("/v1/credits/settings", headers=api, json={"monthly_cap": "40"}),
        client.put("/v1/credits/prices", headers=api,
                   json={"prices": [{"channel": "sms", "country": "PL", "unit_price": "0.06"}]}),
    ):  # fmt: skip
        assert r.status_code in (200, 201), r.text
    event(client, shop, "order.created", "2026-11-20T11:00:00+03:00", "A-1")
    drain(services)  # sent: 0.05 debited
    event(client, shop, "order.created", "2026-11-20T11:30:00+03:00", "A-2",
          customer={"id": "c2", "phone": "+905327654321"})  # fmt: skip
    # planned for now but not sent: 0.05 reserved

    page = client.get("/admin/credits/")
    assert page.status_code == 200
    shown = text_of(page.text)
    assert "12.40 available" in shown
    assert "0.05 reserved for scheduled messages · 12.45 owned in all" in shown
    assert "Spent this month 0.10" in shown  # the debit and the reservation count to the cap
    assert "Monthly cap 40.00" in shown
    assert "Mode prepaid" in shown
    assert "100 e-mails 100 email 2026-11 never" in shown  # the allowance left
    assert "100 e-mails 100 email carry over, at most 50 3.50" in shown  # the package
    assert "SMS PL 0.06 your own" in shown
    assert "SMS TR 0.05 default list" in shown
    assert "EMAIL any other 0.05 default list" in shown
    # the statement of the current month (the shop's): the sent message, by its rule
    assert "Statement for 2026-11" in shown
    assert "SMS TR Order received 1 0.05 0" in shown
    assert "Messages charged 1 Credits spent 0.05 Topped up 12.50" in shown
    rows = ledger_rows(page)  # newest first
    assert [r["Kind"] for r in rows] == [
        "reservation", "debit", "release", "reservation", "allowance", "topup"
    ]  # fmt: skip
    assert rows[0]["Credits"] == "-0.05" and rows[0]["For"].endswith("SMS TR")
    assert (rows[4]["Allowance"], rows[4]["Reference"]) == ("100", "package:1:2026-11")
    assert (rows[5]["Credits"], rows[5]["By"], rows[5]["Reference"]) == ("+12.50", "api", "test")
    message = re.search(r'href="/admin/messages/(\d+)">message #', page.text)
    assert message and client.get(f"/admin/messages/{message.group(1)}").status_code == 200
    # the page is in the main navigation, and the dashboard's card leads to it
    assert '<a href="/admin/credits/" aria-current="page">Credits</a>' in page.text
    assert 'href="/admin/credits/"' in client.get("/admin/").text


def test_the_ledger_is_paged_newest_first_and_filtered_by_kind(
    client: TestClient, services: Services
) -> None:
    shop = make_shop(client, "paged", topup="1")  # one top-up, reference "test"
    owner(client, services, shop, "owner@paged.test")
    with services.engine.begin() as conn:
        for i in range(60):
            credits.topup(conn, shop["id"], "1", reference=f"pay-{i:02d}", actor="tests",
                          now=services.clock.now())  # fmt: skip
        credits.adjust(conn, shop["id"], "-0.5", note="goodwill back", actor="tests",
                       now=services.clock.now())  # fmt: skip
    first = client.get("/admin/credits/")
    rows = ledger_rows(first)
    assert len(rows) == 50
    assert rows[0]["Kind"] == "adjustment" and rows[0]["Credits"] == "-0.50"
    assert rows[0]["Reference"] == "goodwill back"
    assert [r["Reference"] for r in rows[1:]] == [f"pay-{i:02d}" for i in range(59, 10, -1)]
    assert rows[1]["Credits"] == "+1.00" and rows[1]["By"] == "tests"
    link = older_link(first)
    assert link is not None and "before=" in link
    second = client.get(link)
    rows = ledger_rows(second)
    assert [r["Reference"] for r in rows] == [f"pay-{i:02d}" for i in range(10, -1, -1)] + ["test"]
    assert older_link(second) is None
    assert "← Newest" in second.text

    adjustments = ledger_rows(client.get("/admin/credits/?kind=adjustment"))
    assert [r["Reference"] for r in adjustments] == ["goodwill back"]
    topups = client.get("/admin/credits/?kind=topup")
    assert {r["Kind"] for r in ledger_rows(topups)} == {"topup"}
    link = older_link(topups)
    assert link is not None and "kind=topup" in link  # the filter is kept on the next page
    rest = ledger_rows(client.get(link))
    assert len(rest) == 11 and {r["Kind"] for r in rest} == {"topup"}

    bogus = client.get("/admin/credits/?kind=bogus&before=abc")
    assert bogus.status_code == 200
    assert "must be one of topup" in field_error_text(bogus, "kind")
    assert "must be the id of a ledger entry" in bogus.text
    assert len(ledger_rows(bogus)) == 50  # the filters refused are dropped, not the page
    huge = client.get("/admin/credits/?before=99999999999999999999")  # past a BIGINT
    assert huge.status_code == 200
    assert "must be the id of a ledger entry" in field_error_text(huge, "before")


def field_error_text(page: httpx.Response, name: str) -> str:
    """The error shown next to an input (the GET filters have no aria ties to check)."""
    found = re.search(rf'<p class="field-error" id="err-{name}">([^<]+)</p>', page.text)
    assert found, f"no error for {name}"
    return html.unescape(found.group(1))


def test_a_months_statement_as_a_table_and_as_the_apis_csv(
    client: TestClient, services: Services
) -> None:
    shop = make_shop(client, "monthly", topup="5")
    owner(client, services, shop, "owner@monthly.test")
    sms = template(client, shop, "Order {{ order_code }} received")
    rule(client, shop, name="Received", trigger={"event_type": "order.created"},
         action={"channel": "sms", "template_id": sms})  # fmt: skip
    event(client, shop, "order.created", "2026-11-20T11:00:00+03:00", "S-1")
    drain(services)

    page = text_of(client.get("/admin/credits/?month=2026-11").text)
    assert "SMS TR Received 1 0.05 0" in page
    assert "Download 2026-11 as CSV" in page
    csv = client.get("/admin/credits/statement.csv?month=2026-11")
    assert csv.status_code == 200
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.headers["content-disposition"] == (
        'attachment; filename="orderbell-monthly-statement-2026-11.csv"'
    )
    api = client.get("/v1/credits/statement", headers=shop["auth"],
                     params={"month": "2026-11", "format": "csv"})  # fmt: skip
    assert csv.text == api.text
    assert "2026-11,sms,TR," in csv.text and "2026-11,topups,,,,5.0000," in csv.text
    # no month given: the shop's current month
    assert client.get("/admin/credits/statement.csv").text == csv.text

    october = text_of(client.get("/admin/credits/?month=2026-10").text)
    assert "Statement for 2026-10" in october
    assert "No messages were charged in 2026-10" in october
    wrong = client.get("/admin/credits/?month=2026-13")
    assert wrong.status_code == 200
    assert "must be a month written YYYY-MM" in field_error_text(wrong, "month")
    refused = client.get("/admin/credits/statement.csv?month=13/2026")
    assert refused.status_code == 400
    assert refused.headers["content-type"].startswith("text/html")
    assert "must be a month written YYYY-MM" in refused.text and "(month)" in refused.text


def test_one_shop_never_sees_another_shops_credits(client: TestClient, services: Services) -> None:
    first = make_shop(client, "first", topup=None)
    paid = client.post("/v1/credits/topups", headers=first["auth"],
                       json={"amount": "777", "reference": "first-secret-payment"})  # fmt: skip
    assert paid.status_code == 201, paid.text
    with services.engine.connect() as conn:
        [theirs] = credits.entries(conn, first["id"], kind="topup")
    second = make_shop(client, "second", topup="3")
    owner(client, services, second, "owner@second.test")
    page = client.get("/admin/credits/")
    assert "first-secret-payment" not in page.text and "777" not in page.text
    assert [r["Reference"] for r in ledger_rows(page)] == ["test"]
    # the first shop's entry as a page boundary: refused, naming it, and nothing of theirs
    probe = client.get(f"/admin/credits/?before={theirs['id']}")
    assert "is not an entry of this shop's ledger" in field_error_text(probe, "before")
    assert "first-secret-payment" not in probe.text
    assert [r["Reference"] for r in ledger_rows(probe)] == ["test"]
    statement = client.get("/admin/credits/statement.csv?month=2026-11").text
    assert "2026-11,topups,,,,3.0000," in statement and "777" not in statement
    # and without a session, nothing at all: the login page
    client.cookies.clear()
    for path in ("/admin/credits/", "/admin/credits/statement.csv"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and "/admin/login" in r.headers["location"], path
