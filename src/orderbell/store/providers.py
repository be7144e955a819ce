"""A shop's provider accounts: which gateways it sends through, in failover order.

Credentials live in the ``secrets`` column and are write-only: nothing here returns them
except :func:`accounts` / :func:`by_token`, which the dispatcher and the callback endpoint use
to build gateways.
"""

from __future__ import annotations

import secrets as token_source
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, func, select, update

from orderbell.api.provider_schemas import ProviderIn, ProviderPatch
from orderbell.channels import registry
from orderbell.domain.model import Channel
from orderbell.errors import Conflict, InvalidInput, NotFound
from orderbell.store.db import new_id
from orderbell.store.schema import messages, shop_providers

DEFAULT_CONCURRENCY = 50  #: requests in flight per worker when the account sets none


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """One provider account as the dispatcher and the callback endpoint need it."""

    id: int
    shop_id: int
    name: str
    channel: Channel
    kind: str
    position: int
    active: bool
    settings: Mapping[str, Any] = field(repr=False)  #: non-secret settings and secrets merged
    rate_per_second: Decimal | None
    concurrency: int | None
    callback_token: str = field(repr=False)
    cooling_until: datetime | None
    updated_at: datetime

    def cooling(self, now: datetime) -> bool:
        """Is failover skipping this account right now?"""
        return self.cooling_until is not None and self.cooling_until > now


def callback_url(public_url: str, token: str) -> str:
    """Where a provider calls us back for this account (receipts and inbound messages)."""
    return f"{public_url.rstrip('/')}/v1/callbacks/{token}"


def build_gateway(account: Account, public_url: str) -> Any:
    """The account's gateway, as the worker and the callback endpoint both build it: its
    settings plus the account's ``concurrency`` and ``rate_per_second`` (the HTTP gateways
    size their pools by them; a kind that has no use for them drops them, see smtp.build)."""
    return registry.load(account.kind).build(
        {
            **account.settings,
            "concurrency": account.concurrency or DEFAULT_CONCURRENCY,
            "rate_per_second": account.rate_per_second,
        },
        name=account.name,
        callback_url=callback_url(public_url, account.callback_token),
    )


def _account(row: Any) -> Account:
    return Account(
        id=row.id,
        shop_id=row.shop_id,
        name=row.name,
        channel=Channel(row.channel),
        kind=row.kind,
        position=row.position,
        active=row.active,
        settings={**(row.settings or {}), **(row.secrets or {})},
        rate_per_second=row.rate_per_second,
        concurrency=row.concurrency,
        callback_token=row.callback_token,
        cooling_until=row.cooling_until,
        updated_at=row.updated_at,
    )


