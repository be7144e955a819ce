"""What the ingest path needs to know about a shop, cached per process.

A shop's rules, templates and prices change rarely and are read on every event. They are
kept here per shop together with the shop's ``config_version``; every writer of that
configuration bumps the version (``store.shops.bump_config``), so one indexed read of the
version per event tells whether the cached copy is still the truth — in this process and
in every other one on the same database.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import Connection, select

from orderbell.billing import credits
from orderbell.billing import prices as price_book
from orderbell.domain.model import Channel, Rule, Shop, TemplateKind
from orderbell.engine.planner import TemplateInfo
from orderbell.errors import NotFound
from orderbell.store import rules as rule_store
from orderbell.store import shops as shop_store
from orderbell.store import templates as template_store
from orderbell.store.driver import Driver
from orderbell.store.schema import packages


def template_infos(
    conn: Connection, shop_id: int, rules: Sequence[Rule]
) -> dict[int, TemplateInfo]:
    """The templates the given rules use (with their active versions), scoped to the shop."""
    rows = template_store.with_versions(conn, shop_id, {r.action.template_id for r in rules})
    return {
        r.id: TemplateInfo(
            id=r.id,
            kind=TemplateKind(r.kind),
            channel=Channel(r.channel),
            active=r.active,
            locale=r.locale,
            version=r.version,
            source=template_store.source(r._mapping),
        )
        for r in rows
    }


@dataclass(kw_only=True)
class ShopConfig:
    """One version of a shop's configuration."""

    version: int
    shop: Shop
    rules: dict[str, list[Rule]]  #: by event type, in evaluation order
    templates: dict[int, TemplateInfo]
    has_packages: bool  #: False: no allowance can pay for anything, skip looking
    _prices: dict[tuple[int | None, Channel, str | None], Decimal] = field(default_factory=dict)

    def unit_price(
        self, conn: Connection, plan_id: int | None, channel: Channel, country: str | None
    ) -> Decimal:
        """The unit price for a destination, read once per version."""
        key = (plan_id, channel, country)
        price = self._prices.get(key)
        if price is None:
            price = price_book.unit_price(conn, self.shop.id, plan_id, channel, country)
            self._prices[key] = price
        return price


_VERSION = "SELECT config_version FROM shops WHERE id = ?"
_VERSION_AND_ACCOUNT = (
    "SELECT s.config_version, "  # noqa: S608 - schema names
    + ", ".join(f"a.{name.strip()}" for name in credits.ACCOUNT_COLUMNS.split(","))
    + " FROM shops s LEFT JOIN credit_accounts a ON a.shop_id = s.id WHERE s.id = ?"
)


class ShopConfigCache:
    """Per-process cache of `ShopConfig`, checked against the database on every use."""

    def __init__(self) -> None:
        self._configs: dict[int, ShopConfig] = {}
        self._lock = threading.Lock()

    def get(self, conn: Connection, shop_id: int) -> ShopConfig:
        """The shop's current configuration (one small read when the cache is current)."""
        config, _ = self.get_with_account(conn, shop_id, account=False)
        return config

    def get_with_account(
        self, conn: Connection, shop_id: int, *, account: bool = True
    ) -> tuple[ShopConfig, credits.Account | None]:
        """`get`, and on SQLite (with `account`) the shop's credit account, read with the
        version in one query: the transaction already holds SQLite's write lock, so the
        account stays as read until it ends. On PostgreSQL the account is None: the
        ingest side locks its transaction's accounts up front (`Reservations.lock`), and
        others read it FOR UPDATE when a priced message needs it."""
        db = Driver(conn)
        joined = account and db.sqlite
        rows = db.rows(_VERSION_AND_ACCOUNT if joined else _VERSION, (shop_id,))
        if not rows:
            raise NotFound("shop not found", field="shop")
        version, *columns = rows[0]
        found = credits.account_from_row(columns) if joined and columns[0] is not None else None
        return self._current(conn, shop_id, int(version)), found

    def _current(self, conn: Connection, shop_id: int, version: int) -> ShopConfig:
        cached = self._configs.get(shop_id)
        if cached is not None and cached.version == version:
            return cached
        config = self._load(conn, shop_id, version)
        with self._lock:
            self._configs[shop_id] = config
        return config

    def recent(self, conn: Connection, shop_id: int) -> ShopConfig:
        """The cached configuration without checking its version (read once if none is
        cached): for checks a moment's staleness cannot harm."""
        cached = self._configs.get(shop_id)
        return cached if cached is not None else self.get(conn, shop_id)

    @staticmethod
    def _load(conn: Connection, shop_id: int, version: int) -> ShopConfig:
        shop = shop_store.get(conn, shop_id)
        by_type: dict[str, list[Rule]] = {}
        for event_type, rule in rule_store.all_for_shop(conn, shop_id):
            by_type.setdefault(event_type, []).append(rule)
        every = [r for rules in by_type.values() for r in rules]
        has_packages = (
            conn.execute(
                select(packages.c.id).where(packages.c.shop_id == shop_id).limit(1)
            ).first()
            is not None
        )
        return ShopConfig(
            version=version,
            shop=shop,
            rules=by_type,
            templates=template_infos(conn, shop_id, every),
            has_packages=has_packages,
        )
