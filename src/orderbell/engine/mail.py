"""The e-mail parts of a rendered message: the shop's From (`sender`; the dispatcher sets
it, with the shop's Reply-To, as it builds the message), then (`complete`) the template's
and the event's attachments, and for marketing e-mail the RFC 8058 one-click
List-Unsubscribe headers (transactional e-mail carries none)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection

from orderbell.channels.base import OutgoingMessage
from orderbell.domain.model import Category, Shop
from orderbell.engine.unsubscribe import Links
from orderbell.store import attachments as attachment_store


def sender(shop: Shop) -> str | None:
    """The From of the shop's e-mails: "Name <address>", the address, or only the name
    (then the provider's configured address is used with it)."""
    if shop.email_from and shop.email_from_name:
        return f"{shop.email_from_name} <{shop.email_from}>"
    return shop.email_from or shop.email_from_name


def complete(
    conn: Connection,
    batch: Sequence[OutgoingMessage],
    rows: Mapping[int, Any],
    links: Links | None,
) -> list[OutgoingMessage]:
    """The batch with attachments and unsubscribe headers added (a message with none to
    add is passed on as it is)."""
    # files are looked up only for messages that have some (as claimed: `has_files`), of
    # templates (orderbell's own notices have none)
    ours = [m for m in batch if rows[m.id].template_id is not None and rows[m.id].has_files]
    by_template, by_event = attachment_store.for_sending(
        conn,
        {rows[m.id].template_id for m in ours},
        {rows[m.id].event_id for m in ours if rows[m.id].event_id is not None},
    )
    done: list[OutgoingMessage] = []
    for message in batch:
        row = rows[message.id]
        if row.template_id is None:
            done.append(message)
            continue
        headers = dict(message.headers)
        if row.category == Category.MARKETING and links and row.customer_id is not None:
            headers.update(links.headers(message.shop_id, row.customer_id))
        files = by_template.get(row.template_id, []) + by_event.get(row.event_id, [])
        if not files and headers == message.headers:
            done.append(message)
            continue
        done.append(replace(message, headers=headers, attachments=(*message.attachments, *files)))
    return done
