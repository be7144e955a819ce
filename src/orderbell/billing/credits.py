"""Credits: a prepaid balance, monthly packages with carry-over, and an append-only ledger.

Every change of a shop's credits or allowance is a ledger entry; the cached figures on the
account (``available``, ``reserved``) and on each allowance bucket (``remaining``) are
updated in the same transaction, so ``available == sum(ledger.credits)`` always.

A message's life in the ledger::

    planned ─ reservation (−cost) ─┬─ handed to the provider: release (+cost), debit (−cost)
                                   └─ suppressed / expired / failed before submission, or
                                      held at send over the segment cap: release

Package allowance is used before prepaid credit, carried-over allowance before this month's.
"""

from __future__ import annotations

import calendar as month_calendar
import csv
import io
import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, case, func, insert, or_, select, tuple_, update

from orderbell.billing.prices import (
    DECIMAL_TEXT,
    Quote,
    destination_country,
    fmt,
    money,
    parse_credits,
    priced,
    unit_price,
)
from orderbell.billing.prices import quote as price_quote
from orderbell.domain.calendar import at_local, local
from orderbell.domain.model import Channel, MessageStatus, text_problem
from orderbell.errors import Conflict, InvalidInput, NotFound
from orderbell.store import claims
from orderbell.store import messages as message_store
from orderbell.store.driver import Driver, json_out, marks, time_out
from orderbell.store.schema import (
    Money,
    allowance_buckets,
    credit_accounts,
    ledger,
    messages,
    packages,
    shops,
)
from orderbell.store.shops import bump_config

PREPAID = "prepaid"
UNMETERED = "unmetered"
MODES = (PREPAID, UNMETERED)
CARRY_OVER = ("none", "unlimited", "cap", "expire")
KINDS = (
    "topup",
    "allowance",
    "carry_over",
    "expiry",
    "reservation",
    "debit",
    "release",
    "refund",
    "adjustment",
)
MAX_TOPUP = Decimal("1000000000")
#: The most credit an account can hold: a tenth of what its columns can (Numeric(18, 6):
#: under 10^12 on PostgreSQL), so no top-up ends in a database error.
MAX_BALANCE = Decimal("100000000000")
_ZERO = Decimal(0)
PLACES = 4
#: Why a message may be held until it can be paid for: no credit, the monthly cap, or its
#: price changed at send time (`Dispatcher._recheck`: reserved again at its new cost).
HOLD_REASONS = ("insufficient_credit", "spending_cap", "repriced")


class Account(NamedTuple):
    """A shop's credit account. (A named tuple: one is built for every event that plans a
    priced message, and another for each message it reserves credit for — `moved`.)"""

    shop_id: int
    mode: str
    plan_id: int | None
    available: Decimal
    reserved: Decimal
    billing_day: int
    monthly_cap: Decimal | None
    charge_failed_after_submission: bool
    low_balance_thresholds: tuple[Decimal, ...]
    low_balance_below: tuple[Decimal, ...]
    notify_email: str | None
    #: A month's spending is kept on the row (`month_spend`): the moves must keep it current
    keeps_month: bool

    @property
    def balance(self) -> Decimal:
        """Credit owned, counting reservations as not yet spent."""
        return self.available + self.reserved

    def moved(self, reserved: Decimal) -> Account:
        """The account after `reserved` more credit is reserved (negative: released)."""
        return Account(
            self.shop_id, self.mode, self.plan_id, self.available - reserved,
            self.reserved + reserved, *self[5:],
        )  # fmt: skip


def parse_package_price(value: object, field: str = "price") -> Decimal:
    """What a package costs the shop (informational, as the seed's "1000 SMS for 31 EUR"):
    zero or more, at most four places, at most a top-up's maximum."""
    return parse_credits(value, field, maximum=MAX_TOPUP, allow_zero=True, example="31.00")


def parse_amount(value: object, field: str = "amount") -> Decimal:
    """A positive amount of credits with at most four decimal places."""
    return parse_credits(value, field, maximum=MAX_TOPUP, allow_zero=False, example="25.00")


def open_account(conn: Connection, shop_id: int, now: datetime, mode: str = PREPAID) -> None:
    """Create the shop's account (idempotent)."""
    exists = conn.execute(
        select(credit_accounts.c.shop_id).where(credit_accounts.c.shop_id == shop_id)
    ).first()
    if exists is None:
        conn.execute(
            insert(credit_accounts).values(
                shop_id=shop_id,
                mode=mode,
                available=Decimal(0),
                reserved=Decimal(0),
                billing_day=1,
                charge_failed_after_submission=True,
                low_balance_thresholds=[],
                low_balance_below=[],
                updated_at=now,
            )
        )


#: An account's columns, in the order `account_from_row` takes them.
ACCOUNT_COLUMNS = (
    "shop_id, mode, plan_id, available, reserved, billing_day, monthly_cap, "
    "charge_failed_after_submission, low_balance_thresholds, low_balance_below, notify_email, "
    "cap_from"
)
#: Run on the driver's cursor for every event that plans a priced message.
_ACCOUNT = f"SELECT {ACCOUNT_COLUMNS} FROM credit_accounts WHERE shop_id = ?"  # noqa: S608


def account(conn: Connection, shop_id: int, *, lock: bool = False) -> Account:
    """The shop's account; `lock` serialises writers (FOR UPDATE on PostgreSQL)."""
    db = Driver(conn)
    sql = _ACCOUNT + (" FOR UPDATE" if lock and not db.sqlite else "")
    rows = db.rows(sql, (shop_id,))
    if not rows:
        open_account(conn, shop_id, datetime.now(UTC))
        rows = db.rows(sql, (shop_id,))
    return account_from_row(rows[0])


def account_from_row(row: Sequence[Any]) -> Account:
    """An account from its `ACCOUNT_COLUMNS` as the driver returns them. (Read for every
    event that plans a priced message: the settings, which rarely change, are parsed once
    per distinct value; only the two figures are converted each time.)"""
    (shop, mode, plan_id, available, reserved, billing_day, cap, charge_failed, thresholds,
     below, notify_email, cap_from) = row  # fmt: skip
    if isinstance(thresholds, list):  # psycopg decodes JSON: lists, unhashable
        thresholds = tuple(thresholds)
    if isinstance(below, list):
        below = tuple(below)
    return Account(
        shop,
        mode,
        plan_id,
        money(available),
        money(reserved),
        *_settings(billing_day, cap, charge_failed, thresholds, below, notify_email),
        cap_from is not None,
    )


@lru_cache(maxsize=1024)
def _settings(
    billing_day: int,
    cap: Any,
    charge_failed: Any,
    thresholds: Any,
    below: Any,
    notify_email: str | None,
) -> tuple[int, Decimal | None, bool, tuple[Decimal, ...], tuple[Decimal, ...], str | None]:
    """An account's settings from their columns (`account_from_row`), in `Account`'s field
    order after the figures; cached by value."""
    return (
        billing_day,
        money(cap) if cap is not None else None,
        bool(charge_failed),
        tuple(Decimal(t) for t in json_out(thresholds) or ()),
        tuple(Decimal(t) for t in json_out(below) or ()),
        notify_email,
    )


#: PostgreSQL only: several shops' accounts, locked in shop order (`Reservations.lock`).
_LOCK_ACCOUNTS = (
    f"SELECT {ACCOUNT_COLUMNS} FROM credit_accounts "  # noqa: S608 - schema names
    "WHERE shop_id = ANY(?) ORDER BY shop_id FOR UPDATE"
)

#: Rounded to the ledger's four places: on SQLite the figures are binary floats, and
#: unrounded sums drift with every move (100 reservations and releases of 0.05 left
#: 2.50 - 50 × 0.05 at -1e-17, shown as "-0.0000"); rounded, each stays the float
#: nearest its exact value. (PostgreSQL's numeric is exact; rounding changes nothing.)
_MOVE = (
    "UPDATE credit_accounts SET available = round(available + ?, 4), "
    "reserved = round(reserved + ?, 4), {more}updated_at = ? WHERE shop_id = ?"
)
_MOVE_CREDITS = _MOVE.format(more="")
#: The same, when the entries spend credit (`_SPENDING`) between two instants: what they
#: spend is added to the month the account keeps (`month_spend`) when both fall inside it;
#: a write spanning the month's start or end leaves no kept month (the next decision sums
#: the ledger again). Every right-hand side reads the row as it was before the update.
_MOVE_SPENDING = _MOVE.format(
    more="cap_spent = CASE WHEN cap_from <= ? AND ? < cap_until "
    "THEN round(cap_spent + ?, 4) ELSE cap_spent END, "
    "cap_from = CASE WHEN ? < cap_from OR ? >= cap_until "
    "OR (cap_from <= ? AND ? < cap_until) THEN cap_from END, "
)
#: The same, for reservations queued without tracking what they spend (`message_credit`'s
#: `spend=False`: the account kept no month when it was read, under the lock). Only a capped
#: decision keeps one, so none should be kept now; were one kept since, it is dropped (the
#: next capped decision sums the ledger again) rather than left short of these entries.
_MOVE_UNKEPT = _MOVE.format(more="cap_from = NULL, ")
#: Entries that count as spending (net: a release or a refund gives back), as a cap sees it.
_SPENDING = frozenset(("reservation", "release", "debit", "refund"))
_MOVE_UNITS = "UPDATE allowance_buckets SET remaining = remaining + ? WHERE id = ?"


