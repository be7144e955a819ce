"""Templates and their versions. A save that fails validation changes nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from orderbell.api.schemas import TemplateIn
from orderbell.domain.model import Channel, TemplateKind
from orderbell.errors import InvalidInput, NotFound
from orderbell.store.db import new_id
from orderbell.store.schema import rules, template_versions, templates
from orderbell.store.shops import bump_config
from orderbell.store.shops import get as get_shop
from orderbell.templates.sandbox import TemplateSource
from orderbell.templates.validation import validate
from orderbell.templates.worst_case import check_cap


def source_of(data: TemplateIn) -> TemplateSource:
    """The renderable source of a template input."""
    return TemplateSource(
        channel=data.channel, kind=data.kind, body=data.body, subject=data.subject, html=data.html
    )


def _trigger_events(conn: Connection, shop_id: int, template_id: int) -> set[str]:
    rows = conn.execute(
        select(rules.c.definition).where(rules.c.shop_id == shop_id, rules.c.active.is_(True))
    )
    events: set[str] = set()
    for (definition,) in rows:
        if definition["action"]["template_id"] == template_id:
            events.add(definition["trigger"]["event_type"])
    return events


def create(conn: Connection, shop_id: int, data: TemplateIn, now: datetime) -> dict[str, Any]:
    """Validate and store a new template at version 1."""
    source = source_of(data)
    validate(source)
    check_cap(source, get_shop(conn, shop_id))
    template_id = new_id(
        conn.execute(
            templates.insert().values(
                shop_id=shop_id,
                name=data.name,
                kind=data.kind.value,
                channel=data.channel.value,
                locale=data.locale,
                active=data.active,
                version=1,
                created_at=now,
                updated_at=now,
            )
        )
    )
    conn.execute(
        template_versions.insert().values(
            template_id=template_id,
            version=1,
            subject=data.subject,
            body=data.body,
            html=data.html,
            created_at=now,
        )
    )
    bump_config(conn, shop_id)
    return get(conn, shop_id, template_id)


def save_version(
    conn: Connection, shop_id: int, template_id: int, data: TemplateIn, now: datetime
) -> dict[str, Any]:
    """Validate and store a new version; on failure the previous version stays active."""
    current = get(conn, shop_id, template_id)
    if data.channel.value != current["channel"] or data.kind.value != current["kind"]:
        raise InvalidInput("channel and kind of a template cannot change", field="channel")
    source = source_of(data)
    validate(source, event_types=_trigger_events(conn, shop_id, template_id) or None)
    check_cap(source, get_shop(conn, shop_id))
    version = current["version"] + 1
    conn.execute(
        template_versions.insert().values(
            template_id=template_id,
            version=version,
            subject=data.subject,
            body=data.body,
            html=data.html,
            created_at=now,
        )
    )
    conn.execute(
        update(templates)
        .where(templates.c.id == template_id)
        .values(
            name=data.name, locale=data.locale, active=data.active, version=version, updated_at=now
        )
    )
    bump_config(conn, shop_id)
    return get(conn, shop_id, template_id)


#: Templates joined with their active version's texts.
_WITH_ACTIVE_VERSION = select(
    templates,
    template_versions.c.subject,
    template_versions.c.body,
    template_versions.c.html,
).join(
    template_versions,
    (template_versions.c.template_id == templates.c.id)
    & (template_versions.c.version == templates.c.version),
)


def with_versions(conn: Connection, shop_id: int, ids: set[int]) -> list[Any]:
    """Rows of the given templates with their active versions' texts (one query)."""
    if not ids:
        return []
    return list(
        conn.execute(
            _WITH_ACTIVE_VERSION.where(templates.c.shop_id == shop_id, templates.c.id.in_(ids))
        ).all()
    )


def get(conn: Connection, shop_id: int, template_id: int) -> dict[str, Any]:
    """A template with its active version, scoped to the shop."""
    row = conn.execute(
        _WITH_ACTIVE_VERSION.where(templates.c.id == template_id, templates.c.shop_id == shop_id)
    ).first()
    if row is None:
        raise NotFound("template not found", field="template_id")
    return _json(row)


def list_all(conn: Connection, shop_id: int) -> list[dict[str, Any]]:
    """All templates of a shop with their active versions."""
    rows = conn.execute(
        _WITH_ACTIVE_VERSION.where(templates.c.shop_id == shop_id).order_by(templates.c.id)
    )
    return [_json(r) for r in rows]


def source(template: dict[str, Any]) -> TemplateSource:
    """The renderable source of a stored template."""
    return TemplateSource(
        channel=Channel(template["channel"]),
        kind=TemplateKind(template["kind"]),
        body=template["body"],
        subject=template["subject"],
        html=template["html"],
    )


def _json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "kind": row.kind,
        "channel": row.channel,
        "locale": row.locale,
        "active": row.active,
        "version": row.version,
        "subject": row.subject,
        "body": row.body,
        "html": row.html,
        "updated_at": row.updated_at.isoformat(),
    }
