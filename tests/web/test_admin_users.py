"""Settings → Users in Chromium: the owner adds a clerk, the clerk logs in and changes their
password, the owner removes them — at phone width, through the forms."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.web.support import OWNER, Server, log_in, playwright_expect, shot

expect = playwright_expect()

CLERK = "clerk@stockmount.test"


def test_owner_adds_a_clerk_who_changes_their_password_and_is_removed(
    browser: Any, phone: Any, server: Server, tmp_path: Path
) -> None:
    page = phone
    log_in(page, server)
    page.goto(f"{server.admin}/settings/")
    page.get_by_role("link", name="Users and your password").click()
    expect(page.get_by_role("heading", name="Users", exact=True)).to_be_visible()
    users = page.locator("#users table")
    expect(users).to_contain_text(OWNER)
    expect(users.locator("tr", has_text=OWNER)).to_contain_text("you")
    expect(users).not_to_contain_text("demo@orderbell.local")  # the demo shop's login

    # a too-short password: the error stands next to its field, the e-mail is kept
    page.get_by_label("E-mail of the new user").fill(CLERK)
    page.get_by_label("Initial password").fill("short")
    page.get_by_role("button", name="Add user").click()
    error = page.locator(".field:has(#f-user_password) .field-error")
    expect(error).to_have_text("must be at least 10 characters")
    expect(page.locator("#f-user_password")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("E-mail of the new user")).to_have_value(CLERK)
    expect(users).not_to_contain_text(CLERK)

    page.get_by_label("Name (optional)").fill("Clerk")
    page.get_by_label("Initial password").fill("clerk initial pw")
    page.get_by_role("button", name="Add user").click()
    expect(page.locator(".flash")).to_have_text(f"User {CLERK} added.")
    expect(users.locator("tr", has_text=CLERK)).to_contain_text("never")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the users page is {overflow}px wider than the phone"
    shot(page, tmp_path, "users-added")

    # the clerk logs in elsewhere and changes the initial password
    clerk_context = browser.new_context(viewport={"width": 1280, "height": 900})
    clerk = clerk_context.new_page()
    clerk.set_default_timeout(10_000)
    log_in(clerk, server, CLERK, "clerk initial pw")
    clerk.goto(f"{server.admin}/settings/users/")
    clerk.get_by_label("Current password").fill("clerk initial pw")
    clerk.get_by_label("New password", exact=True).fill("clerk own secret")
    clerk.get_by_label("New password again").fill("clerk own secret")
    clerk.get_by_role("button", name="Change password").click()
    expect(clerk.locator(".flash")).to_have_text("Password changed.")
    # the clerk sees no remove button for themselves
    expect(clerk.get_by_role("button", name=f"Remove user {CLERK}")).to_have_count(0)
    shot(clerk, tmp_path, "clerk-password-changed")

    # the owner removes the clerk, after confirming; the clerk's session ends
    page.on("dialog", lambda dialog: dialog.accept())
    page.reload()
    page.get_by_role("button", name=f"Remove user {CLERK}").click()
    expect(page.locator(".flash")).to_have_text(f"User {CLERK} removed.")
    expect(users).not_to_contain_text(CLERK)
    shot(page, tmp_path, "users-removed")
    clerk.goto(f"{server.admin}/")
    expect(clerk).to_have_url(re.compile(r"/admin/login"))
    clerk_context.close()
