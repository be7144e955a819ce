"""The ingest baseline: a FastAPI endpoint that validates the same event model (EventIn) and
stores nothing; served by uvicorn exactly as ours is (see bench.servers)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, FastAPI

from orderbell.api.schemas import EventIn

app = FastAPI()


@app.post("/v1/events", status_code=201)
def validate_only(body: Annotated[EventIn, Body()]) -> dict[str, Any]:
    """Validate and answer (a sync endpoint, like ours, so both run in the thread pool)."""
    return {"type": body.type, "order": body.order.code}


@app.get("/readyz")
def ready() -> dict[str, str]:
    """Readiness."""
    return {"status": "ready"}
