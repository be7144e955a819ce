"""Claims: due messages leased to a worker, and what became of each attempt.

This is the dispatcher's hot path, so the statements run on the driver's cursor
(:mod:`orderbell.store.driver`): one code path for SQLite and PostgreSQL, with
``FOR UPDATE SKIP LOCKED`` added on PostgreSQL. Due rows are found through the partial
index on pending messages by (category, due_at), one range per category; the status list
is spelled as a literal so the planner sees that the query implies the index's condition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Connection

from orderbell.domain.model import MessageStatus
from orderbell.store.driver import Driver, bool_out, json_out, marks, shared_json_out, time_out
from orderbell.store.messages import REASON_SIZE, LogEntry, add_log, clip

#: Claim order: every transactional message that is due goes before any marketing one, so a
#: shop's campaign never delays another shop's order updates.
CLAIM_PRIORITY = ("transactional", "marketing")
#: Within a category, a claim looks at this many times its size of the oldest due rows and
#: takes them round-robin by shop, so one shop's burst shares each batch with the others.
FAIR_WINDOW = 3


class Claimed(NamedTuple):
    """A claimed message with everything a worker needs to re-check and send it."""

    id: int
    shop_id: int
    rule_id: int | None
    channel: str
    category: str
    recipient: str | None
    previous_status: str
    due_at: datetime
    expires_at: datetime | None
    context: dict[str, Any]
    attempts: int
    template_id: int | None
    event_id: int | None
    customer_id: int | None
    template_active: bool | None
    template_version: int | None
    template_kind: str | None
    t_subject: str | None
    t_body: str | None
    t_html: str | None
    c_phone: str | None
    c_email: str | None
    sms_transactional: bool | None
    sms_marketing: bool | None
    email_transactional: bool | None
    email_marketing: bool | None
    email_opt_out: str | None
    sms_opt_out: str | None
    order_status: str | None
    rule_active: bool | None
    rule_definition: dict[str, Any] | None  #: shared between rows: read-only
    #: the shop has active accounts of its own (else the worker's default provider sends);
    #: no default: a row built without it would skip the shop's own accounts unnoticed
    shop_accounts: bool
    #: its template or its event has files to attach (no default, as above)
    has_files: bool
    #: the SMS segments and the billing state it was priced and reserved with (priced at
    #: planning: `billing` "reserved" while its credit or allowance is held for it)
    segments: int | None
    billing: str | None
    expired_by_db: bool = False  #: expired by the database server's clock (PostgreSQL)


_SELECT = """SELECT m.id, m.shop_id, m.rule_id, m.channel, m.category, m.recipient, m.status,
 m.due_at, m.expires_at, m.context, m.attempts, m.template_id, m.event_id, m.customer_id,
 t.active, t.version, t.kind, tv.subject, tv.body, tv.html,
 c.phone, c.email, c.sms_transactional, c.sms_marketing, c.email_transactional,
 c.email_marketing, c.email_opt_out, c.sms_opt_out, o.status, r.active, r.definition,
 EXISTS (SELECT 1 FROM shop_providers sp WHERE sp.shop_id = m.shop_id AND sp.active),
 (EXISTS (SELECT 1 FROM template_attachments ta WHERE ta.template_id = m.template_id)
  OR EXISTS (SELECT 1 FROM event_attachments ea WHERE ea.event_id = m.event_id)),
 m.segments, m.billing{extra}