#: The ledger's columns as `_Entries` queues its rows: plain tuples in this order (a named
#: tuple is a Python-level call to build, and every priced message queues one row when it is
#: planned and two when it is settled).
_COLUMNS = (
    "shop_id", "at", "kind", "credits", "units", "channel", "country", "bucket_id",
    "message_id", "rule_id", "actor", "reference", "note",
)  # fmt: skip
_Row = tuple[
    int, datetime, str, Decimal, int, str | None, str | None, int | None, int | None,
    int | None, str, str | None, str | None,
]  # fmt: skip


#: Ledger rows per INSERT statement: 13 values each, well under SQLite's limit of bound
#: values in one statement (32,766; 999 before 3.32) and PostgreSQL's (65,535).
_ENTRIES_PER_INSERT = 64


@lru_cache(maxsize=_ENTRIES_PER_INSERT)
def _insert_entries(count: int) -> str:
    """One INSERT of `count` ledger rows: a settled batch's entries go in with a few
    statements rather than one execution per row (each costs its own pass through the
    driver and the VM: about a quarter of a row's time on SQLite)."""
    row = f"({marks(len(_COLUMNS))})"
    return (
        f"INSERT INTO ledger ({', '.join(_COLUMNS)}) "  # noqa: S608 - schema names
        f"VALUES {', '.join([row] * count)}"
    )


if not set(_COLUMNS) <= set(ledger.c.keys()):  # pragma: no cover - kept in step
    raise RuntimeError("_COLUMNS must name ledger columns")


class _Entries:
    """Ledger entries collected for one write: the rows go in with one executemany, and
    each account and allowance bucket they touch is moved once by their sum."""

    def __init__(self) -> None:
        self.rows: list[_Row] = []
        self.accounts: dict[int, list[Decimal]] = {}  #: shop → [available Δ, reserved Δ]
        self.buckets: dict[int, int] = {}  #: bucket → remaining Δ
        #: shop → [credits spent (`_SPENDING`), earliest and latest entry's instant]
        self.spent: dict[int, list[Any]] = {}
        #: shops whose reservations were queued without tracking spending (`message_credit`)
        self.untracked: set[int] = set()

    def add(
        self,
        shop_id: int,
        now: datetime,
        kind: str,
        *,
        credits: Decimal = _ZERO,
        units: int = 0,
        actor: str,
        channel: str | None = None,
        country: str | None = None,
        bucket_id: int | None = None,
        message_id: int | None = None,
        rule_id: int | None = None,
        reference: str | None = None,
        note: str | None = None,
    ) -> None:
        """Queue one entry and the moves of the cached figures that go with it."""
        self.rows.append(
            (shop_id, now, kind, credits, units, channel, country, bucket_id, message_id,
             rule_id, actor[:100], reference, (note or None) and note[:300])
        )  # fmt: skip
        if credits:
            self._move(shop_id, kind, credits)
            if kind in _SPENDING:
                self._spend(shop_id, now, -credits)
        if units and bucket_id is not None:
            self.buckets[bucket_id] = self.buckets.get(bucket_id, 0) + units

    def message_credit(
        self,
        step: str,
        shop_id: int,
        now: datetime,
        cost: Decimal,
        channel: str,
        country: str | None,
        message_id: int,
        rule_id: int | None,
        actor: str,
        *,
        spend: bool = True,
    ) -> None:
        """A message's prepaid credit, one `step` of its life: "reserve" (a reservation:
        `cost` moves from available to reserved); once settled, "debit" (handed to a
        provider: the reservation released and the cost debited, so available is unchanged)
        or "release" (never sent: the cost back to available). Positional, without `add`'s
        generality: it runs for every message planned and every one settled. `spend=False`
        (a reservation only): the account keeps no month's spending, so none is tracked,
        and the account is moved by `_MOVE_UNKEPT`, without the spending arms."""
        moves = self._moves(shop_id)
        actor = actor[:100]
        if step == "reserve":
            moves[0] -= cost
            moves[1] += cost
            if spend:
                self._spend(shop_id, now, cost)
            else:
                self.untracked.add(shop_id)
            self.rows.append(
                (shop_id, now, "reservation", -cost, 0, channel, country, None, message_id,
                 rule_id, actor, None, None)
            )  # fmt: skip
            return
        moves[1] -= cost
        if step == "release":  # (a debit's release and debit spend nothing between them)
            moves[0] += cost
            self._spend(shop_id, now, -cost)
        self.rows.append(
            (shop_id, now, "release", cost, 0, channel, country, None, message_id, rule_id,
             actor, None, None)
        )  # fmt: skip
        if step == "debit":
            self.rows.append(
                (shop_id, now, "debit", -cost, 0, channel, country, None, message_id, rule_id,
                 actor, None, None)
            )  # fmt: skip

    def _moves(self, shop_id: int) -> list[Decimal]:
        moves = self.accounts.get(shop_id)
        if moves is None:
            moves = self.accounts[shop_id] = [_ZERO, _ZERO]
        return moves

    def _spend(self, shop_id: int, now: datetime, credits: Decimal) -> None:
        spent = self.spent.get(shop_id)
        if spent is None:
            self.spent[shop_id] = [credits, now, now]
            return
        spent[0] += credits
        if now < spent[1]:
            spent[1] = now
        elif now > spent[2]:
            spent[2] = now

    def _move(self, shop_id: int, kind: str, credits: Decimal) -> None:
        """Move the shop's cached figures by one entry's credits: every entry moves
        `available`; a reservation or a release moves the same credit to or from
        `reserved`, so the balance (their sum) changes only with the others."""
        moves = self._moves(shop_id)
        moves[0] += credits
        if kind in ("reservation", "release"):
            moves[1] -= credits

    def write(self, conn: Connection, now: datetime) -> None:
        """Append the entries and move the figures, accounts in shop order. (That order
        keeps workers settling batches of the same shops from deadlocking; the ingest side
        keeps it too, by taking its accounts' locks up front: `Reservations.lock`.)"""
        db = Driver(conn)
        money_in, times = db.money, {now: db.time(now)}  # entries mostly share `now`
        for start in range(0, len(self.rows), _ENTRIES_PER_INSERT):
            chunk = self.rows[start : start + _ENTRIES_PER_INSERT]
            values: list[Any] = []
            for r in chunk:
                at = times.get(r[1])
                if at is None:
                    at = times[r[1]] = db.time(r[1])
                values += (r[0], at, r[2], money_in(r[3]), *r[4:])
            db.execute(_insert_entries(len(chunk)), values)
        for shop_id in sorted(self.accounts):
            available, reserved = self.accounts[shop_id]
            spent = self.spent.get(shop_id)
            if shop_id in self.untracked:
                if available or reserved:
                    db.execute(
                        _MOVE_UNKEPT,
                        (db.money(available), db.money(reserved), db.time(now), shop_id),
                    )
            elif spent is not None:
                first, last = db.time(spent[1]), db.time(spent[2])
                db.execute(
                    _MOVE_SPENDING,
                    (db.money(available), db.money(reserved), first, last, db.money(spent[0]),
                     last, first, first, last, db.time(now), shop_id),
                )  # fmt: skip
            elif available or reserved:
                db.execute(
                    _MOVE_CREDITS, (db.money(available), db.money(reserved), db.time(now), shop_id)
                )
        for bucket_id in sorted(self.buckets):
            if self.buckets[bucket_id]:
                db.execute(_MOVE_UNITS, (self.buckets[bucket_id], bucket_id))
        self.rows, self.accounts, self.buckets, self.spent = [], {}, {}, {}
        self.untracked = set()


def _entry(conn: Connection, shop_id: int, now: datetime, kind: str, **fields: Any) -> None:
    """Append one ledger entry and move the cached figures with it."""
    entries = _Entries()
    entries.add(shop_id, now, kind, **fields)
    entries.write(conn, now)


# ------------------------------------------------------------------ months and periods


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = month_calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def _shop_tz(conn: Connection, shop_id: int) -> str:
    tz = conn.execute(select(shops.c.timezone).where(shops.c.id == shop_id)).scalar_one()
    return str(tz)


def month_bounds(conn: Connection, shop_id: int, month: date) -> tuple[datetime, datetime]:
    """The UTC instants a shop-local calendar month starts and ends."""
    return _bounds(_shop_tz(conn, shop_id), month)


@lru_cache(maxsize=1024)
def _bounds(tz: str, month: date) -> tuple[datetime, datetime]:
    first = _month_start(month)
    return at_local(first, time(0), tz), at_local(_add_months(first, 1), time(0), tz)


def billing_period(now: datetime, tz: str, billing_day: int) -> date:
    """The first day of the calendar month the current billing period is named after."""
    today = local(now, tz).date()
    last = month_calendar.monthrange(today.year, today.month)[1]
    start_day = min(billing_day, last)
    month = _month_start(today)
    return month if today.day >= start_day else _add_months(month, -1)


def _period_label(month: date) -> str:
    return f"{month.year:04d}-{month.month:02d}"


def _period_start(conn: Connection, shop_id: int, month: date, billing_day: int) -> datetime:
    last = month_calendar.monthrange(month.year, month.month)[1]
    return at_local(month.replace(day=min(billing_day, last)), time(0), _shop_tz(conn, shop_id))


# ---------------------------------------------------------------------- reservations


_KEPT_MONTH = (
    "SELECT s.timezone, a.shop_id, a.cap_from, a.cap_until, a.cap_spent FROM shops s "
    "LEFT JOIN credit_accounts a ON a.shop_id = s.id WHERE s.id = ?"
)


def month_spend(conn: Connection, shop_id: int, now: datetime, *, keep: bool = False) -> Decimal:
    """Credits reserved or debited this shop-local month, less those released or refunded
    (what a spending cap limits): the sum of the month's `_SPENDING` entries."""
    return _month_spend(conn, shop_id, now, keep=keep)[0]


