"""Credits: balance, top-ups, prices, packages, the ledger and monthly statements."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy import Connection

from orderbell.api.deps import (
    BILLING_TERMS,
    ManagedShop,
    OperatorShop,
    Read,
    ServicesDep,
    ShopId,
    billing_by_shop,
)
from orderbell.api.ids import RowIdFilter
from orderbell.api.schemas import (
    AdjustmentIn,
    CreditSettingsIn,
    PackageIn,
    PricesIn,
    TopUpIn,
    instant_problem,
)
from orderbell.billing import credits, manage
from orderbell.compose import Services
from orderbell.errors import InvalidInput

router = APIRouter(prefix="/v1/credits", tags=["credits"])
#: The same changes of a shop's credits and prices, made by the operator (the admin token):
#: where shops do not manage their own billing (`shops_manage_billing`), the only way.
operator = APIRouter(prefix="/v1/shops/{shop_id}/credits", tags=["credits (operator)"])


@router.get("")
def get_credits(svc: ServicesDep, conn: Read, shop: ShopId) -> Any:
    """Balance, reservations, package allowances and this month's spending."""
    return credits.summary(conn, shop, svc.clock.now())


@operator.get("")
def operator_get_credits(svc: ServicesDep, conn: Read, shop: OperatorShop) -> Any:
    """`GET /v1/credits` for the shop in the path, by the operator."""
    return credits.summary(conn, shop, svc.clock.now())


@router.post("/topups", status_code=201)
def top_up(svc: ServicesDep, shop: ManagedShop, body: TopUpIn, response: Response) -> Any:
    """Add prepaid credit; held messages that are still valid go out, in order. A reference
    already credited (a retried payment notice) answers 200 with `duplicate`, crediting
    nothing; with another amount it is a 409."""
    return _top_up(svc, shop, body, response, "api")


@operator.post("/topups", status_code=201)
def operator_top_up(svc: ServicesDep, shop: OperatorShop, body: TopUpIn, response: Response) -> Any:
    """`POST /v1/credits/topups` for the shop in the path, by the operator."""
    return _top_up(svc, shop, body, response, "operator")


def _top_up(svc: Services, shop: int, body: TopUpIn, response: Response, actor: str) -> Any:
    with svc.engine.begin() as conn:
        result = credits.topup(
            conn, shop, body.amount, reference=body.reference, actor=actor, now=svc.clock.now()
        )
    if result["duplicate"]:
        response.status_code = 200
    return result


@router.post("/adjustments", status_code=201)
def adjust(svc: ServicesDep, shop: ManagedShop, body: AdjustmentIn) -> Any:
    """Correct prepaid credit by hand, saying why: a positive amount gives credit (held
    messages that are still valid go out, in order), a negative one takes back credit that
    is available (never what is reserved for planned messages)."""
    return _adjust(svc, shop, body, "api")


@operator.post("/adjustments", status_code=201)
def operator_adjust(svc: ServicesDep, shop: OperatorShop, body: AdjustmentIn) -> Any:
    """`POST /v1/credits/adjustments` for the shop in the path, by the operator."""
    return _adjust(svc, shop, body, "operator")


def _adjust(svc: Services, shop: int, body: AdjustmentIn, actor: str) -> Any:
    with svc.engine.begin() as conn:
        return credits.adjust(
            conn, shop, body.amount, note=body.note, actor=actor, now=svc.clock.now()
        )


@dataclass
class LedgerQuery:
    """The ledger's filters and page, as query parameters (one set for both routes)."""

    kind: Annotated[str | None, Query(max_length=16)] = None
    message_id: RowIdFilter = None
    rule_id: RowIdFilter = None
    since: datetime | None = None
    until: datetime | None = None
    before: RowIdFilter = None
    limit: Annotated[int, Query(ge=1, le=500)] = 100


Ledger = Annotated[LedgerQuery, Depends()]


@router.get("/ledger")
def get_ledger(conn: Read, shop: ShopId, query: Ledger) -> Any:
    """Ledger entries, newest first (by time, then id); page with ?before=<next_before>."""
    return _ledger(conn, shop, query)


@operator.get("/ledger")
def operator_get_ledger(conn: Read, shop: OperatorShop, query: Ledger) -> Any:
    """`GET /v1/credits/ledger` for the shop in the path, by the operator."""
    return _ledger(conn, shop, query)


def _ledger(conn: Connection, shop: int, q: LedgerQuery) -> Any:
    for name, value in (("since", q.since), ("until", q.until)):
        problem = None if value is None else instant_problem(value)
        if problem is not None:
            raise InvalidInput(problem, field=name)
    items = credits.entries(
        conn,
        shop,
        kind=q.kind,
        message_id=q.message_id,
        rule_id=q.rule_id,
        since=q.since,
        until=q.until,
        before=q.before,
        limit=q.limit,
    )
    return {"items": items, "next_before": items[-1]["id"] if len(items) == q.limit else None}


