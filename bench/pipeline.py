"""The SQLite pipeline: the real dispatcher (claim → re-check → render → console provider
writing to a file → mark sent) against a raw sqlite3 claim loop over the same table; and,
as an extra, ingest + send with pricing on against pricing off."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select

from bench.common import NOW, Figure, interleaved, median, rate, services
from orderbell.api.schemas import EventIn
from orderbell.billing import credits
from orderbell.compose import Services
from orderbell.engine.demo import ensure_demo_shop
from orderbell.store.schema import messages

BATCH = 100
#: Due messages are claimed one second after they were planned.
CLAIM_AT = NOW + timedelta(seconds=1)


def demo_shop(svc: Services) -> int:
    """The demo shop (SMS + e-mail rules on order.created) with credit for everything."""
    with svc.engine.begin() as conn:
        shop = ensure_demo_shop(conn, NOW)
        credits.topup(conn, shop.shop_id, "1000000", reference="bench", actor="bench", now=NOW)
    return shop.shop_id


def event(i: int) -> EventIn:
    """One order.created event for order B<i>."""
    return EventIn.model_validate(
        {
            "id": f"e{i}",
            "type": "order.created",
            "occurred_at": NOW.isoformat(),
            "order": {"code": f"B{i}", "total": "249.90", "currency": "TRY",
                      "payment_method": "card"},
            "customer": {"id": f"c{i % 500}", "name": "Ayşe Yılmaz", "phone": "+905321234567",
                         "email": "ayse@example.com"},
        }
    )  # fmt: skip


def seed(svc: Services, count: int) -> None:
    """`count` due messages: one event planned through the real pipeline (an SMS and an
    e-mail), its messages cloned in bulk, alternately."""
    shop_id = demo_shop(svc)
    svc.ingestor.ingest(shop_id, event(0))
    with svc.engine.begin() as conn:
        planned = conn.execute(select(messages).order_by(messages.c.id)).mappings().all()
        if len(planned) != 2 or any(p["status"] != "scheduled" for p in planned):
            raise RuntimeError(f"the demo event planned {[dict(p) for p in planned]}")
        shapes = [{k: v for k, v in p.items() if k not in ("id", "event_id")} for p in planned]
        rows = [dict(shapes[i % 2]) for i in range(count - 2)]
        for start in range(0, len(rows), 5000):
            conn.execute(insert(messages), rows[start : start + 5000])


def sent(svc: Services) -> int:
    """How many messages are sent."""
    with svc.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(messages).where(messages.c.status == "sent")
            ).scalar_one()
        )


def drain(svc: Services) -> int:
    """The real dispatcher, batches of 100, until nothing is due."""
    svc.clock.advance(CLAIM_AT - svc.clock.now())  # type: ignore[attr-defined]
    return asyncio.run(svc.dispatcher("bench").drain())


def raw_claim_loop(database: Path, batch: int = BATCH) -> int:
    """The floor: stdlib sqlite3 on the same file and table. One transaction claims 100 due
    rows (UPDATE ... RETURNING), a second marks them sent. No re-check, rendering, sending,
    attempts or audit trail."""
    now = CLAIM_AT.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    lease = (CLAIM_AT + timedelta(seconds=60)).replace(tzinfo=None)
    lease_until = lease.isoformat(sep=" ", timespec="microseconds")
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        done = 0
        for _ in range(1_000_000 // batch + 1):  # bounded: never more batches than rows
            conn.execute("BEGIN IMMEDIATE")
            ids = [
                row[0]
                for row in conn.execute(
                    "UPDATE messages SET status = 'sending', lease_owner = 'raw', "
                    "lease_until = ?, attempts = attempts + 1, updated_at = ? "
                    "WHERE id IN (SELECT id FROM messages "
                    "WHERE status IN ('scheduled', 'deferred') AND due_at <= ? "
                    "ORDER BY due_at LIMIT ?) RETURNING id",
                    (lease_until, now, now, batch),
                )
            ]
            conn.execute("COMMIT")
            if not ids:
                return done
            marks = ",".join("?" * len(ids))
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "UPDATE messages SET status = 'sent', sent_at = ?, updated_at = ?, "
                f"lease_owner = NULL, lease_until = NULL WHERE id IN ({marks})",
                (now, now, *ids),
            )
            conn.execute("COMMIT")
            done += len(ids)
        raise RuntimeError("the raw loop did not run dry")
    finally:
        conn.close()


def pipeline_figure(count: int = 20_000, runs: int = 3) -> Figure:
    """Messages per second from `count` due messages, ours against the raw claim loop."""
    checks: dict[str, Any] = {}

    def ours() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            svc = services(Path(tmp), billing=False)
            seed(svc, count)
            measured = rate(lambda: drain(svc))
            done, lines = sent(svc), _lines(Path(tmp) / "outbox.jsonl")
            svc.engine.dispose()
        if done != count or lines != count:
            raise RuntimeError(f"ours sent {done} of {count}, the outbox has {lines} lines")
        checks["ours_sent"] = done
        return measured

    def raw() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            svc = services(Path(tmp), billing=False)
            seed(svc, count)
            svc.engine.dispose()
            measured = rate(lambda: raw_claim_loop(Path(tmp) / "orderbell.db"))
            svc = services(Path(tmp), billing=False)
            done = sent(svc)
            svc.engine.dispose()
        if done != count:
            raise RuntimeError(f"the raw loop marked {done} of {count}")
        checks["raw_sent"] = done
        return measured

    raw_runs, our_runs = interleaved(runs, raw, ours)
    our, base = median(our_runs), median(raw_runs)
    return Figure(
        name=f"SQLite pipeline ({count:,} due, batches of {BATCH})",
        unit="messages/s",
        ours=our,
        baseline=base,
        target=">= 0.2x and >= 10,000/s",
        passed=our / base >= 0.2 and our >= 10_000,
        notes={
            "count": count,
            "ours_runs": our_runs,
            "raw_runs": raw_runs,
            "billing": "off (the pricing figure measures it)",
            "messages": "half SMS, half e-mail, cloned from one planned event",
            **checks,
        },
    )


def _lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


def pricing_figure(count: int = 300, runs: int = 3) -> Figure:
    """Ingest `count` events then send their messages, pricing on against pricing off."""

    def measure(billing: bool) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            svc = services(Path(tmp), billing=billing)
            shop_id = demo_shop(svc)
            events = [event(i) for i in range(1, count + 1)]

            def work() -> int:
                for e in events:
                    svc.ingestor.ingest(shop_id, e)
                return drain(svc)

            measured = rate(work)
            svc.engine.dispose()
            return measured

    off_runs, on_runs = interleaved(runs, lambda: measure(False), lambda: measure(True))
    on, off = median(on_runs), median(off_runs)
    return Figure(
        name=f"extra: ingest+send, pricing on vs off ({count:,} ev)",
        unit="messages/s",
        ours=on,
        baseline=off,
        target=">= 0.9x (pricing costs <= 10%)",
        passed=on / off >= 0.9,
        notes={"count": count, "on_runs": on_runs, "off_runs": off_runs},
    )


def planning_figure(count: int = 2_000, runs: int = 3) -> Figure:
    """Accepted events (Prefer: respond-async) planned by the worker, batches of 100 in one
    transaction each, against planning each event in its own request (`ingest`)."""

    def one(accepted: bool) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            svc = services(Path(tmp), billing=True)
            shop_id = demo_shop(svc)
            events = [event(i) for i in range(1, count + 1)]
            if accepted:
                for e in events:
                    svc.ingestor.accept(shop_id, e)

                def work() -> int:
                    done = 0
                    while (n := svc.ingestor.plan_waiting(BATCH)) > 0:
                        done += n
                    return done
            else:

                def work() -> int:
                    for e in events:
                        svc.ingestor.ingest(shop_id, e)
                    return len(events)

            measured = rate(work)
            with svc.engine.connect() as conn:
                planned = conn.execute(select(func.count()).select_from(messages)).scalar_one()
            svc.engine.dispose()
        if planned != 2 * count:
            raise RuntimeError(f"{planned} messages planned for {count} events, not {2 * count}")
        return measured

    sync_runs, planner_runs = interleaved(runs, lambda: one(False), lambda: one(True))
    return Figure(
        name=f"extra: planning accepted events ({count:,} ev, 2 msg each)",
        unit="events/s",
        ours=median(planner_runs),
        baseline=median(sync_runs),
        target="info",
        passed=True,
        notes={
            "count": count,
            "planner_runs": planner_runs,
            "planned_in_request_runs": sync_runs,
            "baseline": "the same events through `ingest` one at a time (each its own "
            "transaction, as one request after another)",
            "billing": "on (credit reserved per message)",
        },
    )
