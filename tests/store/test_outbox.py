"""The outbox as a queue: due-time order, leases, take-over of a dead worker's claims,
and no double claims when workers race — on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from tests.support import bare_shop

from orderbell.clock import ManualClock
from orderbell.compose import Services
from orderbell.store import claims
from orderbell.store import messages as message_store
from orderbell.store.schema import attempts, messages


def seed(services: Services, clock: ManualClock, count: int, *, due_in: int = 0) -> list[int]:
    """Insert pending messages directly (the claim is what is under test here)."""
    now = clock.now()
    shop_id = bare_shop(services.engine, f"s{count}{due_in}", now)
    with services.engine.begin() as conn:
        ids = [
            message_store.insert(
                conn,
                {
                    "shop_id": shop_id,
                    "channel": "sms",
                    "category": "transactional",
                    "recipient": "+48600700800",
                    "status": "scheduled",
                    "reason": "test",
                    "due_at": now + timedelta(seconds=due_in + i),
                    "context": {},
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            for i in range(count)
        ]
    return ids


def claim(services: Services, worker: str, clock: ManualClock, limit: int = 10) -> list[Any]:
    now = clock.now()
    with services.engine.begin() as conn:
        return claims.claim(
            conn, worker=worker, now=now, lease_until=now + timedelta(seconds=60), limit=limit
        )


def test_claims_only_due_messages_in_due_order(services: Services, clock: ManualClock) -> None:
    ids = seed(services, clock, 5, due_in=10)
    assert claim(services, "w1", clock) == []
    clock.advance(timedelta(seconds=12))
    got = [r.id for r in claim(services, "w1", clock)]
    assert got == ids[:3]
    with services.engine.connect() as conn:
        tries = conn.execute(select(attempts.c.message_id, attempts.c.worker)).all()
    assert sorted(t.message_id for t in tries) == ids[:3]  # attempt recorded at claim


def test_dead_workers_lease_is_taken_over_and_flagged(
    services: Services, clock: ManualClock
) -> None:
    [mid] = seed(services, clock, 1)
    assert [r.id for r in claim(services, "dead", clock)] == [mid]
    clock.advance(timedelta(seconds=59))
    assert claim(services, "alive", clock) == []  # lease still held
    clock.advance(timedelta(seconds=2))
    [row] = claim(services, "alive", clock)
    assert row.id == mid and row.attempts == 1
    now = clock.now()
    with services.engine.begin() as conn:
        # the dead worker wakes up late: its outcome must not overwrite the new lease holder's
        claims.finish(
            conn,
            "dead",
            now,
            [
                claims.Outcome(
                    message_id=mid, status="failed", reason="late", attempt_outcome="permanent"
                )
            ],
        )
        claims.finish(
            conn,
            "alive",
            now,
            [
                claims.Outcome(
                    message_id=mid,
                    status="sent",
                    reason="sent via test",
                    attempt_outcome="accepted",
                )
            ],
        )
    with services.engine.connect() as conn:
        detail = message_store.get(conn, conn.execute(select(messages.c.shop_id)).scalar_one(), mid)
    assert detail["status"] == "sent" and len(detail["attempts"]) == 2
    assert any(a["detail"] and a["detail"].get("ambiguous") for a in detail["audit"])
    assert [a["worker"] for a in detail["attempts"]] == ["dead", "alive"]


def test_racing_workers_never_claim_a_message_twice(services: Services, clock: ManualClock) -> None:
    ids = seed(services, clock, 400)
    clock.advance(timedelta(seconds=500))
    claimed: dict[str, list[int]] = {f"w{i}": [] for i in range(4)}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            while rows := claim(services, name, clock, limit=25):
                claimed[name].extend(r.id for r in rows)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    everything = [m for got in claimed.values() for m in got]
    assert sorted(everything) == sorted(ids)
    assert len(everything) == len(set(everything))
