"""The outbox: planned messages, claims with leases, outcomes and the audit trail."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Connection, and_, bindparam, func, or_, select, update

from orderbell.domain.model import PENDING_STATUSES, MessageStatus
from orderbell.errors import NotFound
from orderbell.store.db import new_id
from orderbell.store.schema import (
    UtcDateTime,
    attempts,
    customers,
    message_log,
    messages,
    orders,
    rules,
    template_versions,
    templates,
)

PENDING = sorted(s.value for s in PENDING_STATUSES)
#: The pending statuses exactly as the partial index ix_messages_pending_due spells them.
#: Rendered as literals: SQLite (and PostgreSQL's generic plans) only use a partial index when
#: the query's WHERE visibly implies the index's, so bound parameters (or another order) turn
#: the claim into a scan and sort of the whole outbox, sent messages included.
_PENDING_INDEXED = ("scheduled", "deferred")
if set(_PENDING_INDEXED) != set(PENDING):  # pragma: no cover - a new pending status
    raise RuntimeError("ix_messages_pending_due must list every pending status")


def _is_pending() -> Any:
    return messages.c.status.in_(
        bindparam("pending_statuses", list(_PENDING_INDEXED), expanding=True, literal_execute=True)
    )


pending_condition = _is_pending  #: "status is pending", spelled so the partial indexes apply

#: Claim order: every transactional message that is due goes before any marketing one, so a
#: shop's campaign never delays another shop's order updates.
CLAIM_PRIORITY = ("transactional", "marketing")
#: Within a category, a claim looks at this many times its size of the oldest due rows and
#: takes them round-robin by shop, so one shop's burst shares each batch with the others.
FAIR_WINDOW = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class LogEntry:
    """One line of a message's audit trail."""

    message_id: int
    at: datetime
    status: str
    reason: str
    detail: dict[str, Any] | None = None


def clip(text: str | None, size: int) -> str | None:
    """Shorten a reason to fit its column, marking the cut."""
    if text is None or len(text) <= size:
        return text
    return text[: size - 1] + "…"


REASON_SIZE = 200  #: messages.reason is String(200)
LOG_REASON_SIZE = 500  #: message_log.reason is String(500)


def add_log(conn: Connection, entries: Sequence[LogEntry]) -> None:
    """Append audit-trail lines."""
    if entries:
        conn.execute(
            message_log.insert(),
            [
                {
                    "message_id": e.message_id,
                    "at": e.at,
                    "status": e.status,
                    "reason": clip(e.reason, LOG_REASON_SIZE),
                    "detail": e.detail,
                }
                for e in entries
            ],
        )


def insert(conn: Connection, values: dict[str, Any]) -> int:
    """Insert one planned message; returns its id."""
    values = {**values, "reason": clip(values.get("reason"), REASON_SIZE)}
    # Values go as parameters, not into the statement: .values(**values) on this wide table
    # rebuilds and re-keys the statement on every call (about 5x the cost of the insert).
    return new_id(conn.execute(messages.insert(), values))


# Columns a worker needs to re-check and send a claimed message, fetched in one join.
_CLAIM_COLUMNS = (
    messages.c.id,
    messages.c.shop_id,
    messages.c.rule_id,
    messages.c.channel,
    messages.c.category,
    messages.c.recipient,
    messages.c.status.label("previous_status"),
    messages.c.due_at,
    messages.c.expires_at,
    messages.c.context,
    messages.c.attempts,
    messages.c.template_id,
    messages.c.event_id,
    messages.c.customer_id,
    templates.c.active.label("template_active"),
    templates.c.version.label("template_version"),
    templates.c.kind.label("template_kind"),
    template_versions.c.subject.label("t_subject"),
    template_versions.c.body.label("t_body"),
    template_versions.c.html.label("t_html"),
    customers.c.phone.label("c_phone"),
    customers.c.email.label("c_email"),
    customers.c.sms_transactional,
    customers.c.sms_marketing,
    customers.c.email_transactional,
    customers.c.email_marketing,
    customers.c.email_opt_out,
    customers.c.sms_opt_out,
    orders.c.status.label("order_status"),
    rules.c.active.label("rule_active"),
    rules.c.definition.label("rule_definition"),
)


