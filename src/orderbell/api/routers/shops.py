"""Shops (created with the admin token) and the calling shop's own settings and keys."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from orderbell.api.deps import AdminCredentials, Read, ServicesDep, ShopId, require_admin
from orderbell.api.ids import RowId
from orderbell.api.schemas import ApiKeyIn, ShopIn, ShopPatch
from orderbell.store import shops as shop_store

router = APIRouter(prefix="/v1", tags=["shops"])


@router.post("/shops", status_code=201)
def create_shop(svc: ServicesDep, body: ShopIn, credentials: AdminCredentials) -> Any:
    """Create a shop and its first API key (needs ORDERBELL_ADMIN_TOKEN)."""
    require_admin(svc, credentials, "creating shops")
    now = svc.clock.now()
    with svc.engine.begin() as conn:
        row = shop_store.create(conn, body, now)
        _, key = shop_store.create_key(conn, row.id, "default", now)
    return {**shop_store.shop_json(row), "api_key": key}


@router.get("/shop")
def get_shop(conn: Read, shop: ShopId) -> Any:
    """The calling shop."""
    return shop_store.shop_json(shop_store.get_row(conn, shop))


@router.patch("/shop")
def patch_shop(svc: ServicesDep, shop: ShopId, body: ShopPatch) -> Any:
    """Change the calling shop's settings; SMS held over the segment cap that fit the new SMS
    settings are released."""
    with svc.engine.begin() as conn:
        return shop_store.shop_json(svc.patch_shop(conn, shop, body, actor="api"))


@router.get("/api-keys")
def list_keys(conn: Read, shop: ShopId) -> Any:
    """The shop's API keys (never their secrets)."""
    return {"items": shop_store.list_keys(conn, shop)}


@router.post("/api-keys", status_code=201)
def create_key(svc: ServicesDep, shop: ShopId, body: ApiKeyIn) -> Any:
    """A new API key, shown once."""
    with svc.engine.begin() as conn:
        key_id, key = shop_store.create_key(conn, shop, body.name, svc.clock.now())
    return {"id": key_id, "name": body.name, "api_key": key}


@router.delete("/api-keys/{key_id}", status_code=204)
def revoke_key(svc: ServicesDep, shop: ShopId, key_id: RowId) -> None:
    """Revoke a key at once."""
    with svc.engine.begin() as conn:
        shop_store.revoke_key(conn, shop, key_id, svc.clock.now())
    svc.api_keys.clear()  # at once in this process (others: within the cache TTL)
