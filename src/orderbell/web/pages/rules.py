"""Rules: the list with active toggles, the editor, and the inline simulator."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from orderbell.api.ids import RowId
from orderbell.api.schemas import WEEKDAYS, RuleIn, RulePatch
from orderbell.domain.model import EventType
from orderbell.errors import OrderbellError, TemplateError
from orderbell.store import rules as rule_store
from orderbell.store import templates as template_store
from orderbell.web.core import Me, Posted, Svc, is_htmx, redirect, render, shop_tz
from orderbell.web.forms import Errors, Form
from orderbell.web.pages.simulator import simulator_defaults

router = APIRouter(prefix="/rules")
EVENT_TYPES = [e.value for e in EventType]
DAY_LABELS = dict(zip(WEEKDAYS, ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"), strict=True))
HOLIDAY_CHOICES = [
    ("any", "Any day: holidays do not matter"),
    ("exclude", "Never on public holidays or the shop's closed days"),
    ("only", "Only on public holidays or the shop's closed days"),
]
MIN_HOUR_ROWS = 2


def _minutes(text: str) -> int | None:
    try:
        hour, minute = (int(p) for p in text.strip().split(":"))
    except ValueError:
        return None
    if not (0 <= hour <= 24 and 0 <= minute <= 59):
        return None
    return min(hour * 60 + minute, 1440)


def bar_segments(ranges: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Where each hour range lies on a 24-hour bar, in percent (midnight-crossing split)."""
    out: list[dict[str, Any]] = []
    for start_text, end_text in ranges:
        start, end = _minutes(start_text), _minutes(end_text)
        if start is None or end is None:
            continue
        start, end = start % 1440, end % 1440
        if start == end:
            pieces = [(0, 1440)]  # start == end: the whole day
        elif end == 0:
            pieces = [(start, 1440)]  # until midnight
        elif end > start:
            pieces = [(start, end)]
        else:
            pieces = [(start, 1440), (0, end)]  # crosses midnight
        label = f"{start_text.strip()}–{end_text.strip()}"
        out.extend({"left": a / 14.4, "width": (b - a) / 14.4, "label": label} for a, b in pieces)
    return out


def blank() -> dict[str, Any]:
    """The editor's state for a new rule."""
    return {
        "name": "",
        "active": True,
        "event_type": "order.created",
        "to_status": "",
        "from_status": "",
        "weekdays": [],
        "hours": [("", "")] * MIN_HOUR_ROWS,
        "holidays": "any",
        "payment_methods": "",
        "total_min": "",
        "total_max": "",
        "countries": "",
        "channel": "sms",
        "template_id": "",
        "category": "transactional",
        "delay_minutes": "0",
        "days_after": "",
        "at_local_time": "",
        "validity_minutes": "",
        "send_window": "",
        "group": "",
        "priority": "100",
    }


def from_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """The editor's state for a stored rule document."""
    cond, act, trig = doc["conditions"], doc["action"], doc["trigger"]
    hours = [tuple(h.split("-", 1)) for h in cond.get("hours") or []]
    hours += [("", "")] * max(0, MIN_HOUR_ROWS - len(hours))

    def text(value: Any) -> str:
        return "" if value is None else str(value)

    return {
        "name": doc["name"],
        "active": doc["active"],
        "event_type": trig["event_type"],
        "to_status": text(trig.get("to_status")),
        "from_status": text(trig.get("from_status")),
        "weekdays": cond.get("weekdays") or [],
        "hours": hours,
        "holidays": cond.get("holidays", "any"),
        "payment_methods": ", ".join(cond.get("payment_methods") or []),
        "total_min": text(cond.get("total_min")),
        "total_max": text(cond.get("total_max")),
        "countries": ", ".join(cond.get("countries") or []),
        "channel": act["channel"],
        "template_id": text(act["template_id"]),
        "category": act.get("category", "transactional"),
        "delay_minutes": text(act.get("delay_minutes", 0)),
        "days_after": text(act.get("days_after")),
        "at_local_time": text(act.get("at_local_time")),
        "validity_minutes": text(act.get("validity_minutes")),
        "send_window": text(act.get("send_window")),
        "group": text(doc.get("group")),
        "priority": text(doc.get("priority", 100)),
    }


