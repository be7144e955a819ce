"""Accepted events (`Prefer: respond-async`), on SQLite and PostgreSQL: the event is stored
durably and answered 202 at once; a worker plans its messages right after, in the order the
events were accepted, with the same rules, replays and conflicts as the synchronous path.
"""

from __future__ import annotations

import asyncio
import base64
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from tests.conftest import Outbox, make_shop
from tests.ops.test_metrics import scrape
from tests.support import count_rows, drain, messages, rule, template

from orderbell.clock import ManualClock
from orderbell.compose import Services
from orderbell.engine import manual
from orderbell.store import shops as shop_store
from orderbell.store import templates as template_store
from orderbell.store.driver import DATABASE_ERRORS, INTEGRITY_ERRORS
from orderbell.store.schema import event_attachments, events, ledger
from orderbell.store.schema import messages as message_table

ASYNC = {"Prefer": "respond-async"}
CUSTOMER = {"id": "c1", "name": "Ayşe Yılmaz", "phone": "+905321234567"}


def _body(code: str, *, type_: str = "order.created", at: str = "2026-11-20T10:00:00+03:00",
          **more: Any) -> dict[str, Any]:  # fmt: skip
    return {"type": type_, "occurred_at": at, "order": {"code": code}, "customer": CUSTOMER,
            **more}  # fmt: skip


def _post(client: TestClient, shop: dict[str, Any], body: Any, **headers: str) -> Any:
    return client.post("/v1/events", headers={**shop["auth"], **ASYNC, **headers}, json=body)


def _shop_with_rules(client: TestClient, slug: str = "shop") -> dict[str, Any]:
    shop = make_shop(client, slug)
    created = template(client, shop, "Order {{ order_code }} received", name="created")
    shipped = template(client, shop, "Order {{ order_code }} is {{ status }}", name="status")
    rule(client, shop, name="created", trigger={"event_type": "order.created"},
         action={"channel": "sms", "template_id": created})  # fmt: skip
    rule(client, shop, name="status", trigger={"event_type": "order.status_changed"},
         action={"channel": "sms", "template_id": shipped})  # fmt: skip
    return shop


def test_an_accepted_event_is_stored_at_once_and_planned_by_the_worker(
    client: TestClient, services: Services
) -> None:
    shop = _shop_with_rules(client)
    r = _post(client, shop, _body("A-1"), **{"Idempotency-Key": "k-1"})
    assert r.status_code == 202, r.text
    assert r.headers["preference-applied"] == "respond-async"
    accepted = r.json()
    assert accepted == {"event_id": accepted["event_id"], "duplicate": False,
                        "status": "accepted"}  # fmt: skip
    assert r.headers["location"] == f"/v1/events/{accepted['event_id']}"
    assert count_rows(services, message_table) == 0  # nothing planned yet

    waiting = client.get(r.headers["location"], headers=shop["auth"]).json()
    assert (waiting["status"], waiting["planned_at"], waiting["type"]) == (
        "accepted", None, "order.created")  # fmt: skip

    assert drain(services) == 1  # the worker plans it, then sends it
    planned = client.get(r.headers["location"], headers=shop["auth"]).json()
    assert planned["status"] == "planned" and planned["planned_at"]
    [message] = planned["messages"]
    assert message["rule"] == "created"
    [sent] = messages(client, shop)
    assert (sent["id"], sent["status"], sent["event_id"]) == (
        message["id"], "sent", accepted["event_id"])  # fmt: skip

    # a replay answers the original result, now planned; the same key with another body: 409
    again = _post(client, shop, _body("A-1"), **{"Idempotency-Key": "k-1"})
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["messages"][0]["id"] == message["id"]
    other = _post(client, shop, _body("A-2"), **{"Idempotency-Key": "k-1"})
    assert other.status_code == 409, other.text
    assert other.json()["error"]["field"] == "idempotency_key"
    assert count_rows(services, events) == 1


