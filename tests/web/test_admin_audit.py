"""Accessibility and phone audit of the whole admin, in Chromium at 390 px wide: every page fits
the phone, every visible input has an accessible name, and the keyboard reaches everything —
the main form's submit button in particular — with Tab alone."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.web.support import Server, log_in, playwright_expect, shot

expect = playwright_expect()

#: (admin path, the text of the main form's submit button; None: the page has no form)
PAGES: list[tuple[str, str | None]] = [
    ("/", None),
    ("/rules/", "Simulate"),
    ("/rules/new", "Save rule"),
    ("/rules/{rule}", "Save rule"),
    ("/templates/", None),
    ("/templates/new?channel=email", "Save template"),
    ("/templates/{template}", "Save template"),
    ("/customers/", "Preview"),
    ("/customers/{customer}", "Save consent"),
    ("/messages/", "Filter"),
    ("/messages/{message}", None),
    ("/credits/", "Top up"),
    ("/settings/", "Save shop settings"),
    ("/settings/providers/", "Continue"),
    ("/settings/providers/new?kind=http", "Add account"),
    ("/settings/providers/{provider}", "Save account"),
    ("/settings/users/", "Add user"),
]

#: boxes in the page that scroll sideways on the phone (content the owner would have to find)
SIDEWAYS = """() => [...document.querySelectorAll('main *')]
  .filter(el => !['TEXTAREA', 'INPUT', 'SELECT', 'PRE'].includes(el.tagName))
  .filter(el => ['auto', 'scroll'].includes(getComputedStyle(el).overflowX))
  .filter(el => el.scrollWidth > el.clientWidth + 1)
  .map(el => `${el.tagName.toLowerCase()}.${el.className}: ${el.scrollWidth - el.clientWidth}px`)"""

UNNAMED_INPUTS = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter(el => el.type !== 'hidden' && el.checkVisibility())
  .filter(el => {
    const named = id => (document.getElementById(id)?.textContent || '').trim() !== '';
    const by = (el.getAttribute('aria-labelledby') || '').split(/\\s+/).filter(Boolean);
    const labelled = [...(el.labels || [])].some(l => l.textContent.trim() !== '');
    return !(labelled || (el.getAttribute('aria-label') || '').trim() || (by.length && by.every(named)));
  })
  .map(el => el.outerHTML.slice(0, 120))"""

#: marks every element Tab should reach (one radio per group); returns how many
MARK_FOCUSABLE = """() => {
  const seen = new Set();
  const els = [...document.querySelectorAll(
      'a[href], button, input, select, textarea, summary, [tabindex]')]
    .filter(el => el.checkVisibility() && !el.disabled && el.type !== 'hidden')
    .filter(el => el.getAttribute('tabindex') !== '-1' && getComputedStyle(el).visibility !== 'hidden')
    .filter(el => {
      if (el.type !== 'radio') return true;
      if (seen.has(el.name)) return false;
      seen.add(el.name); return true;
    });
  els.forEach((el, i) => { el.dataset.audit = String(i); });
  return els.length;
}"""

FOCUSED = """() => {
  const el = document.activeElement;
  if (el && el.type === 'radio') {
    const first = document.querySelector(`input[type=radio][name="${el.name}"][data-audit]`);
    if (first) return {audit: first.dataset.audit, submit: '', text: ''};
  }
  return {audit: el?.dataset?.audit ?? null, submit: el?.type === 'submit' ? 'yes' : '',
          text: (el?.textContent || '').trim()};
}"""


@pytest.fixture
def ids(server: Server) -> Iterator[dict[str, int]]:
    """The ids of one rule, template, customer, message and (switched-off) provider account."""
    auth = {"Authorization": f"Bearer {server.api_key}"}
    event = {
        "type": "order.shipped",
        "occurred_at": datetime.now(UTC).isoformat(),
        "order": {"code": "AUDIT-1", "courier": "Aras Kargo", "tracking_number": "AR1"},
        "customer": {"id": "c-mehmet"},
    }
    sent = httpx.post(f"{server.url}/v1/events", json=event, headers=auth, timeout=10)
    assert sent.status_code == 201, sent.text
    account = httpx.post(
        f"{server.url}/v1/providers",
        headers=auth,
        json={"name": "audit-gw", "kind": "smsapi", "active": False,
              "settings": {"access_token": "audit-token-1234"}},
        timeout=10,
    )  # fmt: skip
    assert account.status_code == 201, account.text
    found = {
        "message": sent.json()["messages"][0]["id"],
        "provider": account.json()["id"],
        "rule": httpx.get(f"{server.url}/v1/rules", headers=auth).json()["items"][0]["id"],
        "template": httpx.get(f"{server.url}/v1/templates", headers=auth).json()["items"][0]["id"],
    }
    yield found
    httpx.delete(f"{server.url}/v1/providers/{found['provider']}", headers=auth, timeout=10)


def tab_through(page: Any) -> tuple[list[dict[str, str]], set[str]]:
    """From a fresh page, press Tab until every marked element had focus (or twice their
    number of times): what had focus, in order, and which marked elements were reached."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    total = page.evaluate(MARK_FOCUSABLE)
    focused: list[dict[str, str]] = []
    reached: set[str] = set()
    for _ in range(total * 2 + 5):
        page.keyboard.press("Tab")
        now = page.evaluate(FOCUSED)
        focused.append(now)
        if now["audit"] is not None:
            reached.add(now["audit"])
        if len(reached) == total:
            break
    return focused, reached


def test_every_admin_page_fits_a_phone_names_its_inputs_and_works_with_the_keyboard(
    phone: Any, server: Server, tmp_path: Path, ids: dict[str, int]
) -> None:
    page = phone
    log_in(page, server)
    page.goto(f"{server.admin}/customers/")
    customer = page.locator("main a[href*='/customers/']", has_text="Mehmet").first
    ids["customer"] = int(re.sub(r".*/", "", customer.get_attribute("href")))
    problems: list[str] = []
    for pattern, submit in PAGES:
        path = pattern.format(**ids)
        page.goto(f"{server.admin}{path}")
        page.wait_for_load_state("networkidle")
        expect(page.locator("h1")).to_be_visible()
        wider = page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth")
        if wider > 1:
            problems.append(f"{path}: {wider}px wider than the phone")
        sideways = page.evaluate(SIDEWAYS)
        if sideways:
            problems.append(f"{path}: parts scroll sideways: {sideways}")
        unnamed = page.evaluate(UNNAMED_INPUTS)
        if unnamed:
            problems.append(f"{path}: inputs without an accessible name: {unnamed}")
        focused, reached = tab_through(page)
        if focused[0]["text"] != "Skip to content":
            problems.append(f"{path}: the first Tab does not reach 'Skip to content'")
        missed = page.evaluate(
            "(reached) => [...document.querySelectorAll('main [data-audit]')]"
            ".filter(el => !reached.includes(el.dataset.audit))"
            ".map(el => el.outerHTML.slice(0, 100))",
            sorted(reached),
        )
        if missed:
            problems.append(f"{path}: Tab never reaches {missed}")
        submits = [f["text"] for f in focused if f["submit"]]
        if submit is not None and submit not in submits:
            problems.append(f"{path}: Tab never reaches the {submit!r} button (reached {submits})")
        shot(page, tmp_path, re.sub(r"\W+", "-", path).strip("-") or "dashboard")
    assert not problems, "\n".join(problems)
