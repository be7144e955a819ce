"""The domain model: plain, frozen value objects and status enums. No I/O here."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any


def require_aware(value: datetime, name: str) -> datetime:
    """Refuse naive datetimes: every instant in orderbell carries its offset."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must carry a timezone offset")
    return value


class Channel(enum.StrEnum):
    """Where a message goes."""

    SMS = "sms"  #: a text message to a mobile number
    EMAIL = "email"  #: an e-mail to an address


class Category(enum.StrEnum):
    """Why a message is sent; consent is kept per category."""

    TRANSACTIONAL = "transactional"  #: about an order the customer placed
    MARKETING = "marketing"  #: campaigns and promotions; needs explicit consent


class TemplateKind(enum.StrEnum):
    """Which variable group a template may use."""

    ORDER = "order"  #: order notifications (customer, order, shipping variables)
    CAMPAIGN = "campaign"  #: promotions (promotion name, promo code)


class EventType(enum.StrEnum):
    """Built-in order event types. Custom events are ``custom.<name>``."""

    ORDER_CREATED = "order.created"  #: a new order was placed
    ORDER_STATUS_CHANGED = "order.status_changed"  #: the order moved to a shop-defined status
    ORDER_SHIPPED = "order.shipped"  #: courier and tracking number entered
    ORDER_DELIVERED = "order.delivered"  #: the parcel reached the customer


CUSTOM_EVENT_PREFIX = "custom."


#: The built-in event types' names (checked for every event that comes in).
_BUILT_IN_TYPES = frozenset(e.value for e in EventType)


def is_known_event_type(value: str) -> bool:
    """True for the built-in types and for ``custom.<name>``."""
    if value in _BUILT_IN_TYPES:
        return True
    return value.startswith(CUSTOM_EVENT_PREFIX) and len(value) > len(CUSTOM_EVENT_PREFIX)


class MessageStatus(enum.StrEnum):
    """Where a message is in its life. Terminal ones never change again (except receipts)."""

    SCHEDULED = "scheduled"  #: waiting for its due time
    DEFERRED = "deferred"  #: due, but pushed later (quiet hours, retry backoff)
    SENDING = "sending"  #: claimed by a worker, attempt in progress
    SENT = "sent"  #: accepted by the provider
    DELIVERED = "delivered"  #: the provider confirmed delivery
    UNDELIVERED = "undelivered"  #: the provider reported it could not deliver
    FAILED = "failed"  #: gave up: permanent error or retries exhausted
    EXPIRED = "expired"  #: validity passed before it could be sent
    SUPPRESSED = "suppressed"  #: deliberately not sent (opt-out, no address, order cancelled)
    HELD = "held"  #: waiting on something the shop must fix (e.g. credit)


PENDING_STATUSES = frozenset({MessageStatus.SCHEDULED, MessageStatus.DEFERRED})
TERMINAL_STATUSES = frozenset(
    {
        MessageStatus.DELIVERED,
        MessageStatus.UNDELIVERED,
        MessageStatus.FAILED,
        MessageStatus.EXPIRED,
        MessageStatus.SUPPRESSED,
    }
)


class HolidayMode(enum.StrEnum):
    """How a rule treats public holidays and the shop's closed days."""

    ANY = "any"  #: holidays do not matter
    ONLY = "only"  #: the rule applies only on holidays / closed days
    EXCLUDE = "exclude"  #: the rule never applies on holidays / closed days


@dataclass(frozen=True, slots=True, kw_only=True)
class HourRange:
    """A daily range [start, end) in shop-local time. end <= start crosses midnight;
    end == 00:00 means "until midnight"; start == end means the whole day."""

    start: time
    end: time

    def contains(self, moment: time) -> bool:
        """True when a local wall-clock time falls in the range."""
        moment = moment.replace(tzinfo=None)
        if self.start == self.end:
            return True
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


#: The segment cap a shop has until it chooses another (see the README: "SMS length and cost").
SMS_MAX_SEGMENTS_DEFAULT = 10
#: The highest cap a shop may set; a higher one is no cap at all (None).
SMS_MAX_SEGMENTS_LIMIT = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class Shop:
    """A tenant: one online shop."""

    id: int
    name: str
    slug: str
    timezone: str = "UTC"
    country: str = "US"
    locale: str = "en"
    currency: str = "USD"
    sms_sender: str | None = None
    email_from: str | None = None
    email_from_name: str | None = None  #: the From display name ("Flower Shop")
    email_reply_to: str | None = None  #: where customers' replies go (a shop setting)
    quiet_hours: HourRange | None = None  #: the window in which SMS may be sent (e.g. 08-21)
    transactional_obeys_quiet_hours: bool = False
    closed_dates: frozenset[date] = frozenset()
    #: send Latin letters GSM-7 lacks (ą, č, ş …) as their plain spelling: GSM-7, fewer segments
    sms_transliterate: bool = False
    #: an SMS longer than this many segments is held, never sent; None: no cap
    sms_max_segments: int | None = SMS_MAX_SEGMENTS_DEFAULT


