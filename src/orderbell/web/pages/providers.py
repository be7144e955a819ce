"""Settings → Providers: the shop's own gateway accounts, in failover order.

Every change goes through the same store functions as ``/v1/providers`` (which run each
kind's own ``validate()``); this page only turns the form into their input and their errors
into messages next to the inputs. Credentials are write-only here as in the API.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from sqlalchemy import Connection

from orderbell.api.ids import RowId
from orderbell.api.provider_schemas import ProviderIn, ProviderPatch
from orderbell.channels import registry
from orderbell.errors import NotFound, OrderbellError
from orderbell.settings import Settings
from orderbell.store import providers as provider_store
from orderbell.web import provider_form
from orderbell.web.core import Me, Posted, Svc, redirect, render, shop_tz
from orderbell.web.forms import Errors, Form

router = APIRouter(prefix="/settings/providers")
ACCOUNT_FIELDS = ("name", "channel", "rate_per_second", "concurrency")
HEALTH_HOURS = 24
CHANNEL_NAMES = {"sms": "SMS", "email": "e-mail"}


def _defaults(settings: Settings) -> list[dict[str, str]]:
    """The machine-wide providers (from the environment), with secrets never shown."""
    email = (
        f"SMTP {settings.smtp_host}:{settings.smtp_port} ({settings.smtp_security}), "
        f"from {settings.smtp_from}"
        if settings.email_provider == "smtp"
        else "console (writes to the outbox file; nothing leaves the machine)"
    )
    return [
        {
            "channel": "sms",
            "provider": f"{settings.sms_provider} (writes to the outbox file)",
            "secret": "",
        },
        {
            "channel": "email",
            "provider": email,
            "secret": "password set" if settings.smtp_password else "",
        },
    ]


def _channels(kind: registry.Kind) -> str:
    return ", ".join(sorted(CHANNEL_NAMES[c.value] for c in kind.channels))


def _kind(name: str) -> registry.Kind:
    try:
        return registry.load(name)
    except OrderbellError as exc:
        raise NotFound(f"there is no provider kind {name!r} to set up") from exc


@router.get("/")
def providers_page(request: Request, svc: Svc, me: Me) -> Response:
    """The shop's accounts by channel and failover order, and the machine-wide defaults."""
    now = svc.clock.now()
    with svc.engine.connect() as conn:
        accounts = provider_store.list_all(conn, me.shop_id, svc.settings.public_url)
        outcomes = provider_store.recent_outcomes(
            conn, me.shop_id, now - timedelta(hours=HEALTH_HOURS)
        )
    kinds = {k.name: k for k in registry.configurable()}
    for account in accounts:
        kind = kinds.get(account["kind"])
        account["title"] = kind.title if kind else account["kind"]
        account["secret_fields"] = sorted(kind.secret_fields) if kind else account["secrets_set"]
        account["outcomes"] = outcomes.get(account["id"], {})
        cooling = account["cooling_until"]
        account["cooling"] = cooling if cooling and datetime.fromisoformat(cooling) > now else None
    by_channel: dict[str, list[dict[str, Any]]] = {}
    for account in accounts:
        by_channel.setdefault(account["channel"], []).append(account)
    return render(
        request,
        "providers/list.html",
        me=me,
        tz=shop_tz(svc, me.shop_id),
        by_channel=by_channel,
        defaults=_defaults(svc.settings),
        kind_options=[(k.name, f"{k.title} ({_channels(k)})") for k in kinds.values()],
        health_hours=HEALTH_HOURS,
    )


def _form_page(
    request: Request,
    svc: Svc,
    me: Me,
    kind: registry.Kind,
    *,
    account: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
    errors: Errors | None = None,
    status: int = 200,
) -> Response:
    if state is None:
        state = {"active": True} if account is None else {
            **{k: account[k] or "" for k in ACCOUNT_FIELDS},
            "active": account["active"],
            **provider_form.shown(kind, account["settings"]),
        }  # fmt: skip
    return render(
        request,
        "providers/edit.html",
        status=status,
        me=me,
        tz=shop_tz(svc, me.shop_id),
        errors=errors,
        kind=kind,
        inputs=provider_form.inputs(kind),
        account=account,
        state=state,
    )


def _state(form: Form, kind: registry.Kind) -> dict[str, Any]:
    return {
        **{k: form.get(k).strip() for k in ACCOUNT_FIELDS},
        "active": form.flag("active"),
        **provider_form.echoed(form, kind),
    }


def _refused(errors: Errors, exc: OrderbellError, kind: registry.Kind) -> None:
    errors.add(provider_form.error_field(exc.field, kind), exc.message)


