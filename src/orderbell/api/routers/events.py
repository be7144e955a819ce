"""POST /v1/events: one event or a batch; replays answer the original result."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header
from fastapi.responses import JSONResponse

from orderbell.api.deps import ServicesDep, ShopId
from orderbell.api.schemas import EventIn, Key

router = APIRouter(prefix="/v1", tags=["events"])


@router.post(
    "/events",
    status_code=201,
    responses={200: {"description": "a replay: the original result"}},
)
def post_events(
    svc: ServicesDep,
    shop: ShopId,
    body: Annotated[EventIn | list[EventIn], Body()],
    idempotency_key: Annotated[Key | None, Header()] = None,
) -> Any:
    """Accept one event (or a list of up to 500) and plan its messages, durably."""
    if isinstance(body, list):
        if not body or len(body) > 500:
            from orderbell.errors import InvalidInput

            raise InvalidInput("a batch holds 1 to 500 events", field="body")
        results = svc.ingestor.ingest_many(shop, body)
        return JSONResponse({"results": [r.as_json() for r in results]}, status_code=201)
    result = svc.ingestor.ingest(
        shop, body, f"header:{idempotency_key}" if idempotency_key else None
    )
    return JSONResponse(result.as_json(), status_code=200 if result.duplicate else 201)


@router.post("/simulate")
def simulate(svc: ServicesDep, shop: ShopId, body: EventIn) -> Any:
    """What would this event send, when, with what text, and why — nothing is stored."""
    return svc.simulator.simulate(shop, body)
