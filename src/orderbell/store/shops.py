"""Shops and their API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from orderbell.api.schemas import ShopIn, ShopPatch, parse_clock
from orderbell.domain import calendar
from orderbell.domain.model import SMS_MAX_SEGMENTS_DEFAULT, HourRange, Shop
from orderbell.errors import Conflict, NotFound, Unauthorized
from orderbell.store.db import new_id
from orderbell.store.schema import api_keys, shops

KEY_PREFIX = "ob_"


def hour_range(text: str | None) -> HourRange | None:
    """Turn a validated 'HH:MM-HH:MM' into an HourRange."""
    if not text:
        return None
    start, end = text.replace("–", "-").split("-", 1)
    return HourRange(start=parse_clock(start), end=parse_clock(end))


def to_shop(row: Any) -> Shop:
    """A shops row as a domain Shop."""
    return Shop(
        id=row.id,
        name=row.name,
        slug=row.slug,
        timezone=row.timezone,
        country=row.country,
        locale=row.locale,
        currency=row.currency,
        sms_sender=row.sms_sender,
        email_from=row.email_from,
        email_from_name=(row.settings or {}).get("email_from_name"),
        email_reply_to=(row.settings or {}).get("email_reply_to"),
        quiet_hours=hour_range(row.quiet_hours),
        transactional_obeys_quiet_hours=row.transactional_obeys_quiet_hours,
        closed_dates=frozenset(date.fromisoformat(d) for d in row.closed_dates or ()),
        **sms_settings(row),
    )


def sms_settings(row: Any) -> dict[str, Any]:
    """The shop's SMS text settings from its settings JSON, defaults filled in."""
    settings = row.settings or {}
    return {
        "sms_transliterate": bool(settings.get("sms_transliterate", False)),
        # a stored null is the shop's choice of no cap; a missing key is the default cap
        "sms_max_segments": settings.get("sms_max_segments", SMS_MAX_SEGMENTS_DEFAULT),
    }


def shop_json(row: Any) -> dict[str, Any]:
    """A shops row as the API shows it."""
    return {
        "id": row.id,
        "name": row.name,
        "slug": row.slug,
        "timezone": row.timezone,
        "country": row.country,
        "locale": row.locale,
        "currency": row.currency,
        "sms_sender": row.sms_sender,
        "email_from": row.email_from,
        "email_from_name": (row.settings or {}).get("email_from_name"),
        "email_reply_to": (row.settings or {}).get("email_reply_to"),
        "quiet_hours": row.quiet_hours,
        "transactional_obeys_quiet_hours": row.transactional_obeys_quiet_hours,
        "closed_dates": list(row.closed_dates or ()),
        "stop_scope": (row.settings or {}).get("stop_scope", "marketing"),
        **sms_settings(row),
        "created_at": row.created_at.isoformat(),
    }


def _check(values: dict[str, Any]) -> dict[str, Any]:
    if values.get("timezone") is not None:
        calendar.zone(values["timezone"], field="timezone")
    if values.get("country") is not None:
        values["country"] = calendar.validate_country(values["country"], field="country")
    if values.get("sms_sender") is not None:
        from orderbell.domain.addresses import check_sender_name

        values["sms_sender"] = check_sender_name(values["sms_sender"], field="sms_sender")
    if values.get("email_from") is not None:
        from orderbell.domain.addresses import parse_email

        values["email_from"] = parse_email(values["email_from"], field="email_from")
    if values.get("email_from_name") is not None:
        from orderbell.channels.smtp import check_display_name

        values["email_from_name"] = check_display_name(
            values["email_from_name"], field="email_from_name"
        )
    if values.get("email_reply_to") is not None:
        from orderbell.domain.addresses import parse_email

        values["email_reply_to"] = parse_email(values["email_reply_to"], field="email_reply_to")
    if values.get("closed_dates") is not None:
        values["closed_dates"] = sorted({d.isoformat() for d in values["closed_dates"]})
    return values


#: Shop settings kept in the shops.settings JSON column (no column of their own).
SETTINGS_KEYS = (
    "email_from_name",
    "email_reply_to",
    "stop_scope",
    "sms_transliterate",
    "sms_max_segments",
)
#: Settings whose null is a value of its own (no cap), kept rather than reset to the default.
NULLABLE_SETTINGS = frozenset({"sms_max_segments"})


