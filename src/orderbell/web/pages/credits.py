"""Credits: the balance, allowances and packages, the prices that apply, the ledger and a
month's statement (also as CSV); where shops manage their own billing, top-ups and packages.
The credit settings a shop may change (its cap, low-balance notices, and where it manages
billing, whether failures are charged) as `PATCH /v1/credits/settings` allows them.

Every change goes through the billing functions the API and the CLI use; the form's inputs
are checked first with their `parse_*` validators, so every wrong input is named at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection

from orderbell.api.ids import parse_row_id
from orderbell.api.schemas import CreditSettingsIn, PackageIn
from orderbell.billing import credits, manage
from orderbell.compose import Services
from orderbell.domain.addresses import parse_email
from orderbell.domain.calendar import local
from orderbell.errors import Forbidden, InvalidInput, OrderbellError
from orderbell.store import rules as rule_store
from orderbell.store import shops as shop_store
from orderbell.web.core import Me, Posted, Svc, actor, credit_text, redirect, render
from orderbell.web.forms import FORM_ERROR, Errors

T = TypeVar("T")
B = TypeVar("B")
M = TypeVar("M", bound=BaseModel)
router = APIRouter(prefix="/credits")
PAGE = 50  #: ledger entries per page
#: The package form's inputs: the API's fields (`PackageIn`), named with this prefix.
PACKAGE = "package_"
PACKAGE_FIELDS = ("name", "channel", "allowance", "carry_over", "carry_cap", "carry_months",
                  "price")  # fmt: skip
SETTINGS_FIELDS = ("monthly_cap", "low_balance_thresholds", "notify_email",
                   "charge_failed_after_submission")  # fmt: skip
#: The failure-charging choice: whether a message the provider took, then failed, is charged.
CHARGING = {"charge": True, "refund": False}
_LIST_SEPARATORS = re.compile(r"[\s,;]+")
_WHOLE = re.compile(r"[0-9]{1,9}")


def require_billing(svc: Services, field: str | None = None) -> None:
    """Forbidden unless shops manage their own billing on this server (as the API's
    `billing_by_shop`, said for the owner rather than for a program)."""
    if not svc.settings.shops_manage_billing:
        raise Forbidden(
            "credits and billing of this shop are managed by the operator of this orderbell "
            "server; ask them to change this",
            field=field,
        )


def _month(text: str, tz: str, now: datetime) -> date:
    """The statement's month: YYYY-MM as `credits.parse_month` takes it, or the shop's
    current month (statements follow the shop's calendar months)."""
    if not text:
        return local(now, tz).date().replace(day=1)
    return credits.parse_month(text)


def _ledger(
    conn: Connection, shop: int, kind: str, before: str, errors: Errors
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A page of the ledger, and the filters it was read with: a filter `credits.entries`
    refuses (an unknown kind, another shop's entry) is named and dropped."""
    wanted: dict[str, Any] = {"kind": kind or None, "before": None}
    if before and (entry := parse_row_id(before)) is not None:
        wanted["before"] = entry
    elif before:
        errors.add("before", "must be the id of a ledger entry, as the “Older” link gives it")
    while True:
        try:
            return credits.entries(conn, shop, limit=PAGE, **wanted), wanted
        except InvalidInput as exc:
            if exc.field not in wanted or wanted[exc.field] is None:
                raise
            errors.add_orderbell(exc)
            wanted[exc.field] = None


def _settings_state(summary: dict[str, Any]) -> dict[str, str]:
    """The settings form's inputs as the account has them (`credits.summary`)."""
    return {
        "monthly_cap": credit_text(summary["monthly_cap"]),
        "low_balance_thresholds": ", ".join(
            credit_text(t) for t in summary["low_balance_thresholds"]
        ),
        "notify_email": summary["notify_email"] or "",
        "charge_failed_after_submission": (
            "charge" if summary["charge_failed_after_submission"] else "refund"
        ),
    }


def _page(
    request: Request,
    svc: Svc,
    me: Me,
    *,
    query: dict[str, str] | None = None,
    state: dict[str, str] | None = None,
    errors: Errors | None = None,
    status: int = 200,
) -> Response:
    q = query or {}
    errors = errors or Errors()
    now = svc.clock.now()
    with svc.engine.connect() as conn:
        shop = shop_store.get_row(conn, me.shop_id)
        entries, used = _ledger(conn, me.shop_id, q.get("kind", ""), q.get("before", ""), errors)
        try:
            month = _month(q.get("month", ""), shop.timezone, now)
            statement: dict[str, Any] | None = credits.statement(conn, me.shop_id, month)
        except InvalidInput as exc:
            errors.add_orderbell(exc)
            statement = None
        view = {
            "credit": credits.summary(conn, me.shop_id, now),
            "packages": manage.package_list(conn, me.shop_id),
            "prices": manage.effective_prices(conn, me.shop_id)["items"],
            "rule_names": {r["id"]: r["name"] for r in rule_store.list_all(conn, me.shop_id)},
        }
    chosen = statement["month"] if statement and q.get("month") else ""  # kept when paging
    kept = {k: v for k, v in (("kind", used["kind"]), ("month", chosen)) if v}
    return render(
        request,
        "credits.html",
        status=status,
        me=me,
        tz=shop.timezone,
        errors=errors,
        manages_billing=svc.settings.shops_manage_billing,
        state={
            "amount": "",
            "reference": "",
            **{PACKAGE + k: "" for k in PACKAGE_FIELDS},
            PACKAGE + "channel": "sms",
            PACKAGE + "carry_over": "unlimited",
            **_settings_state(view["credit"]),
            **(state or {}),
        },
        kind_options=[(k, k.replace("_", " ")) for k in credits.KINDS],
        kind=used["kind"] or "",
        entries=entries,
        older=urlencode({**kept, "before": entries[-1]["id"]}) if len(entries) == PAGE else None,
        newest=bool(used["before"]),
        filters=urlencode(kept),
        month=q.get("month", "") if statement is None else statement["month"],
        statement=statement,
        **view,
    )


@router.get("/")
def credits_page(request: Request, svc: Svc, me: Me) -> Response:
    """Balance, allowances, packages, prices, a month's statement and the ledger."""
    query = {k: request.query_params.get(k, "").strip()[:40] for k in ("kind", "before", "month")}
    return _page(request, svc, me, query=query)


@router.get("/statement.csv")
def statement_csv(svc: Svc, me: Me, month: str = "") -> Response:
    """A month's statement as a CSV file (`credits.statement_csv`, as the API gives it)."""
    with svc.engine.connect() as conn:
        shop = shop_store.get_row(conn, me.shop_id)
        data = credits.statement(conn, me.shop_id, _month(month, shop.timezone, svc.clock.now()))
    filename = f"orderbell-{shop.slug}-statement-{data['month']}.csv"
    return Response(
        credits.statement_csv(data),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _check(errors: Errors, parse: Callable[[], object]) -> None:
    """Run one of the billing `parse_*` validators; its error is recorded, named."""
    try:
        parse()
    except OrderbellError as exc:
        errors.add_orderbell(exc)


def _validated(model: type[M], doc: dict[str, Any], errors: Errors) -> M | None:
    """`doc` as the API's input `model`, or None with pydantic's errors recorded."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        errors.add_validation(exc)
        return None


def _write(
    svc: Services, errors: Errors, body: B | None, change: Callable[[Connection, B], T]
) -> T | None:
    """Make a change from the form's validated `body` in one transaction, unless the form
    has errors; a refusal (recorded, named) rolls back everything the change did."""
    if errors or body is None:
        return None
    try:
        with svc.engine.begin() as conn:
            return change(conn, body)
    except OrderbellError as exc:
        errors.add_orderbell(exc)
        return None


def _at_inputs(errors: Errors, prefix: str = "") -> Errors:
    """The errors at the inputs they belong to: a list item's (low_balance_thresholds.2, or
    [2]) at its list's input, every field with the form's `prefix`."""
    named = Errors()
    for field, message in errors.by_field.items():
        base = re.split(r"[.\[]", field, maxsplit=1)[0]
        named.add(field if field == FORM_ERROR else prefix + base, message)
    return named


@router.post("/topup")
def top_up(request: Request, svc: Svc, me: Me, form: Posted) -> Response:
    """Add prepaid credit (`credits.topup`); a reference already credited adds nothing."""
    require_billing(svc)
    state = {"amount": form.get("amount").strip(), "reference": form.get("reference").strip()}
    errors = Errors()
    if not state["amount"]:
        errors.add("amount", "enter the credits to add, e.g. 25.00")
    else:
        _check(errors, lambda: credits.parse_amount(state["amount"]))
    _check(errors, lambda: credits.parse_reference(state["reference"]))
    result = _write(
        svc,
        errors,
        state,
        lambda conn, topup: credits.topup(
            conn,
            me.shop_id,
            topup["amount"],
            reference=topup["reference"] or None,
            actor=actor(me),
            now=svc.clock.now(),
        ),
    )
    if result is None:
        return _page(request, svc, me, state=state, errors=errors, status=422)
    if result["duplicate"]:
        flash = f"Reference {state['reference']} was already credited: nothing was added."
    else:
        released = result["released"]
        flash = f"Added {credit_text(result['amount'])} credits." + (
            f" {released} held message{'s' if released != 1 else ''} go out now."
            if released
            else ""
        )
    return redirect(request, "/credits/", flash)


@router.post("/packages")
def add_package(request: Request, svc: Svc, me: Me, form: Posted) -> Response:
    """Add a monthly package (`manage.add_package`); this period's allowance comes at once."""
    require_billing(svc)
    state = {PACKAGE + k: form.get(PACKAGE + k).strip() for k in PACKAGE_FIELDS}
    doc = {k: state[PACKAGE + k] for k in PACKAGE_FIELDS if state[PACKAGE + k]}
    errors = Errors()
    if "price" in doc:
        _check(errors, lambda: credits.parse_package_price(doc["price"]))
    package = _validated(PackageIn, doc, errors)
    for key in ("allowance", "carry_cap", "carry_months"):  # what pydantic reads besides
        if package is not None and key in doc and not _WHOLE.fullmatch(doc[key]):  # 1_000
            errors.add(key, "must be a whole number written in digits, such as 1000")
    added = _write(
        svc,
        errors,
        package,
        lambda conn, body: manage.add_package(
            conn, me.shop_id, body, svc.clock.now(), actor=actor(me)
        ),
    )
    if added is None or package is None:
        return _page(request, svc, me, state=state, errors=_at_inputs(errors, PACKAGE), status=422)
    return redirect(
        request,
        "/credits/#packages",
        f"Package “{package.name}” added: {package.allowance} {package.channel} this period.",
    )


def _settings_doc(state: dict[str, str], acct: credits.Account, errors: Errors) -> dict[str, Any]:
    """`CreditSettingsIn`'s fields from the form: an empty cap is none, an empty threshold
    list none either; every input checked by its validator."""
    doc: dict[str, Any] = {}
    if state["monthly_cap"]:
        doc["monthly_cap"] = state["monthly_cap"]
        _check(errors, lambda: credits.parse_amount(doc["monthly_cap"], field="monthly_cap"))
    else:
        doc["clear_monthly_cap"] = True
    doc["low_balance_thresholds"] = [
        t for t in _LIST_SEPARATORS.split(state["low_balance_thresholds"]) if t
    ]
    for text in doc["low_balance_thresholds"]:
        try:
            credits.parse_amount(text, field="low_balance_thresholds")
        except OrderbellError as exc:
            shown = text if len(text) <= 40 else f"{text[:40]}…"
            message = exc.message if repr(text[:40]) in exc.message else f"{shown}: {exc.message}"
            errors.add("low_balance_thresholds", message)
    if state["notify_email"]:
        doc["notify_email"] = state["notify_email"]
        _check(errors, lambda: parse_email(doc["notify_email"], field="notify_email"))
    elif acct.notify_email:  # emptied: notices go to the shop's own address again
        doc["clear_notify_email"] = True
    charging = state["charge_failed_after_submission"]
    if charging in CHARGING:
        doc["charge_failed_after_submission"] = CHARGING[charging]
    elif charging:
        errors.add("charge_failed_after_submission", "choose charge or refund")
    return doc


@router.post("/settings")
def save_settings(request: Request, svc: Svc, me: Me, form: Posted) -> Response:
    """Change the credit settings (`manage.change_settings`, as `PATCH /v1/credits/settings`):
    the cap, thresholds and notice address always; failure charging, a term of billing, only
    where shops manage their own billing."""
    state = {k: form.get(k).strip() for k in SETTINGS_FIELDS}
    if state["charge_failed_after_submission"]:
        require_billing(svc, field="charge_failed_after_submission")
    errors = Errors()
    with svc.engine.connect() as conn:
        acct = credits.account(conn, me.shop_id)
    doc = _settings_doc(state, acct, errors)
    saved = _write(
        svc,
        errors,
        None if errors else _validated(CreditSettingsIn, doc, errors),
        lambda conn, body: manage.change_settings(
            conn, me.shop_id, body, svc.clock.now(), billing=svc.settings.billing, actor=actor(me)
        ),
    )
    if saved is None:
        return _page(request, svc, me, state=state, errors=_at_inputs(errors), status=422)
    return redirect(request, "/credits/#settings", "Credit settings saved.")
