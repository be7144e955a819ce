"""Shared fixtures: a moving clock, real databases (SQLite always, PostgreSQL where it runs),
the wired services with the console provider writing to a file, and an API client."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from orderbell.api.app import create_app
from orderbell.channels.base import Provider
from orderbell.channels.console import ConsoleProvider
from orderbell.clock import ManualClock
from orderbell.compose import Services, build
from orderbell.domain.model import Channel
from orderbell.settings import Settings
from tests import kannel_harness
from tests.kannel_harness import Kannel
from tests.support import empty_postgres

PG_ADMIN_URL = os.environ.get(
    "ORDERBELL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
UNDER_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _skip_or_fail(reason: str) -> None:
    if UNDER_CI:
        pytest.fail(f"{reason} (CI=true: service tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A throw-away PostgreSQL database for this test session."""
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            name = f"orderbell_test_{uuid.uuid4().hex[:10]}"
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        _skip_or_fail(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {type(exc).__name__}")
        raise AssertionError("unreachable") from exc
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each storage test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'orderbell.db'}"
        return
    url = request.getfixturevalue("pg_url")
    yield url
    empty_postgres(url)


@pytest.fixture
def clock() -> ManualClock:
    """A clock the tests move by hand (Friday 2026-11-20 09:00 UTC)."""
    return ManualClock(datetime(2026, 11, 20, 9, 0, tzinfo=UTC))


class Outbox:
    """What the console provider wrote: the messages that really left."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[dict[str, Any]]:
        """Every sent message, in order."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    """The file the console provider writes to."""
    return Outbox(tmp_path / "outbox.jsonl")


def wire(database_url: str, clock: ManualClock, outbox: Outbox, **settings: Any) -> Services:
    """orderbell wired on a real database with the console provider (`settings` override)."""
    config = Settings(
        **{
            "database_url": database_url,
            "outbox_file": outbox.path,
            "embedded_worker": False,
            "admin_token": "admin-secret",
            "secret_key": "test-secret-key-for-unsubscribe-links",
            **settings,
        }
    )
    providers: dict[Channel, Provider] = {
        Channel.SMS: ConsoleProvider(Channel.SMS, path=outbox.path),
        Channel.EMAIL: ConsoleProvider(Channel.EMAIL, path=outbox.path),
    }
    return build(config, clock=clock, providers=providers)


@pytest.fixture
def services(database_url: str, clock: ManualClock, outbox: Outbox) -> Iterator[Services]:
    """orderbell wired on a real database with the console provider."""
    svc = wire(database_url, clock, outbox)
    yield svc
    svc.engine.dispose()


@pytest.fixture
def kannel(tmp_path: Path) -> Iterator[Kannel]:
    """Real Kannel on loopback ports, not started (the test knows the get-url); stopped after."""
    reason = kannel_harness.missing()
    if reason is not None:
        _skip_or_fail(f"{reason}; apt-get install -y kannel kannel-extras")
    server = Kannel(tmp_path / "kannel")
    yield server
    server.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use real Kannel carry the `kannel` marker (`-m "not kannel"` skips them)."""
    for item in items:
        if "kannel" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kannel)


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    """An HTTP client on the API (no embedded worker: tests drive the dispatcher)."""
    with TestClient(create_app(services, embedded_worker=False)) as c:
        yield c


@pytest.fixture
def platform(database_url: str, clock: ManualClock, outbox: Outbox) -> Iterator[Services]:
    """orderbell where the operator manages the shops' billing (`shops_manage_billing`
    off): a platform hosting shops that buy credits from it."""
    svc = wire(database_url, clock, outbox, shops_manage_billing=False)
    yield svc
    svc.engine.dispose()


@pytest.fixture
def hosted(platform: Services) -> Iterator[TestClient]:
    """An HTTP client on `platform`'s API and admin."""
    with TestClient(create_app(platform, embedded_worker=False)) as c:
        yield c


def make_shop(
    client: TestClient, slug: str = "shop", *, topup: str | None = "1000", **fields: Any
) -> dict[str, Any]:
    """Create a shop through the API (prepaid, with `topup` credits unless None); returns
    its JSON with an `auth` header dict."""
    body = {
        "name": f"Shop {slug}",
        "slug": slug,
        "timezone": "Europe/Istanbul",
        "country": "TR",
        "locale": "en",
        "currency": "TRY",
        **fields,
    }
    r = client.post("/v1/shops", json=body, headers={"Authorization": "Bearer admin-secret"})
    assert r.status_code == 201, r.text
    shop = r.json()
    shop["auth"] = {"Authorization": f"Bearer {shop['api_key']}"}
    if topup and body.get("billing", "prepaid") == "prepaid":
        paid = client.post(
            "/v1/credits/topups",
            headers=shop["auth"],
            json={"amount": topup, "reference": "test"},
        )
        assert paid.status_code == 201, paid.text
    return shop


@pytest.fixture
def shop(client: TestClient) -> dict[str, Any]:
    """A shop in Istanbul (TR) with an API key."""
    return make_shop(client)
