"""Fair claims: a shop's campaign never delays another shop's order updates, and a batch is
shared between shops whose messages are due together — on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from sqlalchemy import insert, select
from tests.support import bare_shop

from orderbell.clock import ManualClock
from orderbell.compose import Services
from orderbell.store import claims
from orderbell.store import messages as message_store
from orderbell.store.schema import messages


def shop(services: Services, clock: ManualClock, slug: str) -> int:
    return bare_shop(services.engine, slug, clock.now())


def add(
    services: Services, clock: ManualClock, shop_id: int, count: int, category: str, *,
    first_due: timedelta, step: timedelta,
) -> set[int]:  # fmt: skip
    now = clock.now()
    rows = [
        {
            "shop_id": shop_id, "channel": "sms", "category": category,
            "recipient": "+15550100200", "status": "scheduled", "reason": "test",
            "due_at": now + first_due + i * step, "context": {}, "attempts": 0,
            "created_at": now, "updated_at": now,
        }
        for i in range(count)
    ]  # fmt: skip
    with services.engine.begin() as conn:
        conn.execute(insert(messages), rows)
        return set(
            conn.execute(select(messages.c.id).where(messages.c.shop_id == shop_id)).scalars()
        )


def claim(services: Services, clock: ManualClock, limit: int) -> list[int]:
    now = clock.now()
    with services.engine.begin() as conn:
        rows = claims.claim(
            conn, worker="w", now=now, lease_until=now + timedelta(seconds=60), limit=limit
        )
    return [r.id for r in rows]


def test_another_shops_order_updates_go_out_in_the_first_batch_despite_a_campaign(
    services: Services, clock: ManualClock
) -> None:
    campaign = add(services, clock, shop(services, clock, "big"), 5_000, "marketing",
                   first_due=timedelta(hours=-1), step=timedelta(milliseconds=10))  # fmt: skip
    orders = add(services, clock, shop(services, clock, "small"), 20, "transactional",
                 first_due=timedelta(seconds=-5), step=timedelta(milliseconds=100))  # fmt: skip
    first = claim(services, clock, 100)
    assert orders <= set(first)  # all 20 order updates in the first batch of 100
    assert len(first) == 100 and set(first) - orders <= campaign  # the rest: the campaign


def test_a_batch_is_shared_round_robin_between_shops_due_together(
    services: Services, clock: ManualClock
) -> None:
    a = add(services, clock, shop(services, clock, "a"), 300, "marketing",
            first_due=timedelta(minutes=-10), step=timedelta(milliseconds=100))  # fmt: skip
    b = add(services, clock, shop(services, clock, "b"), 30, "marketing",
            first_due=timedelta(minutes=-10), step=timedelta(seconds=1))  # fmt: skip
    first = claim(services, clock, 10)
    per_shop = Counter("a" if m in a else "b" for m in first)
    # plain due order would give shop b 1 of 10 (its rows are 10x sparser); the fair claim
    # takes round-robin from the oldest 3 x 10 due rows, which hold 3 of b's
    assert per_shop == {"a": 7, "b": 3}
    everything: list[int] = first
    while batch := claim(services, clock, 50):
        everything.extend(batch)
    assert sorted(everything) == sorted(a | b) and len(set(everything)) == len(everything)


def test_next_due_is_the_earliest_pending_message_of_any_category(
    services: Services, clock: ManualClock
) -> None:
    def next_due() -> object:
        with services.engine.connect() as conn:
            return message_store.next_due(conn)

    assert next_due() is None
    a = shop(services, clock, "next")
    add(services, clock, a, 3, "transactional", first_due=timedelta(hours=2),
        step=timedelta(minutes=1))  # fmt: skip
    add(services, clock, a, 3, "marketing", first_due=timedelta(hours=1),
        step=timedelta(minutes=1))  # fmt: skip
    assert next_due() == clock.now() + timedelta(hours=1)
    with services.engine.begin() as conn:  # sent messages are not waiting for anything
        conn.execute(
            messages.update().where(messages.c.category == "marketing").values(status="sent")
        )
    assert next_due() == clock.now() + timedelta(hours=2)


def test_round_robin_keeps_due_order_within_a_shop() -> None:
    rows = [(1, 1), (2, 1), (3, 1), (4, 2), (5, 3), (6, 2)]  # (id, shop_id) in due order
    assert claims.round_robin(rows, 5) == [1, 4, 5, 2, 6]
    assert claims.round_robin(rows[:3], 2) == [1, 2]