#: The `Consent` field of each channel and category: "sms_transactional", …
_CONSENT_FIELDS = {(ch, cat): f"{ch.value}_{cat.value}" for ch in Channel for cat in Category}


@dataclass(frozen=True, slots=True, kw_only=True)
class Consent:
    """A customer's consent per channel and category."""

    sms_transactional: bool = True
    sms_marketing: bool = False
    email_transactional: bool = True
    email_marketing: bool = False
    #: the customer's own unsubscribe (one-click link): None, "marketing" or "all"
    email_opt_out: str | None = None

    def allows(self, channel: Channel, category: Category) -> bool:
        """May this customer be messaged on this channel for this category?"""
        if channel is Channel.EMAIL and self.email_opt_out in ("all", category):
            return False
        return bool(getattr(self, _CONSENT_FIELDS[channel, category]))


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerInfo:
    """The customer as an event or the store knows them."""

    name: str | None = None
    phone: str | None = None  #: E.164
    email: str | None = None
    locale: str | None = None
    consent: Consent = field(default_factory=Consent)
    sms_opt_out: str | None = None  #: "marketing" | "all" after a STOP reply, else None


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderSnapshot:
    """The order as of one event."""

    code: str
    status: str | None = None
    total: Decimal | None = None
    currency: str | None = None
    payment_method: str | None = None
    courier: str | None = None
    tracking_number: str | None = None
    tracking_url: str | None = None
    placed_at: datetime | None = None
    estimated_delivery: datetime | None = None
    preparation_minutes: int | None = None
    shipping_country: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderEvent:
    """One thing that happened to an order, as the rules see it."""

    type: str
    occurred_at: datetime
    order: OrderSnapshot
    customer: CustomerInfo
    status: str | None = None  #: target status for status changes
    from_status: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require_aware(self.occurred_at, "occurred_at")


@dataclass(frozen=True, slots=True, kw_only=True)
class Trigger:
    """Which events a rule reacts to."""

    event_type: str
    to_status: str | None = None
    from_status: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeConditions:
    """Conditions on the shop-local time the event happened."""

    weekdays: frozenset[int] | None = None  #: 0 = Monday … 6 = Sunday; None = every day
    hours: tuple[HourRange, ...] = ()  #: empty = all day; else the time must be in one range
    holidays: HolidayMode = HolidayMode.ANY


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderConditions:
    """Optional conditions on order fields."""

    payment_methods: frozenset[str] | None = None
    total_min: Decimal | None = None
    total_max: Decimal | None = None
    countries: frozenset[str] | None = None  #: destination countries (ISO 3166 alpha-2)


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    """What a matching rule does."""

    channel: Channel
    template_id: int
    delay_minutes: int = 0
    days_after: int | None = None  #: follow-up N days after the event …
    at_local_time: time | None = None  #: … at this shop-local time (with days_after)
    validity_minutes: int | None = None  #: unsent after occurred_at + validity → expired
    send_window: HourRange | None = None  #: overrides the shop's quiet hours for this rule
    category: Category = Category.TRANSACTIONAL


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """A shop's rule: trigger + conditions + action."""

    id: int
    name: str
    trigger: Trigger
    action: Action
    active: bool = True
    time: TimeConditions = field(default_factory=TimeConditions)
    order: OrderConditions = field(default_factory=OrderConditions)
    group: str | None = None  #: rules in one group are exclusive
    priority: int = 100  #: lower first


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleVerdict:
    """Why a rule did or did not match an event."""

    rule_id: int
    rule_name: str
    matched: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape the API, the simulator and the ingest result share."""
        return {
            "rule_id": self.rule_id,
            "rule": self.rule_name,
            "matched": self.matched,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """When a matched rule's message is due and until when it may go out."""

    rule_id: int
    channel: Channel
    category: Category
    due_at: datetime  #: UTC
    expires_at: datetime | None  #: UTC
    notes: tuple[str, ...] = ()  #: why the due time is what it is ("deferred to 08:00 …")


def text_problem(value: str) -> str | None:
    """Why a text cannot be stored (None when it can): PostgreSQL's text refuses NUL bytes,
    and a lone surrogate (what Python makes of bytes that are not UTF-8, e.g. from a command
    line) has no UTF-8 form."""
    if "\x00" in value:
        return "must not contain NUL bytes"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must not contain lone surrogates"
    return None
