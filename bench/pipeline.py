"""The SQLite pipeline (claim → re-check → render → console provider → mark sent) against a
raw SQLite claim loop on the same table; and ingest+send with pricing on against off."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, insert, select, text, update

from bench.common import NOW, Figure, median_of, services, timed
from orderbell.api.schemas import EventIn, RuleIn, ShopIn, TemplateIn
from orderbell.billing import credits
from orderbell.compose import Services
from orderbell.store import rules as rule_store
from orderbell.store import shops as shop_store
from orderbell.store import templates as template_store
from orderbell.store.schema import messages

TEXT = "Hello {{ customer_name }}, order {{ order_code }} ({{ order_total }}) ships today by 18:00."


def demo_shop(svc: Services) -> int:
    """A shop with one SMS rule on order.created and credit for everything."""
    with svc.engine.begin() as conn:
        shop = shop_store.create(
            conn, ShopIn(name="Bench", slug="bench", timezone="Europe/Istanbul", country="TR"), NOW
        )
        tpl = template_store.create(conn, shop.id, TemplateIn(name="t", channel="sms", body=TEXT),
                                    NOW)  # fmt: skip
        rule_store.create(
            conn,
            shop.id,
            RuleIn.model_validate({"name": "r", "trigger": {"event_type": "order.created"},
                                   "action": {"channel": "sms", "template_id": tpl["id"]}}),
            NOW,
        )  # fmt: skip
        credits.topup(conn, shop.id, "1000000", reference="bench", actor="bench", now=NOW)
    return int(shop.id)


def event(i: int) -> EventIn:
    return EventIn.model_validate(
        {"id": f"e{i}", "type": "order.created", "occurred_at": NOW.isoformat(),
         "order": {"code": f"B{i}", "total": "249.90", "currency": "TRY"},
         "customer": {"id": f"c{i % 500}", "name": "Ayşe Yılmaz", "phone": "+905321234567"}}
    )  # fmt: skip


def seed(svc: Services, count: int) -> None:
    """`count` due messages: one planned through the real pipeline, cloned in bulk."""
    shop_id = demo_shop(svc)
    svc.ingestor.ingest(shop_id, event(0))
    with svc.engine.begin() as conn:
        row = conn.execute(select(messages)).mappings().one()
        template = {k: v for k, v in row.items() if k not in ("id", "event_id")}
        template.update(billing=None, funding=None)
        for start in range(0, count - 1, 5000):
            n = min(5000, count - 1 - start)
            conn.execute(insert(messages), [dict(template) for _ in range(n)])
        conn.execute(update(messages).values(billing=None, funding=None))


def drain(svc: Services) -> int:
    svc.clock.advance(timedelta(seconds=1))  # type: ignore[attr-defined]
    return asyncio.run(svc.dispatcher("bench").drain())


def raw_claim_loop(engine: Engine, batch: int = 100) -> int:
    """The floor: claim 100 due rows, mark them sending, then sent; nothing else."""
    now = (NOW + timedelta(seconds=2)).replace(tzinfo=None)
    done = 0
    while True:
        with engine.begin() as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    text(
                        "SELECT id FROM messages WHERE status IN ('scheduled','deferred') "
                        "AND due_at <= :now ORDER BY due_at LIMIT :n"
                    ),
                    {"now": now, "n": batch},
                )
            ]
            if not ids:
                return done
            marks = ",".join(str(i) for i in ids)
            conn.execute(text(f"UPDATE messages SET status='sending', lease_owner='raw' "
                              f"WHERE id IN ({marks})"))  # fmt: skip
            conn.execute(text(f"UPDATE messages SET status='sent', lease_owner=NULL, "
                              f"sent_at=:now WHERE id IN ({marks})"), {"now": now})  # fmt: skip
            done += len(ids)


def pipeline_figure(count: int = 20_000, runs: int = 3) -> Figure:
    def ours() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            svc = services(Path(tmp), billing=False)
            seed(svc, count)
            rate = timed(lambda: drain(svc))
            svc.engine.dispose()
            return rate

    def raw() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            svc = services(Path(tmp), billing=False)
            seed(svc, count)
            rate = timed(lambda: raw_claim_loop(svc.engine))
            svc.engine.dispose()
            return rate

    raw_rate, raw_runs = median_of(runs, raw)
    our_rate, our_runs = median_of(runs, ours)
    ratio = our_rate / raw_rate
    return Figure(
        name=f"SQLite pipeline msgs/s ({count:,} due, batches of 100)",
        unit="messages/s",
        ours=our_rate,
        baseline=raw_rate,
        target=">=0.2x and >=10,000/s",
        passed=ratio >= 0.2 and our_rate >= 10_000,
        notes={"ours_runs": our_runs, "raw_runs": raw_runs},
    )


def pricing_figure(count: int = 2000, runs: int = 3) -> Figure:
    """Ingest + send, with pricing/reservation/debit on and off, same run."""

    def measure(billing: bool) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            svc = services(Path(tmp), billing=billing)
            shop_id = demo_shop(svc)
            events = [event(i) for i in range(1, count + 1)]

            def work() -> int:
                for e in events:
                    svc.ingestor.ingest(shop_id, e)
                return drain(svc)

            rate = timed(work)
            svc.engine.dispose()
            return rate

    off, off_runs = median_of(runs, lambda: measure(False))
    on, on_runs = median_of(runs, lambda: measure(True))
    return Figure(
        name=f"ingest+send msgs/s, pricing on vs off ({count:,})",
        unit="messages/s",
        ours=on,
        baseline=off,
        target=">=0.9x (pricing costs <=10%)",
        passed=on / off >= 0.9,
        notes={"on_runs": on_runs, "off_runs": off_runs},
    )
