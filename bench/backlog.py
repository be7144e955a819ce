"""Claims with a backlog: messages claimed and finished per second through the real
`claims.claim` + `claims.finish` with a large outbox (a scheduled campaign, some messages
due now, and a history of sent ones) against the same claim on a young outbox of 10,000
pending messages; and the "next due" lookup (`messages.next_due`) on both, in ms.

SQLite (a file in a temporary folder) and PostgreSQL (a throw-away database) run the same
code. Both outboxes get the same messages due now; the claimed ones are put back after
each run (re-armed), so every run starts from the same backlog.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from bench.common import Figure, bench_shops, interleaved, median
from orderbell.store import claims
from orderbell.store import messages as outbox
from orderbell.store.db import make_engine, migrate, reading
from orderbell.store.driver import Driver
from orderbell.store.schema import messages

BATCH = 100
SHOPS = 20
#: Due now in both outboxes: more than one run claims, so a run never drains them.
DUE_NOW = 6_000
YOUNG = 10_000  #: pending messages of the baseline outbox (no history)
DAY = 86_400

_COLUMNS = (
    "shop_id, channel, category, recipient, status, reason, due_at, context, attempts, "
    "created_at, updated_at, sent_at, provider"
)
#: One kind of row as SQL over i (0 .. count - 1): category, status, due offset (s), sent?
_HISTORY = (
    "CASE WHEN i % 3 = 0 THEN 'marketing' ELSE 'transactional' END",
    "CASE WHEN i % 10 = 0 THEN 'delivered' ELSE 'sent' END",
    f"-((i * 7) % ({30 * DAY})) - 3600",
    True,
)
#: The campaign: due from tomorrow over a week; one in 20 a scheduled transactional one.
_FUTURE = (
    "CASE WHEN i % 20 = 0 THEN 'transactional' ELSE 'marketing' END",
    "CASE WHEN i % 50 = 0 THEN 'deferred' ELSE 'scheduled' END",
    f"{DAY} + (i * 13) % ({7 * DAY})",
    False,
)
#: The campaign's wave being sent: due in the last hour.
_WAVE = ("'marketing'", "'scheduled'", "-(i % 3600) - 1", False)
#: Due in the last ten minutes: mostly order updates, some of the campaign's first wave.
_DUE = (
    "CASE WHEN i % 10 < 7 THEN 'transactional' ELSE 'marketing' END",
    "'scheduled'",
    "-(i % 600) - 1",
    False,
)


@dataclass(frozen=True)
class Dialect:
    """The SQL pieces that differ between SQLite and PostgreSQL when seeding."""

    rows: str  #: a FROM item of one column i over :lo .. :hi
    json: str  #: a JSON literal
    shift: Callable[[str], str]  #: :now shifted by an SQL number of seconds
    now: Callable[[datetime], Any]  #: :now as bound


SQLITE = Dialect(
    rows="(WITH RECURSIVE n(i) AS (SELECT :lo UNION ALL SELECT i + 1 FROM n WHERE i < :hi) "
    "SELECT i FROM n)",  # SQLite has no column aliases on a FROM item
    json="'{}'",
    shift=lambda s: f"strftime('%Y-%m-%d %H:%M:%f', :now, ({s}) || ' seconds') || '000'",
    now=lambda t: t.replace(tzinfo=None).isoformat(" ", "microseconds"),
)
POSTGRES = Dialect(
    rows="generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) AS n(i)",
    json="CAST('{}' AS json)",
    shift=lambda s: f"CAST(:now AS timestamptz) + ({s}) * interval '1 second'",
    now=lambda t: t,
)
_CONTEXT = '{"_system": true, "_text": "Your order has shipped"}'


def _insert(d: Dialect, kind: tuple[str, str, str, bool], first_shop: int) -> str:
    category, status, offset, sent = kind
    due = d.shift(offset)
    done = d.shift(f"{offset} + 2")
    provider = "'console'" if sent else "NULL"
    return (
        f"INSERT INTO messages ({_COLUMNS}) SELECT {first_shop} + i % {SHOPS}, "
        "CASE WHEN i % 5 = 0 THEN 'email' ELSE 'sms' END, "
        f"{category}, CASE WHEN i % 5 = 0 THEN 'a@example.com' ELSE '+15550100200' END, "
        f"{status}, 'bench', {due}, {d.json.format(_CONTEXT)}, {1 if sent else 0}, "
        f"{d.shift(f'{offset} - 60')}, {done if sent else due}, "
        f"{done if sent else 'NULL'}, {provider} FROM {d.rows}"
    )


def seed(engine: Engine, *, pending: int, history: int, now: datetime) -> None:
    """`history` sent messages, then `pending` ones: DUE_NOW due now (mostly order updates),
    the rest a campaign: a tenth of it due (its wave being sent), the rest from tomorrow."""
    d = SQLITE if engine.dialect.name == "sqlite" else POSTGRES
    with engine.begin() as conn:
        ids = bench_shops(conn, SHOPS, now)
    first = ids[0]
    if ids != list(range(first, first + SHOPS)):
        raise RuntimeError(f"the bench shops' ids are not consecutive: {ids}")
    chunk = 1_000_000
    wave = (pending - DUE_NOW) // 10
    future = pending - DUE_NOW - wave
    for kind, count in ((_HISTORY, history), (_DUE, DUE_NOW), (_WAVE, wave), (_FUTURE, future)):
        sql = text(_insert(d, kind, first))
        for lo in range(0, count, chunk):
            with engine.begin() as conn:
                conn.execute(sql, {"lo": lo, "hi": min(count, lo + chunk) - 1, "now": d.now(now)})
    if engine.dialect.name == "postgresql":
        # What autovacuum does after a bulk load: statistics and the visibility map.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE messages"))


def claim_rate(engine: Engine, batches: int) -> tuple[float, list[int]]:
    """Messages/s of `batches` claims of BATCH, each finished as sent (two transactions a
    batch, as the dispatcher does); and the ids claimed."""
    claimed: list[int] = []
    started = time.perf_counter()
    for _ in range(batches):
        now = datetime.now(UTC)
        with engine.begin() as conn:
            rows = claims.claim(
                conn, worker="bench", now=now, lease_until=now + timedelta(seconds=60),
                limit=BATCH,
            )  # fmt: skip
        if not rows:
            break
        outcomes = [
            claims.Outcome(message_id=r.id, status="sent", reason="bench",
                           attempt_outcome="accepted", provider="console")
            for r in rows
        ]  # fmt: skip
        with engine.begin() as conn:
            claims.finish(conn, "bench", datetime.now(UTC), outcomes)
        claimed.extend(r.id for r in rows)
    elapsed = time.perf_counter() - started
    if len(claimed) != batches * BATCH:
        raise RuntimeError(f"claimed {len(claimed)} of {batches * BATCH}")
    return len(claimed) / elapsed, claimed


def rearm(engine: Engine, ids: list[int]) -> None:
    """Put claimed messages back as they were seeded: pending, never attempted."""
    with engine.begin() as conn:
        for start in range(0, len(ids), 5_000):
            conn.execute(
                messages.update()
                .where(messages.c.id.in_(ids[start : start + 5_000]))
                .values(status="scheduled", lease_owner=None, lease_until=None, sent_at=None,
                        provider=None, attempts=0)
            )  # fmt: skip


def lookup_ms(engine: Engine, count: int) -> float:
    """Median ms of `count` next-due lookups, each its own read transaction."""
    times: list[float] = []
    with reading(engine) as conn:
        outbox.next_due(conn)  # warm: the statement compiled, the pages cached
        conn.rollback()
        for _ in range(count):
            started = time.perf_counter()
            if outbox.next_due(conn) is None:
                raise RuntimeError("next_due found nothing pending")
            times.append((time.perf_counter() - started) * 1000)
            conn.rollback()
    return median(times)


def claim_indexes(engine: Engine) -> list[str]:
    """The indexes in the plan of the claim's query for due order updates (for the notes)."""
    with reading(engine) as conn:
        db = Driver(conn)
        explain = "EXPLAIN QUERY PLAN " if db.sqlite else "EXPLAIN "
        rows = db.rows(explain + claims._DUE, ("transactional", db.time(datetime.now(UTC)), 300))
        conn.rollback()
    return sorted(set(re.findall(r"ix_messages_\w+", " ".join(str(c) for r in rows for c in r))))