Month = Annotated[str, Query(max_length=7)]
StatementFormat = Literal["json", "csv"]


@router.get("/statement", response_model=None)
def get_statement(conn: Read, shop: ShopId, month: Month, format: StatementFormat = "json") -> Any:
    """A month's charges per channel, destination country and rule, and the credit that came
    in (top-ups, corrections), as JSON or CSV."""
    return _statement(conn, shop, month, format)


@operator.get("/statement", response_model=None)
def operator_get_statement(
    conn: Read, shop: OperatorShop, month: Month, format: StatementFormat = "json"
) -> Any:
    """`GET /v1/credits/statement` for the shop in the path, by the operator."""
    return _statement(conn, shop, month, format)


def _statement(conn: Connection, shop: int, month: str, format: str) -> Any:
    data = credits.statement(conn, shop, credits.parse_month(month))
    if format == "csv":
        return PlainTextResponse(credits.statement_csv(data), media_type="text/csv")
    return data


@router.get("/prices")
def get_prices(conn: Read, shop: ShopId) -> Any:
    """Every price that applies to the shop: its own, its plan's, or the default list."""
    return manage.effective_prices(conn, shop)


@operator.get("/prices")
def operator_get_prices(conn: Read, shop: OperatorShop) -> Any:
    """`GET /v1/credits/prices` for the shop in the path, by the operator."""
    return manage.effective_prices(conn, shop)


@router.put("/prices")
def put_prices(svc: ServicesDep, shop: ManagedShop, body: PricesIn) -> Any:
    """Replace the shop's own price lines."""
    return _put_prices(svc, shop, body, "api")


@operator.put("/prices")
def operator_put_prices(svc: ServicesDep, shop: OperatorShop, body: PricesIn) -> Any:
    """`PUT /v1/credits/prices` for the shop in the path, by the operator."""
    return _put_prices(svc, shop, body, "operator")


def _put_prices(svc: Services, shop: int, body: PricesIn, actor: str) -> Any:
    with svc.engine.begin() as conn:
        return manage.replace_prices(conn, shop, body, actor=actor)


@router.patch("/settings")
def patch_settings(svc: ServicesDep, shop: ShopId, body: CreditSettingsIn) -> Any:
    """Billing day, spending cap, low-balance thresholds, charging policy, price plan. (Where
    the operator manages billing, a shop sets its cap, thresholds and notice address only.)"""
    for name in BILLING_TERMS:
        if getattr(body, name) is not None:
            billing_by_shop(svc, field=name)
    if body.clear_plan:
        billing_by_shop(svc, field="clear_plan")
    return _patch_settings(svc, shop, body, "api")


@operator.patch("/settings")
def operator_patch_settings(svc: ServicesDep, shop: OperatorShop, body: CreditSettingsIn) -> Any:
    """`PATCH /v1/credits/settings` for the shop in the path, by the operator."""
    return _patch_settings(svc, shop, body, "operator")


def _patch_settings(svc: Services, shop: int, body: CreditSettingsIn, actor: str) -> Any:
    with svc.engine.begin() as conn:
        return manage.change_settings(
            conn, shop, body, svc.clock.now(), billing=svc.settings.billing, actor=actor
        )


@router.get("/packages")
def get_packages(conn: Read, shop: ShopId) -> Any:
    """The shop's packages, oldest first: each one's monthly allowance, carry-over and price
    (what is left of them this period is in `GET /v1/credits`)."""
    return {"items": manage.package_list(conn, shop)}


@operator.get("/packages")
def operator_get_packages(conn: Read, shop: OperatorShop) -> Any:
    """`GET /v1/credits/packages` for the shop in the path, by the operator."""
    return {"items": manage.package_list(conn, shop)}


@router.post("/packages", status_code=201)
def add_package(svc: ServicesDep, shop: ManagedShop, body: PackageIn) -> Any:
    """Add a monthly package; this period's allowance is granted at once."""
    return _add_package(svc, shop, body, "package")


@operator.post("/packages", status_code=201)
def operator_add_package(svc: ServicesDep, shop: OperatorShop, body: PackageIn) -> Any:
    """`POST /v1/credits/packages` for the shop in the path, by the operator."""
    return _add_package(svc, shop, body, "operator")


def _add_package(svc: Services, shop: int, body: PackageIn, actor: str) -> Any:
    with svc.engine.begin() as conn:
        return manage.add_package(conn, shop, body, svc.clock.now(), actor=actor)


@router.post("/renew")
def renew(svc: ServicesDep, shop: ShopId) -> Any:
    """Grant this billing period's allowances now (idempotent; the worker does it too)."""
    with svc.engine.begin() as conn:
        granted = credits.renew(conn, shop, svc.clock.now(), actor="api")
        return {"granted": granted, **credits.summary(conn, shop, svc.clock.now())}