FROM messages m
LEFT JOIN templates t ON t.id = m.template_id
LEFT JOIN template_versions tv ON tv.template_id = t.id AND tv.version = t.version
LEFT JOIN customers c ON c.id = m.customer_id
LEFT JOIN orders o ON o.id = m.order_id
LEFT JOIN rules r ON r.id = m.rule_id
WHERE m.id IN ({ids})"""
_EXPIRED_BY_DB = ", (m.expires_at IS NOT NULL AND m.expires_at <= clock_timestamp())"
_LOST = (
    "SELECT id, status FROM messages WHERE status = 'sending' AND lease_until < ? "
    "ORDER BY lease_until LIMIT ?"
)
_DUE = (
    "SELECT id, shop_id FROM messages WHERE status IN ('scheduled', 'deferred') "
    "AND category = ? AND due_at <= ? ORDER BY due_at LIMIT ?"
)
_LOCK = " FOR UPDATE SKIP LOCKED"
_LEASE = (
    "UPDATE messages SET status = 'sending', lease_owner = ?, lease_until = ?, "
    "attempts = attempts + 1, updated_at = ? WHERE id IN ({ids})"
)
_ATTEMPT = "INSERT INTO attempts (message_id, number, worker, started_at) VALUES (?, ?, ?, ?)"
_AMBIGUOUS = "UPDATE messages SET ambiguous = ? WHERE id IN ({ids})"
_TAKEN_OVER = (
    "lease expired: the previous worker stopped mid-attempt; "
    "outcome of that attempt unknown (ambiguous), trying again"
)


def _claimed(row: tuple[Any, ...]) -> Claimed:
    (mid, shop, rule, channel, category, recipient, status, due, expires, context, tries,
     template, event, customer, t_active, t_version, t_kind, subject, body, html,
     phone, email, sms_t, sms_m, email_t, email_m, email_out, sms_out, order_status,
     r_active, definition, accounts, files, segments, billing, *extra) = row  # fmt: skip
    return Claimed(
        mid, shop, rule, channel, category, recipient, status,
        cast(datetime, time_out(due)), time_out(expires), json_out(context) or {}, tries,
        template, event, customer, bool_out(t_active), t_version, t_kind, subject, body, html,
        phone, email, bool_out(sms_t), bool_out(sms_m), bool_out(email_t), bool_out(email_m),
        email_out, sms_out, order_status, bool_out(r_active), shared_json_out(definition),
        bool(accounts), bool(files), segments, billing, bool(extra and extra[0]),
    )  # fmt: skip


def claim(
    conn: Connection,
    *,
    worker: str,
    now: datetime,
    lease_until: datetime,
    limit: int,
    database_time: bool = False,
) -> list[Claimed]:
    """Lease up to `limit` due messages (and ones whose lease expired) to this worker.

    Each claim records an attempt before any network call. Uses SKIP LOCKED on PostgreSQL;
    on SQLite the transaction is BEGIN IMMEDIATE, so one writer claims at a time. Due
    messages are taken transactional first, then marketing, each shared round-robin between
    shops (see :data:`FAIR_WINDOW`). With `database_time` (PostgreSQL), each row also says
    whether it has expired by the database server's clock (``expired_by_db``), whatever the
    worker's clock says.
    """
    db = Driver(conn)
    lock = "" if db.sqlite else _LOCK
    at = db.time(now)
    lost = db.rows(_LOST + lock, (at, limit))
    ids = [r[0] for r in lost]
    for category in CLAIM_PRIORITY:
        wanted = limit - len(ids)
        if wanted <= 0:
            break
        due = db.rows(_DUE + lock, (category, at, wanted * FAIR_WINDOW))
        ids.extend(round_robin(due, wanted))
    if not ids:
        return []
    extra = _EXPIRED_BY_DB if database_time and not db.sqlite else ""
    rows = [_claimed(r) for r in db.rows(_SELECT.format(extra=extra, ids=marks(len(ids))), ids)]
    db.execute(_LEASE.format(ids=marks(len(ids))), (worker, db.time(lease_until), at, *ids))
    db.executemany(_ATTEMPT, [(r.id, r.attempts + 1, worker, at) for r in rows])
    if lost:
        taken = [r[0] for r in lost]
        # The previous attempt may have reached the provider: a second hand-off can duplicate.
        db.execute(_AMBIGUOUS.format(ids=marks(len(taken))), (True, *taken))
        add_log(
            conn,
            [
                LogEntry(
                    message_id=m,
                    at=now,
                    status=MessageStatus.SENDING.value,
                    reason=_TAKEN_OVER,
                    detail={"ambiguous": True},
                )
                for m in taken
            ],
        )
    return rows


def round_robin(rows: Sequence[Any], limit: int) -> list[int]:
    """Up to `limit` ids from (id, shop_id) pairs in due order, taking one per shop in turn."""
    queues: dict[int, list[int]] = {}
    for mid, shop_id in rows:
        queues.setdefault(shop_id, []).append(mid)
    if len(queues) <= 1:
        return [r[0] for r in rows[:limit]]
    picked: list[int] = []
    lanes = [q[::-1] for q in queues.values()]
    while len(picked) < limit and lanes:
        for lane in lanes:
            picked.append(lane.pop())
            if len(picked) == limit:
                break
        lanes = [lane for lane in lanes if lane]
    return picked


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """The new state of one claimed message after an attempt."""

    message_id: int
    status: str
    reason: str
    attempt_outcome: str
    due_at: datetime | None = None  # new due time for deferred messages
    provider: str | None = None
    provider_id: int | None = None  #: the shop_providers row, when the shop's own account
    provider_message_id: str | None = None
    ambiguous: bool = False  #: an attempt's outcome was ambiguous: it may have been sent twice
    subject: str | None = None
    body: str | None = None
    segments: int | None = None
    #: where it went, when not where it was planned to (the customer's number changed)
    recipient: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    detail: dict[str, Any] | None = None


_FINISH = """UPDATE messages SET status = ?, reason = ?,
 provider = COALESCE(?, provider), provider_id = COALESCE(?, provider_id),
 ambiguous = (ambiguous OR ?), provider_message_id = COALESCE(?, provider_message_id),
 subject = COALESCE(?, subject), body = COALESCE(?, body), segments = COALESCE(?, segments),
 recipient = COALESCE(?, recipient), sent_at = COALESCE(?, sent_at), due_at = COALESCE(?, due_at),
 billing = COALESCE(?, billing), lease_owner = NULL, lease_until = NULL, updated_at = ?