@contextmanager
def outboxes(backend: str) -> Iterator[tuple[str, str]]:
    """Two empty migrated databases (the large and the young outbox), removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="orderbell-backlog-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'large.db'}", f"sqlite:///{Path(tmp) / 'young.db'}"
        return
    from bench.workers import database

    with database() as large, database() as young:
        yield large, young


def backlog_figures(
    backend: str, *, pending: int, history: int, batches: int, runs: int, lookups: int
) -> list[Figure]:
    """Claim rate and next-due lookup with `pending` messages (and `history` sent ones)
    against YOUNG pending, on `backend` ("sqlite" or "postgresql")."""
    name = "SQLite" if backend == "sqlite" else "PG"
    notes: dict[str, Any] = {"pending": pending, "history": history, "due_now": DUE_NOW,
                             "young_pending": YOUNG, "batches": batches, "batch": BATCH,
                             "runs": runs, "lookups": lookups}  # fmt: skip
    with outboxes(backend) as (large_url, young_url):
        engines: list[Engine] = []
        for url in (large_url, young_url):
            engine = make_engine(url)
            migrate(engine)
            engines.append(engine)
        large, young = engines
        now = datetime.now(UTC)
        started = time.perf_counter()
        seed(large, pending=pending, history=history, now=now)
        notes["seed_s"] = round(time.perf_counter() - started, 1)
        seed(young, pending=YOUNG, history=0, now=now)

        def run(engine: Engine) -> float:
            measured, ids = claim_rate(engine, batches)
            rearm(engine, ids)
            return measured

        young_runs, large_runs = interleaved(runs, lambda: run(young), lambda: run(large))
        young_ms, large_ms = lookup_ms(young, lookups), lookup_ms(large, lookups)
        notes["claim_plan_indexes"] = claim_indexes(large)
        for engine in engines:
            engine.dispose()
    ours, base = median(large_runs), median(young_runs)
    label = f"{pending / 1e6:g}M" if pending >= 1_000_000 else f"{pending // 1000}k"
    return [
        Figure(f"{name}: claim+finish msg/s, {label} pending vs 10k", "msg/s", ours, base,
               ">= 0.8x", ours >= 0.8 * base,
               notes={**notes, "large_runs": large_runs, "young_runs": young_runs}),
        Figure(f"{name}: next-due lookup, {label} pending vs 10k", "ms", large_ms, young_ms,
               "<= 1 ms", large_ms <= 1.0, higher_is_better=False, notes=notes),
    ]  # fmt: skip
