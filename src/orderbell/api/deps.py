"""Request dependencies: the services, the calling shop, a connection."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from orderbell.compose import Services
from orderbell.errors import Unauthorized
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
