"""Inbound messages: stored with the customer and their latest order; STOP and START obeyed.

A reply that is only an opt-out keyword (any case, surrounding spaces or punctuation,
full-width forms, diacritics) opts the number out of marketing SMS, or of all SMS when the
shop's ``settings.stop_scope`` is ``"all"``, in the same transaction as the callback — and
queues exactly one confirmation SMS, only when the opt-out is new (a re-delivered callback
is recognised by its provider message id and changes nothing). START / UNSTOP clear it.
The opt-out lives in ``customers.sms_opt_out``, apart from the consent flags, so START
restores exactly the consent the customer had.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from orderbell.channels.base import Inbound
from orderbell.domain.addresses import parse_phone
from orderbell.domain.model import Channel, MessageStatus
from orderbell.errors import InvalidInput
from orderbell.store import messages as message_store
from orderbell.store.db import new_id
from orderbell.store.providers import Account
from orderbell.store.schema import customers, inbound_messages, orders, shops

log = structlog.get_logger("orderbell.inbound")

STOP_WORDS = frozenset(
    {
        "STOP",
        "STOPALL",
        "UNSUBSCRIBE",
        "END",
        "QUIT",
        "CANCEL",
        "OPTOUT",
        "REVOKE",
        "NIE",  # Polish (with STOP)
        "RET",  # Turkish
        "IPTAL",  # Turkish İPTAL
        "ODHLASIT",  # Czech ODHLÁSIT (with STOP)
    }
)
START_WORDS = frozenset({"START", "UNSTOP"})
SCOPES = ("marketing", "all")
_EDGES = re.compile(r"^[\W_]+|[\W_]+$")
DEFAULT_STOP_TEXT = (
    "{shop}: you will no longer receive {what} SMS from us. Reply START to opt back in."
)


def intent(text: str) -> str | None:
    """ "stop", "start" or None for a reply's text."""
    folded = unicodedata.normalize("NFKC", text)
    folded = "".join(
        c for c in unicodedata.normalize("NFKD", folded) if not unicodedata.combining(c)
    )
    word = _EDGES.sub("", folded).upper().replace("-", "").replace(" ", "")
    if len(word) > 16:
        return None
    if word in STOP_WORDS:
        return "stop"
    if word in START_WORDS:
        return "start"
    return None


def phone_candidates(sender: str, country: str | None) -> list[str]:
    """E.164 forms a sender may stand for: with a "+" added, or national in the shop's
    country. Kannel and many gateways deliver "48600100200" without the "+"."""
    raw = sender.strip()
    if not raw:
        return []
    tries: list[tuple[str, str | None]]
    if raw.startswith("+"):
        tries = [(raw, None)]
    else:
        digits = re.sub(r"\D", "", raw)
        intl = "+" + (digits[2:] if digits.startswith("00") else digits)
        tries = [(intl, None), (raw, country)]
    found: list[str] = []
    for text, region in tries:
        try:
            e164 = parse_phone(text, region, field="sender").e164
        except InvalidInput:
            continue
        if e164 not in found:
            found.append(e164)
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class Received:
    """What one inbound message did."""

    inbound_id: int | None
    duplicate: bool = False
    intent: str | None = None
    changed: bool = False  #: the opt-out state changed
    confirmation_id: int | None = None


