"""What the browser tests share: the server handle, the owner's login, screenshots."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

OWNER = "owner@stockmount.test"
PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class Server:
    """The running admin and what the tests know about its data."""

    url: str
    admin: str
    api_key: str
    demo_login: str
    demo_password: str
    outbox: Path
    database_url: str


def log_in(page: Any, server: Server, email: str = OWNER, password: str = PASSWORD) -> None:
    """Log in through the login form and land on the dashboard."""
    page.goto(f"{server.admin}/")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{server.admin}/")


def shot(page: Any, folder: Path, name: str) -> Path:
    """Save a full-page screenshot under the test's temporary folder."""
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000
    return path


def playwright_expect() -> Any:
    """Playwright's `expect`; without Playwright the calling test module is skipped (under
    CI=true it fails)."""
    try:
        from playwright.sync_api import expect
    except ImportError:  # pragma: no cover - the dev extras install it
        if os.environ.get("CI", "").lower() == "true":
            raise
        pytest.skip("playwright is not installed: pip install -e '.[dev]'", allow_module_level=True)
    return expect