def _month_spend(
    conn: Connection, shop_id: int, now: datetime, *, keep: bool
) -> tuple[Decimal, datetime, datetime]:
    """`month_spend`, and the bounds of the month it is for, [start, end).

    The account keeps that sum for one month, as the ledger is written (`_MOVE_SPENDING`),
    so a capped shop's decisions cost the same on the month's last day as on its first.
    For another month, or none kept, the ledger is summed; `keep` (a writer holding the
    account's lock, so no entry of the month can commit between the sum and the update)
    then keeps this month from now on."""
    # the shop's timezone and the month its account keeps, one read (raw SQL: it is made
    # for every capped event planned on its own, where building it cost ~0.2 ms)
    [(timezone, has_account, cap_from, cap_until, cap_spent)] = Driver(conn).rows(
        _KEPT_MONTH, (shop_id,)
    )
    start, end = _bounds(timezone, local(now, timezone).date())
    if (time_out(cap_from), time_out(cap_until)) == (start, end):
        return money(cap_spent or 0), start, end
    total = -money(
        conn.execute(
            select(func.coalesce(func.sum(ledger.c.credits, type_=Money), 0)).where(
                ledger.c.shop_id == shop_id,
                ledger.c.at >= start,
                ledger.c.at < end,
                ledger.c.kind.in_(_SPENDING),
            )
        ).scalar_one()
    )
    if keep and has_account is not None:  # (an account to keep it in)
        conn.execute(
            update(credit_accounts)
            .where(credit_accounts.c.shop_id == shop_id)
            .values(cap_from=start, cap_until=end, cap_spent=total)
        )
    return total, start, end


#: A shop's buckets of one channel with anything left, in the order allowances are used in
#: (carried-over first, then the oldest period's), as `Reservations` holds them: it checks
#: their expiry as it uses them. (Raw SQL: it is read for every event of a shop with
#: packages that is planned on its own.)
_BUCKETS_LEFT = (
    "SELECT id, remaining, expires_at FROM allowance_buckets "
    "WHERE shop_id = ? AND channel = ? AND remaining > 0 "
    "ORDER BY kind <> 'carry_over', period, id"
)


@dataclass(frozen=True, slots=True)
class Funding:
    """How a message will be paid for, decided before it is stored."""

    funding: str | None  #: "allowance" | "credit" | None (unmetered)
    bucket_id: int | None
    hold: str | None  #: why it cannot be paid for now (then nothing is reserved)

    def columns(self) -> dict[str, Any]:
        """The message's billing columns."""
        if self.hold is not None or self.funding is None:
            return {"funding": None, "bucket_id": None, "billing": None}
        return {"funding": self.funding, "bucket_id": self.bucket_id, "billing": "reserved"}


#: The decisions most messages get, made once.
_UNMETERED = Funding(None, None, None)
_CREDIT = Funding("credit", None, None)
_CREDIT_COLUMNS = _CREDIT.columns()
_CHANNELS = {c.value: c for c in Channel}


def decide(
    conn: Connection,
    acct: Account,
    channel: Channel,
    quote: Quote,
    now: datetime,
    *,
    allowances: bool = True,
    queued: Decimal = _ZERO,
    cache: Reservations | None = None,
    keep: bool = True,
) -> Funding:
    """Allowance first (carried-over before this month's), then credit within the cap.
    `allowances=False` says the shop has no packages, so no allowance is looked for;
    `queued` is what this transaction has reserved so far without writing it yet (the
    entries `Reservations.write` will write): spent this month too, as the cap sees it.
    With `cache` (the transaction's `Reservations`, which will write what is reserved),
    the allowance is looked for among the buckets it holds in memory. `keep=False` (a
    reader: the simulator) writes nothing, not even the month a cap keeps."""
    if acct.mode != PREPAID:
        return _UNMETERED
    if allowances:
        buckets = Reservations() if cache is None else cache  # (without: read for this one)
        bucket_id = buckets.usable_bucket(conn, acct.shop_id, channel, quote.units, now)
        if bucket_id is not None:
            return Funding("allowance", bucket_id, None)
    if acct.monthly_cap is not None:
        written = (
            month_spend(conn, acct.shop_id, now, keep=keep)
            if cache is None
            else cache.month_spend(conn, acct.shop_id, now, keep=keep)
        )
        spent = written + queued
        if spent + quote.cost > acct.monthly_cap:
            return Funding(
                None,
                None,
                (
                    f"spending_cap: this month's spending {spent} + {fmt(quote.cost)} would pass "
                    f"the cap of {acct.monthly_cap}"
                ),
            )
    if acct.available < quote.cost:
        return Funding(
            None,
            None,
            (
                f"insufficient_credit: the message costs {fmt(quote.cost)}, "
                f"available credit is {acct.available}"
            ),
        )
    return _CREDIT


def record(
    conn: Connection,
    acct: Account,
    funding: Funding,
    *,
    message_id: int,
    rule_id: int | None,
    channel: Channel,
    quote: Quote,
    now: datetime,
    actor: str,
) -> Account:
    """Write the reservation a decision made; returns the account as it now stands. (A
    planned message's reservation of prepaid credit is queued by `insert_funded` instead,
    and written with its transaction's others: `Reservations.write`. An allowance's is
    written at once: the next decision reads the bucket.)"""
    if funding.hold is not None or funding.funding is None:
        return acct
    if funding.funding == "allowance":
        _entry(
            conn,
            acct.shop_id,
            now,
            "reservation",
            units=-quote.units,
            bucket_id=funding.bucket_id,
            actor=actor,
            channel=channel.value,
            country=quote.country,
            message_id=message_id,
            rule_id=rule_id,
        )
        return acct
    entries = _Entries()
    entries.message_credit(
        "reserve",
        acct.shop_id,
        now,
        quote.cost,
        channel.value,
        quote.country,
        message_id,
        rule_id,
        actor,
    )
    entries.write(conn, now)
    acct = acct.moved(quote.cost)
    if acct.low_balance_thresholds:
        _check_low_balance(conn, acct.shop_id, now)
    return acct


class Reservations:
    """Reservations of prepaid credit queued in one transaction — by one event, or by every
    event of a group commit or a planner batch — and written together at its end: one
    ledger statement, one update per account. Each shop's account is read (and locked) once,
    on first use, then carried in memory as its reservations are queued."""

    def __init__(self) -> None:
        self.entries = _Entries()
        self._accounts: dict[int, list[Account]] = {}
        #: (shop, channel) → its buckets with anything left, as [id, remaining, expires_at]
        #: in the order they are used in: read once (under the account's lock, which every
        #: writer that takes units holds), then moved in memory as units are reserved
        self._buckets: dict[tuple[int, str], list[list[Any]]] = {}
        #: (shop, keep) → the spending of a month written before this transaction's queued
        #: entries (`month_spend`), and that month's bounds: read once, under the account's
        #: lock, and used while decisions fall in that month, until the entries are written
        self._written: dict[tuple[int, bool], tuple[Decimal, datetime, datetime]] = {}

    def lock(self, conn: Connection, shop_ids: Iterable[int]) -> None:
        """On PostgreSQL, read and lock the accounts of these shops now, in shop order —
        the order `settle` takes them in — so a transaction that plans events of several
        shops cannot deadlock with a worker settling a batch of the same shops. (SQLite
        needs none: a writing transaction holds the whole database.) A shop without an
        account yet gets one later, on first use, as before."""
        db = Driver(conn)
        if db.sqlite:
            return
        wanted = sorted(set(shop_ids) - self._accounts.keys())
        if not wanted:
            return
        rows = db.rows(_LOCK_ACCOUNTS, (wanted,))
        for row in rows:
            self._accounts[row[0]] = [account_from_row(row)]

    def account_cache(self, shop_id: int) -> list[Account]:
        """The shop's account as `insert_funded` keeps it: empty until first read."""
        return self._accounts.setdefault(shop_id, [])

    def usable_bucket(
        self, conn: Connection, shop_id: int, channel: Channel, units: int, now: datetime
    ) -> int | None:
        """The bucket the next `units` of this channel come from: the first in order with
        that many left and not expired by `now` (None: no allowance left for them)."""
        for bucket in self._channel_buckets(conn, shop_id, channel):
            if bucket[1] >= units and (bucket[2] is None or bucket[2] > now):
                return int(bucket[0])
        return None

    def reserve_units(
        self,
        conn: Connection,
        shop_id: int,
        channel: Channel,
        bucket_id: int,
        units: int,
        **entry: Any,
    ) -> None:
        """Queue the reservation of `units` from a bucket `usable_bucket` chose (`entry`:
        the rest of its ledger entry), and take them from the bucket held in memory."""
        for bucket in self._channel_buckets(conn, shop_id, channel):
            if bucket[0] == bucket_id:
                bucket[1] -= units
                break
        else:  # pragma: no cover - usable_bucket chose it from these
            raise RuntimeError(f"bucket {bucket_id} is not among the shop's")
        self.entries.add(
            shop_id, entry.pop("now"), "reservation", units=-units, bucket_id=bucket_id,
            channel=channel.value, **entry,
        )  # fmt: skip

    def _channel_buckets(self, conn: Connection, shop_id: int, channel: Channel) -> list[list[Any]]:
        held = self._buckets.get((shop_id, channel.value))
        if held is None:
            rows = Driver(conn).rows(_BUCKETS_LEFT, (shop_id, channel.value))
            held = self._buckets[shop_id, channel.value] = [
                [bucket_id, remaining, time_out(expires)] for bucket_id, remaining, expires in rows
            ]
        return held

    @contextmanager
    def item(self) -> Iterator[None]:
        """One event's part: if it raises, what it queued is dropped, and so is any account
        or bucket it read or moved (its savepoint is rolled back, and on PostgreSQL the
        account's row lock with it)."""
        rows = len(self.entries.rows)
        accounts = {k: list(v) for k, v in self._accounts.items()}
        held = {k: [list(b) for b in v] for k, v in self._buckets.items()}
        moves = {k: list(v) for k, v in self.entries.accounts.items()}
        buckets = dict(self.entries.buckets)
        spent = {k: list(v) for k, v in self.entries.spent.items()}
        untracked = set(self.entries.untracked)
        try:
            yield
        except BaseException:
            del self.entries.rows[rows:]
            self._accounts, self.entries.accounts, self.entries.buckets = accounts, moves, buckets
            self.entries.spent, self.entries.untracked = spent, untracked
            self._buckets = held
            raise

    def month_spend(self, conn: Connection, shop_id: int, now: datetime, *, keep: bool) -> Decimal:
        """`month_spend` for the transaction's decisions: read for the first, then the same
        until `write` (the spending queued meanwhile is `queued_spending`). Under the
        account's lock nothing else writes the shop's spending in between."""
        known = self._written.get((shop_id, keep))
        if known is None or not known[1] <= now < known[2]:  # (each event has its instant)
            known = self._written[shop_id, keep] = _month_spend(conn, shop_id, now, keep=keep)
        return known[0]

    def queued_spending(self, shop_id: int) -> Decimal:
        """What this shop's queued entries spend (as a spending cap counts it): not written
        yet, so not in the month its account keeps either."""
        spent = self.entries.spent.get(shop_id)
        return _ZERO if spent is None else money(spent[0])

    def write(self, conn: Connection, now: datetime) -> None:
        """Write what is queued; then check the low-balance thresholds of the shops whose
        credit it reserved — once per transaction: thresholds crossed together give one
        notice (naming the lowest), as they did within one event before."""
        shops = sorted(self.entries.accounts)
        self.entries.write(conn, now)
        self._written = {}  # what was queued is written spending now
        for shop_id in shops:
            cached = self._accounts.get(shop_id)
            if cached and cached[0].low_balance_thresholds:
                _check_low_balance(conn, shop_id, now)