def test_a_replay_while_waiting_answers_accepted_and_stores_nothing_more(
    client: TestClient, services: Services
) -> None:
    shop = _shop_with_rules(client)
    first = _post(client, shop, {**_body("B-1"), "id": "platform-1"})
    again = _post(client, shop, {**_body("B-1"), "id": "platform-1"})
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == {**first.json(), "duplicate": True}
    # the synchronous path sees the same stored event
    sync = client.post(
        "/v1/events", headers=shop["auth"], json={**_body("B-1"), "id": "platform-1"}
    )
    assert sync.status_code == 200 and sync.json()["event_id"] == first.json()["event_id"]
    assert count_rows(services, events) == 1
    drain(services)
    assert count_rows(services, message_table) == 1


def test_accepted_events_are_planned_in_order_so_an_older_status_never_sends(
    client: TestClient, services: Services, outbox: Outbox
) -> None:
    shop = _shop_with_rules(client)
    late = _body("C-1", type_="order.status_changed", at="2026-11-20T12:00:00+03:00",
                 status="delivered")  # fmt: skip
    early = _body("C-1", type_="order.status_changed", at="2026-11-20T11:00:00+03:00",
                  status="shipped")  # fmt: skip
    ids = [_post(client, shop, b).json()["event_id"] for b in (late, early)]
    drain(services)
    outcomes = [client.get(f"/v1/events/{i}", headers=shop["auth"]).json() for i in ids]
    assert [o["stale"] for o in outcomes] == [False, True]
    assert [m["text"] for m in outbox.lines()] == ["Order C-1 is delivered"]


def test_an_accepted_batch_is_all_stored_or_none(client: TestClient, services: Services) -> None:
    shop = _shop_with_rules(client)
    r = _post(client, shop, [_body("D-1"), _body("D-2")])
    assert r.status_code == 202, r.text
    assert [x["status"] for x in r.json()["results"]] == ["accepted", "accepted"]
    # an id used before with another body fails the whole batch: nothing of it is stored
    _post(client, shop, {**_body("D-3"), "id": "dup"})
    bad = _post(client, shop, [_body("D-4"), {**_body("D-5"), "id": "dup"}])
    assert bad.status_code == 409, bad.text
    assert count_rows(services, events) == 3
    assert drain(services) == 3


def test_another_shop_cannot_read_an_event(client: TestClient, services: Services) -> None:
    mine, theirs = _shop_with_rules(client, "mine"), make_shop(client, "theirs")
    event_id = _post(client, mine, _body("E-1")).json()["event_id"]
    r = client.get(f"/v1/events/{event_id}", headers=theirs["auth"])
    assert r.status_code == 404 and r.json()["error"]["field"] == "event_id"
    assert client.get("/v1/events/999999", headers=mine["auth"]).status_code == 404
    assert client.get(f"/v1/events/{event_id}").status_code == 401


def test_other_preferences_keep_the_synchronous_answer(
    client: TestClient, services: Services
) -> None:
    shop = _shop_with_rules(client)
    for prefer in ("handling=strict", "respond-asynchronously", "wait=10"):
        r = client.post("/v1/events", headers={**shop["auth"], "Prefer": prefer},
                        json=_body(f"F-{prefer}"))  # fmt: skip
        assert r.status_code == 201, (prefer, r.text)
        assert r.json()["messages"] and "preference-applied" not in r.headers
    mixed = _post(client, shop, _body("F-4"), Prefer="handling=lenient, Respond-Async; x=1")
    assert mixed.status_code == 202, mixed.text
    long = client.post("/v1/events", headers={**shop["auth"], "Prefer": "x, " * 500 + "respond-async"},
                       json=_body("F-5"))  # fmt: skip
    assert long.status_code == 201, long.text  # ignored, as unknown preferences are


def test_an_event_that_cannot_be_planned_is_marked_failed_and_blocks_nothing(
    client: TestClient, services: Services
) -> None:
    shop = _shop_with_rules(client)
    broken, fine = (_post(client, shop, _body(c)).json()["event_id"] for c in ("G-1", "G-2"))
    with services.engine.begin() as conn:  # e.g. stored by a version whose model differed
        conn.execute(
            update(events)
            .where(events.c.id == broken)
            .values(payload={"type": 1, "customer": {"phone": "+905321234567"}})
        )
    assert drain(services) == 1
    failed = client.get(f"/v1/events/{broken}", headers=shop["auth"]).json()
    assert failed["status"] == "failed" and "type: " in failed["error"], failed
    assert "order: Field required" in failed["error"]
    assert "5321234567" not in failed["error"]  # fields and reasons, never the values
    assert client.get(f"/v1/events/{fine}", headers=shop["auth"]).json()["status"] == "planned"
    assert drain(services) == 0  # not taken again


