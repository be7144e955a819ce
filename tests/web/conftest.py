"""The admin in a real browser: Debian's Chromium driven by Playwright against the real app.

One `orderbell serve --demo` process (uvicorn, embedded worker) per session on a free
loopback port and a temporary SQLite file. Before it starts, a test shop is prepared in that
database the way a shop owner's data would look: a shop without quiet hours (so messages go
out at any time of day), its owner's login, templates, one rule, and three customers of whom
one opted out of SMS.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.net import free_port
from tests.web.support import OWNER, PASSWORD, Server

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

CHROMIUM = Path("/usr/bin/chromium")
UNDER_CI = os.environ.get("CI", "").lower() == "true"
BIN = Path(sys.executable).parent / "orderbell"
BROWSER_MODULES = {
    "test_admin.py",
    "test_admin_audit.py",
    "test_admin_credits.py",
    "test_admin_providers.py",
    "test_admin_users.py",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives Debian's Chromium with Playwright")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).name in BROWSER_MODULES:
            item.add_marker(pytest.mark.browser)


def _missing(reason: str) -> None:
    if UNDER_CI:
        pytest.fail(f"{reason} (CI=true: the browser tests must run; apt-get install chromium)")
    pytest.skip(f"{reason}; install it with: apt-get install -y chromium")


def _prepare(database_url: str, outbox: Path) -> str:
    """The test shop, as its owner would have set it up; returns its API key."""
    from orderbell.api.schemas import CustomerConsentIn, CustomerWrite, RuleIn, ShopIn, TemplateIn
    from orderbell.billing import credits
    from orderbell.compose import build
    from orderbell.settings import Settings
    from orderbell.store import customers, rules, shops, templates
    from orderbell.web import accounts

    svc = build(Settings(database_url=database_url, outbox_file=outbox))  # type: ignore[arg-type]
    now = svc.clock.now()
    with svc.engine.begin() as conn:
        row = shops.create(
            conn,
            ShopIn(
                name="StockMount Test",
                slug="stockmount",
                timezone="Europe/Istanbul",
                country="TR",
                currency="TRY",
                sms_sender="StockTest",
            ),
            now,
        )
        credits.topup(conn, row.id, "100", reference="tests", actor="tests", now=now)
        accounts.create_user(conn, row.id, OWNER, PASSWORD, now, name="Owner")
        _, key = shops.create_key(conn, row.id, "tests", now)
        texts = {
            "Ships today": "Hello {{ customer_name }}, your order {{ order_code }} has been "
            "taken. Your order will be shipped today until 18:00. {{ shop_name }}",
            "Ships tomorrow": "Hello {{ customer_name }}, your order {{ order_code }} has been "
            "taken. Your order will be shipped tomorrow until 13:00. {{ shop_name }}",
            "Shipped": "Your order {{ order_code }} was shipped with {{ courier }} "
            "({{ tracking_number }}).",
            "Spring news": "Hello {{ customer_name }}, our spring collection is in. "
            "{{ shop_name }}",
        }
        ids = {
            name: templates.create(
                conn, row.id, TemplateIn(name=name, channel="sms", body=body), now
            )["id"]
            for name, body in texts.items()
        }
        rules.create(
            conn,
            row.id,
            RuleIn.model_validate(
                {
                    "name": "Shipped with tracking",
                    "trigger": {"event_type": "order.shipped"},
                    "action": {"channel": "sms", "template_id": ids["Shipped"]},
                }
            ),
            now,
        )
        shop = shops.get(conn, row.id)
        people = [
            ("c-ayse", "Ayşe Yılmaz", "+905321234567", True),
            ("c-mehmet", "Mehmet Demir", "+905327654321", True),
            ("c-jan", "Jan Optout", "+905551112233", False),
        ]
        for ext, name, phone, sms_ok in people:
            customers.create(
                conn,
                shop,
                CustomerWrite(
                    id=ext,
                    name=name,
                    phone=phone,
                    consent=CustomerConsentIn(sms_transactional=sms_ok),
                ),
                now,
            )
    svc.engine.dispose()
    return key


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`orderbell serve --demo` on a free port, with the test shop prepared first."""
    folder = tmp_path_factory.mktemp("admin")
    database_url = f"sqlite:///{folder / 'orderbell.db'}"
    outbox = folder / "outbox.jsonl"
    api_key = _prepare(database_url, outbox)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "ORDERBELL_DATABASE_URL": database_url,
        "ORDERBELL_OUTBOX_FILE": str(outbox),
        "ORDERBELL_PORT": str(port),
        "ORDERBELL_PUBLIC_URL": url,
        "ORDERBELL_WORKER_POLL_SECONDS": "0.1",
        "COLUMNS": "200",
    }
    log_path = folder / "serve.log"
    log = log_path.open("w+")
    proc = subprocess.Popen(
        [str(BIN), "serve", "--demo"], env=env, stdout=log, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"serve exited: {log_path.read_text()}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail(f"serve did not become ready: {log_path.read_text()}")
        printed = log_path.read_text()
        login = re.search(r"log in as (\S+@\S+)", printed)
        password = re.search(r"password:\s+(\S+)", printed)
        assert login and password, f"serve --demo must print the demo login: {printed}"
        yield Server(
            url=url,
            admin=f"{url}/admin",
            api_key=api_key,
            demo_login=login.group(1),
            demo_password=password.group(1),
            outbox=outbox,
            database_url=database_url,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless; Playwright never downloads a browser of its own.

    Module-scoped: Playwright's sync API keeps an event loop running while it is open, so it
    is closed before tests that run their own loops (asyncio.run) come next.
    """
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        _missing(f"Chromium is not installed at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed (pip install -e '.[dev]')")
        raise
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    """A fresh browser context (no cookies) with one page."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    context.set_default_timeout(10_000)
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture
def phone(browser: Any, server: Server) -> Iterator[Any]:
    """A fresh page in a phone-sized browser context (390 x 844, touch)."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    context.set_default_timeout(10_000)
    tab = context.new_page()
    yield tab
    context.close()