def _split_settings(values: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """Move SETTINGS_KEYS out of `values` into a new settings dict (None removes a key,
    except for NULLABLE_SETTINGS, where it is stored)."""
    settings = dict(current)
    for key in SETTINGS_KEYS:
        if key in values:
            value = values.pop(key)
            if value is None and key not in NULLABLE_SETTINGS:
                settings.pop(key, None)
            else:
                settings[key] = value
    return settings


def create(conn: Connection, data: ShopIn, now: datetime) -> Any:
    """Insert a shop; the slug must be new."""
    from orderbell.billing.credits import open_account

    values = _check(data.model_dump(exclude={"billing"}))
    if conn.execute(select(shops.c.id).where(shops.c.slug == data.slug)).first():
        raise Conflict(f"a shop with slug {data.slug!r} exists", field="slug")
    values.update(created_at=now, settings=_split_settings(values, {}))
    shop_id = new_id(conn.execute(shops.insert().values(**values)))
    open_account(conn, shop_id, now, mode=data.billing)
    return get_row(conn, shop_id)


def patch(conn: Connection, shop_id: int, data: ShopPatch) -> Any:
    """Update some fields of a shop."""
    values = _check(data.model_dump(exclude_unset=True))
    if any(key in values for key in SETTINGS_KEYS):
        current = get_row(conn, shop_id).settings or {}
        values["settings"] = _split_settings(values, current)
    if values:
        conn.execute(
            update(shops)
            .where(shops.c.id == shop_id)
            .values(**values, config_version=shops.c.config_version + 1)
        )
    return get_row(conn, shop_id)


def bump_config(conn: Connection, shop_id: int) -> None:
    """Mark the shop's configuration (rules, templates, prices, packages) as changed, so
    every process re-reads what it cached for the shop."""
    conn.execute(_BUMP, {"b_shop_id": shop_id})


def bump_config_of_plan(conn: Connection, plan_id: int) -> None:
    """Mark every shop on a price plan as changed."""
    from orderbell.store.schema import credit_accounts

    conn.execute(
        update(shops)
        .where(
            shops.c.id.in_(
                select(credit_accounts.c.shop_id).where(credit_accounts.c.plan_id == plan_id)
            )
        )
        .values(config_version=shops.c.config_version + 1)
    )


_KEY_BY_PREFIX = select(api_keys.c.shop_id, api_keys.c.secret_hash, api_keys.c.revoked_at).where(
    api_keys.c.prefix == bindparam("prefix")
)
_BUMP = (
    update(shops)
    .where(shops.c.id == bindparam("b_shop_id"))
    .values(config_version=shops.c.config_version + 1)
)


def get_row(conn: Connection, shop_id: int) -> Any:
    """A shops row by id."""
    row = conn.execute(select(shops).where(shops.c.id == shop_id)).first()
    if row is None:
        raise NotFound("shop not found", field="shop")
    return row


def by_slug(conn: Connection, slug: str) -> Any:
    """A shops row by slug, or NotFound."""
    row = conn.execute(select(shops).where(shops.c.slug == slug)).first()
    if row is None:
        raise NotFound(f"no shop with slug {slug!r}", field="shop")
    return row


def get(conn: Connection, shop_id: int) -> Shop:
    """A domain Shop by id."""
    return to_shop(get_row(conn, shop_id))


def _hash(secret: str) -> str:
    # API keys are 32 random bytes: a fast hash is enough (no dictionary to attack).
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(conn: Connection, shop_id: int, name: str, now: datetime) -> tuple[int, str]:
    """Create an API key; the plain key is returned once and stored only hashed."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key_id = new_id(
        conn.execute(
            api_keys.insert().values(
                shop_id=shop_id, prefix=prefix, secret_hash=_hash(secret), name=name, created_at=now
            )
        )
    )
    return key_id, f"{KEY_PREFIX}{prefix}_{secret}"


class KeyCache:
    """Shops of API keys verified in the last `ttl` seconds, so a busy client's requests
    skip the key lookup. Entries are keyed by the SHA-256 of the whole key (the key itself is
    never kept); failures are never cached. A revocation made through this process clears
    the cache at once; one made by another process applies here within `ttl` seconds
    (`ORDERBELL_API_KEY_CACHE_SECONDS`, 0 turns the cache off)."""

    def __init__(
        self, ttl: float, *, size: int = 10_000, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self._size = size
        self._now = now
        self._lock = threading.Lock()
        self._shops: dict[str, tuple[float, int]] = {}
        #: bumped by `clear`: a lookup that began before a revocation must not be cached
        self.generation = 0

    def get(self, key: str) -> int | None:
        """The shop a recently verified key belongs to, or None."""
        if self.ttl <= 0:
            return None
        found = self._shops.get(_hash(key))
        if found is None or found[0] <= self._now():
            return None
        return found[1]

    def put(self, key: str, shop_id: int, generation: int) -> None:
        """Remember a key verified by a lookup that started at `generation` — unless the
        cache was cleared since (that lookup may have read the key before its revocation)."""
        if self.ttl <= 0:
            return
        with self._lock:
            if generation != self.generation:
                return
            if len(self._shops) >= self._size:
                self._shops.clear()
            self._shops[_hash(key)] = (self._now() + self.ttl, shop_id)

    def clear(self) -> None:
        """Forget every key (after a revocation)."""
        with self._lock:
            self.generation += 1
            self._shops.clear()


def authenticate(conn: Connection, key: str) -> int:
    """The shop id an API key belongs to, or Unauthorized."""
    if not key.startswith(KEY_PREFIX) or key.count("_") < 2:
        raise Unauthorized("malformed API key", field="authorization")
    prefix, secret = key[len(KEY_PREFIX) :].split("_", 1)
    row = conn.execute(_KEY_BY_PREFIX, {"prefix": prefix}).first()
    if row is None or row.revoked_at is not None:
        raise Unauthorized("unknown or revoked API key", field="authorization")
    if not hmac.compare_digest(row.secret_hash, _hash(secret)):
        raise Unauthorized("unknown or revoked API key", field="authorization")
    return int(row.shop_id)


def list_keys(conn: Connection, shop_id: int) -> list[dict[str, Any]]:
    """The shop's API keys, without secrets."""
    rows = conn.execute(
        select(api_keys).where(api_keys.c.shop_id == shop_id).order_by(api_keys.c.id)
    )
    return [
        {
            "id": r.id,
            "name": r.name,
            "prefix": r.prefix,
            "created_at": r.created_at.isoformat(),
            "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
        }
        for r in rows
    ]


def revoke_key(conn: Connection, shop_id: int, key_id: int, now: datetime) -> None:
    """Revoke one of the shop's keys."""
    result = conn.execute(
        update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.shop_id == shop_id)
        .values(revoked_at=now)
    )
    if result.rowcount == 0:
        raise NotFound("API key not found", field="key_id")
