"""Request dependencies: the services, the calling shop, a connection."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from orderbell.api.ids import RowId
from orderbell.compose import Services
from orderbell.errors import Forbidden, Unauthorized
from orderbell.store import shops as shop_store
from orderbell.store.db import reading


async def services(request: Request) -> Services:
    """The app's services."""
    svc: Services = request.app.state.services
    return svc


ServicesDep = Annotated[Services, Depends(services)]


class ApiKey(HTTPBearer):
    """The shop the API key in `Authorization: Bearer …` belongs to. One dependency that
    reads the header itself (FastAPI's header parameters and nested dependencies cost more
    per request than an accepted event's own work) and documents the bearer scheme in the
    OpenAPI schema. A key verified in the last seconds is answered from memory, on the event
    loop; otherwise the lookup runs in the thread pool."""

    async def __call__(self, request: Request) -> int:  # type: ignore[override]
        credentials = await super().__call__(request)
        if credentials is None:
            raise Unauthorized("send 'Authorization: Bearer <API key>'", field="authorization")
        svc: Services = request.app.state.services
        key = credentials.credentials.strip()
        known = svc.api_keys.get(key)
        if known is not None:
            return known
        return await run_in_threadpool(_look_up, svc, key)


def _look_up(svc: Services, key: str) -> int:
    generation = svc.api_keys.generation
    with reading(svc.engine) as conn:
        shop = shop_store.authenticate(conn, key)
    svc.api_keys.put(key, shop, generation)
    return shop


shop_id = ApiKey(auto_error=False, description="the shop's API key")
ShopId = Annotated[int, Depends(shop_id)]


def read(svc: ServicesDep) -> Iterator[Connection]:
    """A read-only connection (on SQLite it does not queue behind writers)."""
    with reading(svc.engine) as conn:
        yield conn


Read = Annotated[Connection, Depends(read)]


#: The operator's credentials: `Authorization: Bearer <ORDERBELL_ADMIN_TOKEN>` (a scheme of
#: its own in the OpenAPI description, so /docs and generated clients can send it).
admin_bearer = HTTPBearer(
    auto_error=False, scheme_name="AdminToken", description="ORDERBELL_ADMIN_TOKEN"
)
AdminCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)]


def require_admin(
    svc: Services, credentials: HTTPAuthorizationCredentials | None, doing: str
) -> None:
    """The admin token (ORDERBELL_ADMIN_TOKEN) was given, or Unauthorized saying what needs it
    (`doing`). (A blank token is no token: `Settings` makes it None.)"""
    token = svc.settings.admin_token
    given = credentials.credentials.strip() if credentials is not None else ""
    if token is None or not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise Unauthorized(f"{doing} needs the admin token", field="authorization")


def operator_shop(svc: ServicesDep, shop_id: RowId, credentials: AdminCredentials) -> int:
    """The shop in the path, for the operator: the admin token is required."""
    require_admin(svc, credentials, "managing a shop's credits")
    with reading(svc.engine) as conn:
        shop_store.get_row(conn, shop_id)  # (NotFound for no such shop)
    return shop_id


#: A shop named in the path, acted on by the operator (`/v1/shops/{shop_id}/credits/...`).
OperatorShop = Annotated[int, Depends(operator_shop)]

#: The settings of a shop's credit account that are its terms, set by whoever manages billing.
BILLING_TERMS = ("mode", "plan", "billing_day", "charge_failed_after_submission")


def billing_by_shop(svc: Services, field: str = "authorization") -> None:
    """Forbidden unless shops manage their own billing on this server (`shops_manage_billing`)."""
    if not svc.settings.shops_manage_billing:
        raise Forbidden(
            "on this server credits and prices are managed by the operator, with the admin "
            "token at /v1/shops/{id}/credits/...",
            field=field,
        )


def managed_shop(svc: ServicesDep, shop: ShopId) -> int:
    """The calling shop, acting on its own credits or prices: only where shops manage their
    billing (`billing_by_shop`)."""
    billing_by_shop(svc)
    return shop


ManagedShop = Annotated[int, Depends(managed_shop)]