WHERE id = ? AND lease_owner = ?"""
_FINISH_ATTEMPT = """UPDATE attempts SET finished_at = ?, outcome = ?, provider = ?,
 error_code = ?, error_message = ?
WHERE message_id = ? AND worker = ? AND finished_at IS NULL"""


def finish(
    conn: Connection,
    worker: str,
    now: datetime,
    outcomes: Sequence[Outcome],
    billing: Mapping[int, str] | None = None,
) -> None:
    """Record the outcomes of a batch: message state, attempt, audit trail — in bulk;
    `billing` gives the new billing state of the messages the batch settled
    (`credits.settle`), set with the rest of the row.

    Only messages still leased to this worker are touched, so a worker whose lease was
    taken over cannot overwrite the newer attempt.
    """
    if not outcomes:
        return
    db = Driver(conn)
    at = db.time(now)
    sent = MessageStatus.SENT.value
    billed = billing or {}
    db.executemany(
        _FINISH,
        [
            (o.status, clip(o.reason, REASON_SIZE), o.provider, o.provider_id, o.ambiguous,
             o.provider_message_id, o.subject, o.body, o.segments, o.recipient,
             at if o.status == sent else None, db.time(o.due_at), billed.get(o.message_id),
             at, o.message_id, worker)
            for o in outcomes
        ],
    )  # fmt: skip
    db.executemany(
        _FINISH_ATTEMPT,
        [
            (at, o.attempt_outcome, o.provider, o.error_code,
             (o.error_message or "")[:500] or None, o.message_id, worker)
            for o in outcomes
        ],
    )  # fmt: skip
    add_log(
        conn,
        [
            LogEntry(
                message_id=o.message_id, at=now, status=o.status, reason=o.reason, detail=o.detail
            )
            for o in outcomes
        ],
    )


_RELEASE = """UPDATE messages SET status = ?, lease_owner = NULL, lease_until = NULL,
 attempts = attempts - 1, updated_at = ? WHERE id = ? AND lease_owner = ?"""
_DROP_ATTEMPT = "DELETE FROM attempts WHERE message_id = ? AND worker = ? AND finished_at IS NULL"


def release(
    conn: Connection, worker: str, now: datetime, claimed: Sequence[tuple[int, str]]
) -> None:
    """Give back claims this worker will not send (it is stopping): each message returns to
    its previous status with its due time, and the unstarted attempt is removed."""
    if not claimed:
        return
    db = Driver(conn)
    at = db.time(now)
    db.executemany(_RELEASE, [(status, at, m, worker) for m, status in claimed])
    db.executemany(_DROP_ATTEMPT, [(m, worker) for m, _ in claimed])
    add_log(
        conn,
        [
            LogEntry(
                message_id=m,
                at=now,
                status=status,
                reason="released: the worker stopped before sending it",
            )
            for m, status in claimed
        ],
    )
