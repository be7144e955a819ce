"""Stored e-mail attachments: a template's static documents and an event's own files."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, select

from orderbell.api.schemas import AttachmentIn
from orderbell.channels.base import Attachment
from orderbell.domain import attachments as files
from orderbell.domain.model import Channel
from orderbell.errors import Conflict, InvalidInput, NotFound
from orderbell.store.db import new_id
from orderbell.store.schema import event_attachments, template_attachments, templates


def _template(conn: Connection, shop_id: int, template_id: int) -> Any:
    row = conn.execute(
        select(templates.c.id, templates.c.channel).where(
            templates.c.id == template_id, templates.c.shop_id == shop_id
        )
    ).first()
    if row is None:
        raise NotFound("template not found", field="template_id")
    return row


def _meta(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "filename": row.filename,
        "content_type": row.content_type,
        "size": row.size,
        "created_at": row.created_at.isoformat(),
    }


_META = (
    template_attachments.c.id,
    template_attachments.c.filename,
    template_attachments.c.content_type,
    func.length(template_attachments.c.data).label("size"),
    template_attachments.c.created_at,
)


def add_to_template(
    conn: Connection, shop_id: int, template_id: int, body: AttachmentIn, now: datetime
) -> dict[str, Any]:
    """Attach a static document to an e-mail template (names are unique per template)."""
    template = _template(conn, shop_id, template_id)
    if template.channel != Channel.EMAIL.value:
        raise InvalidInput("only e-mail templates take attachments", field="template_id")
    existing = conn.execute(
        select(template_attachments.c.filename).where(
            template_attachments.c.template_id == template_id
        )
    ).all()
    if len(existing) >= files.MAX_PER_TEMPLATE:
        raise Conflict(
            f"a template holds at most {files.MAX_PER_TEMPLATE} attachments", field="filename"
        )
    if body.filename.strip() in {r.filename for r in existing}:
        raise Conflict(f"an attachment named {body.filename!r} exists", field="filename")
    attachment_id = new_id(
        conn.execute(
            template_attachments.insert().values(
                template_id=template_id,
                filename=body.filename.strip(),
                content_type=files.check_content_type(body.content_type, "content_type"),
                data=body.data(),
                created_at=now,
            )
        )
    )
    row = conn.execute(select(*_META).where(template_attachments.c.id == attachment_id)).one()
    return _meta(row)


def list_for_template(conn: Connection, shop_id: int, template_id: int) -> list[dict[str, Any]]:
    """A template's attachments (without their contents)."""
    _template(conn, shop_id, template_id)
    rows = conn.execute(
        select(*_META)
        .where(template_attachments.c.template_id == template_id)
        .order_by(template_attachments.c.id)
    )
    return [_meta(r) for r in rows]


def get_file(conn: Connection, shop_id: int, template_id: int, attachment_id: int) -> Any:
    """One template attachment with its contents."""
    _template(conn, shop_id, template_id)
    row = conn.execute(
        select(template_attachments).where(
            template_attachments.c.id == attachment_id,
            template_attachments.c.template_id == template_id,
        )
    ).first()
    if row is None:
        raise NotFound("attachment not found", field="attachment_id")
    return row


def remove(conn: Connection, shop_id: int, template_id: int, attachment_id: int) -> None:
    """Delete one template attachment."""
    _template(conn, shop_id, template_id)
    gone = conn.execute(
        delete(template_attachments).where(
            template_attachments.c.id == attachment_id,
            template_attachments.c.template_id == template_id,
        )
    )
    if gone.rowcount == 0:
        raise NotFound("attachment not found", field="attachment_id")


def add_to_event(
    conn: Connection,
    shop_id: int,
    event_id: int,
    order_id: int | None,
    items: Sequence[AttachmentIn],
    now: datetime,
) -> None:
    """Store an event's files (already validated by the event's schema)."""
    if not items:
        return
    conn.execute(
        event_attachments.insert(),
        [
            {
                "shop_id": shop_id,
                "event_id": event_id,
                "order_id": order_id,
                "filename": item.filename.strip(),
                "content_type": files.check_content_type(item.content_type, "content_type"),
                "data": item.data(),
                "created_at": now,
            }
            for item in items
        ],
    )


def for_sending(
    conn: Connection, template_ids: Collection[int], event_ids: Collection[int]
) -> tuple[dict[int, list[Attachment]], dict[int, list[Attachment]]]:
    """The files of these templates and of these events, for a batch of e-mails."""
    by_template: dict[int, list[Attachment]] = {}
    by_event: dict[int, list[Attachment]] = {}
    if template_ids:
        for r in conn.execute(
            select(template_attachments)
            .where(template_attachments.c.template_id.in_(sorted(template_ids)))
            .order_by(template_attachments.c.id)
        ):
            by_template.setdefault(r.template_id, []).append(_file(r))
    if event_ids:
        for r in conn.execute(
            select(event_attachments)
            .where(event_attachments.c.event_id.in_(sorted(event_ids)))
            .order_by(event_attachments.c.id)
        ):
            by_event.setdefault(r.event_id, []).append(_file(r))
    return by_template, by_event


def _file(row: Any) -> Attachment:
    return Attachment(filename=row.filename, content_type=row.content_type, data=bytes(row.data))
