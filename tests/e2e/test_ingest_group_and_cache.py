"""Ingest under load and after configuration changes, on SQLite and PostgreSQL.

- Concurrent events share group commits: every event is stored exactly once, each gets its
  own answer, and one bad event in a group (an idempotency key reused with another body)
  fails alone.
- The per-process cache of a shop's rules, templates and prices is never stale: a change
  through the API, or made by another process on the same database, applies to the very
  next event.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.conftest import make_shop
from tests.support import count_rows, rule, template

from orderbell.api.schemas import EventIn
from orderbell.billing import prices
from orderbell.compose import Services
from orderbell.engine.ingest import Ingestor
from orderbell.errors import Conflict
from orderbell.store.schema import events, ledger, messages

AT = "2026-11-20T10:00:00+03:00"


def _event(i: int, *, total: str = "100.00") -> EventIn:
    return EventIn.model_validate(
        {
            "id": f"ev-{i}",
            "type": "order.created",
            "occurred_at": AT,
            "order": {"code": f"G{i}", "total": total, "currency": "TRY"},
            "customer": {"id": f"c{i % 7}", "name": "Ayşe", "phone": "+905321234567"},
        }
    )


def _sms_rule(
    client: TestClient, shop: dict[str, Any], body: str = "Order {{ order_code }}"
) -> int:
    tpl = template(client, shop, body, name=f"t-{body[:8]}")
    return rule(
        client,
        shop,
        name="created",
        trigger={"event_type": "order.created"},
        action={"channel": "sms", "template_id": tpl},
    )


def test_concurrent_events_are_each_stored_once_with_their_own_answer(
    client: TestClient, services: Services
) -> None:
    shop = make_shop(client)
    _sms_rule(client, shop)
    items = [_event(i) for i in range(120)] + [_event(i) for i in range(0, 120, 10)]  # replays

    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(lambda e: services.ingestor.ingest(shop["id"], e), items))

    assert count_rows(services, events) == 120
    assert count_rows(services, messages) == 120
    by_event: dict[int, set[bool]] = {}
    for item, result in zip(items, results, strict=True):
        assert result.outcome["messages"], item.id
        by_event.setdefault(result.event_id, set()).add(result.duplicate)
    assert len(by_event) == 120
    assert sum(1 for r in results if r.duplicate) == 12
    # every message reserved its cost exactly once
    assert count_rows(services, ledger, ledger.c.kind == "reservation") == 120


def test_one_bad_event_in_a_group_fails_alone(client: TestClient, services: Services) -> None:
    shop = make_shop(client)
    _sms_rule(client, shop)
    services.ingestor.ingest(shop["id"], _event(0))
    clash = _event(0, total="999.00")  # same id, another body: 409
    items = [_event(i) for i in range(1, 40)]
    items.insert(20, clash)

    def run(e: EventIn) -> object:
        try:
            return services.ingestor.ingest(shop["id"], e)
        except Conflict as exc:
            return exc

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(run, items))

    assert isinstance(results[20], Conflict)
    assert results[20].field == "idempotency_key"
    assert all(not isinstance(r, Exception) for i, r in enumerate(results) if i != 20)
    assert count_rows(services, events) == 40
    assert count_rows(services, messages) == 40


def test_a_rule_change_applies_to_the_next_event(client: TestClient, services: Services) -> None:
    shop = make_shop(client)
    rule_id = _sms_rule(client, shop)
    first = services.ingestor.ingest(shop["id"], _event(1))
    assert len(first.outcome["messages"]) == 1

    r = client.patch(f"/v1/rules/{rule_id}", headers=shop["auth"], json={"active": False})
    assert r.status_code == 200, r.text
    second = services.ingestor.ingest(shop["id"], _event(2))
    assert second.outcome["messages"] == []

    r = client.patch(f"/v1/rules/{rule_id}", headers=shop["auth"], json={"active": True})
    assert r.status_code == 200, r.text
    third = services.ingestor.ingest(shop["id"], _event(3))
    assert len(third.outcome["messages"]) == 1


def test_changes_made_by_another_process_are_seen(client: TestClient, services: Services) -> None:
    """Two Ingestors on one database stand for two processes: one caches, the other's API
    changes a template and the shop's prices; the first sees both at once."""
    shop = make_shop(client)
    _sms_rule(client, shop, body="Old text {{ order_code }}")
    other = Ingestor(services.engine, services.clock, billing=True)
    before = other.ingest(shop["id"], _event(1))
    assert before.outcome["messages"][0]["cost"] is not None
    old_cost = Decimal(before.outcome["messages"][0]["cost"])

    tpl_id = client.get("/v1/templates", headers=shop["auth"]).json()["items"][0]["id"]
    long_text = "New text {{ order_code }} " + "x" * 170  # two GSM-7 segments
    r = client.put(
        f"/v1/templates/{tpl_id}",
        headers=shop["auth"],
        json={"name": "t-new", "channel": "sms", "body": long_text},
    )
    assert r.status_code == 200, r.text
    two_segments = other.ingest(shop["id"], _event(2)).outcome["messages"][0]
    assert Decimal(two_segments["cost"]) == 2 * old_cost

    with services.engine.begin() as conn:
        prices.set_shop_prices(
            conn, shop["id"], [{"channel": "sms", "country": "TR", "unit_price": "0.5"}]
        )
    repriced = other.ingest(shop["id"], _event(3)).outcome["messages"][0]
    assert Decimal(repriced["cost"]) == Decimal("1.0")


@pytest.mark.parametrize("count", [1, 5])
def test_group_commit_answers_in_order_for_a_single_thread(
    client: TestClient, services: Services, count: int
) -> None:
    shop = make_shop(client)
    _sms_rule(client, shop)
    ids = [services.ingestor.ingest(shop["id"], _event(i)).event_id for i in range(count)]
    assert ids == sorted(ids) and len(set(ids)) == count
