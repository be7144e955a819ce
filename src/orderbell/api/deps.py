"""Request dependencies: the services, the calling shop, a connection."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy import Connection

from orderbell.compose import Services
from orderbell.errors import Unauthorized
from orderbell.store import shops as shop_store
from orderbell.store.db import reading


async def services(request: Request) -> Services:
    """The app's services."""
    svc: Services = request.app.state.services
    return svc


ServicesDep = Annotated[Services, Depends(services)]


def shop_id(svc: ServicesDep, authorization: Annotated[str | None, Header()] = None) -> int:
    """The shop the API key in `Authorization: Bearer …` belongs to."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("send 'Authorization: Bearer <API key>'", field="authorization")
    with reading(svc.engine) as conn:
        return shop_store.authenticate(conn, authorization[7:].strip())


ShopId = Annotated[int, Depends(shop_id)]


def read(svc: ServicesDep) -> Iterator[Connection]:
    """A read-only connection (on SQLite it does not queue behind writers)."""
    with reading(svc.engine) as conn:
        yield conn


Read = Annotated[Connection, Depends(read)]
