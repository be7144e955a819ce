"""The ingest baseline: a FastAPI endpoint that validates the same event model and stores
nothing. `uvicorn bench.baseline_app:app`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, FastAPI

from orderbell.api.schemas import EventIn

app = FastAPI()


@app.post("/v1/events", status_code=201)
def validate_only(body: Annotated[EventIn, Body()]) -> dict[str, Any]:
    """Validate and answer."""
    return {"type": body.type, "order": body.order.code}


@app.get("/readyz")
def ready() -> dict[str, str]:
    """Readiness."""
    return {"status": "ready"}
