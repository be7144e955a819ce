"""POST /v1/events: one event or a batch; replays answer the original result.

By default the answer (201) comes after the event's messages are planned, in the same
transaction as the event. With ``Prefer: respond-async`` (RFC 7240) the event is stored
durably and answered at once (202, ``Location: /v1/events/{id}``); a worker plans its
messages right after, and ``GET /v1/events/{id}`` shows the outcome.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select

from orderbell.api.deps import Read, ServicesDep, ShopId
from orderbell.api.ids import RowId
from orderbell.api.schemas import EventIn, Key
from orderbell.compose import Services
from orderbell.errors import InvalidInput, NotFound
from orderbell.store.schema import events

router = APIRouter(prefix="/v1", tags=["events"])


def wants_async(prefer: str | None) -> bool:
    """Whether a `Prefer` header asks for `respond-async` (RFC 7240: comma-separated
    preferences, each maybe with `;` parameters, names case-insensitive; a header no
    client would send, over 1,000 characters, is ignored as unknown preferences are)."""
    if not prefer or len(prefer) > 1000:
        return False
    return any(p.split(";", 1)[0].split("=", 1)[0].strip().lower() == "respond-async"
               for p in prefer.split(","))  # fmt: skip


_KEY: TypeAdapter[str] = TypeAdapter(Key)
#: The two headers, read from the request (FastAPI's header parameters cost more per
#: request than the rest of an accepted event) and documented here.
_HEADERS = [
    {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        "description": "a replay with the same key answers the original result; the same "
        "key with another body is a 409",
    },
    {
        "name": "Prefer",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "`respond-async`: answer 202 once the event is stored; a worker plans "
        "its messages right after (other preferences are ignored, RFC 7240)",
    },
]


def _idempotency_key(request: Request) -> str | None:
    """The optional Idempotency-Key, validated as a header parameter would be (a 422
    naming `idempotency_key`)."""
    value = request.headers.get("idempotency-key")
    if value is None:
        return None
    try:
        return _KEY.validate_python(value)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"]
        raise InvalidInput(f"Idempotency-Key: {reason}", field="idempotency_key") from None


@router.post(
    "/events",
    status_code=201,
    responses={
        200: {"description": "a replay: the original result"},
        202: {"description": "accepted (Prefer: respond-async): stored, planned soon after"},
    },
    openapi_extra={"parameters": _HEADERS},
)
async def post_events(
    request: Request,
    shop: ShopId,
    body: Annotated[EventIn | list[EventIn], Body()],
) -> Any:
    """Accept one event (or a list of up to 500) and plan its messages, durably; with
    `Prefer: respond-async`, store it durably and plan its messages right after.

    A coroutine: an accepted event joins the group commit from the event loop, without a
    thread of its own (`accept_async`); the rest runs in the thread pool as before."""
    svc: Services = request.app.state.services  # as ServicesDep, one dependency fewer
    idempotency_key = _idempotency_key(request)
    accept = wants_async(request.headers.get("prefer"))
    headers = {"Preference-Applied": "respond-async"} if accept else {}
    created = 202 if accept else 201
    if isinstance(body, list):
        if not body or len(body) > 500:
            raise InvalidInput("a batch holds 1 to 500 events", field="body")
        results = await run_in_threadpool(svc.ingestor.ingest_many, shop, body, plan=not accept)
        return JSONResponse(
            {"results": [r.as_json() for r in results]}, status_code=created, headers=headers
        )
    key = f"header:{idempotency_key}" if idempotency_key else None
    if accept:
        result = await svc.ingestor.accept_async(shop, body, key)
        headers["Location"] = f"/v1/events/{result.event_id}"
    else:
        result = await run_in_threadpool(svc.ingestor.ingest, shop, body, key)
    return JSONResponse(
        result.as_json(), status_code=200 if result.duplicate else created, headers=headers
    )


@router.get("/events/{event_id}")
def get_event(conn: Read, shop: ShopId, event_id: RowId) -> Any:
    """An event and what it led to: `accepted` while it waits for a worker, then `planned`
    with the rule verdicts and the messages planned (or `failed` with the reason)."""
    row = conn.execute(
        select(
            events.c.id,
            events.c.type,
            events.c.occurred_at,
            events.c.received_at,
            events.c.planned_at,
            events.c.order_id,
            events.c.outcome,
        ).where(events.c.id == event_id, events.c.shop_id == shop)
    ).first()
    if row is None:
        raise NotFound("event not found", field="event_id")
    outcome = dict(row.outcome or {})
    status = "failed" if "error" in outcome else "planned"
    if row.planned_at is None:
        status = "accepted"
    outcome.pop("status", None)
    return {
        "event_id": row.id,
        "type": row.type,
        "status": status,
        "occurred_at": row.occurred_at.isoformat(),
        "received_at": row.received_at.isoformat(),
        "planned_at": row.planned_at.isoformat() if row.planned_at else None,
        "order_id": row.order_id,
        **outcome,
    }


@router.post("/simulate")
def simulate(svc: ServicesDep, shop: ShopId, body: EventIn) -> Any:
    """What would this event send, when, with what text, and why — nothing is stored."""
    return svc.simulator.simulate(shop, body)
