"""Customers: search and filters, consent, order history, and manual / bulk sends."""

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from sqlalchemy import Select, and_, false, func, or_, select

from orderbell.api.ids import RowId, RowIdFilter, parse_row_id
from orderbell.api.schemas import CustomerConsentIn, CustomerWrite
from orderbell.billing import credits
from orderbell.domain.model import TemplateKind
from orderbell.engine import manual
from orderbell.errors import InvalidInput, NotFound, OrderbellError
from orderbell.store import customers as customer_store
from orderbell.store import messages as message_store
from orderbell.store import shops as shop_store
from orderbell.store import templates as template_store
from orderbell.store.schema import customers, orders
from orderbell.web.core import Me, Posted, Svc, is_htmx, redirect, render, shop_tz
from orderbell.web.forms import Errors, Form

router = APIRouter(prefix="/customers")
PAGE = 100
PREVIEW_ROWS = 50
CONSENT_FILTERS = [
    ("", "Everyone"),
    ("sms_ok", "SMS allowed (has a phone, not opted out)"),
    ("sms_out", "Opted out of SMS"),
    ("email_ok", "E-mail allowed (has an address, not opted out)"),
    ("email_out", "Opted out of e-mail"),
    ("marketing", "Agreed to marketing (SMS or e-mail)"),
]
CONSENT_LABELS = {
    "sms_transactional": "SMS about orders",
    "sms_marketing": "SMS marketing",
    "email_transactional": "E-mail about orders",
    "email_marketing": "E-mail marketing",
}


def matching(shop_id: int, q: str, consent: str) -> Select[Any]:
    """The shop's customers matching a search text and a consent filter."""
    stmt = select(customers).where(customers.c.shop_id == shop_id)
    text = q.strip().lower()
    if text:
        like = f"%{text}%"
        stmt = stmt.where(
            or_(
                func.lower(customers.c.name).like(like),
                func.lower(customers.c.email).like(like),
                customers.c.phone.like(like),
                func.lower(customers.c.external_id).like(like),
            )
        )
    c = customers.c
    conditions = {
        "sms_ok": and_(c.phone.is_not(None), c.sms_transactional.is_(True)),
        "sms_out": c.sms_transactional.is_(False),
        "email_ok": and_(c.email.is_not(None), c.email_transactional.is_(True)),
        "email_out": c.email_transactional.is_(False),
        "marketing": or_(c.sms_marketing.is_(True), c.email_marketing.is_(True)),
    }
    if consent in conditions:
        stmt = stmt.where(conditions[consent])
    elif consent:
        stmt = stmt.where(false())
    return stmt


@router.get("/")
def customer_list(
    request: Request,
    svc: Svc,
    me: Me,
    q: str = "",
    consent: str = "",
    after: RowIdFilter = None,
) -> Response:
    """Search and filter customers; tick them to send a template."""
    q, consent = q[:200], consent[:20]
    with svc.engine.connect() as conn:
        stmt = matching(me.shop_id, q, consent)
        total = conn.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
        page = stmt.order_by(customers.c.id).limit(PAGE)
        if after:
            page = page.where(customers.c.id > after)
        rows = conn.execute(page).all()
        ids = [r.id for r in rows]
        order_counts: dict[int, int] = dict(
            conn.execute(
                select(orders.c.customer_id, func.count())
                .where(orders.c.shop_id == me.shop_id, orders.c.customer_id.in_(ids))
                .group_by(orders.c.customer_id)
            ).all()
        )
        templates = [t for t in template_store.list_all(conn, me.shop_id) if t["active"]]
    return render(
        request,
        "customers/list.html",
        me=me,
        tz=shop_tz(svc, me.shop_id),
        customers=[customer_store.as_json(r) for r in rows],
        order_counts=order_counts,
        total=total,
        q=q,
        consent=consent,
        filters=CONSENT_FILTERS,
        templates=templates,
        next_after=ids[-1] if len(ids) == PAGE else None,
        new=_blank_customer(),
    )