def receive(conn: Connection, account: Account, message: Inbound, now: datetime) -> Received:
    """Store an inbound message and act on STOP / START (in the caller's transaction)."""
    pid = message.provider_message_id
    if pid and _seen(conn, account.id, pid):
        return Received(inbound_id=None, duplicate=True)
    shop = conn.execute(
        select(shops.c.id, shops.c.name, shops.c.country, shops.c.settings).where(
            shops.c.id == account.shop_id
        )
    ).one()
    numbers = phone_candidates(message.sender, shop.country)
    matched = (
        conn.execute(
            select(customers.c.id, customers.c.phone, customers.c.sms_opt_out)
            .where(customers.c.shop_id == shop.id, customers.c.phone.in_(numbers))
            .order_by(customers.c.updated_at.desc(), customers.c.id.desc())
        ).all()
        if numbers
        else []
    )
    sender = matched[0].phone if matched else (numbers[0] if numbers else message.sender)
    order_id = _latest_order(conn, [c.id for c in matched])
    kind = intent(message.text)
    try:
        with conn.begin_nested():
            inbound_id = new_id(
                conn.execute(
                    inbound_messages.insert().values(
                        shop_id=shop.id,
                        provider_id=account.id,
                        channel=account.channel.value,
                        sender=sender[:320],
                        recipient=(message.recipient or None),
                        text=message.text,
                        provider_message_id=pid,
                        customer_id=matched[0].id if matched else None,
                        order_id=order_id,
                        intent=kind,
                        received_at=message.received_at or now,
                    )
                )
            )
    except IntegrityError:  # the same callback, concurrently
        return Received(inbound_id=None, duplicate=True)
    log.info("inbound_received", provider_id=account.id, matched=bool(matched), intent=kind)
    if kind is None or not sender.startswith("+"):
        return Received(inbound_id=inbound_id, intent=kind)
    settings: dict[str, Any] = shop.settings or {}
    if kind == "start":
        changed = _set_opt_out(conn, [c.id for c in matched if c.sms_opt_out], None, now)
        return Received(inbound_id=inbound_id, intent=kind, changed=changed)
    wanted = settings.get("stop_scope")
    scope: str = wanted if isinstance(wanted, str) and wanted in SCOPES else "marketing"
    if not matched:  # remember the opt-out of a number we do not know yet
        customer_id = _customer_for(conn, shop.id, sender, now)
        targets, customer = [customer_id], customer_id
    else:
        targets = [c.id for c in matched if c.sms_opt_out not in (scope, "all")]
        customer = matched[0].id
    changed = _set_opt_out(conn, targets, scope, now)
    confirmation = None
    if changed:
        confirmation = _confirm(conn, shop, customer, sender, scope, settings, now)
    return Received(
        inbound_id=inbound_id, intent=kind, changed=changed, confirmation_id=confirmation
    )


def _seen(conn: Connection, provider_id: int, pid: str) -> bool:
    return (
        conn.execute(
            select(inbound_messages.c.id).where(
                inbound_messages.c.provider_id == provider_id,
                inbound_messages.c.provider_message_id == pid,
            )
        ).first()
        is not None
    )


def _latest_order(conn: Connection, customer_ids: list[int]) -> int | None:
    if not customer_ids:
        return None
    value = conn.execute(
        select(orders.c.id)
        .where(orders.c.customer_id.in_(customer_ids))
        .order_by(orders.c.created_at.desc(), orders.c.id.desc())
        .limit(1)
    ).scalar()
    return int(value) if value is not None else None


def _customer_for(conn: Connection, shop_id: int, phone: str, now: datetime) -> int:
    key = f"phone:{phone}"
    row = conn.execute(
        select(customers.c.id).where(customers.c.shop_id == shop_id, customers.c.external_id == key)
    ).first()
    if row is not None:
        return int(row.id)
    return new_id(
        conn.execute(
            customers.insert().values(
                shop_id=shop_id, external_id=key, phone=phone, created_at=now, updated_at=now
            )
        )
    )


def _set_opt_out(conn: Connection, ids: list[int], scope: str | None, now: datetime) -> bool:
    if not ids:
        return False
    conn.execute(
        update(customers)
        .where(customers.c.id.in_(ids))
        .values(sms_opt_out=scope, sms_opt_out_at=now, updated_at=now)
    )
    return True


def _confirm(
    conn: Connection,
    shop: Any,
    customer_id: int,
    phone: str,
    scope: str,
    settings: dict[str, Any],
    now: datetime,
) -> int:
    """Queue the one confirmation SMS: a transactional system message through the outbox."""
    template = settings.get("stop_confirmation_text")
    what = "marketing" if scope == "marketing" else "any"
    if not isinstance(template, str) or not template.strip():
        template = DEFAULT_STOP_TEXT
    try:
        text = template.format(shop=shop.name, what=what)
    except (KeyError, IndexError, ValueError):
        text = DEFAULT_STOP_TEXT.format(shop=shop.name, what=what)
    message_id = message_store.insert(
        conn,
        {
            "shop_id": shop.id,
            "customer_id": customer_id,
            "channel": Channel.SMS.value,
            "category": "transactional",
            "recipient": phone,
            "status": MessageStatus.SCHEDULED.value,
            "reason": "stop confirmation",
            "due_at": now,
            "context": {"_system": "stop_confirmation", "_text": text},
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
                status=MessageStatus.SCHEDULED.value,
                reason=f"confirmation of STOP: opted out of {what} SMS",
            )
        ],
    )
    return message_id