#: editor inputs named like the document path their errors come back with
INPUT_NAMES = {
    **{k: f"action.{k}" for k in ("channel", "template_id", "category", "delay_minutes")},
    **{k: f"action.{k}" for k in ("days_after", "at_local_time", "validity_minutes")},
    "send_window": "action.send_window",
    **{k: f"conditions.{k}" for k in ("payment_methods", "countries", "total_min", "total_max")},
}


def from_form(form: Form) -> dict[str, Any]:
    """The editor's state as submitted."""
    state: dict[str, Any] = {
        k: form.get(INPUT_NAMES.get(k, k)).strip()
        for k in blank()
        if k not in ("weekdays", "hours", "active")
    }
    state["active"] = form.flag("active")
    state["weekdays"] = [d for d in form.getlist("weekdays") if d in WEEKDAYS]
    starts, ends = form.getlist("hours_from"), form.getlist("hours_to")
    state["hours"] = list(zip(starts, ends, strict=False)) or [("", "")]
    return state


def _list(text: str) -> list[str] | None:
    items = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    return items or None


def document(state: dict[str, Any], errors: Errors) -> tuple[dict[str, Any], list[int]]:
    """The RuleIn document of an editor state; returns it and the row of each kept range."""
    rows: list[int] = []
    hours: list[str] = []
    for i, (start, end) in enumerate(state["hours"]):
        start, end = start.strip(), end.strip()
        if not start and not end:
            continue
        if not start or not end:
            errors.add(f"hours.{i}", "enter both the start and the end, e.g. 15:00 and 00:00")
            continue
        rows.append(i)
        hours.append(f"{start}-{end}")

    def opt(key: str) -> str | None:
        return state[key] or None

    if not state["template_id"]:
        errors.add("action.template_id", "pick the template this rule sends")

    action: dict[str, Any] = {
        "channel": state["channel"],
        "template_id": state["template_id"] or 0,
        "category": state["category"],
        "delay_minutes": state["delay_minutes"] or 0,
        "days_after": opt("days_after"),
        "at_local_time": opt("at_local_time"),
        "validity_minutes": opt("validity_minutes"),
        "send_window": opt("send_window"),
    }
    doc = {
        "name": state["name"],
        "active": state["active"],
        "trigger": {
            "event_type": state["event_type"],
            "to_status": opt("to_status"),
            "from_status": opt("from_status"),
        },
        "conditions": {
            "weekdays": state["weekdays"] or None,
            "hours": hours,
            "holidays": state["holidays"],
            "payment_methods": _list(state["payment_methods"]),
            "total_min": opt("total_min"),
            "total_max": opt("total_max"),
            "countries": _list(state["countries"]),
        },
        "action": action,
        "group": opt("group"),
        "priority": state["priority"] or 100,
    }
    return doc, rows


def _editor(
    request: Request,
    svc: Svc,
    me: Me,
    state: dict[str, Any],
    *,
    rule_id: int | None,
    errors: Errors | None = None,
    rows: list[int] | None = None,
) -> Response:
    errors = errors or Errors()
    # errors of kept ranges are reported by their index in the document; show them on their row
    for k, row in enumerate(rows or []):
        message = errors.by_field.pop(f"conditions.hours.{k}", None)
        if message:
            errors.add(f"hours.{row}", message)
    with svc.engine.connect() as conn:
        templates = template_store.list_all(conn, me.shop_id)
    tz = shop_tz(svc, me.shop_id)
    return render(
        request,
        "rules/edit.html",
        status=422 if errors else 200,
        me=me,
        tz=tz,
        errors=errors,
        state=state,
        rule_id=rule_id,
        templates=templates,
        event_types=EVENT_TYPES,
        days=DAY_LABELS,
        holiday_choices=HOLIDAY_CHOICES,
        segments=bar_segments(state["hours"]),
        sim=simulator_defaults(svc, me.shop_id, tz),
    )


@router.get("/")
def rule_list(request: Request, svc: Svc, me: Me) -> Response:
    """Every rule in evaluation order, with its active switch."""
    with svc.engine.connect() as conn:
        items = rule_store.list_all(conn, me.shop_id)
        templates = {t["id"]: t for t in template_store.list_all(conn, me.shop_id)}
    tz = shop_tz(svc, me.shop_id)
    return render(
        request,
        "rules/list.html",
        me=me,
        tz=tz,
        rules=[_row(r, templates) for r in items],
        sim=simulator_defaults(svc, me.shop_id, tz),
        event_types=EVENT_TYPES,
    )


