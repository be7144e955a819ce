"""A hypothesis state machine over schedule / send / fail / expire / top-up / renew / month end,
driving the real ingest, dispatcher and ledger on SQLite. After every step:

- the account's available credit is the sum of the ledger and never negative;
- every message handed to a provider has exactly one debit, and no other message has one;
- an allowance bucket's remaining units are the sum of its entries, never negative;
- carried-over allowance is used before this month's allowance and before prepaid credit.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import Connection, func, select, update
from tests.support import assert_buckets_add_up, assert_month_spend_adds_up, empty_postgres

from orderbell.api.schemas import EventIn, RuleIn, ShopIn, ShopPatch, TemplateIn
from orderbell.billing import credits
from orderbell.channels.base import DeliveryState, Outcome, OutgoingMessage, SendResult
from orderbell.clock import ManualClock
from orderbell.compose import build
from orderbell.domain.model import Channel
from orderbell.engine import callbacks
from orderbell.errors import InvalidInput
from orderbell.settings import Settings
from orderbell.store import rules as rule_store
from orderbell.store import shops as shop_store
from orderbell.store import templates as template_store
from orderbell.store.db import make_engine, migrate
from orderbell.store.schema import (
    allowance_buckets,
    attempts,
    credit_accounts,
    ledger,
    messages,
)


def entries_per_message(conn: Connection, kind: str) -> dict[int, int]:
    """How many ledger entries of `kind` each message has (those with any)."""
    rows = conn.execute(
        select(ledger.c.message_id, func.count())
        .where(ledger.c.kind == kind)
        .group_by(ledger.c.message_id)
    )
    return {int(m): int(n) for m, n in rows.all()}


class ScriptedProvider:
    """A provider whose next answers the machine chooses; records what it was handed."""

    name = "scripted"
    channel = Channel.SMS

    def __init__(self) -> None:
        self.mode = Outcome.ACCEPTED
        self.handed: list[int] = []

    async def send(self, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        results = []
        for m in batch:
            if self.mode in (Outcome.ACCEPTED, Outcome.AMBIGUOUS):
                self.handed.append(m.id)
            results.append(SendResult(message_id=m.id, outcome=self.mode, error_code="x"))
        return results

    async def close(self) -> None:
        return None


_TEMPLATE: dict[str, Path] = {}


def migrated_database() -> Path:
    """One migrated empty database per session; each example starts from a copy of it."""
    if "path" not in _TEMPLATE:
        folder = Path(tempfile.mkdtemp(prefix="orderbell-ledger-"))
        engine = make_engine(f"sqlite:///{folder / 'template.db'}")
        migrate(engine)
        engine.dispose()
        _TEMPLATE["path"] = folder / "template.db"
    return _TEMPLATE["path"]


#: The PostgreSQL database the machine's PostgreSQL run uses (set by its fixture).
_PG: dict[str, str] = {}


class LedgerMachine(RuleBasedStateMachine):
    """Random lives of messages against one shop's credits."""

    def database(self) -> str:
        """A fresh migrated database for one example: a copy of an empty SQLite one."""
        shutil.copy(migrated_database(), Path(self.tmp.name) / "ledger.db")
        return f"sqlite:///{self.tmp.name}/ledger.db"

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.clock = ManualClock(datetime(2026, 11, 10, 9, 0, tzinfo=UTC))
        self.provider = ScriptedProvider()
        outbox = Path(self.tmp.name) / "outbox.jsonl"
        self.svc = build(
            Settings(  # type: ignore[call-arg]
                database_url=self.database(),
                outbox_file=outbox,
                embedded_worker=False,
                max_attempts=2,
                retry_base_seconds=1,
            ),
            clock=self.clock,
            providers={Channel.SMS: self.provider, Channel.EMAIL: self.provider},  # type: ignore[dict-item]
            run_migrations=False,
        )
        self.events = 0
        #: messages handed to the provider while the shop was prepaid: each has one debit
        self.charged: set[int] = set()
        self.prepaid = True
        #: messages a receipt said were undelivered while the shop did not pay for those
        self.refunded: set[int] = set()

    @initialize(allowance=st.integers(min_value=0, max_value=3), carry=st.sampled_from(
        ["none", "unlimited", "cap"]))  # fmt: skip
    def open_shop(self, allowance: int, carry: str) -> None:
        now = self.clock.now()
        with self.svc.engine.begin() as conn:
            shop = shop_store.create(
                conn, ShopIn(name="M", slug="machine", timezone="Europe/Warsaw", country="PL"), now
            )
            self.shop_id = int(shop.id)
            tpl = template_store.create(
                conn, self.shop_id, TemplateIn(name="t", channel="sms", body="Order {{ order_code }} {{ product_name }}"),
                now,
            )  # fmt: skip
            rule_store.create(conn, self.shop_id, RuleIn.model_validate(
                {"name": "r", "trigger": {"event_type": "order.created"},
                 "action": {"channel": "sms", "template_id": tpl["id"], "validity_minutes": 90}}),
                now)  # fmt: skip
            if allowance:
                credits.add_package(conn, self.shop_id, name="p", channel=Channel.SMS,
                                    allowance=allowance, carry_over=carry, carry_cap=1,
                                    carry_months=None, price=None, now=now)  # fmt: skip

    # a product name of `size` "ż": 1, 2, 3 or 7 UCS-2 segments; 1, 1, 2 or 3 transliterated
    @rule(count=st.integers(min_value=1, max_value=4), size=st.sampled_from([0, 60, 150, 400]))
    def schedule(self, count: int, size: int) -> None:
        """Events planned one by one, each in its own transaction (synchronous requests)."""
        for _ in range(count):
            self.svc.ingestor.ingest(self.shop_id, self.order(size))

    @rule(count=st.integers(min_value=1, max_value=4), size=st.sampled_from([0, 60, 150, 400]))
    def schedule_together(self, count: int, size: int) -> None:
        """Events accepted, then planned by the worker in one transaction: each decision
        counts what the batch reserved before it (credit, allowance, the month's spending)."""
        for _ in range(count):
            self.svc.ingestor.accept(self.shop_id, self.order(size))
        self.svc.ingestor.plan_waiting(100)

    def order(self, size: int) -> EventIn:
        """A new order whose SMS names a product of `size` "ż"."""
        self.events += 1
        return EventIn.model_validate(
            {"type": "order.created", "occurred_at": self.clock.now().isoformat(),
             "order": {"code": f"O{self.events}"}, "data": {"product_name": "ż" * size},
             "customer": {"id": f"c{self.events}", "phone": "+48600700800"}})  # fmt: skip

    @rule(cap=st.sampled_from([None, 1, 2, 3]), transliterate=st.booleans())
    def sms_settings(self, cap: int | None, transliterate: bool) -> None:
        """The shop changes its segment cap or transliteration (held messages may go)."""
        with self.svc.engine.begin() as conn:
            change = ShopPatch(sms_max_segments=cap, sms_transliterate=transliterate)
            self.svc.patch_shop(conn, self.shop_id, change, actor="m")

    @rule(mode=st.sampled_from([Outcome.ACCEPTED, Outcome.RETRYABLE, Outcome.PERMANENT,
                                Outcome.AMBIGUOUS]))  # fmt: skip
    def send(self, mode: Outcome) -> None:
        self.provider.mode = mode
        before = len(self.provider.handed)
        asyncio.run(self.svc.dispatcher("m").drain())
        if self.prepaid:
            self.charged.update(self.provider.handed[before:])

    @rule(prepaid=st.booleans())
    def billing_mode(self, prepaid: bool) -> None:
        """The shop is switched between prepaid and unmetered (as the API does: waiting
        messages are billed on the new terms, held ones the new terms fund go out)."""
        with self.svc.engine.begin() as conn:
            before = credits.account(conn, self.shop_id, lock=True).mode
            mode = credits.PREPAID if prepaid else "unmetered"
            conn.execute(
                update(credit_accounts)
                .where(credit_accounts.c.shop_id == self.shop_id)
                .values(mode=mode)
            )
            if mode != before:
                credits.mode_changed(conn, self.shop_id, self.clock.now(), actor="m")
            credits.resume_held(conn, self.shop_id, self.clock.now(), actor="m")
        self.prepaid = prepaid

    @rule(minutes=st.integers(min_value=1, max_value=120))
    def time_passes(self, minutes: int) -> None:
        self.clock.advance(timedelta(minutes=minutes))

    @rule(minutes=st.integers(min_value=1, max_value=90))
    def clock_goes_back(self, minutes: int) -> None:
        """The machine's clock is set back (NTP, a VM restored): nothing is granted, charged
        or given back twice for it."""
        self.clock.set(self.clock.now() - timedelta(minutes=minutes))

    @rule()
    def worker_looks_at_held(self) -> None:
        """The worker's look at held messages (every 30 s): expired ones closed, those the
        shop can pay for now sent on."""
        self.svc.dispatcher("m").release_held()

    @rule(charged=st.booleans())
    def failure_policy(self, charged: bool) -> None:
        with self.svc.engine.begin() as conn:
            conn.execute(
                update(credit_accounts)
                .where(credit_accounts.c.shop_id == self.shop_id)
                .values(charge_failed_after_submission=charged)
            )

    @rule(data=st.data())
    def delivery_fails(self, data: st.DataObject) -> None:
        """A receipt (through the callback path) says a message never arrived: refunded
        once, unless the shop pays for failures after submission; a second receipt for one
        already undelivered changes nothing."""
        with self.svc.engine.begin() as conn:
            rows = conn.execute(
                select(messages.c.id, messages.c.status, messages.c.ambiguous,
                       messages.c.provider_id, messages.c.billing)
                .where(messages.c.status.in_(("sent", "undelivered")))
                .order_by(messages.c.id)
            ).all()  # fmt: skip
            if not rows:
                return
            row = data.draw(st.sampled_from(rows))
            pays = credits.account(conn, self.shop_id).charge_failed_after_submission
            now = self.clock.now()
            callbacks._apply(conn, row, DeliveryState.UNDELIVERED, "m", None, "m", now)
            if row.status == "sent" and row.billing == "debited" and not pays:
                self.refunded.add(row.id)

    @rule(amount=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("0.50"), places=2))
    def top_up(self, amount: Decimal) -> None:
        with self.svc.engine.begin() as conn:
            credits.topup(conn, self.shop_id, str(amount), reference=None, actor="m",
                          now=self.clock.now())  # fmt: skip

    @rule(
        amount=st.decimals(min_value=Decimal("-0.50"), max_value=Decimal("0.50"), places=2).filter(
            lambda d: d != 0
        )
    )
    def adjust(self, amount: Decimal) -> None:
        """A correction by hand: credit given (releasing held messages), or available
        credit taken back; taking back more than is available is refused, writing nothing."""
        with self.svc.engine.begin() as conn:
            available = credits.account(conn, self.shop_id, lock=True).available
            try:
                credits.adjust(conn, self.shop_id, str(amount), note="m", actor="m",
                               now=self.clock.now())  # fmt: skip
            except InvalidInput:
                assert available + amount < 0
            else:
                assert available + amount >= 0

    @rule(cap=st.sampled_from([None, "0.05", "0.20", "1"]))
    def spending_cap(self, cap: str | None) -> None:
        """The shop sets, changes or lifts its monthly spending cap (as the API does: held
        messages the new cap allows go out)."""
        with self.svc.engine.begin() as conn:
            credits.account(conn, self.shop_id, lock=True)
            conn.execute(
                update(credit_accounts)
                .where(credit_accounts.c.shop_id == self.shop_id)
                .values(monthly_cap=None if cap is None else Decimal(cap))
            )
            credits.resume_held(conn, self.shop_id, self.clock.now(), actor="m")

    @rule()
    def renew(self) -> None:
        with self.svc.engine.begin() as conn:
            credits.renew(conn, self.shop_id, self.clock.now())

    @rule()
    def month_end(self) -> None:
        now = self.clock.now()
        first = (now.replace(day=1) + timedelta(days=32)).replace(day=1, hour=8)
        self.clock.set(max(now, first))
        with self.svc.engine.begin() as conn:
            credits.renew(conn, self.shop_id, self.clock.now())

    @invariant()
    def ledger_adds_up(self) -> None:
        if not hasattr(self, "shop_id"):
            return
        with self.svc.engine.connect() as conn:
            acct = conn.execute(select(credit_accounts)).one()
            total = conn.execute(select(func.coalesce(func.sum(ledger.c.credits), 0))).scalar_one()
            assert credits.money(total) == credits.money(acct.available) >= 0
            assert credits.money(acct.reserved) >= 0
            assert_buckets_add_up(conn)
            assert_month_spend_adds_up(conn)
            debits = entries_per_message(conn, "debit")
            handed = set(self.provider.handed)
            assert set(debits) == self.charged, (debits, self.charged)
            assert all(n == 1 for n in debits.values())
            refunds = entries_per_message(conn, "refund")
            assert set(refunds) == self.refunded <= self.charged, (refunds, self.refunded)
            assert all(n == 1 for n in refunds.values())
            # a message sent while prepaid is debited; one sent while unmetered is not; a
            # pending one is still paid for while prepaid (reserved, or debited already
            # when an ambiguous attempt may have reached the provider), and not while
            # unmetered (unless debited already)
            # (one past its validity is left for the worker to expire: never sent, it
            # needs no credit)
            rows = conn.execute(
                select(messages.c.id, messages.c.status, messages.c.billing, messages.c.expires_at)
            )
            for row in rows.all():
                if row.status == "sent":
                    assert row.billing == ("debited" if row.id in self.charged else None)
                if row.status == "undelivered":  # refunded when the shop does not pay for it
                    paid = "refunded" if row.id in self.refunded else "debited"
                    assert row.billing == (paid if row.id in self.charged else None), row
                if row.status in ("scheduled", "deferred"):
                    paid = ("reserved", "debited") if self.prepaid else (None, "debited")
                    if row.expires_at is not None and row.expires_at <= self.clock.now():
                        paid = (*paid, None)
                    assert row.billing in paid, (row, self.prepaid)
                if row.status == "held":  # over the cap or without credit: nothing reserved
                    assert row.billing in (None, "released", "debited")
            assert conn.execute(select(func.count()).select_from(attempts)).scalar_one() >= len(
                handed
            )

    @invariant()
    def carried_over_allowance_is_used_first(self) -> None:
        """Replaying the ledger: whenever a reservation was funded from this month's
        allowance or from credit, no carried-over bucket could have paid for it."""
        if not hasattr(self, "shop_id"):
            return
        with self.svc.engine.connect() as conn:
            buckets = {b.id: b for b in conn.execute(select(allowance_buckets)).all()}
            # an allowance pays per SMS segment: a credit-funded message would have needed
            # as many units as it has segments
            segments = dict(conn.execute(select(messages.c.id, messages.c.segments)).all())
            remaining = dict.fromkeys(buckets, 0)
            for entry in conn.execute(select(ledger).order_by(ledger.c.id)).all():
                if entry.kind == "reservation":
                    need = (
                        -entry.units
                        if entry.bucket_id is not None
                        else segments.get(entry.message_id) or 1
                    )
                    kind = buckets[entry.bucket_id].kind if entry.bucket_id else "credit"
                    if kind != "carry_over":
                        usable = [
                            b
                            for b in buckets.values()
                            if b.kind == "carry_over"
                            and remaining[b.id] >= need
                            and (b.expires_at is None or b.expires_at > entry.at)
                        ]
                        assert not usable, (entry, usable)
                if entry.bucket_id is not None:
                    remaining[entry.bucket_id] += entry.units

    def teardown(self) -> None:
        self.svc.engine.dispose()
        self.tmp.cleanup()


LedgerMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    # no shrinking: each step runs the real pipeline, and shrinking a long run takes minutes;
    # a failure prints its whole step sequence instead
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
TestLedgerMachine = LedgerMachine.TestCase


class PostgresLedgerMachine(LedgerMachine):
    """The same machine on PostgreSQL: its row locks, its exact numerics, its time type.
    Each example starts from the emptied tables of the session's PostgreSQL database."""

    def database(self) -> str:
        empty_postgres(_PG["url"])
        return _PG["url"]


@pytest.fixture
def machine_postgres(pg_url: str) -> Iterator[None]:
    """The session's PostgreSQL database, migrated, for the machine; emptied after."""
    engine = make_engine(pg_url)
    migrate(engine)
    engine.dispose()
    _PG["url"] = pg_url
    yield
    empty_postgres(pg_url)


PostgresLedgerMachine.TestCase.settings = settings(
    LedgerMachine.TestCase.settings,
    max_examples=15,  # each step is several PostgreSQL transactions: fewer than on SQLite
)
TestLedgerMachinePostgres = pytest.mark.postgres(
    pytest.mark.usefixtures("machine_postgres")(PostgresLedgerMachine.TestCase)
)


def assert_charged_once(machine: LedgerMachine) -> None:
    """The machine's one message is sent, and its credit was reserved and debited once."""
    with machine.svc.engine.connect() as conn:
        sent = conn.execute(select(messages.c.status, messages.c.billing)).one()
        kinds = [k for (k,) in conn.execute(select(ledger.c.kind).order_by(ledger.c.id))]
    assert tuple(sent) == ("sent", "debited")
    assert kinds == ["topup", "reservation", "release", "debit"]
    machine.ledger_adds_up()


