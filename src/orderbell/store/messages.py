"""The outbox: planned messages, claims with leases, outcomes and the audit trail."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from orderbell.domain.model import PENDING_STATUSES, Category, MessageStatus
from orderbell.errors import NotFound
from orderbell.store.driver import Driver
from orderbell.store.schema import (
    attempts,
    message_log,
    messages,
)

PENDING = sorted(s.value for s in PENDING_STATUSES)
#: The pending statuses exactly as the partial index ix_messages_pending_category_due spells
#: them.
#: Rendered as literals: SQLite (and PostgreSQL's generic plans) only use a partial index when
#: the query's WHERE visibly implies the index's, so bound parameters (or another order) turn
#: the claim into a scan and sort of the whole outbox, sent messages included.
_PENDING_INDEXED = ("scheduled", "deferred")
if set(_PENDING_INDEXED) != set(PENDING):  # pragma: no cover - a new pending status
    raise RuntimeError("ix_messages_pending_category_due must list every pending status")


def _is_pending() -> Any:
    return messages.c.status.in_(
        bindparam("pending_statuses", list(_PENDING_INDEXED), expanding=True, literal_execute=True)
    )


pending_condition = _is_pending  #: "status is pending", spelled so the partial indexes apply


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
    """Append audit-trail lines (on the driver's cursor: the dispatcher writes one a message)."""
    if not entries:
        return
    db = Driver(conn)
    db.executemany(
        _LOG,
        [
            (e.message_id, db.time(e.at), e.status, clip(e.reason, LOG_REASON_SIZE),
             db.json(e.detail))
            for e in entries
        ],
    )  # fmt: skip


_LOG = "INSERT INTO message_log (message_id, at, status, reason, detail) VALUES (?, ?, ?, ?, ?)"


def insert(conn: Connection, values: dict[str, Any]) -> int:
    """Insert one planned message; returns its id."""
    return Driver(conn).insert(
        messages, {**values, "reason": clip(values.get("reason"), REASON_SIZE)}
    )


def set_status(
    conn: Connection,
    message_id: int,
    now: datetime,
    status: MessageStatus,
    reason: str,
    due_at: datetime | None = None,
    **columns: Any,
) -> None:
    """Move a message (not leased to a worker) to a status, with a line in its audit trail."""
    values: dict[str, Any] = {
        **columns,
        "status": status.value,
        "reason": clip(reason, REASON_SIZE),
        "updated_at": now,
    }
    if due_at is not None:
        values["due_at"] = due_at
    conn.execute(update(messages).where(messages.c.id == message_id).values(**values))
    add_log(conn, [LogEntry(message_id=message_id, at=now, status=status.value, reason=reason)])


#: The earliest pending message of each category: one probe of the pending index, which is
#: ordered by (category, due_at), per category. Scalar subqueries with ORDER BY ... LIMIT 1
#: cost PostgreSQL less planning than min() aggregates (each lookup is planned afresh: a
#: rollback drops psycopg's prepared statements).
_FIRST_DUE = select(
    *(
        select(messages.c.due_at)
        .where(_is_pending(), messages.c.category == category.value)
        .order_by(messages.c.due_at)
        .limit(1)
        .scalar_subquery()
        for category in Category
    )
)


def next_due(conn: Connection) -> datetime | None:
    """The earliest due time among pending messages (for the worker's sleep)."""
    firsts = [value for value in conn.execute(_FIRST_DUE).one() if value is not None]
    return min(firsts, default=None)


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
