"""Rules: stored as their validated input document, read back as domain Rules."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from sqlalchemy import Connection, delete, select, update

from orderbell.api.schemas import WEEKDAYS, RuleIn, RulePatch, parse_clock
from orderbell.domain.model import (
    Action,
    OrderConditions,
    Rule,
    TimeConditions,
    Trigger,
)
from orderbell.errors import NotFound, RuleError, TemplateError
from orderbell.store import templates as template_store
from orderbell.store.db import new_id
from orderbell.store.schema import rules
from orderbell.store.shops import bump_config, hour_range
from orderbell.store.shops import get as get_shop
from orderbell.templates.validation import validate
from orderbell.templates.worst_case import check_cap


def to_rule(row_id: int, data: RuleIn) -> Rule:
    """A validated rule document as a domain Rule."""
    cond = data.conditions
    act = data.action
    at_time: time | None = parse_clock(act.at_local_time) if act.at_local_time else None
    return Rule(
        id=row_id,
        name=data.name,
        active=data.active,
        trigger=Trigger(
            event_type=data.trigger.event_type,
            to_status=data.trigger.to_status,
            from_status=data.trigger.from_status,
        ),
        time=TimeConditions(
            weekdays=frozenset(WEEKDAYS.index(d) for d in cond.weekdays)
            if cond.weekdays is not None
            else None,
            hours=tuple(r for r in (hour_range(h) for h in cond.hours) if r is not None),
            holidays=cond.holidays,
        ),
        order=OrderConditions(
            payment_methods=frozenset(p.lower() for p in cond.payment_methods)
            if cond.payment_methods is not None
            else None,
            total_min=cond.total_min,
            total_max=cond.total_max,
            countries=frozenset(c.upper() for c in cond.countries)
            if cond.countries is not None
            else None,
        ),
        action=Action(
            channel=act.channel,
            template_id=act.template_id,
            delay_minutes=act.delay_minutes,
            days_after=act.days_after,
            at_local_time=at_time,
            validity_minutes=act.validity_minutes,
            send_window=hour_range(act.send_window),
            category=act.category,
        ),
        group=data.group,
        priority=data.priority,
    )


def _check_template(conn: Connection, shop_id: int, data: RuleIn, *, linking: bool) -> None:
    """The template must be the shop's, of the rule's channel, and fit the trigger; a newly
    linked SMS template must also fit the shop's segment cap (it may predate the cap)."""
    try:
        template = template_store.get(conn, shop_id, data.action.template_id)
    except NotFound:
        raise RuleError("template not found", field="action.template_id") from None
    if template["channel"] != data.action.channel.value:
        raise RuleError(
            f"template {template['id']} is a {template['channel']} template, "
            f"the rule sends {data.action.channel.value}",
            field="action.template_id",
        )
    # Variables not available at the trigger event are refused now, not at send time.
    source = template_store.source(template)
    validate(source, event_types=[data.trigger.event_type])
    if linking:
        try:
            check_cap(source, get_shop(conn, shop_id))
        except TemplateError as exc:
            message = f"template {template['id']}: {exc.message}"
            raise RuleError(message, field="action.template_id") from None


def _columns(data: RuleIn, now: datetime) -> dict[str, Any]:
    """The rules row for a validated rule document."""
    return {
        "name": data.name,
        "active": data.active,
        "event_type": data.trigger.event_type,
        "group_name": data.group,
        "priority": data.priority,
        "definition": data.model_dump(mode="json"),
        "updated_at": now,
    }


def create(conn: Connection, shop_id: int, data: RuleIn, now: datetime) -> dict[str, Any]:
    """Store a new rule after checking its template."""
    _check_template(conn, shop_id, data, linking=True)
    rule_id = new_id(
        conn.execute(rules.insert().values(shop_id=shop_id, created_at=now, **_columns(data, now)))
    )
    bump_config(conn, shop_id)
    return get(conn, shop_id, rule_id)


def patch(
    conn: Connection, shop_id: int, rule_id: int, changes: RulePatch, now: datetime
) -> dict[str, Any]:
    """Apply a partial update; the result is validated as a whole rule."""
    current = get(conn, shop_id, rule_id)
    document = {k: v for k, v in current.items() if k in RuleIn.model_fields}
    document.update(changes.model_dump(mode="json", exclude_unset=True))
    data = RuleIn.model_validate(document)
    linking = data.action.template_id != current["action"]["template_id"]
    _check_template(conn, shop_id, data, linking=linking)
    conn.execute(
        update(rules)
        .where(rules.c.id == rule_id, rules.c.shop_id == shop_id)
        .values(**_columns(data, now))
    )
    bump_config(conn, shop_id)
    return get(conn, shop_id, rule_id)


def remove(conn: Connection, shop_id: int, rule_id: int) -> None:
    """Delete a rule; its past messages keep their history."""
    result = conn.execute(delete(rules).where(rules.c.id == rule_id, rules.c.shop_id == shop_id))
    if result.rowcount == 0:
        raise NotFound("rule not found", field="rule_id")
    bump_config(conn, shop_id)


def get(conn: Connection, shop_id: int, rule_id: int) -> dict[str, Any]:
    """A rule document by id, scoped to the shop."""
    row = conn.execute(
        select(rules).where(rules.c.id == rule_id, rules.c.shop_id == shop_id)
    ).first()
    if row is None:
        raise NotFound("rule not found", field="rule_id")
    return _json(row)


def list_all(conn: Connection, shop_id: int) -> list[dict[str, Any]]:
    """All rule documents of a shop, in evaluation order."""
    rows = conn.execute(
        select(rules).where(rules.c.shop_id == shop_id).order_by(rules.c.priority, rules.c.id)
    )
    return [_json(r) for r in rows]


def for_event(conn: Connection, shop_id: int, event_type: str) -> list[Rule]:
    """The shop's rules for one event type, as domain Rules (inactive ones included)."""
    rows = conn.execute(
        select(rules.c.id, rules.c.definition)
        .where(rules.c.shop_id == shop_id, rules.c.event_type == event_type)
        .order_by(rules.c.priority, rules.c.id)
    )
    return [to_rule(r.id, RuleIn.model_validate(r.definition)) for r in rows]


def all_for_shop(conn: Connection, shop_id: int) -> list[tuple[str, Rule]]:
    """Every rule of a shop with its event type, in evaluation order (inactive included)."""
    rows = conn.execute(
        select(rules.c.id, rules.c.event_type, rules.c.definition)
        .where(rules.c.shop_id == shop_id)
        .order_by(rules.c.priority, rules.c.id)
    )
    return [(r.event_type, to_rule(r.id, RuleIn.model_validate(r.definition))) for r in rows]


def _json(row: Any) -> dict[str, Any]:
    return {"id": row.id, **row.definition, "updated_at": row.updated_at.isoformat()}
