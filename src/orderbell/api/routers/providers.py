"""A shop's provider accounts: the gateways it sends through, in failover order."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from orderbell.api.deps import Read, ServicesDep, ShopId
from orderbell.api.ids import RowId
from orderbell.api.provider_schemas import ProviderIn, ProviderPatch
from orderbell.store import providers as provider_store

router = APIRouter(prefix="/v1", tags=["providers"])


@router.post("/providers", status_code=201)
def create_provider(svc: ServicesDep, shop: ShopId, body: ProviderIn) -> Any:
    """Add a provider account; its credentials are stored and never shown again."""
    with svc.engine.begin() as conn:
        return provider_store.create(conn, shop, body, svc.clock.now(), svc.settings.public_url)


@router.get("/providers")
def list_providers(svc: ServicesDep, conn: Read, shop: ShopId) -> Any:
    """The shop's provider accounts, by channel and failover order, with callback URLs."""
    return {"items": provider_store.list_all(conn, shop, svc.settings.public_url)}


@router.get("/providers/{provider_id}")
def get_provider(svc: ServicesDep, conn: Read, shop: ShopId, provider_id: RowId) -> Any:
    """One provider account (which secrets are set, never their values)."""
    return provider_store.get(conn, shop, provider_id, svc.settings.public_url)


@router.patch("/providers/{provider_id}")
def patch_provider(svc: ServicesDep, shop: ShopId, provider_id: RowId, body: ProviderPatch) -> Any:
    """Change an account: order, on/off, settings (merged), rate, concurrency."""
    with svc.engine.begin() as conn:
        return provider_store.patch(
            conn, shop, provider_id, body, svc.clock.now(), svc.settings.public_url
        )


@router.delete("/providers/{provider_id}", status_code=204)
def delete_provider(svc: ServicesDep, shop: ShopId, provider_id: RowId) -> None:
    """Remove an account; messages sent through it keep their history."""
    with svc.engine.begin() as conn:
        provider_store.remove(conn, shop, provider_id)
