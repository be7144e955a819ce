"""Templates: the list, the editor with its variable picker, and the live preview (htmx)."""

from __future__ import annotations

from typing import Any

import phonenumbers
from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from sqlalchemy import Connection

from orderbell.api.ids import RowId, parse_row_id
from orderbell.api.schemas import TemplateIn
from orderbell.billing import credits
from orderbell.billing.prices import quote
from orderbell.domain import sms_text
from orderbell.domain.model import Channel, Shop, TemplateKind
from orderbell.domain.segments import is_gsm7
from orderbell.errors import OrderbellError, TemplateError
from orderbell.store import shops as shop_store
from orderbell.store import templates as template_store
from orderbell.templates.catalogue import sample_context, variables
from orderbell.templates.validation import render_preview
from orderbell.templates.worst_case import worst_case
from orderbell.web.core import Me, Posted, Svc, redirect, render
from orderbell.web.forms import Errors, Form

router = APIRouter(prefix="/templates")
PARTS = ("subject", "body", "html")


def _catalogue() -> dict[str, list[dict[str, str]]]:
    return {
        kind.value: [
            {"name": v.name, "description": v.description, "example": v.example}
            for v in variables(kind).values()
        ]
        for kind in TemplateKind
    }


def blank(channel: str, kind: str) -> dict[str, Any]:
    """The editor's state for a new template."""
    return {
        "name": "",
        "channel": channel if channel in ("sms", "email") else "sms",
        "kind": kind if kind in ("order", "campaign") else "order",
        "locale": "",
        "subject": "",
        "body": "",
        "html": "",
        "active": True,
    }


def from_stored(t: dict[str, Any]) -> dict[str, Any]:
    """The editor's state for a stored template."""
    return {
        "name": t["name"],
        "channel": t["channel"],
        "kind": t["kind"],
        "locale": t["locale"] or "",
        "subject": t["subject"] or "",
        "body": t["body"],
        "html": t["html"] or "",
        "active": t["active"],
    }


def from_form(form: Form, stored: dict[str, Any] | None = None) -> dict[str, Any]:
    """The editor's state as submitted (channel and kind of a stored template stay)."""
    state: dict[str, Any] = {k: form.get(k) for k in ("name", "channel", "kind", "locale", *PARTS)}
    state["name"] = state["name"].strip()
    state["locale"] = state["locale"].strip()
    state["active"] = form.flag("active")
    if stored is not None:
        state["channel"], state["kind"] = stored["channel"], stored["kind"]
    return state


def to_input(state: dict[str, Any]) -> TemplateIn:
    """The API's input model of an editor state (raises ValidationError)."""
    sms = state["channel"] == "sms"
    return TemplateIn.model_validate(
        {
            "name": state["name"],
            "kind": state["kind"],
            "channel": state["channel"],
            "locale": state["locale"] or None,
            "subject": None if sms else (state["subject"] or None),
            "body": state["body"],
            "html": None if sms else (state["html"] or None),
            "active": state["active"],
        }
    )


def excerpt(state: dict[str, Any], exc: TemplateError) -> dict[str, Any] | None:
    """The line a template error concerns, for showing it with a caret."""
    text = state.get(exc.field or "body") or ""
    if exc.line is None or not text:
        return None
    lines = text.split("\n")
    if not 1 <= exc.line <= len(lines):
        return None
    return {"field": exc.field, "line": exc.line, "text": lines[exc.line - 1], "column": exc.column}


def _example_phone(country: str) -> str | None:
    example = phonenumbers.example_number_for_type(country, phonenumbers.PhoneNumberType.MOBILE)
    if example is None:
        return None
    return phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)


def highlight(text: str) -> list[tuple[str, bool]]:
    """The text in runs, each marked when its characters force UCS-2."""
    runs: list[tuple[str, bool]] = []
    for char in text:
        forcing = not is_gsm7(char)
        if runs and runs[-1][1] == forcing:
            runs[-1] = (runs[-1][0] + char, forcing)
        else:
            runs.append((char, forcing))
    return runs


