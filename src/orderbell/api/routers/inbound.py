"""Inbound messages a shop's customers sent (SMS replies, STOP / START)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from orderbell.api.deps import Read, ShopId
from orderbell.api.ids import RowIdFilter
from orderbell.store import inbound as inbound_store

router = APIRouter(prefix="/v1", tags=["inbound"])


@router.get("/inbound")
def list_inbound(
    conn: Read,
    shop: ShopId,
    customer_id: RowIdFilter = None,
    before: int | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Any:
    """The shop's inbound messages (replies, STOP / START), newest first."""
    items = inbound_store.search(conn, shop, customer_id=customer_id, before=before, limit=limit)
    return {"items": items, "next_before": items[-1]["id"] if len(items) == limit else None}
