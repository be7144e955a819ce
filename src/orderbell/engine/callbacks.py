"""Applying what providers call back with: delivery receipts and inbound messages.

Receipts move a sent message to delivered / undelivered / failed (an ACCEPTED receipt is an
intermediate step: recorded, no change). A receipt is matched by (account, provider message
id), else by our message id — always within the account's own shop. Every receipt is stored
in ``delivery_receipts``; one that matches nothing (unknown id, another shop's message)
changes nothing and stays unmatched. One that arrives before the send response (the message
is still ``sending``) waits there until the dispatcher records the provider message id
(:func:`reconcile_sent`), the callback endpoint takes a second look right after committing
(:func:`reconcile_receipts`: the send may have been recorded in between; gateways such
as Kannel report within milliseconds) or a worker's sweep finds it (:func:`reconcile_pending`).

Billing: a message that fails after submission is refunded unless the shop's account says
failures after submission are charged (``credits.refund_after_submission`` decides).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, Connection, and_, or_, select, update

from orderbell.billing import credits
from orderbell.channels.base import DeliveryState, Inbound, Receipt
from orderbell.domain.model import MessageStatus
from orderbell.engine import inbound as inbound_engine
from orderbell.store import claims
from orderbell.store import messages as message_store
from orderbell.store.db import new_id
from orderbell.store.providers import Account
from orderbell.store.schema import delivery_receipts, messages, shop_providers

log = structlog.get_logger("orderbell.callbacks")

_FINAL = {
    DeliveryState.DELIVERED: MessageStatus.DELIVERED,
    DeliveryState.UNDELIVERED: MessageStatus.UNDELIVERED,
    DeliveryState.FAILED: MessageStatus.FAILED,
}
#: statuses in which a receipt must wait: the send response has not been recorded yet
_WAITING = frozenset({"sending", "scheduled", "deferred", "held"})
SWEEP_HORIZON = timedelta(days=2)


@dataclass(frozen=True, slots=True, kw_only=True)
class Applied:
    """What one callback changed."""

    receipts: int = 0
    matched: int = 0
    waiting: int = 0
    inbound: int = 0
    duplicates: int = 0
    opted_out: int = 0
    opted_in: int = 0
    #: the stored receipts whose message was still being sent (see reconcile_receipts)
    waiting_ids: tuple[int, ...] = ()

    def as_json(self) -> dict[str, int]:
        """The summary the callback endpoint answers with."""
        return {k: getattr(self, k) for k in self.__slots__ if k != "waiting_ids"}


def apply(
    conn: Connection, account: Account, items: Sequence[Receipt | Inbound], now: datetime
) -> Applied:
    """Apply one callback's receipts and inbound messages in the caller's transaction."""
    counts = dict.fromkeys((k for k in Applied.__slots__ if k != "waiting_ids"), 0)
    waiting: list[int] = []
    for item in items:
        if isinstance(item, Receipt):
            counts["receipts"] += 1
            state, receipt_id = _receive(conn, account, item, now)
            if state == "matched":
                counts["matched"] += 1
            elif state == "waiting":
                counts["waiting"] += 1
                waiting.append(receipt_id)
        else:
            outcome = inbound_engine.receive(conn, account, item, now)
            counts["inbound"] += 0 if outcome.duplicate else 1
            counts["duplicates"] += 1 if outcome.duplicate else 0
            counts["opted_out"] += 1 if outcome.intent == "stop" and outcome.changed else 0
            counts["opted_in"] += 1 if outcome.intent == "start" and outcome.changed else 0
    return Applied(**counts, waiting_ids=tuple(waiting))


def _match(
    conn: Connection, shop_id: int, provider_id: int, pid: str | None, message_id: int | None
) -> Any:
    columns = (
        messages.c.id,
        messages.c.status,
        messages.c.ambiguous,
        messages.c.provider_id,
    )
    if pid:
        row = conn.execute(
            select(*columns).where(
                messages.c.provider_id == provider_id, messages.c.provider_message_id == pid
            )
        ).first()
        if row is not None:
            return row
    if message_id is not None:
        # our id echoed back: only for a message this account sent (or whose send is not
        # recorded yet), so one account's reports never finish another account's messages
        return conn.execute(
            select(*columns).where(
                messages.c.id == message_id,
                messages.c.shop_id == shop_id,
                or_(messages.c.provider_id == provider_id, messages.c.provider_id.is_(None)),
            )
        ).first()
    return None


def _receive(
    conn: Connection, account: Account, receipt: Receipt, now: datetime
) -> tuple[str, int]:
    row = _match(conn, account.shop_id, account.id, receipt.provider_message_id, receipt.message_id)
    receipt_id = new_id(
        conn.execute(
            delivery_receipts.insert().values(
                shop_id=account.shop_id,
                provider_id=account.id,
                provider_message_id=receipt.provider_message_id,
                message_id=row.id if row is not None else None,
                state=receipt.state.value,
                code=(receipt.code or "")[:64] or None,
                at=receipt.at,
                received_at=now,
                applied=False,
            )
        )
    )
    if row is None:
        log.info("receipt_unmatched", provider_id=account.id, state=receipt.state.value)
        return "unmatched", receipt_id
    if row.status in _WAITING:
        return "waiting", receipt_id
    _apply(conn, row, receipt.state, receipt.code, receipt.at, account.name, now)
    _mark(conn, [receipt_id])
    return "matched", receipt_id


def _mark(conn: Connection, receipt_ids: list[int]) -> None:
    if receipt_ids:
        conn.execute(
            update(delivery_receipts)
            .where(delivery_receipts.c.id.in_(receipt_ids))
            .values(applied=True)
        )


def _apply(
    conn: Connection,
    row: Any,
    state: DeliveryState,
    code: str | None,
    at: datetime | None,
    provider: str,
    now: datetime,
) -> None:
    """Move one message forward by a receipt; statuses never move back."""
    code = (code or "")[:64] or None
    said = f" ({code})" if code else ""
    if state is DeliveryState.ACCEPTED:
        message_store.add_log(
            conn,
            [
                message_store.LogEntry(
                    message_id=row.id,
                    at=now,
                    status=row.status,
                    reason=f"receipt from {provider}: accepted by the network{said}",
                    detail={"receipt": state.value, "code": code},
                )
            ],
        )
        return
    target = _FINAL[state]
    movable = row.status == MessageStatus.SENT.value or (
        # a message given up after ambiguous outcomes that in fact went out
        row.status == MessageStatus.FAILED.value
        and row.ambiguous
        and target is MessageStatus.DELIVERED
    )
    if not movable:
        return
    when = at or now
    reason = {
        MessageStatus.DELIVERED: f"delivered: {provider} confirmed delivery{said}",
        MessageStatus.UNDELIVERED: f"undelivered: {provider} could not deliver it{said}",
        MessageStatus.FAILED: f"failed after submission: {provider} reported{said or ' an error'}",
    }[target]
    changed = conn.execute(
        update(messages)
        .where(messages.c.id == row.id, messages.c.status == row.status)
        .values(
            status=target.value,
            reason=message_store.clip(reason, message_store.REASON_SIZE),
            delivered_at=when if target is MessageStatus.DELIVERED else None,
            delivery_code=code,
            updated_at=now,
        )
    ).rowcount
    if not changed:
        return
    if target is not MessageStatus.DELIVERED and credits.refund_after_submission(
        conn, row.id, now, f"receipt:{provider}"
    ):
        reason += "; refunded"
    message_store.add_log(
        conn,
        [
            message_store.LogEntry(
                message_id=row.id,
                at=now,
                status=target.value,
                reason=reason,
                detail={"receipt": state.value, "code": code, "at": when.isoformat()},
            )
        ],
    )


def _apply_stored(conn: Connection, receipts: Sequence[Any], now: datetime) -> int:
    """Apply stored receipts (oldest first) whose message has left `sending`."""
    done: list[int] = []
    for r in sorted(receipts, key=lambda r: r.id):
        row = _match(conn, r.shop_id, r.provider_id, r.provider_message_id, r.message_id)
        if row is None or row.status in _WAITING:
            continue
        if r.message_id is None:
            conn.execute(
                update(delivery_receipts)
                .where(delivery_receipts.c.id == r.id)
                .values(message_id=row.id)
            )
        _apply(conn, row, DeliveryState(r.state), r.code, r.at, r.provider_name, now)
        done.append(r.id)
    _mark(conn, done)
    return len(done)


_STORED = (
    delivery_receipts.c.id,
    delivery_receipts.c.shop_id,
    delivery_receipts.c.provider_id,
    delivery_receipts.c.provider_message_id,
    delivery_receipts.c.message_id,
    delivery_receipts.c.state,
    delivery_receipts.c.code,
    delivery_receipts.c.at,
    shop_providers.c.name.label("provider_name"),
)


def reconcile_sent(conn: Connection, outcomes: Sequence[claims.Outcome], now: datetime) -> int:
    """After a batch is recorded: apply receipts that arrived before its send responses."""
    sent = [
        o for o in outcomes if o.provider_id is not None and o.status == MessageStatus.SENT.value
    ]
    if not sent:
        return 0
    ids = [o.message_id for o in sent]
    accounts = {o.provider_id for o in sent}
    pids = [o.provider_message_id for o in sent if o.provider_message_id]
    match: ColumnElement[bool] = delivery_receipts.c.message_id.in_(ids)
    if pids:
        match = or_(
            match,
            and_(
                delivery_receipts.c.provider_id.in_(accounts),
                delivery_receipts.c.provider_message_id.in_(pids),
            ),
        )
    rows = conn.execute(
        select(*_STORED)
        .join(shop_providers, shop_providers.c.id == delivery_receipts.c.provider_id)
        .where(delivery_receipts.c.applied.is_(False), match)
    ).all()
    return _apply_stored(conn, rows, now) if rows else 0


def reconcile_receipts(conn: Connection, receipt_ids: Sequence[int], now: datetime) -> int:
    """Apply these stored receipts if their message has left `sending` since they came."""
    if not receipt_ids:
        return 0
    rows = conn.execute(
        select(*_STORED)
        .join(shop_providers, shop_providers.c.id == delivery_receipts.c.provider_id)
        .where(delivery_receipts.c.id.in_(receipt_ids), delivery_receipts.c.applied.is_(False))
    ).all()
    return _apply_stored(conn, rows, now) if rows else 0


def reconcile_pending(
    conn: Connection,
    now: datetime,
    limit: int = 500,
    *,
    provider_id: int | None = None,
    horizon: timedelta = SWEEP_HORIZON,
) -> int:
    """Apply recent receipts still waiting for their message (a sweep, or one account's)."""
    query = (
        select(*_STORED)
        .join(shop_providers, shop_providers.c.id == delivery_receipts.c.provider_id)
        .where(
            delivery_receipts.c.applied.is_(False),
            delivery_receipts.c.received_at > now - horizon,
        )
        .order_by(delivery_receipts.c.id)
        .limit(limit)
    )
    if provider_id is not None:
        query = query.where(delivery_receipts.c.provider_id == provider_id)
    rows = conn.execute(query).all()
    return _apply_stored(conn, rows, now) if rows else 0