def _split(kind: registry.Kind, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate a kind's settings; returns (settings, secrets)."""
    if not isinstance(values, Mapping):
        raise InvalidInput("settings must be an object", field="settings")
    normalised = kind.validate(values)
    plain = {k: v for k, v in normalised.items() if k not in kind.secret_fields}
    hidden = {k: v for k, v in normalised.items() if k in kind.secret_fields and v is not None}
    return plain, hidden


def _channel(kind: registry.Kind, requested: Channel | None) -> Channel:
    if requested is None:
        if len(kind.channels) != 1:
            raise InvalidInput(f"say which channel the {kind.name} account is for", field="channel")
        return next(iter(kind.channels))
    if requested not in kind.channels:
        raise InvalidInput(f"a {kind.name} account cannot send {requested.value}", field="channel")
    return requested


def _name_free(conn: Connection, shop_id: int, name: str, own_id: int | None = None) -> None:
    stmt = select(shop_providers.c.id).where(
        shop_providers.c.shop_id == shop_id, shop_providers.c.name == name
    )
    row = conn.execute(stmt).first()
    if row is not None and row.id != own_id:
        raise Conflict(f"a provider named {name!r} exists", field="name")


def create(
    conn: Connection, shop_id: int, data: ProviderIn, now: datetime, public_url: str
) -> dict[str, Any]:
    """Add a provider account after its kind validated the settings."""
    kind = registry.load(data.kind)
    channel = _channel(kind, data.channel)
    plain, hidden = _split(kind, data.settings)
    _name_free(conn, shop_id, data.name)
    position = data.position
    if position is None:
        last = conn.execute(
            select(func.max(shop_providers.c.position)).where(
                shop_providers.c.shop_id == shop_id, shop_providers.c.channel == channel.value
            )
        ).scalar()
        position = 0 if last is None else int(last) + 1
    provider_id = new_id(
        conn.execute(
            shop_providers.insert().values(
                shop_id=shop_id,
                name=data.name,
                channel=channel.value,
                kind=kind.name,
                position=position,
                active=data.active,
                settings=plain,
                secrets=hidden,
                rate_per_second=data.rate_per_second,
                concurrency=data.concurrency,
                callback_token=token_source.token_urlsafe(32),
                created_at=now,
                updated_at=now,
            )
        )
    )
    return get(conn, shop_id, provider_id, public_url)


def patch(
    conn: Connection,
    shop_id: int,
    provider_id: int,
    data: ProviderPatch,
    now: datetime,
    public_url: str,
) -> dict[str, Any]:
    """Change an account; new settings are validated merged with the stored ones."""
    row = _row(conn, shop_id, provider_id)
    given = data.model_fields_set
    values: dict[str, Any] = {"updated_at": now}
    if data.name is not None:
        _name_free(conn, shop_id, data.name, own_id=provider_id)
        values["name"] = data.name
    for key in ("position", "active"):
        if key in given and getattr(data, key) is not None:
            values[key] = getattr(data, key)
    for key in ("rate_per_second", "concurrency"):
        if key in given:  # null clears it
            values[key] = getattr(data, key)
    if data.settings is not None:
        kind = registry.load(row.kind)
        merged = {**(row.settings or {}), **(row.secrets or {})}
        for key, value in data.settings.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        values["settings"], values["secrets"] = _split(kind, merged)
    if values.get("active"):
        values["cooling_until"] = None  # switching an account back on gives it a fresh start
    conn.execute(update(shop_providers).where(shop_providers.c.id == provider_id).values(**values))
    return get(conn, shop_id, provider_id, public_url)


def move(conn: Connection, shop_id: int, provider_id: int, step: int, now: datetime) -> None:
    """Move an account `step` places in its channel's failover order (-1: one earlier).

    The channel's positions become 0, 1, 2 … in the new order, so equal or sparse positions
    (possible through the API) still move one place at a time."""
    row = _row(conn, shop_id, provider_id)
    rows = conn.execute(
        select(shop_providers.c.id, shop_providers.c.position)
        .where(shop_providers.c.shop_id == shop_id, shop_providers.c.channel == row.channel)
        .order_by(shop_providers.c.position, shop_providers.c.id)
    ).all()
    order = [r.id for r in rows]
    here = order.index(provider_id)
    there = min(max(here + step, 0), len(order) - 1)
    order.insert(there, order.pop(here))
    was = {r.id: r.position for r in rows}
    for position, account_id in enumerate(order):
        if was[account_id] != position:
            conn.execute(
                update(shop_providers)
                .where(shop_providers.c.id == account_id)
                .values(position=position, updated_at=now)
            )


def recent_outcomes(conn: Connection, shop_id: int, since: datetime) -> dict[int, dict[str, int]]:
    """Messages per account and status since `since` (the admin's health column)."""
    rows = conn.execute(
        select(messages.c.provider_id, messages.c.status, func.count())
        .where(
            messages.c.shop_id == shop_id,
            messages.c.provider_id.is_not(None),
            messages.c.updated_at >= since,
        )
        .group_by(messages.c.provider_id, messages.c.status)
    )
    out: dict[int, dict[str, int]] = {}
    for provider_id, status, count in rows:
        out.setdefault(int(provider_id), {})[str(status)] = int(count)
    return out


def remove(conn: Connection, shop_id: int, provider_id: int) -> None:
    """Delete an account; messages keep its name in their history."""
    _row(conn, shop_id, provider_id)
    conn.execute(shop_providers.delete().where(shop_providers.c.id == provider_id))


def _row(conn: Connection, shop_id: int, provider_id: int) -> Any:
    row = conn.execute(
        select(shop_providers).where(
            shop_providers.c.id == provider_id, shop_providers.c.shop_id == shop_id
        )
    ).first()
    if row is None:
        raise NotFound("provider not found", field="provider_id")
    return row


def get(conn: Connection, shop_id: int, provider_id: int, public_url: str) -> dict[str, Any]:
    """One account, scoped to the shop, without its secrets."""
    return as_json(_row(conn, shop_id, provider_id), public_url)


def list_all(conn: Connection, shop_id: int, public_url: str) -> list[dict[str, Any]]:
    """The shop's accounts by channel and failover order."""
    rows = conn.execute(
        select(shop_providers)
        .where(shop_providers.c.shop_id == shop_id)
        .order_by(shop_providers.c.channel, shop_providers.c.position, shop_providers.c.id)
    )
    return [as_json(r, public_url) for r in rows]


def as_json(row: Any, public_url: str) -> dict[str, Any]:
    """An account as the API shows it: which secrets are set, never their values."""
    return {
        "id": row.id,
        "name": row.name,
        "channel": row.channel,
        "kind": row.kind,
        "position": row.position,
        "active": row.active,
        "settings": row.settings or {},
        "secrets_set": sorted((row.secrets or {}).keys()),
        "rate_per_second": str(row.rate_per_second) if row.rate_per_second is not None else None,
        "concurrency": row.concurrency,
        "callback_url": callback_url(public_url, row.callback_token),
        "cooling_until": row.cooling_until.isoformat() if row.cooling_until else None,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


def accounts(conn: Connection, shop_ids: Iterable[int]) -> list[Account]:
    """The active accounts of these shops, in failover order (for the dispatcher)."""
    ids = sorted(set(shop_ids))
    if not ids:
        return []
    rows = conn.execute(
        select(shop_providers)
        .where(shop_providers.c.shop_id.in_(ids), shop_providers.c.active.is_(True))
        .order_by(shop_providers.c.position, shop_providers.c.id)
    )
    return [_account(r) for r in rows]


def by_token(conn: Connection, token: str) -> Account | None:
    """The account a callback URL's token belongs to."""
    if not token or len(token) > 64:
        return None
    row = conn.execute(
        select(shop_providers).where(shop_providers.c.callback_token == token)
    ).first()
    return _account(row) if row is not None else None


def by_name(conn: Connection, shop_id: int, name: str) -> int:
    """An account's id by its name within the shop (for the CLI)."""
    row = conn.execute(
        select(shop_providers.c.id).where(
            shop_providers.c.shop_id == shop_id, shop_providers.c.name == name
        )
    ).first()
    if row is None:
        raise NotFound(f"no provider named {name!r}", field="name")
    return int(row.id)


def set_cooling(conn: Connection, provider_id: int, until: datetime | None) -> None:
    """Skip (or stop skipping) an account in failover until `until`; shared by all workers.
    Does not touch updated_at, so workers keep their built gateway."""
    conn.execute(
        update(shop_providers).where(shop_providers.c.id == provider_id).values(cooling_until=until)
    )