def _blank_customer() -> dict[str, Any]:
    return {
        "id": "",
        "name": "",
        "phone": "",
        "email": "",
        "locale": "",
        "sms_transactional": True,
        "sms_marketing": False,
        "email_transactional": True,
        "email_marketing": False,
    }


def _selection(conn: Any, me: Me, form: Form) -> list[int]:
    """The ticked customers, or every customer matching the filter when asked."""
    if form.flag("all_matching"):
        stmt = matching(me.shop_id, form.get("q"), form.get("consent"))
        ids = [r.id for r in conn.execute(stmt.order_by(customers.c.id))]
    else:
        ids = sorted(set(form.ints("ids")))
    if not ids:
        raise InvalidInput("tick at least one customer", field="ids")
    known = conn.execute(
        select(func.count()).where(customers.c.shop_id == me.shop_id, customers.c.id.in_(ids))
    ).scalar_one()
    if known != len(ids):
        raise InvalidInput("a ticked customer is not one of your customers", field="ids")
    if len(ids) > manual.MAX_RECIPIENTS:
        raise InvalidInput(
            f"{len(ids)} customers: at most {manual.MAX_RECIPIENTS} per send", field="ids"
        )
    return ids


def _extra(form: Form) -> dict[str, str]:
    return {k: form.get(k).strip()[:200] for k in ("promotion_name", "promo_code") if form.get(k)}


def _template(conn: Any, me: Me, form: Form) -> dict[str, Any]:
    template_id = parse_row_id(form.get("template_id"))
    if template_id is None:
        raise InvalidInput("pick a template", field="template_id")
    return template_store.get(conn, me.shop_id, template_id)


@router.post("/bulk/preview")
def bulk_preview(request: Request, svc: Svc, me: Me, form: Posted) -> Response:
    """Each message as it would be sent, with its cost, the skipped ones and the total."""
    errors = Errors()
    context: dict[str, Any] = {}
    try:
        with svc.engine.connect() as conn:
            ids = _selection(conn, me, form)
            template = _template(conn, me, form)
            if template["kind"] == TemplateKind.CAMPAIGN.value and not _extra(form):
                raise InvalidInput(
                    "a campaign template needs a promotion name or a promo code",
                    field="promotion_name",
                )
            shop = shop_store.get(conn, me.shop_id)
            planned = manual.plan_manual(
                conn,
                shop,
                template,
                ids,
                extra=_extra(form),
                now=svc.clock.now(),
                renderer=svc.renderer,
            )
            credit = credits.summary(conn, shop.id, svc.clock.now())
    except OrderbellError as exc:
        errors.add_orderbell(exc)
    else:
        sendable = [m for m in planned if m.sendable]
        total = sum((m.quote.cost for m in sendable if m.quote), Decimal(0))
        context = {
            "credit": credit,
            # a hint only: package allowances may still cover some of it
            "short_of_credit": credit["mode"] == "prepaid" and total > Decimal(credit["available"]),
            "template": template,
            "planned": planned[:PREVIEW_ROWS],
            "more": max(0, len(planned) - PREVIEW_ROWS),
            "ids": ids,
            "sending": len(sendable),
            "skipped": len(planned) - len(sendable),
            "total_cost": total,
            "extra": _extra(form),
            "nonce": secrets.token_urlsafe(16),
        }
    return render(
        request,
        "customers/_bulk_preview.html",
        me=me,
        tz=shop_tz(svc, me.shop_id),
        errors=errors,
        **context,
    )


@router.post("/bulk/send")
def bulk_send(request: Request, svc: Svc, me: Me, form: Posted) -> Response:
    """Plan the messages into the outbox (once per nonce); the worker sends them."""
    nonce = form.get("nonce")
    if not nonce or len(nonce) > 64:
        raise InvalidInput("the send form is incomplete; preview again", field="nonce")
    with svc.engine.begin() as conn:
        ids = _selection(conn, me, form)
        template = _template(conn, me, form)
        event_id = manual.send_manual(
            conn,
            shop_store.get(conn, me.shop_id),
            template,
            ids,
            extra=_extra(form),
            key=f"{me.user_id}:{nonce}",
            actor=me.email,
            now=svc.clock.now(),
            renderer=svc.renderer,
            billing=svc.settings.billing,
        )
    if is_htmx(request):
        return _progress(request, svc, me, event_id)
    return redirect(request, f"/customers/bulk/{event_id}")