def _doc(form: Form, settings: dict[str, Any]) -> dict[str, Any]:
    """What a new and a changed account share, as the API's models take it."""
    return {
        "name": form.get("name").strip(),
        "active": form.flag("active"),
        "settings": settings,
        "rate_per_second": form.opt("rate_per_second"),
        "concurrency": form.opt("concurrency"),
    }


Model = TypeVar("Model", ProviderIn, ProviderPatch)


def _write(
    svc: Svc,
    kind: registry.Kind,
    model: type[Model],
    doc: dict[str, Any],
    errors: Errors,
    store: Callable[[Connection, Model], object],
) -> None:
    """Validate `doc` with the API's model and save it with the store's function, as the API
    does; what is refused goes into `errors`, under the input it belongs next to."""
    try:
        data = model.model_validate(doc)
    except ValidationError as exc:
        errors.add_validation(exc)
        if model is ProviderIn:
            try:  # name the bad settings too, in the same answer
                kind.validate(doc["settings"])
            except OrderbellError as bad:
                _refused(errors, bad, kind)
    if not errors:
        try:
            with svc.engine.begin() as conn:
                store(conn, data)
        except OrderbellError as exc:
            _refused(errors, exc, kind)


@router.get("/new")
def new_account(request: Request, svc: Svc, me: Me, kind: str = "") -> Response:
    """The form for a new account of one kind (picked on the list page)."""
    return _form_page(request, svc, me, _kind(kind))


@router.post("/")
def add_account(request: Request, svc: Svc, me: Me, form: Posted) -> Response:
    """Add an account; the store and the kind's validate() decide, errors go to the inputs."""
    kind = _kind(form.get("kind"))
    errors = Errors()
    settings = provider_form.settings_from(form, kind, errors)
    doc = {**_doc(form, settings), "kind": kind.name, "channel": form.opt("channel")}
    _write(
        svc,
        kind,
        ProviderIn,
        doc,
        errors,
        lambda conn, data: provider_store.create(
            conn, me.shop_id, data, svc.clock.now(), svc.settings.public_url
        ),
    )
    if errors:
        state = _state(form, kind)
        return _form_page(request, svc, me, kind, state=state, errors=errors, status=422)
    return redirect(request, "/settings/providers/", f"Provider account “{doc['name']}” added.")


def _account(svc: Svc, me: Me, provider_id: int) -> dict[str, Any]:
    with svc.engine.connect() as conn:
        return provider_store.get(conn, me.shop_id, provider_id, svc.settings.public_url)


@router.get("/{provider_id}")
def edit_account(request: Request, svc: Svc, me: Me, provider_id: RowId) -> Response:
    """The form to change an account (credentials: set or not, never their values)."""
    account = _account(svc, me, provider_id)
    return _form_page(request, svc, me, _kind(account["kind"]), account=account)


@router.post("/{provider_id}")
def save_account(request: Request, svc: Svc, me: Me, form: Posted, provider_id: RowId) -> Response:
    """Save an account's changes; a credential left empty keeps its stored value."""
    account = _account(svc, me, provider_id)
    kind = _kind(account["kind"])
    errors = Errors()
    settings = provider_form.settings_from(form, kind, errors, stored=account["settings"])
    doc = _doc(form, settings)
    _write(
        svc,
        kind,
        ProviderPatch,
        doc,
        errors,
        lambda conn, data: provider_store.patch(
            conn, me.shop_id, provider_id, data, svc.clock.now(), svc.settings.public_url
        ),
    )
    if errors:
        state = _state(form, kind)
        return _form_page(
            request, svc, me, kind, account=account, state=state, errors=errors, status=422
        )
    return redirect(request, "/settings/providers/", f"Provider account “{doc['name']}” saved.")


@router.post("/{provider_id}/move")
def move_account(request: Request, svc: Svc, me: Me, form: Posted, provider_id: RowId) -> Response:
    """Move an account one place up or down in its channel's failover order."""
    step = -1 if form.get("direction") == "up" else 1
    with svc.engine.begin() as conn:
        provider_store.move(conn, me.shop_id, provider_id, step, svc.clock.now())
    return redirect(request, f"/settings/providers/#account-{provider_id}", "Failover order saved.")


@router.post("/{provider_id}/remove")
def remove_account(
    request: Request, svc: Svc, me: Me, form: Posted, provider_id: RowId
) -> Response:
    """Remove an account; messages sent through it keep their history."""
    account = _account(svc, me, provider_id)
    with svc.engine.begin() as conn:
        provider_store.remove(conn, me.shop_id, provider_id)
    return redirect(
        request, "/settings/providers/", f"Provider account “{account['name']}” removed."
    )