def _row(doc: dict[str, Any], templates: dict[int, dict[str, Any]]) -> dict[str, Any]:
    state = from_doc(doc)
    days = doc["conditions"].get("weekdays")
    template = templates.get(doc["action"]["template_id"])
    return {
        "id": doc["id"],
        "doc": doc,
        "days": "every day" if not days else ", ".join(DAY_LABELS[d] for d in days),
        "hours": [f"{a}–{b}" for a, b in state["hours"] if a],
        "segments": bar_segments(state["hours"]) or [{"left": 0, "width": 100, "label": "all day"}],
        "template": template["name"] if template else f"#{doc['action']['template_id']}",
    }


@router.get("/new")
def new_rule(request: Request, svc: Svc, me: Me) -> Response:
    """The editor for a new rule."""
    return _editor(request, svc, me, blank(), rule_id=None)


@router.get("/{rule_id}")
def edit_rule(request: Request, svc: Svc, me: Me, rule_id: RowId) -> Response:
    """The editor for a stored rule."""
    with svc.engine.connect() as conn:
        doc = rule_store.get(conn, me.shop_id, rule_id)
    return _editor(request, svc, me, from_doc(doc), rule_id=rule_id)


def _save(request: Request, svc: Svc, me: Me, form: Form, rule_id: int | None) -> Response:
    state = from_form(form)
    errors = Errors()
    doc, rows = document(state, errors)
    try:
        data = RuleIn.model_validate(doc)
    except ValidationError as exc:
        errors.add_validation(exc)
        return _editor(request, svc, me, state, rule_id=rule_id, errors=errors, rows=rows)
    if errors:
        return _editor(request, svc, me, state, rule_id=rule_id, errors=errors, rows=rows)
    try:
        with svc.engine.begin() as conn:
            now = svc.clock.now()
            if rule_id is None:
                saved = rule_store.create(conn, me.shop_id, data, now)
            else:
                patch = RulePatch.model_validate(data.model_dump(mode="json"))
                saved = rule_store.patch(conn, me.shop_id, rule_id, patch, now)
    except TemplateError as exc:
        errors.add(
            "action.template_id", f"this template cannot be used with this trigger: {exc.message}"
        )
        return _editor(request, svc, me, state, rule_id=rule_id, errors=errors, rows=rows)
    except OrderbellError as exc:
        errors.add_orderbell(exc)
        return _editor(request, svc, me, state, rule_id=rule_id, errors=errors, rows=rows)
    return redirect(request, "/rules/", f"Rule “{saved['name']}” saved.")


@router.post("/new")
def create_rule(request: Request, svc: Svc, me: Me, form: Posted) -> Response:
    """Create a rule from the editor."""
    return _save(request, svc, me, form, None)


@router.post("/{rule_id}")
def update_rule(request: Request, svc: Svc, me: Me, form: Posted, rule_id: RowId) -> Response:
    """Save the editor over a stored rule."""
    return _save(request, svc, me, form, rule_id)


@router.post("/{rule_id}/toggle")
def toggle_rule(request: Request, svc: Svc, me: Me, form: Posted, rule_id: RowId) -> Response:
    """Switch a rule active or passive."""
    with svc.engine.begin() as conn:
        current = rule_store.get(conn, me.shop_id, rule_id)
        doc = rule_store.patch(
            conn, me.shop_id, rule_id, RulePatch(active=not current["active"]), svc.clock.now()
        )
        templates = {t["id"]: t for t in template_store.list_all(conn, me.shop_id)}
    if is_htmx(request):
        return render(request, "rules/_row.html", me=me, r=_row(doc, templates))
    state = "active" if doc["active"] else "passive"
    return redirect(request, "/rules/", f"Rule “{doc['name']}” is now {state}.")


@router.post("/{rule_id}/delete")
def delete_rule(request: Request, svc: Svc, me: Me, form: Posted, rule_id: RowId) -> Response:
    """Delete a rule; its messages keep their history."""
    with svc.engine.begin() as conn:
        name = rule_store.get(conn, me.shop_id, rule_id)["name"]
        rule_store.remove(conn, me.shop_id, rule_id)
    return redirect(request, "/rules/", f"Rule “{name}” deleted.")
