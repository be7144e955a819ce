"""Credits: the balance, allowances and packages, the prices that apply, the ledger and a
month's statement (also as CSV), read with the billing functions the API and the CLI use."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from sqlalchemy import Connection

from orderbell.api.ids import MAX_ROW_ID
from orderbell.billing import credits, manage
from orderbell.domain.calendar import local
from orderbell.errors import InvalidInput
from orderbell.store import rules as rule_store
from orderbell.store import shops as shop_store
from orderbell.web.core import Me, Svc, render
from orderbell.web.forms import Errors

router = APIRouter(prefix="/credits")
PAGE = 50  #: ledger entries per page
_ROW_ID = re.compile(r"[0-9]{1,19}")


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
    if before and _ROW_ID.fullmatch(before) and 1 <= int(before) <= MAX_ROW_ID:
        wanted["before"] = int(before)
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


def _page(
    request: Request,
    svc: Svc,
    me: Me,
    *,
    query: dict[str, str] | None = None,
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
