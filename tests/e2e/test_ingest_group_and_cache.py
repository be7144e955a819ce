"""Ingest under load and after configuration changes, on SQLite and PostgreSQL.

- Concurrent events share group commits: every event is stored exactly once, each gets its
  own answer, and one bad event in a group (an idempotency key reused with another body)
  fails alone.
- The per-process cache of a shop's rules, templates and prices is never stale: a change
  through the API, or made by another process on the same database, applies to the very
  next event.
"""

from __future__ import annotations

import asyncio
import threading
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


def test_coroutines_and_threads_share_group_commits(
    client: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Accepted events from coroutines on an event loop (the API's path) and from threads
    at the same time: every event stored once, each caller answered with its own event,
    replays answered with the original — and the coroutines' events committed together."""
    shop = make_shop(client)
    _sms_rule(client, shop)
    ingestor = services.ingestor
    groups: list[int] = []
    run_group = ingestor._run_group

    def counted(batch: list[Any]) -> None:
        groups.append(len(batch))
        run_group(batch)

    monkeypatch.setattr(ingestor, "_run_group", counted)

    async def from_coroutines() -> list[Any]:
        events_in = [_event(i) for i in range(100)] + [_event(i) for i in range(0, 100, 10)]
        return await asyncio.wait_for(
            asyncio.gather(*(ingestor.accept_async(shop["id"], e) for e in events_in)), 60
        )

    pool = ThreadPoolExecutor(max_workers=8)
    try:  # (a hang fails the test by its time-outs, rather than hanging it in shutdown)
        threads = [pool.submit(ingestor.accept, shop["id"], _event(i)) for i in range(100, 150)]
        coroutine_results = asyncio.run(from_coroutines())
        thread_results = [t.result(timeout=60) for t in threads]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)

    assert count_rows(services, events) == 150
    first = {r.event_id for r in coroutine_results[:100]} | {r.event_id for r in thread_results}
    assert len(first) == 150 and not any(r.duplicate for r in thread_results)
    replays = coroutine_results[100:]
    assert all(r.duplicate for r in replays)
    assert [r.event_id for r in replays] == [r.event_id for r in coroutine_results[:100:10]]
    assert sum(groups) == 160 and max(groups) > 1  # events shared commits


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_cancelled_request_does_not_stall_the_queue(
    client: TestClient, services: Services
) -> None:
    """A request that goes away while its event waits for a group (a client hanging up):
    its event is still stored, and later events are too. (SQLite: the test holds the write
    lock so the first group waits, and the second event is queued behind it.)"""
    shop = make_shop(client)
    _sms_rule(client, shop)
    ingestor = services.ingestor

    async def scenario() -> Any:
        with services.engine.begin():  # the write lock: the first group waits for it
            first = asyncio.create_task(ingestor.accept_async(shop["id"], _event(1)))
            for _ in range(200):  # until its group has started (bounded: ~2 s)
                await asyncio.sleep(0.01)
                if ingestor._leading and not ingestor._queue:
                    break
            second = asyncio.create_task(ingestor.accept_async(shop["id"], _event(2)))
            await asyncio.sleep(0.05)
            assert [it.key for it in ingestor._queue] == ["id:ev-2"]
            second.cancel()
            await asyncio.sleep(0.01)
        assert (await asyncio.wait_for(first, 30)).event_id == 1
        with pytest.raises(asyncio.CancelledError):
            await second
        return await asyncio.wait_for(ingestor.accept_async(shop["id"], _event(3)), 30)

    third = asyncio.run(scenario())
    assert third.event_id == 3 and not third.duplicate
    assert count_rows(services, events) == 3  # the cancelled request's event too


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_event_whose_loop_has_closed_does_not_stall_the_queue(
    client: TestClient, services: Services
) -> None:
    """A coroutine's event queued behind a group a thread leads; the coroutine's event loop
    ends before that group does (nobody will ever run on it again). The event is still
    stored, and so are later ones from other threads: the lead is never handed to a waiter
    that may not run."""
    shop = make_shop(client)
    _sms_rule(client, shop)
    ingestor = services.ingestor
    pool = ThreadPoolExecutor(max_workers=2)
    try:  # (a hang fails the test by its time-outs, rather than hanging it in shutdown)
        with services.engine.begin():  # the write lock: the first group waits for it
            first = pool.submit(ingestor.accept, shop["id"], _event(1))
            for _ in range(200):  # until its group has started (bounded: ~2 s)
                if ingestor._leading and not ingestor._queue:
                    break
                threading.Event().wait(0.01)

            async def queue_and_leave() -> None:
                waiting = asyncio.create_task(ingestor.accept_async(shop["id"], _event(2)))
                await asyncio.sleep(0.05)  # queued; then the loop is closed with it waiting
                assert not waiting.done()

            asyncio.run(queue_and_leave())
            assert [it.key for it in ingestor._queue] == ["id:ev-2"]
        assert first.result(timeout=30).event_id == 1
        third = pool.submit(ingestor.accept, shop["id"], _event(3)).result(timeout=30)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    assert third.event_id == 3
    assert count_rows(services, events) == 3