def test_an_accepted_events_files_are_kept_once_after_planning(
    client: TestClient, services: Services
) -> None:
    shop = _shop_with_rules(client)
    pdf = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"
    file = {"filename": "invoice.pdf", "content_type": "application/pdf",
            "content_base64": base64.b64encode(pdf).decode()}  # fmt: skip
    event_id = _post(client, shop, _body("H-1", attachments=[file])).json()["event_id"]
    with services.engine.connect() as conn:
        assert "attachments" in conn.execute(select(events.c.payload)).scalar_one()
    drain(services)
    with services.engine.connect() as conn:
        assert "attachments" not in conn.execute(select(events.c.payload)).scalar_one()
        stored = conn.execute(select(event_attachments)).one()
    assert (stored.event_id, stored.filename) == (event_id, "invoice.pdf")


def test_concurrent_accepts_and_two_planners_plan_each_event_once(
    client: TestClient, services: Services
) -> None:
    shop = _shop_with_rules(client)
    bodies = [{**_body(f"J-{i}"), "id": f"j-{i}"} for i in range(60)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        codes = list(pool.map(lambda b: _post(client, shop, b).status_code, bodies + bodies[:6]))
    assert sorted(codes) == [200] * 6 + [202] * 60
    assert count_rows(services, events, events.c.planned_at.is_(None)) == 60

    def planner() -> int:
        taken = 0
        while (n := services.ingestor.plan_waiting(7)) > 0:
            taken += n
        return taken

    with ThreadPoolExecutor(max_workers=2) as pool:
        taken = sum(pool.map(lambda _: planner(), range(2)))
    assert taken == 60
    assert count_rows(services, message_table) == 60
    assert count_rows(services, events, events.c.planned_at.is_(None)) == 0


def test_the_running_worker_plans_and_sends_without_being_asked(
    client: TestClient, services: Services
) -> None:
    shop = _shop_with_rules(client)
    event_id = _post(client, shop, _body("K-1")).json()["event_id"]

    async def work() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(services.dispatcher("loop").run(stop, poll_seconds=0.05))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not messages(client, shop, status="sent"):  # noqa: ASYNC110 - the worker runs in this loop; we watch its result
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(work())
    [sent] = messages(client, shop, status="sent")
    assert sent["event_id"] == event_id


def test_a_bad_idempotency_key_is_refused_naming_the_header(
    client: TestClient, services: Services
) -> None:
    shop = _shop_with_rules(client)
    for prefer in ({}, ASYNC):
        r = client.post("/v1/events", headers={**shop["auth"], **prefer, "Idempotency-Key": "k" * 256},
                        json=_body("L-1"))  # fmt: skip
        assert r.status_code == 422, r.text
        assert r.json()["error"]["field"] == "idempotency_key"
    assert count_rows(services, events) == 0


def test_metrics_show_how_many_events_wait_and_for_how_long(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    shop = _shop_with_rules(client)
    for code in ("M-1", "M-2"):
        assert _post(client, shop, _body(code)).status_code == 202
    clock.advance(timedelta(seconds=42))
    labels = (("shop", str(shop["id"])),)
    before = scrape(client)
    assert before[("orderbell_events_waiting", labels)] == 2
    assert before[("orderbell_events_oldest_waiting_age_seconds", labels)] == 42
    drain(services)
    assert ("orderbell_events_waiting", labels) not in scrape(client)


def test_bad_contact_details_are_refused_when_the_event_is_accepted(
    client: TestClient, services: Services
) -> None:
    shop = _shop_with_rules(client)
    for customer, field in (({"id": "c9", "phone": "abc"}, "customer.phone"),
                            ({"id": "c9", "email": "not-an-address"}, "customer.email")):  # fmt: skip
        r = _post(client, shop, {**_body("N-1"), "customer": customer})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["field"] == field
    assert count_rows(services, events) == 0


def test_a_bulk_send_is_never_taken_for_an_accepted_event(
    client: TestClient, services: Services
) -> None:
    shop = _shop_with_rules(client)
    r = client.post("/v1/customers", headers=shop["auth"],
                    json={"id": "c1", "name": "Ayşe", "phone": "+905321234567"})  # fmt: skip
    assert r.status_code == 201, r.text
    tid = template(client, shop, "Spring sale", name="spring")
    with services.engine.begin() as conn:
        event_id = manual.send_manual(
            conn,
            shop_store.get(conn, shop["id"]),
            template_store.get(conn, shop["id"], tid),
            [r.json()["id"]],
            extra={},
            key="bulk-1",
            actor="owner@example.com",
            now=services.clock.now(),
            renderer=services.renderer,
        )
    assert services.ingestor.plan_waiting() == 0
    assert count_rows(services, events, events.c.planned_at.is_(None)) == 0
    bulk = client.get(f"/v1/events/{event_id}", headers=shop["auth"]).json()
    assert bulk["status"] == "planned" and len(bulk["messages"]) == 1


def test_two_planners_keep_each_orders_events_in_order(
    client: TestClient, services: Services
) -> None:
    shop = _shop_with_rules(client)
    for i in range(15):  # per order: created at 10:00, then shipped at 10:05, accepted in order
        _post(client, shop, _body(f"P-{i}"))
        _post(client, shop, _body(f"P-{i}", type_="order.status_changed",
                                  at="2026-11-20T10:05:00+03:00", status="shipped"))  # fmt: skip

    def planner() -> None:
        while services.ingestor.plan_waiting(1) or count_rows(
            services, events, events.c.planned_at.is_(None)
        ):
            pass

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda _: planner(), range(2)))
    with services.engine.connect() as conn:
        outcomes = conn.execute(select(events.c.outcome)).scalars().all()
    assert len(outcomes) == 30
    assert [o for o in outcomes if o.get("stale")] == []  # no created event overtaken
    assert count_rows(services, message_table) == 30