def insert_funded(
    conn: Connection,
    values: dict[str, Any],
    *,
    quote: Quote | None,
    account_cache: list[Account],
    now: datetime,
    actor: str,
    allowances: bool = True,
    entries: Reservations | None = None,
) -> tuple[int, str | None]:
    """Insert a planned message, deciding first how it is paid for (when `quote` is given):
    cost, segments and funding go in with the row, a hold turns it `held`, and the
    reservation is recorded. `account_cache` holds the shop's account, read and locked once
    per event. `values` (the caller's own dict, made for this call) gets the billing columns.
    Returns the message id and the hold reason (None when funded or not billed)."""
    if quote is None:
        return message_store.insert(conn, values), None
    if not account_cache:
        account_cache.append(account(conn, int(values["shop_id"]), lock=True))
    acct = account_cache[0]
    channel = _CHANNELS[values["channel"]]
    queued = (  # (only a cap looks at it)
        entries.queued_spending(acct.shop_id)
        if entries is not None and acct.monthly_cap is not None
        else _ZERO
    )
    funding = decide(
        conn, acct, channel, quote, now, allowances=allowances, queued=queued, cache=entries
    )
    values["cost"] = quote.cost
    values["segments"] = quote.units if channel is Channel.SMS else None
    values.update(_CREDIT_COLUMNS if funding is _CREDIT else funding.columns())
    if funding.hold is not None:
        values.update(status=MessageStatus.HELD.value, reason=funding.hold)
    message_id = message_store.insert(conn, values)
    if funding.hold is None:
        _reserve_funded(
            conn, account_cache, funding, entries, message_id, values.get("rule_id"), channel,
            quote, now, actor,
        )  # fmt: skip
    return message_id, funding.hold


def _reserve_funded(
    conn: Connection,
    account_cache: list[Account],
    funding: Funding,
    entries: Reservations | None,
    message_id: int,
    rule_id: int | None,
    channel: Channel,
    quote: Quote,
    now: datetime,
    actor: str,
) -> None:
    """Reserve what `decide` funded for a stored message, and move the cached account (or
    bucket) with it. With `entries`, the reservation is queued there, written with the
    transaction's others (`Reservations.write`) — what `record` does for most messages,
    without its checks; without, `record` writes it at once."""
    acct = account_cache[0]
    if funding is _CREDIT and entries is not None:
        entries.entries.message_credit(
            "reserve", acct.shop_id, now, quote.cost, channel.value, quote.country, message_id,
            rule_id, actor,
            # a month is kept only for a cap, and only decide() keeps one (under the lock the
            # account was read with): without either, there is no spending to keep current
            spend=acct.monthly_cap is not None or acct.keeps_month,
        )  # fmt: skip
        account_cache[0] = acct.moved(quote.cost)
    elif funding.bucket_id is not None and entries is not None:  # an allowance
        entries.reserve_units(
            conn, acct.shop_id, channel, funding.bucket_id, quote.units, now=now, actor=actor,
            country=quote.country, message_id=message_id, rule_id=rule_id,
        )  # fmt: skip
    else:
        account_cache[0] = record(
            conn,
            acct,
            funding,
            message_id=message_id,
            rule_id=rule_id,
            channel=channel,
            quote=quote,
            now=now,
            actor=actor,
        )


def reserve(
    conn: Connection,
    *,
    shop_id: int,
    message_id: int,
    rule_id: int | None,
    channel: Channel,
    quote: Quote,
    now: datetime,
    actor: str,
) -> str | None:
    """Reserve what a stored message will cost. None when funded, else the hold reason."""
    acct = account(conn, shop_id, lock=True)
    funding = decide(conn, acct, channel, quote, now)
    if funding.hold is not None:
        return funding.hold
    conn.execute(
        update(messages)
        .where(messages.c.id == message_id)
        .values(cost=quote.cost, **funding.columns())
    )
    record(
        conn,
        acct,
        funding,
        message_id=message_id,
        rule_id=rule_id,
        channel=channel,
        quote=quote,
        now=now,
        actor=actor,
    )
    return None


_BILL_COLUMNS = (
    messages.c.id,
    messages.c.shop_id,
    messages.c.rule_id,
    messages.c.channel,
    messages.c.recipient,
    messages.c.cost,
    messages.c.funding,
    messages.c.bucket_id,
    messages.c.billing,
)


class _Billed(NamedTuple):
    """A message's billing columns (as _BILL_COLUMNS selects them)."""

    id: int
    shop_id: int
    rule_id: int | None
    channel: str
    recipient: str | None
    cost: Decimal | float | None  #: as the driver reads it (a float on SQLite): see money()
    funding: str | None
    bucket_id: int | None
    billing: str | None


_BILLED = (
    f"SELECT {', '.join(c.name for c in _BILL_COLUMNS)} "  # noqa: S608 - schema names
    "FROM messages WHERE id IN ({ids}) AND lease_owner = ? ORDER BY id"
)
#: On PostgreSQL the billed rows are locked as they are read: `claims.finish` sets their
#: billing state later in the transaction, only where the lease is still this worker's, and
#: another worker reclaiming a lapsed lease in between (its claim skips locked rows) would
#: leave them reserved after this settlement, to be settled again. (The ledger's foreign
#: key takes a weaker lock on them too, but only once the entries go in.)
_LOCK_BILLED = " FOR UPDATE"
if tuple(c.name for c in _BILL_COLUMNS) != _Billed._fields:  # pragma: no cover - kept in step
    raise RuntimeError("_Billed must list _BILL_COLUMNS in order")
_BILLING_STATE = "UPDATE messages SET billing = ? WHERE id IN ({ids})"


def _units_of(row: Any, conn: Connection) -> int:
    """Allowance units a debited message was charged (from its debit entry)."""
    return _units(conn, [row.id], ("debit",)).get(row.id, 0)


def _reserved_units(conn: Connection, message_ids: Sequence[int]) -> dict[int, int]:
    """Allowance units each message holds reserved now, one query: its reservations net of
    its releases (a message may have been reserved more than once — held over the segment
    cap at send time and released, or its shop switched to unmetered and back)."""
    return _units(conn, message_ids, ("reservation", "release"))


def _units(conn: Connection, message_ids: Sequence[int], kinds: tuple[str, ...]) -> dict[int, int]:
    """Allowance units each message's entries of these kinds took (their units negated)."""
    if not message_ids:
        return {}
    rows = conn.execute(
        select(ledger.c.message_id, func.sum(ledger.c.units))
        .where(ledger.c.message_id.in_(message_ids), ledger.c.kind.in_(kinds))
        .group_by(ledger.c.message_id)
    )
    return {int(m): -int(u or 0) for m, u in rows}


def _country_of(row: Any) -> str | None:
    return destination_country(_CHANNELS[row.channel], row.recipient)


def _settle_one(
    entries: _Entries, row: Any, now: datetime, actor: str, debit: bool, units: int
) -> None:
    """Queue the entries that settle one reserved message (`units`: what it reserved of an
    allowance). The caller writes them and marks the message debited or released."""
    country = _country_of(row)
    if row.funding == "allowance":
        common: dict[str, Any] = {
            "actor": actor,
            "channel": row.channel,
            "country": country,
            "message_id": row.id,
            "rule_id": row.rule_id,
        }
        entries.add(row.shop_id, now, "release", units=units, bucket_id=row.bucket_id, **common)
        if debit:
            entries.add(row.shop_id, now, "debit", units=-units, bucket_id=row.bucket_id, **common)
        return
    cost = _cost(row.cost)
    entries.message_credit(
        "debit" if debit else "release",
        row.shop_id, now, cost, row.channel, country, row.id, row.rule_id, actor,
    )  # fmt: skip


