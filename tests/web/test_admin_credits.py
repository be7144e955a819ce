"""The credits page in Chromium: the owner tops up through the form, as a shop owner buys
credits, and sees the new balance and the top-up in the ledger."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.web.support import OWNER, Server, log_in, playwright_expect, shot

expect = playwright_expect()


def available(page: Any) -> Decimal:
    """The available credit the page shows ("125.00 available")."""
    shown = page.locator("#available").inner_text()
    found = re.fullmatch(r"(-?[0-9]+\.[0-9]+) available", shown.strip())
    assert found, shown
    return Decimal(found.group(1))


def test_the_owner_tops_up_and_sees_the_balance_and_the_ledger_entry(
    page: Any, server: Server, tmp_path: Path
) -> None:
    log_in(page, server)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Credits").click()
    expect(page.get_by_role("heading", name="Credits", exact=True)).to_be_visible()
    before = available(page)

    # a wrong amount first: named at its field, nothing added
    page.get_by_label("Credits to add").fill("25,00")
    page.get_by_role("button", name="Top up").click()
    expect(page.locator("#err-amount")).to_contain_text("is not a number")
    expect(page.locator("#f-amount")).to_have_attribute("aria-invalid", "true")
    assert available(page) == before

    page.get_by_label("Credits to add").fill("25")
    page.get_by_label("Payment reference (optional)").fill("browser-pay-1")
    page.get_by_role("button", name="Top up").click()
    expect(page.locator(".flash")).to_have_text("Added 25.00 credits.")
    expect(page.locator("#available")).to_have_text(f"{before + 25:.2f} available")
    entry = page.locator("#ledger-entries tbody tr", has_text="browser-pay-1")
    expect(entry).to_have_count(1)
    expect(entry.locator('[data-label="Kind"]')).to_have_text("topup")
    expect(entry.locator('[data-label="Credits"]')).to_have_text("+25.00")
    expect(entry.locator('[data-label="By"]')).to_have_text(f"admin:{OWNER}")
    shot(page, tmp_path, "credits-topped-up")
