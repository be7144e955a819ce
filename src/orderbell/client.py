"""orderbell from Python: the same pipeline as the HTTP API, in-process.

from orderbell.client import Orderbell
ob = Orderbell.open("sqlite:///./var/orderbell.db")
ob.send_event("demo", {"type": "order.created", "occurred_at": "...", "order": {...}})
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import ValidationError

from orderbell.api.schemas import EventIn
from orderbell.compose import Services, build
from orderbell.errors import InvalidInput
from orderbell.settings import Settings
from orderbell.store import shops as shop_store


class Orderbell:
    """A handle on one orderbell database."""

    def __init__(self, services: Services) -> None:
        self.services = services

    @classmethod
    def open(cls, database_url: str | None = None) -> Orderbell:
        """Open (and migrate) the database; defaults to ORDERBELL_DATABASE_URL."""
        settings = Settings() if database_url is None else Settings(database_url=database_url)
        return cls(build(settings))

    def _shop(self, shop: str | int) -> int:
        if isinstance(shop, int):
            return shop
        with self.services.engine.connect() as conn:
            return int(shop_store.by_slug(conn, shop).id)

    @staticmethod
    def _event(event: dict[str, Any] | EventIn) -> EventIn:
        if isinstance(event, EventIn):
            return event
        try:
            return EventIn.model_validate(event)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or None
            raise InvalidInput(
                str(first["msg"]).removeprefix("Value error, "), field=field
            ) from None

    def send_event(
        self, shop: str | int, event: dict[str, Any] | EventIn, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Ingest one order event; returns the event id, rule verdicts and planned messages."""
        key = f"header:{idempotency_key}" if idempotency_key else None
        return self.services.ingestor.ingest(self._shop(shop), self._event(event), key).as_json()

    def simulate(self, shop: str | int, event: dict[str, Any] | EventIn) -> dict[str, Any]:
        """What the event would send, storing nothing."""
        return self.services.simulator.simulate(self._shop(shop), self._event(event))

    def dispatch(self) -> int:
        """Send everything due now (for scripts without a running worker)."""
        return asyncio.run(self.services.dispatcher().drain())

    def close(self) -> None:
        """Release database connections."""
        self.services.engine.dispose()