@lru_cache(maxsize=1024)
def _cost(stored: Decimal | float | None) -> Decimal:
    """A message's stored cost as exact credits (a batch's messages share a few costs)."""
    return money(stored or 0)


def _settle(
    conn: Connection,
    rows: Sequence[Any],
    now: datetime,
    actor: str,
    handed: Collection[int],
    *,
    mark: bool = True,
) -> dict[int, str]:
    """Settle reserved messages together: debit those in `handed`, release the others.
    Returns each one's new billing state, which `mark` sets on the message now (else the
    caller sets it)."""
    rows = [r for r in rows if r.billing == "reserved"]
    if not rows:
        return {}
    units = _reserved_units(conn, [r.id for r in rows if r.funding == "allowance"])
    entries = _Entries()
    for row in rows:
        _settle_one(entries, row, now, actor, row.id in handed, units.get(row.id, 0))
    entries.write(conn, now)
    states = {r.id: "debited" if r.id in handed else "released" for r in rows}
    if mark:
        db = Driver(conn)
        for state in ("debited", "released"):
            ids = [m for m, s in states.items() if s == state]
            if ids:
                db.execute(_BILLING_STATE.format(ids=marks(len(ids))), (state, *ids))
    return states


_SENT = MessageStatus.SENT.value
#: Outcomes whose reservation is released: the message will never be sent (held: over the
#: segment cap at send time, reserved again when it is released).
_RELEASED_WHEN = frozenset(
    s.value
    for s in (
        MessageStatus.FAILED,
        MessageStatus.EXPIRED,
        MessageStatus.SUPPRESSED,
        MessageStatus.HELD,
    )
)


def settle(
    conn: Connection,
    worker: str,
    outcomes: Sequence[claims.Outcome],
    now: datetime,
) -> dict[int, str]:
    """Bill a batch's outcomes: debit what was handed to a provider (sent, or possibly sent
    when the outcome was ambiguous), release what will never be sent. Only messages still
    leased to this worker are billed, like claims.finish updates only those. Returns the
    billing state of each message billed, for `claims.finish` to set in the same
    transaction with the rest of its row (which it must: until then they read reserved)."""
    handed: set[int] = set()
    released: set[int] = set()
    for o in outcomes:
        if o.status == _SENT or (o.detail and o.detail.get("ambiguous")):
            handed.add(o.message_id)
        elif o.status in _RELEASED_WHEN:
            released.add(o.message_id)
    ids = handed | released
    if not ids:
        return {}
    db = Driver(conn)
    sql = _BILLED.format(ids=marks(len(ids))) + ("" if db.sqlite else _LOCK_BILLED)
    leased = [_Billed(*row) for row in db.rows(sql, (*ids, worker))]
    if not leased:
        return {}
    # Every account of the batch's shops is locked now, in shop order, before any entry
    # moves an account or a bucket and before the rest of the transaction (a receipt that
    # came first refunds a sent message: its shop's account, `callbacks.reconcile_sent`).
    # Taken later, out of that order — an allowance-only batch moves no account, but its
    # low-balance check may write one after its buckets — it deadlocked with renewal or a
    # planner, which take accounts in shop order and then buckets.
    shops = sorted({row.shop_id for row in leased})
    modes = _MODES.format(ids=marks(len(shops))) + ("" if db.sqlite else _LOCK_IN_ORDER)
    # a shop switched to unmetered while these were being sent (or waited for a retry) is
    # not charged for them: their reservations are released and they are left unbilled
    unmetered = {s for s, mode in db.rows(modes, shops) if mode != PREPAID}
    rows = [row for row in leased if row.billing == "reserved"]
    free = {row.id for row in rows if row.shop_id in unmetered}
    states = _settle(conn, rows, now, f"worker:{worker}", handed - free, mark=False)
    if free:
        _clear_billing(conn, free)
        states = {m: state for m, state in states.items() if m not in free}
    for shop_id in sorted({row.shop_id for row in rows}):
        _check_low_balance(conn, shop_id, now)
    return states


_MODES = "SELECT shop_id, mode FROM credit_accounts WHERE shop_id IN ({ids})"
_LOCK_IN_ORDER = " ORDER BY shop_id FOR UPDATE"


def _clear_billing(conn: Connection, message_ids: Collection[int]) -> None:
    """Leave these messages unbilled, as a shop's messages are while it is unmetered (their
    reservations released by the caller)."""
    ids = sorted(message_ids)
    for start in range(0, len(ids), 500):
        conn.execute(
            update(messages)
            .where(messages.c.id.in_(ids[start : start + 500]))
            .values(billing=None, funding=None, bucket_id=None)
        )


def refund_after_submission(conn: Connection, message_id: int, now: datetime, actor: str) -> bool:
    """A delivery failure after submission: refund unless the shop pays for those. (The
    message's row is locked as it is read, as `settle` reads its rows: two receipts for one
    message refund it once even without the callback's status check before this.)"""
    row = conn.execute(
        select(*_BILL_COLUMNS).where(messages.c.id == message_id).with_for_update()
    ).first()
    if row is None or row.billing != "debited":
        return False
    if account(conn, row.shop_id, lock=True).charge_failed_after_submission:
        return False
    common: dict[str, Any] = {  # on the statement's line of the debit it gives back
        "actor": actor,
        "channel": row.channel,
        "country": _country_of(row),
        "message_id": row.id,
        "rule_id": row.rule_id,
        "note": "refund: not delivered",
    }
    if row.funding == "allowance":
        _entry(
            conn,
            row.shop_id,
            now,
            "refund",
            units=_units_of(row, conn),
            bucket_id=row.bucket_id,
            **common,
        )
    else:
        _entry(conn, row.shop_id, now, "refund", credits=money(row.cost or 0), **common)
    conn.execute(update(messages).where(messages.c.id == row.id).values(billing="refunded"))
    return True


# --------------------------------------------------------------- top-ups and holds


#: The shop's top-up with this reference (`ix_ledger_topup_reference`: the kind is written as
#: the partial index's own condition, so both databases can use it).
_TOPUP_WITH_REFERENCE = (
    "SELECT credits FROM ledger WHERE shop_id = ? AND kind = 'topup' AND reference = ? "
    "ORDER BY id LIMIT 1"
)
#: The ledger's reference and note columns' lengths.
MAX_REFERENCE: int = ledger.c.reference.type.length  # type: ignore[attr-defined]
MAX_NOTE: int = ledger.c.note.type.length  # type: ignore[attr-defined]
#: A package name's column length (the API's `Name` allows more).
MAX_PACKAGE_NAME: int = packages.c.name.type.length  # type: ignore[attr-defined]


def parse_reference(value: str | None, field: str = "reference") -> str | None:
    """A top-up's reference (e.g. a payment id) without surrounding blanks; a blank one is
    no reference (never matched as a duplicate); at most MAX_REFERENCE characters."""
    cleaned = (value or "").strip() or None
    if cleaned is not None:
        _check_text(cleaned, MAX_REFERENCE, field)
    return cleaned


#: Characters that reorder how the text around them is shown (embeddings, overrides,
#: isolates): in a reference or a note they would make the ledger read otherwise than it is.
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def _check_text(value: str, longest: int, field: str) -> None:
    """A text the ledger can store and show as written: at most `longest` characters,
    storable (`text_problem`), without bidirectional controls."""
    problem = text_problem(value)
    if problem is None and len(value) > longest:
        problem = f"must be at most {longest} characters"
    if problem is None and (found := _BIDI_CONTROLS.search(value)) is not None:
        problem = (
            f"must not contain bidirectional control characters (U+{ord(found.group()):04X}): "
            "they change how the text around them reads"
        )
    if problem is not None:
        raise InvalidInput(problem, field=field)


def topup(
    conn: Connection,
    shop_id: int,
    amount: object,
    *,
    reference: str | None,
    actor: str,
    now: datetime,
) -> dict[str, Any]:
    """Add prepaid credit, then send held messages that are still valid, in order. A
    `reference` (e.g. a payment id) already credited to the shop is not credited again: the
    same amount answers as before, marked `duplicate` (a retried payment notice); another
    amount is a Conflict naming it."""
    value = parse_amount(amount)
    reference = parse_reference(reference)
    acct = account(conn, shop_id, lock=True)  # (under it, no other top-up can slip in)
    if reference is not None:
        earlier = Driver(conn).rows(_TOPUP_WITH_REFERENCE, (shop_id, reference))
        if earlier:
            if money(earlier[0][0]) != value:
                raise Conflict(
                    f"reference {reference!r} was already used by a top-up of {fmt(earlier[0][0])}",
                    field="reference",
                )
            return {"amount": fmt(value), "released": 0, "duplicate": True,
                    **summary(conn, shop_id, now)}  # fmt: skip
    released = _credit(conn, acct, value, "topup", now=now, actor=actor, reference=reference)
    return {"amount": fmt(value), "released": released, "duplicate": False,
            **summary(conn, shop_id, now)}  # fmt: skip


def _credit(
    conn: Connection,
    acct: Account,
    value: Decimal,
    kind: str,
    *,
    now: datetime,
    actor: str,
    **fields: Any,
) -> int:
    """Write a top-up's or a correction's entry on the locked account `acct` (refused past
    MAX_BALANCE). Credit given sends held messages that are still valid, in order; returns
    how many."""
    if acct.balance + value > MAX_BALANCE:
        raise InvalidInput(
            f"would take the balance to {fmt(acct.balance + value)}; an account holds at most "
            f"{MAX_BALANCE}",
            field="amount",
        )
    _entry(conn, acct.shop_id, now, kind, credits=value, actor=actor, **fields)
    released = resume_held(conn, acct.shop_id, now, actor=actor) if value > 0 else 0
    _check_low_balance(conn, acct.shop_id, now, rearm=True)
    return released


