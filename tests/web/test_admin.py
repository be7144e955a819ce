"""The shop owner's admin, used the way an owner uses it: in Chromium, through the forms."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.web.support import Server, log_in, playwright_expect, shot

expect = playwright_expect()

FRIDAY = "2026-11-20"  # a Friday, not a public holiday in Türkiye


def create_rule(
    page: Any, server: Server, *, name: str, start: str, end: str, template: str, priority: str
) -> None:
    """Fill the rule editor as an owner would: chips, a range on the 24-hour bar, holidays."""
    page.goto(f"{server.admin}/rules/new")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Group", exact=True).fill("new-order")
    page.get_by_label("Priority", exact=True).fill(priority)
    for day in ("Mon", "Tue", "Wed", "Thu", "Fri"):
        page.locator("label.chip", has_text=day).click()
    page.get_by_label("Range 1 from").fill(start)
    page.locator("#ht-0").fill(end)
    page.get_by_label("Never on public holidays").check()
    page.get_by_label("Template", exact=True).select_option(label=f"{template} (sms, order)")
    page.get_by_role("button", name="Save rule").click()
    page.wait_for_url(f"{server.admin}/rules/")
    expect(page.locator(".flash")).to_contain_text(f"Rule “{name}” saved.")


@pytest.fixture(scope="module")
def stockmount_rules(browser: Any, server: Server) -> list[str]:
    """The two StockMount rules, created once through the editor."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    log_in(page, server)
    page.goto(f"{server.admin}/rules/new")
    # the 24-hour bar follows the range as it is typed
    page.get_by_label("Range 1 from").fill("15:00")
    page.locator("#ht-0").fill("00:00")
    segment = page.locator("#hours-bar .daybar-seg")
    expect(segment).to_have_count(1)
    expect(segment).to_have_attribute("style", re.compile(r"left: 62\.5%; width: 37\.5%"))
    names = ["Ships today (00:00–15:00)", "Ships tomorrow (15:00–00:00)"]
    create_rule(
        page,
        server,
        name=names[0],
        start="00:00",
        end="15:00",
        template="Ships today",
        priority="30",
    )
    create_rule(
        page,
        server,
        name=names[1],
        start="15:00",
        end="00:00",
        template="Ships tomorrow",
        priority="40",
    )
    context.close()
    return names