def claim(
    conn: Connection,
    *,
    worker: str,
    now: datetime,
    lease_until: datetime,
    limit: int,
    database_time: bool = False,
) -> Sequence[Any]:
    """Lease up to `limit` due messages (and ones whose lease expired) to this worker.

    Each claim records an attempt before any network call. Uses SKIP LOCKED on PostgreSQL;
    on SQLite the transaction is BEGIN IMMEDIATE, so one writer claims at a time. Due
    messages are taken transactional first, then marketing, each shared round-robin between
    shops (see :data:`FAIR_WINDOW`). With `database_time` (PostgreSQL), each row also says
    whether it has expired by the database server's clock (``expired_by_db``), whatever the
    worker's clock says.
    """
    expired = conn.execute(
        select(messages.c.id, messages.c.status)
        .where(messages.c.status == MessageStatus.SENDING.value, messages.c.lease_until < now)
        .order_by(messages.c.lease_until)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    ids = [r.id for r in expired]
    for category in CLAIM_PRIORITY:
        wanted = limit - len(ids)
        if wanted <= 0:
            break
        due = conn.execute(
            select(messages.c.id, messages.c.shop_id)
            .where(_is_pending(), messages.c.category == category, messages.c.due_at <= now)
            .order_by(messages.c.due_at)
            .limit(wanted * FAIR_WINDOW)
            .with_for_update(skip_locked=True)
        ).all()
        ids.extend(round_robin(due, wanted))
    if not ids:
        return []
    columns: tuple[Any, ...] = _CLAIM_COLUMNS
    if database_time:
        columns = (
            *columns,
            and_(
                messages.c.expires_at.is_not(None),
                messages.c.expires_at <= func.clock_timestamp(),
            ).label("expired_by_db"),
        )
    rows = conn.execute(
        select(*columns)
        .select_from(messages)
        .outerjoin(templates, templates.c.id == messages.c.template_id)
        .outerjoin(
            template_versions,
            and_(
                template_versions.c.template_id == templates.c.id,
                template_versions.c.version == templates.c.version,
            ),
        )
        .outerjoin(customers, customers.c.id == messages.c.customer_id)
        .outerjoin(orders, orders.c.id == messages.c.order_id)
        .outerjoin(rules, rules.c.id == messages.c.rule_id)
        .where(messages.c.id.in_(ids))
    ).all()
    conn.execute(
        update(messages)
        .where(messages.c.id.in_(ids))
        .values(
            status=MessageStatus.SENDING.value,
            lease_owner=worker,
            lease_until=lease_until,
            attempts=messages.c.attempts + 1,
            updated_at=now,
        )
    )
    conn.execute(
        attempts.insert(),
        [
            {"message_id": r.id, "number": r.attempts + 1, "worker": worker, "started_at": now}
            for r in rows
        ],
    )
    lost = [r.id for r in expired]
    if lost:
        # The previous attempt may have reached the provider: a second hand-off can duplicate.
        conn.execute(update(messages).where(messages.c.id.in_(lost)).values(ambiguous=True))
        add_log(
            conn,
            [
                LogEntry(
                    message_id=m,
                    at=now,
                    status=MessageStatus.SENDING.value,
                    reason="lease expired: the previous worker stopped mid-attempt; "
                    "outcome of that attempt unknown (ambiguous), trying again",
                    detail={"ambiguous": True},
                )
                for m in lost
            ],
        )
    return rows


def round_robin(rows: Sequence[Any], limit: int) -> list[int]:
    """Up to `limit` ids from rows (id, shop_id) in due order, taking one per shop in turn."""
    queues: dict[int, list[int]] = {}
    for row in rows:
        queues.setdefault(row.shop_id, []).append(row.id)
    if len(queues) == 1:
        return [r.id for r in rows[:limit]]
    picked: list[int] = []
    lanes = [q[::-1] for q in queues.values()]
    while len(picked) < limit and lanes:
        for lane in lanes:
            picked.append(lane.pop())
            if len(picked) == limit:
                break
        lanes = [lane for lane in lanes if lane]
    return picked


def release(
    conn: Connection, worker: str, now: datetime, claimed: Sequence[tuple[int, str]]
) -> None:
    """Give back claims this worker will not send (it is stopping): each message returns to
    its previous status with its due time, and the unstarted attempt is removed."""
    if not claimed:
        return
    conn.execute(
        update(messages)
        .where(messages.c.id == bindparam("b_id"), messages.c.lease_owner == bindparam("b_worker"))
        .values(
            status=bindparam("b_status"),
            lease_owner=None,
            lease_until=None,
            attempts=messages.c.attempts - 1,
            updated_at=now,
        ),
        [{"b_id": m, "b_worker": worker, "b_status": status} for m, status in claimed],
    )
    conn.execute(
        attempts.delete().where(
            attempts.c.message_id == bindparam("b_id"),
            attempts.c.worker == bindparam("b_worker"),
            attempts.c.finished_at.is_(None),
        ),
        [{"b_id": m, "b_worker": worker} for m, _ in claimed],
    )
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
    error_code: str | None = None
    error_message: str | None = None
    detail: dict[str, Any] | None = None


def finish(conn: Connection, worker: str, now: datetime, outcomes: Sequence[Outcome]) -> None:
    """Record the outcomes of a batch: message state, attempt, audit trail — in bulk.

    Only messages still leased to this worker are touched, so a worker whose lease was
    taken over cannot overwrite the newer attempt.
    """
    if not outcomes:
        return
    params = [
        {
            "b_id": o.message_id,
            "b_worker": worker,
            "b_status": o.status,
            "b_reason": clip(o.reason, REASON_SIZE),
            "b_provider": o.provider,
            "b_provider_id": o.provider_id,
            "b_pid": o.provider_message_id,
            "b_ambiguous": o.ambiguous,
            "b_subject": o.subject,
            "b_body": o.body,
            "b_segments": o.segments,
            "b_sent_at": now if o.status == MessageStatus.SENT.value else None,
            "b_due": o.due_at,
        }
        for o in outcomes
    ]
    conn.execute(
        update(messages)
        .where(messages.c.id == bindparam("b_id"), messages.c.lease_owner == bindparam("b_worker"))
        .values(
            status=bindparam("b_status"),
            reason=bindparam("b_reason"),
            provider=func.coalesce(bindparam("b_provider"), messages.c.provider),
            provider_id=func.coalesce(
                bindparam("b_provider_id", type_=messages.c.provider_id.type),
                messages.c.provider_id,
            ),
            ambiguous=or_(messages.c.ambiguous, bindparam("b_ambiguous", type_=Boolean)),
            provider_message_id=func.coalesce(bindparam("b_pid"), messages.c.provider_message_id),
            subject=func.coalesce(bindparam("b_subject"), messages.c.subject),
            body=func.coalesce(bindparam("b_body"), messages.c.body),
            segments=func.coalesce(bindparam("b_segments"), messages.c.segments),
            sent_at=func.coalesce(bindparam("b_sent_at"), messages.c.sent_at),
            due_at=func.coalesce(
                bindparam("b_due", type_=messages.c.due_at.type), messages.c.due_at
            ),
            lease_owner=None,
            lease_until=None,
            updated_at=now,
        ),
        params,
    )
    conn.execute(
        update(attempts)
        .where(
            attempts.c.message_id == bindparam("b_id"),
            attempts.c.worker == bindparam("b_worker"),
            attempts.c.finished_at.is_(None),
        )
        .values(
            finished_at=now,
            outcome=bindparam("b_outcome"),
            provider=bindparam("b_provider"),
            error_code=bindparam("b_code"),
            error_message=bindparam("b_err"),
        ),
        [
            {
                "b_id": o.message_id,
                "b_worker": worker,
                "b_outcome": o.attempt_outcome,
                "b_provider": o.provider,
                "b_code": o.error_code,
                "b_err": (o.error_message or "")[:500] or None,
            }
            for o in outcomes
        ],
    )
    add_log(
        conn,
        [
            LogEntry(
                message_id=o.message_id, at=now, status=o.status, reason=o.reason, detail=o.detail
            )
            for o in outcomes
        ],
    )


def next_due(conn: Connection) -> datetime | None:
    """The earliest due time among pending messages (for the worker's sleep)."""
    value = conn.execute(select(func.min(messages.c.due_at)).where(_is_pending())).scalar()
    if value is None:
        return None
    return UtcDateTime().process_result_value(value, conn.dialect)


def get(conn: Connection, shop_id: int, message_id: int) -> dict[str, Any]:
    """A message with its audit trail and attempts, scoped to the shop."""
    row = conn.execute(
        select(messages).where(messages.c.id == message_id, messages.c.shop_id == shop_id)
    ).first()
    if row is None:
        raise NotFound("message not found", field="message_id")
    trail = conn.execute(
        select(message_log)
        .where(message_log.c.message_id == message_id)
        .order_by(message_log.c.at, message_log.c.id)
    )
    tries = conn.execute(
        select(attempts).where(attempts.c.message_id == message_id).order_by(attempts.c.number)
    )
    return {
        **as_json(row),
        "context": row.context,
        "audit": [
            {"at": t.at.isoformat(), "status": t.status, "reason": t.reason, "detail": t.detail}
            for t in trail
        ],
        "attempts": [
            {
                "number": a.number,
                "worker": a.worker,
                "provider": a.provider,
                "started_at": a.started_at.isoformat(),
                "finished_at": a.finished_at.isoformat() if a.finished_at else None,
                "outcome": a.outcome,
                "error_code": a.error_code,
                "error_message": a.error_message,
            }
            for a in tries
        ],
    }


def search(
    conn: Connection,
    shop_id: int,
    *,
    status: str | None = None,
    channel: str | None = None,
    rule_id: int | None = None,
    customer_id: int | None = None,
    order_id: int | None = None,
    before: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """A page of the shop's messages, newest first, filtered."""
    stmt = select(messages).where(messages.c.shop_id == shop_id)
    filters: Iterable[tuple[Any, Any]] = (
        (messages.c.status, status),
        (messages.c.channel, channel),
        (messages.c.rule_id, rule_id),
        (messages.c.customer_id, customer_id),
        (messages.c.order_id, order_id),
    )
    for column, value in filters:
        if value is not None:
            stmt = stmt.where(column == value)
    if before is not None:
        stmt = stmt.where(messages.c.id < before)
    rows = conn.execute(stmt.order_by(messages.c.id.desc()).limit(limit))
    return [as_json(r) for r in rows]


def as_json(row: Any) -> dict[str, Any]:
    """A messages row as the API shows it."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": row.id,
        "event_id": row.event_id,
        "rule_id": row.rule_id,
        "customer_id": row.customer_id,
        "order_id": row.order_id,
        "template_id": row.template_id,
        "channel": row.channel,
        "category": row.category,
        "recipient": row.recipient,
        "status": row.status,
        "reason": row.reason,
        "due_at": iso(row.due_at),
        "expires_at": iso(row.expires_at),
        "sent_at": iso(row.sent_at),
        "subject": row.subject,
        "body": row.body,
        "provider": row.provider,
        "provider_id": row.provider_id,
        "provider_message_id": row.provider_message_id,
        "delivered_at": iso(row.delivered_at),
        "delivery_code": row.delivery_code,
        "ambiguous": bool(row.ambiguous),
        "attempts": row.attempts,
        "segments": row.segments,
        "cost": f"{row.cost:.4f}" if row.cost is not None else None,
        "funding": row.funding,
        "billing": row.billing,
        "created_at": iso(row.created_at),
    }