def parse_adjustment(value: object, field: str = "amount") -> Decimal:
    """A correction in credits: positive gives credit, negative takes it back; not zero, at
    most four places, at most a top-up's maximum either way."""
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        value = str(value)
    text = value.strip() if isinstance(value, str) else ""
    if not DECIMAL_TEXT.fullmatch(text):  # as the API's DecimalText has it
        raise InvalidInput('must be a decimal number written as a string, e.g. "-2.50"',
                           field=field)  # fmt: skip
    negative = text.startswith("-")
    magnitude = parse_credits(
        text.removeprefix("-"), field, maximum=MAX_TOPUP, allow_zero=True, example="-2.50"
    )
    if magnitude == 0:
        raise InvalidInput(
            "must not be zero: a positive amount gives credit, a negative one takes it back",
            field=field,
        )
    return -magnitude if negative else magnitude


def parse_note(value: object, field: str = "note") -> str:
    """Why a correction was made: required, trimmed, at most MAX_NOTE characters."""
    cleaned = value.strip() if isinstance(value, str) else ""
    if not cleaned:
        raise InvalidInput("must say why the credit is corrected", field=field)
    _check_text(cleaned, MAX_NOTE, field)
    return cleaned


def adjust(
    conn: Connection, shop_id: int, amount: object, *, note: object, actor: str, now: datetime
) -> dict[str, Any]:
    """A manual correction of prepaid credit, with the reason in its `note`: positive (a
    goodwill credit, a refund outside the message flow) or negative (credit taken back).
    Never takes more than is available (reserved credit belongs to messages planned), never
    past the most an account holds. Credit given sends held messages that are still valid,
    in order, as a top-up does."""
    value = parse_adjustment(amount)
    why = parse_note(note)
    acct = account(conn, shop_id, lock=True)
    if acct.available + value < 0:
        raise InvalidInput(
            f"would take back {fmt(-value)} with {fmt(acct.available)} available; reserved "
            "credit belongs to messages already planned",
            field="amount",
        )
    released = _credit(conn, acct, value, "adjustment", now=now, actor=actor, note=why)
    return {"amount": fmt(value), "note": why, "released": released,
            **summary(conn, shop_id, now)}  # fmt: skip


#: What a message's reservation is priced from (with its id and rule).
_TO_RESERVE = (
    messages.c.id,
    messages.c.rule_id,
    messages.c.channel,
    messages.c.recipient,
    messages.c.segments,
)


#: Held messages resume_held reads at a time: it stops at the first it cannot fund, so a
#: shop holding thousands (out of credit for a day) is not read whole on every attempt.
_RESUME_CHUNK = 200


def _held_for_credit(shop_id: int) -> tuple[Any, ...]:
    return (
        messages.c.shop_id == shop_id,
        messages.c.status == MessageStatus.HELD.value,
        or_(*(messages.c.reason.like(f"{r}%") for r in HOLD_REASONS)),
    )


def _held_in_order(shop_id: int, now: datetime) -> Any:
    """The shop's held messages still valid at `now`, in the order they go out (a query
    to limit, and to resume after a (due_at, id))."""
    return (
        select(*_TO_RESERVE, messages.c.due_at)
        .where(
            *_held_for_credit(shop_id),
            or_(messages.c.expires_at.is_(None), messages.c.expires_at > now),
        )
        .order_by(messages.c.due_at, messages.c.id)
    )


def resume_held(conn: Connection, shop_id: int, now: datetime, *, actor: str) -> int:
    """Held messages, oldest first: those past their validity are closed (all of them),
    funded ones scheduled; stops at the first one that still cannot be funded (order is
    kept). Returns how many were sent on."""
    acct = account(conn, shop_id, lock=True)
    for (message_id,) in conn.execute(
        select(messages.c.id)
        .where(*_held_for_credit(shop_id), messages.c.expires_at <= now)
        .order_by(messages.c.id)
    ).all():
        message_store.set_status(
            conn,
            message_id,
            now,
            MessageStatus.EXPIRED,
            "expired: validity ended while the message was held for credit",
        )
    released = 0
    after: tuple[datetime, int] | None = None
    while True:
        query = _held_in_order(shop_id, now)
        if after is not None:
            query = query.where(tuple_(messages.c.due_at, messages.c.id) > after)
        held = conn.execute(query.limit(_RESUME_CHUNK)).all()
        for row in held:
            channel = Channel(row.channel)
            units = int(row.segments or 1)
            q = price_quote(conn, shop_id, acct.plan_id, channel, row.recipient, units)
            reason = reserve(
                conn,
                shop_id=shop_id,
                message_id=row.id,
                rule_id=row.rule_id,
                channel=channel,
                quote=q,
                now=now,
                actor=actor,
            )
            if reason is not None:
                return released
            message_store.set_status(
                conn,
                row.id,
                now,
                MessageStatus.SCHEDULED,
                "released: credit is available again",
                due_at=max(row.due_at, now),
            )
            released += 1
        if len(held) < _RESUME_CHUNK:
            return released
        after = (held[-1].due_at, held[-1].id)


#: Shops with messages held for credit or by their cap (`Dispatcher.release_held` looks at
#: each).
_SHOPS_HOLDING = (
    select(messages.c.shop_id)
    .where(
        messages.c.status == MessageStatus.HELD.value,
        or_(*(messages.c.reason.like(f"{r}%") for r in HOLD_REASONS)),
    )
    .distinct()
)


def shops_holding(conn: Connection) -> list[int]:
    """The shops with messages held for credit or by their spending cap."""
    return sorted(int(shop_id) for (shop_id,) in conn.execute(_SHOPS_HOLDING).all())


def held_can_move(conn: Connection, shop_id: int, now: datetime) -> bool:
    """Whether `resume_held` would change anything for the shop now, read without locking
    or writing: a held message is past its validity, or the first valid one (in order) can
    be paid for. A shop out of credit costs the worker's look two index probes, not a lock
    on its account."""
    held = _held_for_credit(shop_id)
    if conn.execute(
        select(messages.c.id).where(*held, messages.c.expires_at <= now).limit(1)
    ).first():
        return True
    first = conn.execute(_held_in_order(shop_id, now).limit(1)).first()
    if first is None:
        return False
    acct = account(conn, shop_id)
    channel = Channel(first.channel)
    q = price_quote(conn, shop_id, acct.plan_id, channel, first.recipient, int(first.segments or 1))
    return decide(conn, acct, channel, q, now, keep=False).hold is None


#: Messages waiting for their due time, not claimed by a worker: a change of the account's
#: mode moves their credit at once. One a worker is sending is billed when the worker
#: settles it (`settle` releases what it reserved when its shop is unmetered by then); a
#: held one is reserved, if at all, when it is released.
_WAITING = (MessageStatus.SCHEDULED.value, MessageStatus.DEFERRED.value)


def mode_changed(conn: Connection, shop_id: int, now: datetime, *, actor: str) -> int:
    """Bring the shop's waiting messages in line with its account's mode, just changed (the
    caller has written it, under the account's lock). Returns how many messages changed.

    Prepaid: each priced message (orderbell's own notices are free) that is not paid for yet
    and still valid is reserved now, as if planned now, earliest due first; one that cannot
    be funded is held (`insufficient_credit` or `spending_cap`) until a top-up releases it;
    one past its validity is expired now (never left waiting unpaid).
    A message debited already (an ambiguous attempt that may have gone out) is never
    reserved again: its next attempt is not charged twice. (One a worker was sending when
    the shop switched goes out on the unmetered terms it was claimed with, and so does its
    retry if that attempt fails.)

    Unmetered: what the waiting messages reserved is released; they go out uncharged."""
    acct = account(conn, shop_id, lock=True)
    waiting = (messages.c.shop_id == shop_id, messages.c.status.in_(_WAITING))
    if acct.mode != PREPAID:
        rows = conn.execute(
            select(*_BILL_COLUMNS)
            .where(*waiting, messages.c.billing == "reserved")
            .order_by(messages.c.id)
            .with_for_update()  # (PostgreSQL: a worker's claim skips them meanwhile)
        ).all()
        _settle(conn, rows, now, actor, handed=(), mark=False)
        _clear_billing(conn, [row.id for row in rows])
        return len(rows)
    # one past its validity is closed now rather than left for the worker unpaid: were the
    # clock set back before the worker saw it, it would be valid again, and go out free
    for (message_id,) in conn.execute(
        select(messages.c.id)
        .where(
            *waiting,
            messages.c.billing.is_(None),
            messages.c.cost.is_not(None),
            messages.c.expires_at <= now,
        )
        .order_by(messages.c.id)
        .with_for_update()
    ).all():
        message_store.set_status(
            conn, message_id, now, MessageStatus.EXPIRED,
            "expired: validity ended before the shop's switch to prepaid could pay for it",
        )  # fmt: skip
    unbilled = conn.execute(
        select(*_TO_RESERVE)
        .where(
            *waiting,
            messages.c.billing.is_(None),
            messages.c.cost.is_not(None),
            or_(messages.c.expires_at.is_(None), messages.c.expires_at > now),
        )
        .order_by(messages.c.due_at, messages.c.id)
        .with_for_update()
    ).all()
    # as the planner reserves: the account read once and moved in memory, the credit's
    # entries written together at the end (a switch may meet a large scheduled campaign)
    reservations = Reservations()
    cache = reservations.account_cache(shop_id)
    cache.append(acct)
    has_packages = (
        conn.execute(select(packages.c.id).where(packages.c.shop_id == shop_id).limit(1)).first()
        is not None
    )
    unit_prices: dict[tuple[Channel, str | None], Decimal] = {}
    funded: list[tuple[Any, ...]] = []
    held: list[tuple[Any, ...]] = []
    log: list[message_store.LogEntry] = []
    db = Driver(conn)
    for row in unbilled:
        channel = _CHANNELS[row.channel]
        country = destination_country(channel, row.recipient)
        unit = unit_prices.get((channel, country))
        if unit is None:
            unit = unit_prices[channel, country] = unit_price(
                conn, shop_id, acct.plan_id, channel, country
            )
        q = priced(unit, channel, country, row.segments)
        queued = reservations.queued_spending(shop_id) if acct.monthly_cap is not None else _ZERO
        funding = decide(
            conn, cache[0], channel, q, now, allowances=has_packages, queued=queued,
            cache=reservations,
        )  # fmt: skip
        if funding.hold is not None:
            clipped = message_store.clip(funding.hold, message_store.REASON_SIZE)
            held.append((clipped, db.money(q.cost), db.time(now), row.id))
            log.append(
                message_store.LogEntry(
                    message_id=row.id, at=now, status=MessageStatus.HELD.value, reason=funding.hold
                )
            )
            continue
        _reserve_funded(conn, cache, funding, reservations, row.id, row.rule_id, channel, q, now,
                        actor)  # fmt: skip
        funded.append((db.money(q.cost), funding.funding, funding.bucket_id, row.id))
    reservations.write(conn, now)
    db.executemany(_FUNDED, funded)
    db.executemany(_HELD, held)
    message_store.add_log(conn, log)
    return len(unbilled)