def _progress(request: Request, svc: Svc, me: Me, event_id: int) -> Response:
    with svc.engine.connect() as conn:
        counts = manual.progress(conn, me.shop_id, event_id)
    if not counts["total"]:
        raise NotFound("no such send", field="send")
    done = counts["total"] - counts["in_flight"]
    sent = counts.get("sent", 0) + counts.get("delivered", 0)
    page = "customers/_progress.html" if is_htmx(request) else "customers/progress.html"
    return render(
        request,
        page,
        me=me,
        event_id=event_id,
        counts=counts,
        done=done,
        sent=sent,
        skipped=counts.get("suppressed", 0),
        percent=round(100 * done / counts["total"]),
    )


@router.get("/bulk/{event_id}")
def bulk_progress(request: Request, svc: Svc, me: Me, event_id: RowId) -> Response:
    """How far a send is: a progress bar the page polls until every message is done."""
    return _progress(request, svc, me, event_id)


@router.post("/new")
def create_customer(request: Request, svc: Svc, me: Me, form: Posted) -> Response:
    """Add a customer by hand."""
    values = {k: form.get(k).strip() for k in ("id", "name", "phone", "email", "locale")}
    consent = {k: form.flag(k) for k in CONSENT_LABELS}
    errors = Errors()
    try:
        data = CustomerWrite.model_validate(
            {**{k: v or None for k, v in values.items()}, "id": values["id"], "consent": consent}
        )
        with svc.engine.begin() as conn:
            shop = shop_store.get(conn, me.shop_id)
            created = customer_store.create(conn, shop, data, svc.clock.now())
    except ValidationError as exc:
        errors.add_validation(exc)
    except OrderbellError as exc:
        errors.add_orderbell(exc)
    if errors:
        return render(
            request,
            "customers/new.html",
            status=422,
            me=me,
            errors=errors,
            new={**values, **consent},
        )
    return redirect(request, f"/customers/{created['id']}", f"Customer {data.id} added.")


@router.get("/new")
def new_customer(request: Request, me: Me) -> Response:
    """The form to add a customer."""
    return render(request, "customers/new.html", me=me, new=_blank_customer())


@router.get("/{customer_id}")
def customer_page(request: Request, svc: Svc, me: Me, customer_id: RowId) -> Response:
    """One customer: contact, consent, orders and the messages they got."""
    with svc.engine.connect() as conn:
        customer = customer_store.get(conn, me.shop_id, customer_id)
        order_rows = conn.execute(
            select(orders)
            .where(orders.c.shop_id == me.shop_id, orders.c.customer_id == customer_id)
            .order_by(orders.c.state_at.desc())
            .limit(100)
        ).all()
        sent = message_store.search(conn, me.shop_id, customer_id=customer_id, limit=50)
    return render(
        request,
        "customers/detail.html",
        me=me,
        tz=shop_tz(svc, me.shop_id),
        c=customer,
        orders=order_rows,
        messages=sent,
        consent_labels=CONSENT_LABELS,
    )


@router.post("/{customer_id}/consent")
def set_consent(request: Request, svc: Svc, me: Me, form: Posted, customer_id: RowId) -> Response:
    """Opt a customer in or out per channel and category."""
    data = CustomerConsentIn(**{k: form.flag(k) for k in CONSENT_LABELS})
    with svc.engine.begin() as conn:
        customer_store.set_consent(conn, me.shop_id, customer_id, data, svc.clock.now())
    return redirect(request, f"/customers/{customer_id}", "Consent saved.")
