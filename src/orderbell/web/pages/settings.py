"""Settings: shop details, timezone, holidays and closed dates, quiet hours, SMS text
(transliteration, segment cap), API keys.

Providers (`pages/providers.py`) and users with your own password (`pages/users.py`) have
their own pages.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from orderbell.api.ids import RowId
from orderbell.api.schemas import ApiKeyIn, ShopPatch
from orderbell.domain import calendar
from orderbell.domain.addresses import check_sender_name, parse_email
from orderbell.domain.calendar import local, public_holiday
from orderbell.errors import OrderbellError
from orderbell.store import shops as shop_store
from orderbell.web.core import Me, Posted, Svc, actor, redirect, render
from orderbell.web.forms import Errors, Form

router = APIRouter(prefix="/settings")
SHOP_FIELDS = ("name", "timezone", "country", "locale", "currency", "sms_sender", "email_from")


def _state(row: Any) -> dict[str, Any]:
    return {
        **{k: getattr(row, k) or "" for k in SHOP_FIELDS},
        "quiet_hours": row.quiet_hours or "",
        "transactional_obeys_quiet_hours": row.transactional_obeys_quiet_hours,
        "closed_dates": "\n".join(row.closed_dates or ()),
        **_sms_state(row),
    }


def _sms_state(row: Any) -> dict[str, Any]:
    sms = shop_store.sms_settings(row)
    cap = sms["sms_max_segments"]
    return {**sms, "sms_max_segments": "" if cap is None else str(cap)}


def _holidays(country: str, start: date, days: int = 365) -> list[tuple[date, str]]:
    out = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        name = public_holiday(day, country)
        if name:
            out.append((day, name))
    return out


def _page(
    request: Request,
    svc: Svc,
    me: Me,
    *,
    state: dict[str, Any] | None = None,
    errors: Errors | None = None,
    new_key: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    with svc.engine.connect() as conn:
        row = shop_store.get_row(conn, me.shop_id)
        keys = shop_store.list_keys(conn, me.shop_id)
    today = local(svc.clock.now(), row.timezone).date()
    return render(
        request,
        "settings.html",
        status=status,
        me=me,
        tz=row.timezone,
        errors=errors,
        state=state or _state(row),
        slug=row.slug,
        keys=keys,
        new_key=new_key,
        holidays=_holidays(row.country, today),
    )


@router.get("/")
def settings_page(request: Request, svc: Svc, me: Me) -> Response:
    """The settings page."""
    return _page(request, svc, me)


def _patch_doc(form: Form) -> tuple[dict[str, Any], dict[str, Any]]:
    state: dict[str, Any] = {k: form.get(k).strip() for k in (*SHOP_FIELDS, "quiet_hours")}
    state["transactional_obeys_quiet_hours"] = form.flag("transactional_obeys_quiet_hours")
    state["closed_dates"] = form.get("closed_dates")
    state["sms_transliterate"] = form.flag("sms_transliterate")
    state["sms_max_segments"] = cap = form.get("sms_max_segments").strip()
    dates = [d.strip() for d in state["closed_dates"].replace(",", "\n").split("\n") if d.strip()]
    doc: dict[str, Any] = {
        "name": state["name"],
        "timezone": state["timezone"],
        "country": state["country"].upper(),
        "locale": state["locale"],
        "currency": state["currency"].upper(),
        "sms_sender": state["sms_sender"] or None,
        "email_from": state["email_from"] or None,
        "quiet_hours": state["quiet_hours"] or None,
        "transactional_obeys_quiet_hours": state["transactional_obeys_quiet_hours"],
        "closed_dates": dates,
        "sms_transliterate": state["sms_transliterate"],
        # empty: no cap; anything but digits is left for the model to refuse, naming the field
        "sms_max_segments": (int(cap) if cap.isdecimal() else cap) if cap else None,
    }
    return state, doc


def _domain_checks(doc: dict[str, Any], errors: Errors) -> None:
    """The store's own checks, field by field, so every wrong field is named at once."""
    checks: list[tuple[str, Callable[[Any], object]]] = [
        ("timezone", lambda v: calendar.zone(v, field="timezone")),
        ("country", lambda v: calendar.validate_country(v, field="country")),
        ("sms_sender", lambda v: check_sender_name(v, field="sms_sender")),
        ("email_from", lambda v: parse_email(v, field="email_from")),
    ]
    for name, check in checks:
        if doc.get(name) and not errors.get(name):
            try:
                check(doc[name])
            except OrderbellError as exc:
                errors.add_orderbell(exc)


@router.post("/shop")
def save_shop(request: Request, svc: Svc, me: Me, form: Posted) -> Response:
    """Save the shop's details (validated like PATCH /v1/shop)."""
    state, doc = _patch_doc(form)
    errors = Errors()
    try:
        data = ShopPatch.model_validate(doc)
    except ValidationError as exc:
        errors.add_validation(exc)
    _domain_checks(doc, errors)
    if not errors:
        try:
            with svc.engine.begin() as conn:
                svc.patch_shop(conn, me.shop_id, data, actor=actor(me))
        except OrderbellError as exc:
            errors.add_orderbell(exc)
    if errors:
        # "closed_dates.3" → shown at the closed dates box
        for key in [k for k in errors.by_field if k.startswith("closed_dates.")]:
            message = errors.by_field.pop(key)
            line = int(key.split(".")[1]) + 1
            errors.add("closed_dates", f"line {line}: {message}")
        return _page(request, svc, me, state=state, errors=errors, status=422)
    return redirect(request, "/settings/", "Shop settings saved.")


@router.post("/keys")
def create_key(request: Request, svc: Svc, me: Me, form: Posted) -> Response:
    """Create an API key and show it once."""
    errors = Errors()
    try:
        data = ApiKeyIn(name=form.get("key_name").strip() or "default")
    except ValidationError as exc:
        errors.add_validation(exc, prefix="key_")
        return _page(request, svc, me, errors=errors, status=422)
    with svc.engine.begin() as conn:
        key_id, key = shop_store.create_key(conn, me.shop_id, data.name, svc.clock.now())
    return _page(request, svc, me, new_key={"id": key_id, "name": data.name, "key": key})


@router.post("/keys/{key_id}/revoke")
def revoke_key(request: Request, svc: Svc, me: Me, form: Posted, key_id: RowId) -> Response:
    """Revoke an API key at once."""
    with svc.engine.begin() as conn:
        shop_store.revoke_key(conn, me.shop_id, key_id, svc.clock.now())
    svc.api_keys.clear()  # at once in this process (others: within the cache TTL)
    return redirect(request, "/settings/#keys", "API key revoked.")