_FUNDED = (
    "UPDATE messages SET cost = ?, funding = ?, bucket_id = ?, billing = 'reserved' WHERE id = ?"
)
_HELD = (
    f"UPDATE messages SET status = '{MessageStatus.HELD.value}', reason = ?, cost = ?, "  # noqa: S608
    "updated_at = ? WHERE id = ?"
)


# ------------------------------------------------------------------ low balance


def _check_low_balance(
    conn: Connection, shop_id: int, now: datetime, *, rearm: bool = False
) -> None:
    """One e-mail to the shop per threshold crossed downwards. A threshold is re-armed only
    by credit put in (`rearm`: a top-up, a correction) that takes the available credit back
    to it or above — not by reservations given back (a suppressed or expired message, a
    switch to unmetered): those would send a notice per message around a threshold."""
    acct = account(conn, shop_id)
    if not acct.low_balance_thresholds:
        return
    below = set(acct.low_balance_below)
    if rearm:
        below = {t for t in below if acct.available < t}
    crossed = sorted(
        t for t in acct.low_balance_thresholds if acct.available < t and t not in below
    )
    if set(acct.low_balance_below) == below and not crossed:
        return
    conn.execute(
        update(credit_accounts)
        .where(credit_accounts.c.shop_id == shop_id)
        .values(low_balance_below=sorted(str(t) for t in below | set(crossed)))
    )
    if crossed:
        _notify_low_balance(conn, shop_id, acct, crossed[0], now)


def _notify_low_balance(
    conn: Connection, shop_id: int, acct: Account, threshold: Decimal, now: datetime
) -> None:
    shop = conn.execute(select(shops.c.name, shops.c.email_from).where(shops.c.id == shop_id)).one()
    to = acct.notify_email or shop.email_from
    subject = f"orderbell: {shop.name} credit below {threshold}"
    text = (
        f"Your available credit is {acct.available}, below your threshold of {threshold}.\n"
        "Messages that cannot be paid for are held (never dropped) and go out automatically "
        "after a top-up."
    )
    message_id = message_store.insert(
        conn,
        {
            "shop_id": shop_id,
            "channel": Channel.EMAIL.value,
            "category": "transactional",
            "recipient": to,
            "status": (MessageStatus.SCHEDULED if to else MessageStatus.SUPPRESSED).value,
            "reason": "low_balance notice" if to else "no_email: the shop has no e-mail address",
            "due_at": now,
            "context": {"_system": "low_balance", "_subject": subject, "_text": text},
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        },
    )
    message_store.add_log(
        conn,
        [
            message_store.LogEntry(
                message_id=message_id,
                at=now,
                status="scheduled",
                reason=f"low balance: below {threshold}",
            )
        ],
    )


# ------------------------------------------------------------------------ packages


def add_package(
    conn: Connection,
    shop_id: int,
    *,
    name: str,
    channel: Channel,
    allowance: int,
    carry_over: str,
    carry_cap: int | None,
    carry_months: int | None,
    price: Decimal | None,
    now: datetime,
    actor: str = "package",
) -> int:
    """Create a monthly package and grant this period's allowance at once (its entries name
    `actor`: who added the package)."""
    from orderbell.store.db import new_id

    # longer, PostgreSQL refuses the row: a 500 instead of the field's name
    _check_text(name, MAX_PACKAGE_NAME, "name")
    if carry_over not in CARRY_OVER:
        raise InvalidInput(f"must be one of {', '.join(CARRY_OVER)}", field="carry_over")
    if carry_over == "cap" and (carry_cap is None or carry_cap < 0):
        raise InvalidInput("a cap carry-over needs carry_cap >= 0", field="carry_cap")
    if carry_over == "expire" and (carry_months is None or carry_months < 1):
        raise InvalidInput("an expiring carry-over needs carry_months >= 1", field="carry_months")
    # the account first, as a change of plan takes it before the shop's row (`bump_config`):
    # taken after, by `renew`, the two could deadlock on PostgreSQL
    account(conn, shop_id, lock=True)
    package_id = new_id(
        conn.execute(
            insert(packages).values(
                shop_id=shop_id,
                name=name,
                channel=channel.value,
                allowance=allowance,
                carry_over=carry_over,
                carry_cap=carry_cap,
                carry_months=carry_months,
                price=price,
                active=True,
                created_at=now,
            )
        )
    )
    bump_config(conn, shop_id)
    renew(conn, shop_id, now, actor=actor)
    return package_id


def renew(conn: Connection, shop_id: int, now: datetime, *, actor: str = "renewal") -> int:
    """Grant each active package's allowance for the current billing period, once.

    Carries unused allowance over per the package's policy. Running it twice for the same
    period, or with a clock that went back, grants nothing more. Returns buckets granted.
    """
    acct = account(conn, shop_id, lock=True)
    tz = _shop_tz(conn, shop_id)
    month = billing_period(now, tz, acct.billing_day)
    label = _period_label(month)
    granted = 0
    for pkg in conn.execute(
        select(packages).where(packages.c.shop_id == shop_id, packages.c.active.is_(True))
    ).all():
        latest = conn.execute(
            select(func.max(allowance_buckets.c.period)).where(
                allowance_buckets.c.package_id == pkg.id,
                allowance_buckets.c.kind == "allowance",
            )
        ).scalar()
        if latest is not None and latest >= label:
            continue  # this period was granted already (or the clock went back)
        start = _period_start(conn, shop_id, month, acct.billing_day)
        _carry_over(conn, shop_id, pkg, month, start, now, actor)
        bucket_id = _bucket(
            conn, shop_id, pkg, label, "allowance", _expiry(conn, shop_id, pkg, month, acct), now
        )
        _entry(
            conn,
            shop_id,
            now,
            "allowance",
            units=pkg.allowance,
            bucket_id=bucket_id,
            channel=pkg.channel,
            actor=actor,
            reference=f"package:{pkg.id}:{label}",
        )
        granted += 1
    if granted:
        resume_held(conn, shop_id, now, actor=actor)
    return granted


def _expiry(
    conn: Connection, shop_id: int, pkg: Any, month: date, acct: Account
) -> datetime | None:
    """When units granted for `month` stop being usable."""
    if pkg.carry_over == "none":
        return _period_start(conn, shop_id, _add_months(month, 1), acct.billing_day)
    if pkg.carry_over == "expire":
        return _period_start(
            conn, shop_id, _add_months(month, 1 + int(pkg.carry_months)), acct.billing_day
        )
    return None


def _bucket(
    conn: Connection,
    shop_id: int,
    pkg: Any,
    label: str,
    kind: str,
    expires_at: datetime | None,
    now: datetime,
) -> int:
    from orderbell.store.db import new_id

    existing = conn.execute(
        select(allowance_buckets.c.id).where(
            allowance_buckets.c.package_id == pkg.id,
            allowance_buckets.c.period == label,
            allowance_buckets.c.kind == kind,
        )
    ).first()
    if existing is not None:
        return int(existing.id)
    return new_id(
        conn.execute(
            insert(allowance_buckets).values(
                shop_id=shop_id,
                package_id=pkg.id,
                channel=pkg.channel,
                period=label,
                kind=kind,
                remaining=0,
                expires_at=expires_at,
                created_at=now,
            )
        )
    )


