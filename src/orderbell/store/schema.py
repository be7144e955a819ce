"""Database schema (SQLAlchemy Core). One schema for SQLite and PostgreSQL; times are UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as UTC; returns aware UTC datetimes on both databases."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes; store UTC (naive on SQLite, which has no zone)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Give back an aware UTC datetime."""
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


Id = BigInteger().with_variant(Integer(), "sqlite")
Money = Numeric(18, 6)


def _id() -> Column[int]:
    return Column("id", Id, primary_key=True, autoincrement=True)


shops = Table(
    "shops",
    metadata,
    _id(),
    Column("name", String(200), nullable=False),
    Column("slug", String(64), nullable=False, unique=True),
    Column("timezone", String(64), nullable=False),
    Column("country", String(2), nullable=False),
    Column("locale", String(16), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("sms_sender", String(16)),
    Column("email_from", String(320)),
    Column("quiet_hours", String(16)),  # "08:00-21:00": the window SMS may go out in
    Column("transactional_obeys_quiet_hours", Boolean, nullable=False, default=False),
    Column("closed_dates", JSON, nullable=False, default=list),
    Column("settings", JSON, nullable=False, default=dict),
    Column("created_at", UtcDateTime, nullable=False),
    # Bumped by every change to the shop, its rules, templates, prices or packages: the
    # ingest path caches those per shop and re-reads them only when this number moves.
    Column("config_version", Integer, nullable=False, default=0, server_default="0"),
)

api_keys = Table(
    "api_keys",
    metadata,
    _id(),
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
    Column("prefix", String(16), nullable=False, unique=True),
    Column("secret_hash", String(128), nullable=False),
    Column("name", String(100), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
)

customers = Table(
    "customers",
    metadata,
    _id(),
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
    Column("external_id", String(200), nullable=False),
    Column("name", String(200)),
    Column("phone", String(20)),
    Column("email", String(320)),
    Column("locale", String(16)),
    Column("sms_transactional", Boolean, nullable=False, default=True),
    Column("sms_marketing", Boolean, nullable=False, default=False),
    Column("email_transactional", Boolean, nullable=False, default=True),
    Column("email_marketing", Boolean, nullable=False, default=False),
    Column("sms_opt_out", String(16)),  # None | "marketing" | "all": set by STOP, cleared by START
    Column("sms_opt_out_at", UtcDateTime),
    Column("email_opt_out", String(16)),  # None | "marketing" | "all": one-click unsubscribe
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("shop_id", "external_id", name="uq_customers_shop_external"),
)

orders = Table(
    "orders",
    metadata,
    _id(),
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
    Column("code", String(100), nullable=False),
    Column("customer_id", ForeignKey("customers.id")),
    Column("status", String(64)),
    Column("total", Money),
    Column("currency", String(3)),
    Column("payment_method", String(64)),
    Column("courier", String(100)),
    Column("tracking_number", String(100)),
    Column("tracking_url", String(1000)),
    Column("placed_at", UtcDateTime),
    Column("estimated_delivery", UtcDateTime),
    Column("preparation_minutes", Integer),
    Column("shipping_country", String(2)),
    Column("state_at", UtcDateTime, nullable=False),  # occurred_at of the newest event applied
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("shop_id", "code", name="uq_orders_shop_code"),
)

order_status_history = Table(
    "order_status_history",
    metadata,
    _id(),
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
    Column("order_id", ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("status", String(64), nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("event_id", ForeignKey("events.id")),
)

events = Table(
    "events",
    metadata,
    _id(),
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
    Column("idempotency_key", String(255), nullable=False),
    Column("body_hash", String(64), nullable=False),
    Column("type", String(100), nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("order_id", ForeignKey("orders.id")),
    Column("payload", JSON, nullable=False),
    Column("outcome", JSON, nullable=False),  # rule verdicts and planned message ids
    Column("received_at", UtcDateTime, nullable=False),
    # NULL while an accepted event (Prefer: respond-async) waits for a worker to plan it
    Column("planned_at", UtcDateTime),
    UniqueConstraint("shop_id", "idempotency_key", name="uq_events_shop_key"),
)
Index(
    "ix_events_waiting",
    events.c.id,
    sqlite_where=events.c.planned_at.is_(None),
    postgresql_where=events.c.planned_at.is_(None),
)

templates = Table(
    "templates",
    metadata,
    _id(),
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("locale", String(16)),
    Column("active", Boolean, nullable=False, default=True),
    Column("version", Integer, nullable=False),  # the active version
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

template_versions = Table(
    "template_versions",
    metadata,
    _id(),
    Column("template_id", ForeignKey("templates.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("subject", Text),
    Column("body", Text, nullable=False),
    Column("html", Text),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("template_id", "version", name="uq_template_versions_tpl_ver"),
)

rules = Table(
    "rules",
    metadata,
    _id(),
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("event_type", String(100), nullable=False),
    Column("group_name", String(100)),
    Column("priority", Integer, nullable=False, default=100),
    Column("definition", JSON, nullable=False),  # the validated RuleIn document
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

messages = Table(
    "messages",
    metadata,
    _id(),
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
    Column("event_id", ForeignKey("events.id")),
    Column("rule_id", ForeignKey("rules.id", ondelete="SET NULL")),
    Column("customer_id", ForeignKey("customers.id")),
    Column("order_id", ForeignKey("orders.id")),
    Column("template_id", ForeignKey("templates.id", ondelete="SET NULL")),
    Column("channel", String(16), nullable=False),
    Column("category", String(16), nullable=False),
    Column("recipient", String(320)),
    Column("status", String(16), nullable=False),
    Column("reason", String(200)),
    Column("due_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime),
    Column("context", JSON, nullable=False),  # template variables as planned (strings)
    Column("subject", Text),
    Column("body", Text),  # the rendered text, once sent
    Column("provider", String(64)),
    Column("provider_message_id", String(200)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease_owner", String(64)),
    Column("lease_until", UtcDateTime),
    Column("segments", Integer),
    Column("cost", Money),
    Column("funding", String(16)),  # "credit" | "allowance": what pays for it
    Column("bucket_id", Id),  # the allowance bucket when funding is "allowance"
    Column("billing", String(16)),  # "reserved" | "debited" | "released"; None = not billed
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime),
    Column("provider_id", Id),  # the shop_providers row it was handed to
    Column("delivered_at", UtcDateTime),
    Column("delivery_code", String(64)),  # the provider's code on the last receipt
    Column("ambiguous", Boolean, nullable=False, default=False, server_default=false()),
    UniqueConstraint("event_id", "rule_id", name="uq_messages_event_rule"),
)
# The fair claim walks due messages per category (transactional before marketing); a
# partial index keeps it small. It is the only index on pending due times (migration 0007):
# given a second one on due_at alone, PostgreSQL took the claim through that and filtered
# on category, walking a due campaign to find the order updates.
Index(
    "ix_messages_pending_category_due",
    messages.c.category,
    messages.c.due_at,
    sqlite_where=messages.c.status.in_(["scheduled", "deferred"]),
    postgresql_where=messages.c.status.in_(["scheduled", "deferred"]),
)
Index(
    "ix_messages_sending_lease",
    messages.c.lease_until,
    sqlite_where=messages.c.status == "sending",
    postgresql_where=messages.c.status == "sending",
)
Index("ix_messages_shop_created", messages.c.shop_id, messages.c.id)
#: Held messages by shop, oldest due first: what a top-up or the worker's look at held
#: messages (`credits.resume_held`, `shops_holding`) reads, without the shop's whole history.
Index(
    "ix_messages_held_shop_due",
    messages.c.shop_id,
    messages.c.due_at,
    messages.c.id,
    sqlite_where=messages.c.status == "held",
    postgresql_where=messages.c.status == "held",
)
Index("ix_messages_provider_ref", messages.c.provider_id, messages.c.provider_message_id)

message_log = Table(
    "message_log",
    metadata,
    _id(),
    Column("message_id", ForeignKey("messages.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("at", UtcDateTime, nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", String(500), nullable=False),
    Column("detail", JSON),
)

attempts = Table(
    "attempts",
    metadata,
    _id(),
    Column("message_id", ForeignKey("messages.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("number", Integer, nullable=False),
    Column("worker", String(64), nullable=False),
    Column("provider", String(64)),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
    Column("outcome", String(16)),
    Column("error_code", String(100)),
    Column("error_message", String(500)),
)


# ---------------------------------------------------------------- credits and pricing

price_plans = Table(
    "price_plans",
    metadata,
    _id(),
    Column("name", String(100), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
)

prices = Table(
    "prices",
    metadata,
    _id(),
    Column("plan_id", ForeignKey("price_plans.id", ondelete="CASCADE")),  # a shared plan …
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE")),  # … or one shop's own
    Column("channel", String(16), nullable=False),
    Column("country", String(2), nullable=False),  # ISO 3166 alpha-2, or "*" for any
    Column("unit_price", Money, nullable=False),  # per SMS segment / per e-mail
)
Index("ix_prices_lookup", prices.c.shop_id, prices.c.plan_id, prices.c.channel, prices.c.country)

credit_accounts = Table(
    "credit_accounts",
    metadata,
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True),
    Column("mode", String(16), nullable=False),  # "prepaid" | "unmetered"
    Column("plan_id", ForeignKey("price_plans.id")),
    Column("available", Money, nullable=False),  # = sum of ledger credits, always
    Column("reserved", Money, nullable=False),  # outstanding reservations (positive)
    Column("billing_day", Integer, nullable=False),
    Column("monthly_cap", Money),
    Column("charge_failed_after_submission", Boolean, nullable=False),
    Column("low_balance_thresholds", JSON, nullable=False),
    Column("low_balance_below", JSON, nullable=False),  # thresholds already notified
    Column("notify_email", String(320)),
    Column("updated_at", UtcDateTime, nullable=False),
    # credits reserved, released, debited or refunded in one shop-local month, [cap_from,
    # cap_until): what a spending cap limits, kept as the ledger is written (migration 0009)
    Column("cap_from", UtcDateTime),
    Column("cap_until", UtcDateTime),
    Column("cap_spent", Money),
)

packages = Table(
    "packages",
    metadata,
    _id(),
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(100), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("allowance", Integer, nullable=False),  # messages per month
    Column("carry_over", String(16), nullable=False),  # none | unlimited | cap | expire
    Column("carry_cap", Integer),
    Column("carry_months", Integer),
    Column("price", Money),
    Column("active", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

allowance_buckets = Table(
    "allowance_buckets",
    metadata,
    _id(),
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("package_id", ForeignKey("packages.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("period", String(7), nullable=False),  # "2026-11": the month it was granted for
    Column("kind", String(16), nullable=False),  # "allowance" | "carry_over"
    Column("remaining", Integer, nullable=False),  # = sum of ledger units on this bucket
    Column("expires_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("package_id", "period", "kind", name="uq_allowance_buckets_period"),
)

ledger = Table(
    "ledger",
    metadata,
    _id(),
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("credits", Money, nullable=False),  # signed
    Column("units", Integer, nullable=False),  # signed allowance messages
    Column("channel", String(16)),
    Column("country", String(2)),
    Column("bucket_id", ForeignKey("allowance_buckets.id", ondelete="SET NULL")),
    Column("message_id", ForeignKey("messages.id", ondelete="SET NULL")),
    Column("rule_id", ForeignKey("rules.id", ondelete="SET NULL")),
    Column("actor", String(100), nullable=False),
    Column("reference", String(200)),
    Column("note", String(300)),
)
Index("ix_ledger_shop_at", ledger.c.shop_id, ledger.c.at, ledger.c.id)
Index("ix_ledger_message", ledger.c.message_id)
#: A top-up's reference (a payment id) is looked up before crediting it again (a retried
#: payment notice); partial: no other entry is in it, so reservations never write to it.
Index(
    "ix_ledger_topup_reference",
    ledger.c.shop_id,
    ledger.c.reference,
    sqlite_where=ledger.c.kind == "topup",
    postgresql_where=ledger.c.kind == "topup",
)


# ---------------------------------------------------------------- admin web users

admin_users = Table(
    "admin_users",
    metadata,
    _id(),
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("email", String(320), nullable=False, unique=True),  # the login, lower-cased
    Column("name", String(200)),
    Column("password_hash", String(200), nullable=False),  # argon2id
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_login_at", UtcDateTime),
)

admin_sessions = Table(
    "admin_sessions",
    metadata,
    _id(),
    Column("user_id", ForeignKey("admin_users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),  # sha256 of the cookie
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)


# ---------------------------------------------------------------- channels

shop_providers = Table(
    "shop_providers",
    metadata,
    _id(),
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(64), nullable=False),  # the shop's label, unique per shop
    Column("channel", String(16), nullable=False),  # "sms" | "email"
    Column(
        "kind", String(32), nullable=False
    ),  # kannel | smsapi | serwersms | twilio | http | smtp
    Column("position", Integer, nullable=False, default=0),  # failover order, lowest first
    Column("active", Boolean, nullable=False, default=True),
    Column("settings", JSON, nullable=False, default=dict),  # non-secret configuration
    Column("secrets", JSON, nullable=False, default=dict),  # write-only: never returned or logged
    Column("rate_per_second", Numeric(10, 3)),  # pacing across all workers; None = unpaced
    Column("concurrency", Integer),  # requests in flight per worker; None = provider default
    Column("callback_token", String(64), nullable=False, unique=True),  # secret in callback URLs
    Column("paced_until", UtcDateTime),  # the next free send slot, shared by all workers
    Column("cooling_until", UtcDateTime),  # skipped by failover until then
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("shop_id", "name", name="uq_shop_providers_shop_name"),
)

delivery_receipts = Table(
    "delivery_receipts",
    metadata,
    _id(),
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
    Column("provider_id", ForeignKey("shop_providers.id", ondelete="CASCADE"), nullable=False),
    Column("provider_message_id", String(200)),
    Column("message_id", ForeignKey("messages.id", ondelete="CASCADE")),  # None until matched
    Column("state", String(16), nullable=False),  # accepted | delivered | undelivered | failed
    Column("code", String(64)),
    Column("at", UtcDateTime),  # the provider's time, when it gives one
    Column("received_at", UtcDateTime, nullable=False),
    Column("applied", Boolean, nullable=False, default=False),
)
Index(
    "ix_delivery_receipts_pending",
    delivery_receipts.c.provider_id,
    delivery_receipts.c.provider_message_id,
)

inbound_messages = Table(
    "inbound_messages",
    metadata,
    _id(),
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
    Column("provider_id", ForeignKey("shop_providers.id", ondelete="SET NULL")),
    Column("channel", String(16), nullable=False),
    Column("sender", String(320), nullable=False),  # E.164 where it parses, else as received
    Column("recipient", String(320)),
    Column("text", Text, nullable=False),
    Column("provider_message_id", String(200)),
    Column("customer_id", ForeignKey("customers.id", ondelete="SET NULL")),
    Column("order_id", ForeignKey("orders.id", ondelete="SET NULL")),  # the customer's latest
    Column("intent", String(16)),  # "stop" | "start" | None
    Column("received_at", UtcDateTime, nullable=False),
    Column("read_at", UtcDateTime),
    UniqueConstraint("provider_id", "provider_message_id", name="uq_inbound_provider_msg"),
)
Index("ix_inbound_messages_shop", inbound_messages.c.shop_id, inbound_messages.c.id)

template_attachments = Table(
    "template_attachments",
    metadata,
    _id(),
    Column("template_id", ForeignKey("templates.id", ondelete="CASCADE"), nullable=False),
    Column("filename", String(255), nullable=False),
    Column("content_type", String(100), nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("template_id", "filename", name="uq_template_attachments_name"),
)

event_attachments = Table(
    "event_attachments",
    metadata,
    _id(),
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
    Column("event_id", ForeignKey("events.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("order_id", ForeignKey("orders.id", ondelete="CASCADE")),
    Column("filename", String(255), nullable=False),
    Column("content_type", String(100), nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)