def test_login_with_a_session_cookie_and_the_printed_demo_login(
    page: Any, server: Server, tmp_path: Path
) -> None:
    page.goto(f"{server.admin}/rules/")
    expect(page).to_have_url(re.compile(r"/admin/login\?next=/admin/rules/"))
    page.get_by_label("E-mail").fill("owner@stockmount.test")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    # the error stands next to the password field, which is marked invalid
    error = page.locator(".field:has(#f-password) .field-error")
    expect(error).to_have_text("wrong e-mail or password")
    expect(page.locator("#f-password")).to_have_attribute("aria-invalid", "true")
    shot(page, tmp_path, "login-refused")

    log_in(page, server)
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.locator("header .shop")).to_have_text("StockMount Test")
    cookie = next(c for c in page.context.cookies() if c["name"] == "ob_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    shot(page, tmp_path, "dashboard")

    page.get_by_role("button", name=re.compile("Log out")).click()
    expect(page).to_have_url(re.compile(r"/admin/login"))
    page.goto(f"{server.admin}/settings/")
    expect(page).to_have_url(re.compile(r"/admin/login"))

    # `orderbell serve --demo` printed a login for the demo shop
    log_in(page, server, server.demo_login, server.demo_password)
    expect(page.locator("header .shop")).to_have_text("Demo Shop")
    assert server.demo_login == "demo@orderbell.local"


def test_stockmount_rules_are_created_in_the_editor_and_toggled(
    page: Any, server: Server, stockmount_rules: list[str], tmp_path: Path
) -> None:
    log_in(page, server)
    page.goto(f"{server.admin}/rules/")
    today, tomorrow = stockmount_rules
    row_today = page.locator("tr", has_text=today)
    row_tomorrow = page.locator("tr", has_text=tomorrow)
    expect(row_today).to_contain_text("Mon, Tue, Wed, Thu, Fri")
    expect(row_today).to_contain_text("00:00–15:00")
    expect(row_today).to_contain_text("not on holidays")
    expect(row_today).to_contain_text("Ships today")
    expect(row_tomorrow).to_contain_text("15:00–00:00")
    expect(row_tomorrow.locator(".daybar-seg")).to_have_attribute(
        "style", re.compile(r"left: 62\.500%; width: 37\.500%")
    )
    # the active/passive switch works in place (htmx) and sticks
    switch = row_today.get_by_role("switch")
    expect(switch).to_have_attribute("aria-checked", "true")
    switch.click()
    expect(page.locator("tr", has_text=today).get_by_role("switch")).to_have_attribute(
        "aria-checked", "false"
    )
    page.reload()
    expect(page.locator("tr", has_text=today).get_by_role("switch")).to_contain_text("Passive")
    page.locator("tr", has_text=today).get_by_role("switch").click()
    expect(page.locator("tr", has_text=today).get_by_role("switch")).to_contain_text("Active")
    # the editor shows what was saved
    page.get_by_role("link", name=tomorrow).click()
    expect(page.locator("#hf-0")).to_have_value("15:00")
    expect(page.locator("#ht-0")).to_have_value("00:00")
    expect(page.locator("#day-fri")).to_be_checked()
    expect(page.locator("#day-sat")).not_to_be_checked()
    shot(page, tmp_path, "rule-editor")


def _simulate(page: Any, at: str) -> Any:
    page.get_by_label("Date", exact=True).fill(FRIDAY)
    page.get_by_label("Time (24 h)").fill(at)
    page.get_by_role("button", name="Simulate").click()
    result = page.locator("#sim-result")
    expect(result).to_contain_text(f"{FRIDAY} {at}")
    return result


def test_simulator_shows_the_two_texts_at_14_59_and_15_01(
    page: Any, server: Server, stockmount_rules: list[str], tmp_path: Path
) -> None:
    log_in(page, server)
    page.goto(f"{server.admin}/rules/")
    early = _simulate(page, "14:59")
    expect(early.locator(".sim-message")).to_have_count(1)
    expect(early.locator(".sim-message")).to_contain_text(
        "Your order will be shipped today until 18:00."
    )
    expect(early.locator(".sim-message")).not_to_contain_text("tomorrow")
    expect(early).to_contain_text("Fri 2026-11-20 14:59")  # sent at once
    shot(page, tmp_path, "simulate-14-59")
    late = _simulate(page, "15:01")
    expect(late.locator(".sim-message")).to_have_count(1)
    expect(late.locator(".sim-message")).to_contain_text(
        "Your order will be shipped tomorrow until 13:00."
    )
    expect(late.locator(".sim-message")).not_to_contain_text("shipped today")
    late.locator("summary").click()
    expect(late.locator("details")).to_contain_text("is outside 00:00-15:00")
    shot(page, tmp_path, "simulate-15-01")


def test_template_preview_and_segments_change_as_you_type(
    page: Any, server: Server, tmp_path: Path
) -> None:
    log_in(page, server)
    page.goto(f"{server.admin}/templates/new?channel=sms")
    page.get_by_label("Name", exact=True).fill("Thanks")
    body = page.get_by_label("Message")
    body.press_sequentially("Hello {{ customer_name }}, thanks!")
    bubble, segments = page.locator(".sms-bubble"), page.locator("#segments")
    expect(bubble).to_have_text("Hello Jane Doe, thanks!")
    expect(segments).to_have_text("1 segment")
    expect(page.locator("#sms-counter")).to_contain_text("GSM-7")
    # the variable picker inserts at the cursor, and the preview follows
    page.get_by_role("button", name="order_code").click()
    expect(body).to_have_value("Hello {{ customer_name }}, thanks!{{ order_code }}")
    expect(bubble).to_have_text("Hello Jane Doe, thanks!1001")
    body.press_sequentially(" " + "x" * 140)
    expect(segments).to_have_text("2 segments")
    expect(page.locator("#sms-counter")).to_contain_text("(153 per segment)")
    body.press_sequentially(" ş")
    expect(page.locator("#sms-counter")).to_contain_text("UCS-2")
    expect(segments).to_have_text("3 segments")
    expect(bubble.locator("mark.ucs")).to_have_text("ş")
    expect(page.locator(".cost")).to_contain_text("credits")
    shot(page, tmp_path, "template-preview")
    # a save with an unknown variable is refused at its line
    body.fill("Hello,\nyour order {{ order_cod }} is on its way.")
    page.get_by_role("button", name="Save template").click()
    expect(page.locator("#err-body")).to_contain_text(
        "line 2, column 15: unknown variable 'order_cod' (did you mean 'order_code'?)"
    )
    expect(page.locator(".field:has(#f-body) pre.excerpt")).to_contain_text(
        "2 │ your order {{ order_cod }} is on its way."
    )
    shot(page, tmp_path, "template-error-at-line")
    page.get_by_label("Message").fill("Hello,\nyour order {{ order_code }} is on its way.")
    page.get_by_role("button", name="Save template").click()
    expect(page.locator(".flash")).to_contain_text("Template “Thanks” saved (version 1).")


def test_bulk_send_to_three_customers_sends_two_and_skips_the_opted_out(
    page: Any, server: Server, tmp_path: Path
) -> None:
    log_in(page, server)
    page.goto(f"{server.admin}/customers/")
    for name in ("Ayşe Yılmaz", "Mehmet Demir", "Jan Optout"):
        page.get_by_label(f"Send to {name}").check()
    expect(page.locator("tr", has_text="Jan Optout")).to_contain_text("SMS opted out")
    page.get_by_label("Template", exact=True).select_option(label="Spring news (sms)")
    page.get_by_role("button", name="Preview").click()
    preview = page.locator(".bulk-preview")
    expect(preview.locator("#will-send")).to_have_text("2 to send")
    expect(preview.locator("#will-skip")).to_have_text("1 skipped")
    expect(preview.locator("li.skip")).to_be_visible()
    expect(preview.locator("li.skip")).to_contain_text("Jan Optout")
    expect(preview.locator("li.skip")).to_contain_text(
        "opted_out: no consent for transactional sms"
    )
    expect(preview.locator("li.send").first).to_contain_text("our spring collection is in")
    expect(preview).to_contain_text("total 0.10 credits")  # 2 × 0.05 to Türkiye
    shot(page, tmp_path, "bulk-preview")

    page.get_by_role("button", name="Send 2 messages (skip 1)").click()
    progress = page.locator("section.progress")
    expect(progress.locator("h2")).to_have_text("Done", timeout=20_000)
    expect(progress.locator("#sent-count")).to_have_text("2 sent")
    expect(progress.locator("#skipped-count")).to_have_text("1 skipped")
    expect(progress.locator("progress")).to_have_attribute("value", "3")
    shot(page, tmp_path, "bulk-done")

    page.get_by_role("link", name="See these messages in the log").click()
    rows = page.locator("#message-log tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator("#message-log tbody tr[data-status=sent]")).to_have_count(2)
    skipped = page.locator("#message-log tbody tr[data-status=suppressed]")
    expect(skipped).to_have_count(1)
    expect(skipped).to_contain_text("Jan Optout")
    expect(skipped.locator(".badge")).to_have_text("skipped")
    expect(skipped).to_contain_text("opted_out")
    shot(page, tmp_path, "bulk-log")
    page.get_by_role("link", name="Dashboard").click()
    expect(page.locator(".counts")).to_contain_text("skipped")
    expect(page.locator(".counts")).to_contain_text("sent")
    # the worker really sent them: the console provider's outbox has both texts
    sent = [json.loads(line) for line in server.outbox.read_text().splitlines() if line]
    spring = [m for m in sent if "spring collection" in json.dumps(m, ensure_ascii=False)]
    assert len(spring) == 2, sent


def test_message_page_shows_its_audit_trail_as_a_timeline(
    page: Any, server: Server, tmp_path: Path
) -> None:
    event = {
        "type": "order.shipped",
        "occurred_at": datetime.now(UTC).isoformat(),  # due now: the worker sends it at once
        "order": {"code": "T-1", "courier": "Yurtiçi Kargo", "tracking_number": "YK123"},
        "customer": {"id": "c-ayse"},
    }
    r = httpx.post(
        f"{server.url}/v1/events",
        json=event,
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    message_id = r.json()["messages"][0]["id"]
    log_in(page, server)
    page.goto(f"{server.admin}/messages/?rule=&channel=sms")
    page.get_by_role("link", name=f"#{message_id}", exact=True).click()
    timeline = page.locator("#timeline li")
    deadline = time.monotonic() + 15
    while "sent via" not in page.locator("#timeline").inner_text():
        assert time.monotonic() < deadline, "the worker did not send the message"
        time.sleep(0.3)
        page.reload()
    expect(timeline.first).to_contain_text("scheduled")
    expect(timeline.first).to_contain_text("rule 'Shipped with tracking' matched")
    expect(timeline.last).to_contain_text("sent via console")
    expect(page.locator("blockquote.sim-text")).to_have_text(
        "Your order T-1 was shipped with Yurtiçi Kargo (YK123)."
    )
    expect(page.locator("dl.facts")).to_contain_text("Shipped with tracking")
    shot(page, tmp_path, "message-timeline")


def test_bad_input_is_shown_next_to_its_field(page: Any, server: Server, tmp_path: Path) -> None:
    log_in(page, server)
    page.goto(f"{server.admin}/rules/new")
    page.get_by_label("Range 1 from").fill("25:00")
    page.locator("#ht-0").fill("15:00")
    page.get_by_label("Template", exact=True).select_option(label="Ships today (sms, order)")
    page.get_by_label("Delay (minutes)").fill("30")
    page.get_by_label("Valid for (minutes)").fill("10")
    with page.expect_response(re.compile(r"/admin/rules/new$")) as answer:
        page.get_by_role("button", name="Save rule").click()
    assert answer.value.status == 422
    expect(page.locator("#error-summary")).to_be_focused()
    expect(page.locator("li.range:has(#hf-0) .field-error")).to_have_text(
        "hour 25 is not between 00 and 23"
    )
    expect(page.locator("#hf-0")).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".field:has(#f-name) .field-error")).to_have_text("must not be empty")
    expect(page.locator("#err-action")).to_contain_text(
        "validity (10 min) is not longer than the delay (30 min)"
    )
    expect(page.locator("#hf-0")).to_have_value("25:00")  # what was typed stays
    shot(page, tmp_path, "rule-errors")

    page.goto(f"{server.admin}/settings/")
    page.get_by_label("Timezone").fill("Mars/Olympus")
    page.get_by_label("SMS may be sent between").fill("8-21")
    page.get_by_role("button", name="Save shop settings").click()
    expect(page.locator(".field:has(#f-timezone) .field-error")).to_contain_text("Mars/Olympus")
    expect(page.locator(".field:has(#f-quiet_hours) .field-error")).to_contain_text("HH:MM-HH:MM")
    shot(page, tmp_path, "settings-errors")
    page.goto(f"{server.admin}/settings/")
    expect(page.get_by_label("Timezone")).to_have_value("Europe/Istanbul")  # nothing saved


def test_a_form_without_its_csrf_token_is_refused(
    page: Any, server: Server, tmp_path: Path
) -> None:
    log_in(page, server)
    answer = page.request.post(f"{server.admin}/settings/keys", form={"key_name": "no-token"})
    assert answer.status == 403
    assert "CSRF" in answer.text()
    wrong = page.request.post(
        f"{server.admin}/settings/keys", form={"key_name": "no-token", "csrf_token": "guess"}
    )
    assert wrong.status == 403
    # the same in the page: the hidden token removed from a real form
    page.goto(f"{server.admin}/settings/")
    form = page.locator("form[action$='/settings/keys']")
    form.locator("input[name=csrf_token]").evaluate("el => el.remove()")
    page.get_by_label("Name of the new key").fill("no-token")
    page.get_by_role("button", name="Create API key").click()
    expect(page.get_by_role("heading", name="Form refused")).to_be_visible()
    expect(page.locator(".error-text")).to_contain_text("CSRF")
    shot(page, tmp_path, "csrf-refused")
    page.goto(f"{server.admin}/settings/")
    expect(page.locator("#keys table")).not_to_contain_text("no-token")
    # with its token the same form works, and the key is shown once
    page.get_by_label("Name of the new key").fill("shop platform")
    page.get_by_role("button", name="Create API key").click()
    expect(page.locator("#new-key-value")).to_have_value(re.compile(r"^ob_"))
    page.goto(f"{server.admin}/settings/")
    expect(page.locator("#new-key-value")).to_have_count(0)