def _carry_over(
    conn: Connection,
    shop_id: int,
    pkg: Any,
    month: date,
    start: datetime,
    now: datetime,
    actor: str,
) -> None:
    """Move last periods' unused allowance into carry-over buckets, or expire it."""
    old = conn.execute(
        select(allowance_buckets)
        .where(
            allowance_buckets.c.package_id == pkg.id,
            allowance_buckets.c.remaining > 0,
            allowance_buckets.c.period < _period_label(month),
        )
        .order_by(allowance_buckets.c.period.desc(), allowance_buckets.c.id)
    ).all()
    keep_total = 0
    for bucket in old:
        common: dict[str, Any] = {"channel": pkg.channel, "actor": actor}
        if bucket.expires_at is not None and bucket.expires_at <= start:
            _entry(
                conn,
                shop_id,
                now,
                "expiry",
                units=-bucket.remaining,
                bucket_id=bucket.id,
                note=f"unused allowance of {bucket.period} expired",
                **common,
            )
            continue
        keep = bucket.remaining
        if pkg.carry_over == "cap":
            keep = max(0, min(bucket.remaining, int(pkg.carry_cap) - keep_total))
        keep_total += keep
        if keep < bucket.remaining:
            _entry(
                conn,
                shop_id,
                now,
                "expiry",
                units=-(bucket.remaining - keep),
                bucket_id=bucket.id,
                note="over the carry-over cap",
                **common,
            )
        if keep and bucket.kind == "allowance":
            target = _bucket(
                conn, shop_id, pkg, bucket.period, "carry_over", bucket.expires_at, now
            )
            _entry(
                conn,
                shop_id,
                now,
                "carry_over",
                units=-keep,
                bucket_id=bucket.id,
                note=f"to {_period_label(month)}",
                **common,
            )
            _entry(
                conn,
                shop_id,
                now,
                "carry_over",
                units=keep,
                bucket_id=target,
                note=f"from {bucket.period}",
                **common,
            )


# -------------------------------------------------------------------- reading


def summary(conn: Connection, shop_id: int, now: datetime) -> dict[str, Any]:
    """Balance, reservations, allowances and this month's spending."""
    acct = account(conn, shop_id)
    buckets = conn.execute(
        select(allowance_buckets, packages.c.name.label("package"))
        .join(packages, packages.c.id == allowance_buckets.c.package_id)
        .where(allowance_buckets.c.shop_id == shop_id, allowance_buckets.c.remaining > 0)
        .order_by(allowance_buckets.c.period, allowance_buckets.c.id)
    ).all()
    return {
        "mode": acct.mode,
        "available": fmt(acct.available),
        "reserved": fmt(acct.reserved),
        "balance": fmt(acct.balance),
        "month_spend": fmt(month_spend(conn, shop_id, now)),
        "monthly_cap": fmt(acct.monthly_cap) if acct.monthly_cap is not None else None,
        "billing_day": acct.billing_day,
        "charge_failed_after_submission": acct.charge_failed_after_submission,
        "low_balance_thresholds": [str(t) for t in acct.low_balance_thresholds],
        "notify_email": acct.notify_email,  #: None: the shop's own address
        "allowances": [
            {
                "bucket_id": b.id,
                "package": b.package,
                "channel": b.channel,
                "period": b.period,
                "kind": b.kind,
                "remaining": b.remaining,
                "expires_at": b.expires_at.isoformat() if b.expires_at else None,
                "usable": b.expires_at is None or b.expires_at > now,
            }
            for b in buckets
        ],
    }


def _entry_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": row.at.isoformat(),
        "kind": row.kind,
        "credits": fmt(row.credits),
        "units": row.units,
        "channel": row.channel,
        "country": row.country,
        "bucket_id": row.bucket_id,
        "message_id": row.message_id,
        "rule_id": row.rule_id,
        "actor": row.actor,
        "reference": row.reference,
        "note": row.note,
    }


def entries(
    conn: Connection,
    shop_id: int,
    *,
    kind: str | None = None,
    message_id: int | None = None,
    rule_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Ledger entries, newest first (by time, then id), filtered; page with `before`, the
    id of the previous page's last entry.

    Ordered as `ix_ledger_shop_at` (shop, time, id) keeps them, so a page is read from the
    shop's own entries, newest first, however many entries the shop or any other has.
    (Ordered by id alone, no index served it: every page scanned the ledger of all shops
    backwards, from the newest entry of any shop.) A message's few entries are read through
    its own index instead."""
    # A message's entries: the shop compared in a form no index serves, or SQLite, without
    # statistics, would read the shop's index (to save sorting a handful of rows)
    shop = ledger.c.shop_id if message_id is None else ledger.c.shop_id + 0
    query = select(ledger).where(shop == shop_id)
    if kind is not None:
        if kind not in KINDS:
            raise InvalidInput(f"must be one of {', '.join(KINDS)}", field="kind")
        query = query.where(ledger.c.kind == kind)
    for column, value in ((ledger.c.message_id, message_id), (ledger.c.rule_id, rule_id)):
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(ledger.c.at >= since)
    if until is not None:
        query = query.where(ledger.c.at < until)
    if before is not None:
        at = conn.execute(
            select(ledger.c.at).where(ledger.c.id == before, ledger.c.shop_id == shop_id)
        ).scalar_one_or_none()
        if at is None:
            raise InvalidInput(
                "is not an entry of this shop's ledger: give a page's next_before",
                field="before",
            )
        query = query.where(tuple_(ledger.c.at, ledger.c.id) < tuple_(at, before))
    rows = conn.execute(query.order_by(ledger.c.at.desc(), ledger.c.id.desc()).limit(limit))
    return [_entry_json(r) for r in rows.all()]


#: The months a statement can be asked for: from the Unix epoch to the end of year 9998 (a
#: month's end is the next month's first day in the shop's timezone, then in UTC: a date
#: must hold both, with room to spare).
FIRST_MONTH, LAST_MONTH = date(1970, 1, 1), date(9998, 12, 1)
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")


def parse_month(value: str, field: str = "month") -> date:
    """A month written YYYY-MM, from 1970-01 to 9998-12."""
    found = _MONTH.fullmatch(value.strip()) if isinstance(value, str) else None
    month = None
    if found is not None and 1 <= int(found[2]) <= 12:
        month = date(int(found[1]), int(found[2]), 1)
    if month is None or not FIRST_MONTH <= month <= LAST_MONTH:
        raise InvalidInput(
            f"must be a month written YYYY-MM, from {_period_label(FIRST_MONTH)} to "
            f"{_period_label(LAST_MONTH)}, e.g. 2026-11",
            field=field,
        )
    return month


def statement(conn: Connection, shop_id: int, month: date) -> dict[str, Any]:
    """A month's charges per channel, destination country and rule (debits net of refunds),
    and the credit that came in: its top-ups and corrections by hand, each summed."""
    if conn.execute(select(shops.c.id).where(shops.c.id == shop_id)).first() is None:
        raise NotFound("shop not found")
    start, end = month_bounds(conn, shop_id, month)
    rows = conn.execute(
        select(
            ledger.c.channel,
            ledger.c.country,
            ledger.c.rule_id,
            # the messages charged (a refund's message is counted by its debit's month)
            func.count(func.distinct(case((ledger.c.kind == "debit", ledger.c.message_id)))).label(
                "messages"
            ),
            func.coalesce(func.sum(ledger.c.credits, type_=Money), 0).label("credits"),
            func.coalesce(func.sum(ledger.c.units), 0).label("units"),
        )
        .where(
            ledger.c.shop_id == shop_id,
            ledger.c.at >= start,
            ledger.c.at < end,
            and_(ledger.c.kind.in_(("debit", "refund"))),
        )
        .group_by(ledger.c.channel, ledger.c.country, ledger.c.rule_id)
        .order_by(ledger.c.channel, ledger.c.country, ledger.c.rule_id)
    ).all()
    lines = [
        {
            "channel": r.channel,
            "country": r.country,
            "rule_id": r.rule_id,
            "messages": int(r.messages),
            "credits": fmt(-money(r.credits)),
            "allowance_units": -int(r.units),
        }
        for r in rows
    ]
    moved = dict(
        conn.execute(
            select(ledger.c.kind, func.coalesce(func.sum(ledger.c.credits, type_=Money), 0))
            .where(
                ledger.c.shop_id == shop_id,
                ledger.c.at >= start,
                ledger.c.at < end,
                ledger.c.kind.in_(("topup", "adjustment")),
            )
            .group_by(ledger.c.kind)
        ).all()
    )
    return {
        "month": _period_label(month),
        "from": start.isoformat(),
        "until": end.isoformat(),
        "lines": lines,
        "total_credits": fmt(sum((Decimal(x["credits"]) for x in lines), Decimal(0))),
        "total_messages": sum(x["messages"] for x in lines),
        "topups": fmt(moved.get("topup", 0)),
        "adjustments": fmt(moved.get("adjustment", 0)),
    }


def statement_csv(data: dict[str, Any]) -> str:
    """The statement as CSV: one line per channel × country × rule, their total, then the
    credit that came in — the month's top-ups and corrections by hand — on lines of their
    own. The credits column is what was spent on the charge lines and the total, what came
    in on these two (a correction taking credit back is negative): they are not summed."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["month", "channel", "country", "rule_id", "messages", "credits", "allowance_units"]
    )
    for line in data["lines"]:
        writer.writerow(
            [
                data["month"],
                line["channel"],
                line["country"] or "",
                line["rule_id"] or "",
                line["messages"],
                line["credits"],
                line["allowance_units"],
            ]
        )
    writer.writerow(
        [data["month"], "total", "", "", data["total_messages"], data["total_credits"], ""]
    )
    for kind in ("topups", "adjustments"):
        writer.writerow([data["month"], kind, "", "", "", data[kind], ""])
    return out.getvalue()


def package_shops(conn: Connection) -> list[int]:
    """The shops with an active package, in shop order."""
    return sorted(
        int(r.shop_id)
        for r in conn.execute(
            select(packages.c.shop_id).where(packages.c.active.is_(True)).distinct()
        ).all()
    )


def renew_all(conn: Connection, now: datetime) -> int:
    """Renew packages of every shop that has any, in one transaction (`orderbell credits
    renew`; the worker renews one shop per transaction), accounts locked in shop order as
    everywhere."""
    return sum(renew(conn, s, now) for s in package_shops(conn))