#: A trigger that fails every insert into messages with a database error that is not an
#: integrity error (a missing table, as a dropped table or a broken migration would give):
#: the kind a planner batch is rolled back for and retried.
_BROKEN = {
    "sqlite": [
        "CREATE TRIGGER planner_test_broken BEFORE INSERT ON messages "
        "BEGIN INSERT INTO planner_test_missing VALUES (1); END"
    ],
    "postgresql": [
        "CREATE FUNCTION planner_test_broken() RETURNS trigger AS $$ BEGIN "
        "INSERT INTO planner_test_missing VALUES (1); RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER planner_test_broken BEFORE INSERT ON messages "
        "FOR EACH ROW EXECUTE FUNCTION planner_test_broken()",
    ],
}
_MENDED = {
    "sqlite": ["DROP TRIGGER planner_test_broken"],
    "postgresql": [
        "DROP TRIGGER planner_test_broken ON messages",
        "DROP FUNCTION planner_test_broken()",
    ],
}


def test_a_database_error_rolls_the_planner_batch_back_to_be_tried_again(
    client: TestClient, services: Services
) -> None:
    shop = _shop_with_rules(client)
    ids = [_post(client, shop, _body(f"D-{i}")).json()["event_id"] for i in range(3)]
    dialect = services.engine.dialect.name
    with services.engine.begin() as conn:
        for sql in _BROKEN[dialect]:
            conn.exec_driver_sql(sql)
    with pytest.raises(DATABASE_ERRORS) as raised:
        services.ingestor.plan_waiting(100)
    assert not isinstance(raised.value, INTEGRITY_ERRORS)
    # nothing of the batch stayed: every event still waits, none is marked failed
    assert count_rows(services, events, events.c.planned_at.is_(None)) == 3
    assert count_rows(services, message_table) == 0
    assert count_rows(services, ledger) == 1  # the top-up alone: no reservation stayed
    for event_id in ids:
        status = client.get(f"/v1/events/{event_id}", headers=shop["auth"]).json()["status"]
        assert status == "accepted"

    with services.engine.begin() as conn:
        for sql in _MENDED[dialect]:
            conn.exec_driver_sql(sql)
    assert services.ingestor.plan_waiting(100) == 3
    for event_id in ids:
        planned = client.get(f"/v1/events/{event_id}", headers=shop["auth"]).json()
        assert planned["status"] == "planned" and len(planned["messages"]) == 1
    assert count_rows(services, ledger) == 4  # one reservation per message