def test_an_ambiguous_send_later_held_over_the_cap_is_charged_once() -> None:
    """An attempt that may have gone out is debited; held over a lowered cap at the retry
    and released by the shop, the message is not reserved (nor debited) a second time."""
    machine = LedgerMachine()
    try:
        machine.open_shop(allowance=0, carry="none")
        machine.top_up(Decimal("0.50"))
        machine.schedule(count=1, size=150)  # 3 UCS-2 segments
        machine.send(Outcome.AMBIGUOUS)
        machine.sms_settings(cap=1, transliterate=False)
        machine.time_passes(minutes=5)
        machine.send(Outcome.ACCEPTED)
        with machine.svc.engine.connect() as conn:
            held = conn.execute(select(messages.c.status, messages.c.billing)).one()
        assert tuple(held) == ("held", "debited")
        machine.sms_settings(cap=None, transliterate=False)
        machine.send(Outcome.ACCEPTED)
        assert_charged_once(machine)
    finally:
        machine.teardown()


def test_an_ambiguous_send_is_not_charged_again_after_a_switch_to_unmetered_and_back() -> None:
    """Debited after an ambiguous attempt, the message is not reserved again when its shop
    switches to unmetered and back to prepaid: its retry is not charged a second time."""
    machine = LedgerMachine()
    try:
        machine.open_shop(allowance=0, carry="none")
        machine.top_up(Decimal("0.50"))
        machine.schedule(count=1, size=0)
        machine.send(Outcome.AMBIGUOUS)
        machine.billing_mode(prepaid=False)
        machine.billing_mode(prepaid=True)
        machine.time_passes(minutes=5)
        machine.send(Outcome.ACCEPTED)
        assert_charged_once(machine)
    finally:
        machine.teardown()


def test_a_message_reserved_twice_from_a_package_gives_back_its_units_once() -> None:
    """Held over the segment cap at send time (its reservation released), released by the
    shop (reserved again), then expired: the bucket gets back the units the message holds,
    not those of both reservations (it once grew past its grant)."""
    machine = LedgerMachine()
    try:
        machine.open_shop(allowance=3, carry="none")
        machine.schedule(count=1, size=150)  # 3 UCS-2 segments: the whole allowance
        machine.sms_settings(cap=1, transliterate=False)
        machine.send(Outcome.ACCEPTED)  # held at send time: released
        machine.sms_settings(cap=None, transliterate=False)  # scheduled: reserved again
        machine.time_passes(minutes=120)  # past its 90 minutes of validity
        machine.send(Outcome.ACCEPTED)  # expired: released
        with machine.svc.engine.connect() as conn:
            status = conn.execute(select(messages.c.status)).scalar_one()
            remaining = conn.execute(select(allowance_buckets.c.remaining)).scalar_one()
        assert (status, remaining) == ("expired", 3)
        machine.ledger_adds_up()
    finally:
        machine.teardown()