def preview_of(conn: Connection, shop: Shop, state: dict[str, Any]) -> dict[str, Any]:
    """Render an unsaved template with sample data: text, SMS analysis (as sent, as written,
    transliterated), the worst case against the cap, cost estimate."""
    data = to_input(state)
    source = template_store.source_of(data)
    rendered = render_preview(source, sample_context(data.kind, shop))
    out: dict[str, Any] = {"rendered": rendered, "channel": data.channel.value}
    segments = None
    recipient = None
    if data.channel is Channel.SMS:
        out["sms"] = sms = sms_text.describe(shop, rendered.text)
        segments = sms["segments"]
        recipient = _example_phone(shop.country)
        out["runs"] = highlight(sms["text"])
        out["written_runs"] = highlight(rendered.text)
        try:
            out["worst"] = worst_case(source, shop)
        except TemplateError as exc:
            out["worst_error"] = exc.message
    plan_id = credits.account(conn, shop.id).plan_id
    out["quote"] = quote(conn, shop.id, plan_id, data.channel, recipient, segments)
    out["country"] = shop.country
    return out


def _editor(
    request: Request,
    me: Me,
    state: dict[str, Any],
    *,
    template_id: int | None,
    version: int | None = None,
    errors: Errors | None = None,
    where: dict[str, Any] | None = None,
    tz: str = "UTC",
) -> Response:
    return render(
        request,
        "templates/edit.html",
        status=422 if errors else 200,
        me=me,
        tz=tz,
        errors=errors,
        state=state,
        template_id=template_id,
        version=version,
        catalogue=_catalogue(),
        where=where,
    )


@router.get("/")
def template_list(request: Request, svc: Svc, me: Me) -> Response:
    """The shop's templates."""
    with svc.engine.connect() as conn:
        items = template_store.list_all(conn, me.shop_id)
    return render(request, "templates/list.html", me=me, templates=items)


@router.get("/new")
def new_template(request: Request, me: Me, channel: str = "sms", kind: str = "order") -> Response:
    """The editor for a new template."""
    return _editor(request, me, blank(channel, kind), template_id=None)


@router.post("/preview")
def preview(request: Request, svc: Svc, me: Me, form: Posted) -> Response:
    """The live preview while typing: rendered text, segments, cost — or the first error."""
    template_id = parse_row_id(form.get("template_id"))
    stored = None
    with svc.engine.connect() as conn:
        if template_id is not None:
            stored = template_store.get(conn, me.shop_id, template_id)
        state = from_form(form, stored)
        shop = shop_store.get(conn, me.shop_id)
        errors = Errors()
        result: dict[str, Any] | None = None
        where = None
        try:
            result = preview_of(conn, shop, state)
        except ValidationError as exc:
            errors.add_validation(exc)
        except TemplateError as exc:
            errors.add_orderbell(exc)
            where = excerpt(state, exc)
    return render(request, "templates/_preview.html", me=me, errors=errors, p=result, where=where)


@router.get("/{template_id}")
def edit_template(request: Request, svc: Svc, me: Me, template_id: RowId) -> Response:
    """The editor for a stored template (saving makes a new version)."""
    with svc.engine.connect() as conn:
        stored = template_store.get(conn, me.shop_id, template_id)
    return _editor(
        request, me, from_stored(stored), template_id=template_id, version=stored["version"]
    )


def _save(request: Request, svc: Svc, me: Me, form: Form, template_id: int | None) -> Response:
    stored = None
    if template_id is not None:
        with svc.engine.connect() as conn:
            stored = template_store.get(conn, me.shop_id, template_id)
    state = from_form(form, stored)
    errors = Errors()
    where = None
    version = stored["version"] if stored else None
    try:
        data = to_input(state)
        with svc.engine.begin() as conn:
            now = svc.clock.now()
            if template_id is None:
                saved = template_store.create(conn, me.shop_id, data, now)
            else:
                saved = template_store.save_version(conn, me.shop_id, template_id, data, now)
    except ValidationError as exc:
        errors.add_validation(exc)
    except TemplateError as exc:
        errors.add_orderbell(exc)
        where = excerpt(state, exc)
    except OrderbellError as exc:
        errors.add_orderbell(exc)
    if errors:
        return _editor(
            request,
            me,
            state,
            template_id=template_id,
            version=version,
            errors=errors,
            where=where,
        )
    return redirect(
        request,
        f"/templates/{saved['id']}",
        f"Template “{saved['name']}” saved (version {saved['version']}).",
    )


@router.post("/new")
def create_template(request: Request, svc: Svc, me: Me, form: Posted) -> Response:
    """Create a template (validated like the API does)."""
    return _save(request, svc, me, form, None)


@router.post("/{template_id}")
def save_template(request: Request, svc: Svc, me: Me, form: Posted, template_id: RowId) -> Response:
    """Save a new version; a failed save keeps the previous one."""
    return _save(request, svc, me, form, template_id)
