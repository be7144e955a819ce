"""Helpers the tests share: create templates and rules through the API, drive the worker, serve
the app over real HTTP for providers that call back."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, create_engine, func, select, text

from orderbell.billing import credits
from orderbell.channels.base import OutgoingMessage, Provider, SendResult
from orderbell.compose import Services
from orderbell.store.schema import allowance_buckets, credit_accounts, ledger, metadata, shops


def template(
    client: TestClient,
    shop: dict[str, Any],
    body: str,
    *,
    channel: str = "sms",
    name: str = "t",
    **more: Any,
) -> int:
    """Create a template; returns its id."""
    r = client.post(
        "/v1/templates",
        headers=shop["auth"],
        json={"name": name, "channel": channel, "body": body, **more},
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def rule(client: TestClient, shop: dict[str, Any], **spec: Any) -> int:
    """Create a rule; returns its id."""
    r = client.post("/v1/rules", headers=shop["auth"], json=spec)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def event(
    client: TestClient, shop: dict[str, Any], type_: str, at: str, code: str, **more: Any
) -> dict[str, Any]:
    """Post one event; returns the ingest result."""
    body = {
        "type": type_,
        "occurred_at": at,
        "order": {"code": code, **more.pop("order", {})},
        "customer": more.pop(
            "customer",
            {
                "id": "c1",
                "name": "Ayşe Yılmaz",
                "phone": "+905321234567",
                "email": "ayse@example.com",
            },
        ),
        **more,
    }
    r = client.post("/v1/events", headers=shop["auth"], json=body)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def count_rows(services: Services, table: Any, *where: Any) -> int:
    """How many rows of `table` match the conditions."""
    with services.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def drain(services: Services) -> int:
    """Run the worker until nothing is due at the clock's current time."""
    return asyncio.run(services.dispatcher("test-worker").drain())


def send_all(provider: Provider, *batch: OutgoingMessage) -> list[SendResult]:
    """One batch through a provider on a fresh event loop, its connections closed after."""

    async def go() -> list[SendResult]:
        try:
            return await provider.send(list(batch))
        finally:
            await provider.close()

    return asyncio.run(go())


def messages(client: TestClient, shop: dict[str, Any], **filters: Any) -> list[dict[str, Any]]:
    """The shop's messages, oldest first."""
    r = client.get("/v1/messages", headers=shop["auth"], params={"limit": 500, **filters})
    assert r.status_code == 200, r.text
    return list(reversed(r.json()["items"]))


@contextmanager
def serving(app: Any, port: int, host: str = "127.0.0.1") -> Iterator[str]:
    """The app under uvicorn on a loopback port, in a thread, until the block ends; its URL."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def assert_ledger_adds_up(services: Services) -> None:
    """available == sum of ledger credits; bucket remaining == sum of its units; >= 0."""
    with services.engine.connect() as conn:
        for acct in conn.execute(select(credit_accounts)).all():
            total = conn.execute(
                select(func.coalesce(func.sum(ledger.c.credits), 0)).where(
                    ledger.c.shop_id == acct.shop_id
                )
            ).scalar_one()
            assert credits.money(total) == credits.money(acct.available)
            assert credits.money(acct.available) >= 0
            assert credits.money(acct.reserved) >= 0
        assert_month_spend_adds_up(conn)
        assert_buckets_add_up(conn)


def assert_month_spend_adds_up(conn: Connection) -> None:
    """The month an account keeps for its spending cap (`cap_from`..`cap_until`) holds what
    the ledger's spending entries of that month sum to."""
    for acct in conn.execute(select(credit_accounts)).all():
        if acct.cap_from is None:
            continue
        total = conn.execute(
            select(func.coalesce(func.sum(ledger.c.credits), 0)).where(
                ledger.c.shop_id == acct.shop_id,
                ledger.c.at >= acct.cap_from,
                ledger.c.at < acct.cap_until,
                ledger.c.kind.in_(("reservation", "release", "debit", "refund")),
            )
        ).scalar_one()
        assert -credits.money(total) == credits.money(acct.cap_spent), acct


def assert_buckets_add_up(conn: Connection) -> None:
    """Every allowance bucket's remaining units == the sum of its ledger units, >= 0, and
    never more than it was granted; no message gets back more units than it reserved."""
    for bucket in conn.execute(select(allowance_buckets)).all():
        units, granted = conn.execute(
            select(
                func.coalesce(func.sum(ledger.c.units), 0),
                func.coalesce(
                    func.sum(ledger.c.units).filter(  # what it was given
                        ledger.c.kind.in_(("allowance", "carry_over")), ledger.c.units > 0
                    ),
                    0,
                ),
            ).where(ledger.c.bucket_id == bucket.id)
        ).one()
        assert int(units) == bucket.remaining >= 0
        assert bucket.remaining <= int(granted), (bucket, granted)
    given_back = conn.execute(
        select(ledger.c.message_id, func.sum(ledger.c.units))
        .where(ledger.c.kind.in_(("reservation", "release")), ledger.c.message_id.is_not(None))
        .group_by(ledger.c.message_id)
        .having(func.sum(ledger.c.units) > 0)
    ).all()
    assert not given_back, given_back  # released more units than it holds reserved


def bare_shop(engine: Engine, slug: str, now: datetime, **settings: Any) -> int:
    """A shop row written directly (UTC, no quiet hours), for tests of the storage layer."""
    with engine.begin() as conn:
        return int(
            conn.execute(
                shops.insert().values(
                    name=slug, slug=slug, timezone="UTC", country="US", locale="en",
                    currency="USD", closed_dates=[], settings=settings,
                    transactional_obeys_quiet_hours=False, created_at=now,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        )  # fmt: skip


def empty_postgres(url: str) -> None:
    """Empty every table of a PostgreSQL test database, its ids starting again from 1."""
    engine = create_engine(url)
    with engine.begin() as conn:
        names = ", ".join(t.name for t in metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()
