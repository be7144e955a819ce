"""The documented template variables per template kind, and the contexts that fill them.

Every context value is a plain ``str`` so that a context can be stored as JSON with its message
and rendered later. Values are data only: they are never rendered as templates themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from types import MappingProxyType
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time
from babel.numbers import format_currency
from babel.units import format_unit

from orderbell.domain.model import (
    CUSTOM_EVENT_PREFIX,
    CustomerInfo,
    EventType,
    OrderSnapshot,
    Shop,
    TemplateKind,
)
from orderbell.domain.sms_text import Charset
from orderbell.integrations.tracking import tracking_url as carrier_tracking_url

CUSTOM_EVENTS = CUSTOM_EVENT_PREFIX + "*"  #: in ``Variable.events``: every ``custom.<name>``


@dataclass(frozen=True, slots=True)
class Variable:
    """One documented template variable.

    `max_length` and `charset` are what a template's worst case counts for it when the
    template is saved (``templates/worst_case.py``). For a value bounded by our own input
    limits or formatting they are its real bounds; for free text (names, product names) they
    are a budget: a longer value is still accepted, and the message it makes is held at send
    time if it passes the shop's segment cap.
    """

    name: str
    description: str
    example: str
    events: frozenset[str] | None = None  #: None = available at every event
    max_length: int = 100  #: characters counted in a template's worst case
    charset: Charset = Charset.LATIN  #: which characters its value may carry


_SHIPPING = frozenset(
    {
        EventType.ORDER_SHIPPED.value,
        EventType.ORDER_DELIVERED.value,
        EventType.ORDER_STATUS_CHANGED.value,
        CUSTOM_EVENTS,
    }
)

# Worst-case lengths: names 100 (a budget: the API takes 200, longer names are rare and are
# caught at send time), first names 50; the shop's name is known when a template is saved.
_CUSTOMER_NAME = Variable(
    "customer_name", "The customer's full name", "Anna Kowalska", max_length=100
)
_SHOP_NAME = Variable("shop_name", "The shop's name", "Kwiaciarnia Róża", max_length=200)


def _table(*items: Variable) -> Mapping[str, Variable]:
    return MappingProxyType({v.name: v for v in items})


_CATALOGUE: Mapping[TemplateKind, Mapping[str, Variable]] = {
    TemplateKind.ORDER: _table(
        _CUSTOMER_NAME,
        Variable("customer_first_name", "The customer's first name", "Anna", max_length=50),
        _SHOP_NAME,
        # platform order numbers ("#1001", "ZK-10482") are short ASCII; 64 is generous
        Variable(
            "order_code",
            "The order number the customer sees",
            "ZK-10482",
            max_length=64,
            charset=Charset.GSM,
        ),
        # up to 1e12 with decimals, grouping and the currency as the locale writes it
        Variable(
            "order_total",
            "The order total with currency, in the locale",
            "129,90 zł",
            max_length=32,
        ),
        Variable("payment_method", "How the customer pays", "cash on delivery", max_length=50),
        Variable(
            "product_name",
            "The product ordered (the event's data.product_name), free text",
            "Bukiet 21 róż",
            max_length=100,
            charset=Charset.ANY,
        ),
        Variable("courier", "The courier's name", "InPost", _SHIPPING, max_length=50),
        # the longest common formats: USPS 34 digits, InPost 24, UPS 18
        Variable(
            "tracking_number",
            "The parcel's tracking number",
            "6800123456789",
            _SHIPPING,
            max_length=40,
            charset=Charset.GSM,
        ),
        # carriers' pages we build are under 100 characters; platforms' own links run longer
        Variable(
            "tracking_url",
            "The courier's tracking page for the parcel",
            "https://inpost.pl/sledzenie-przesylek?number=6800123456789",
            _SHIPPING,
            max_length=300,
            charset=Charset.GSM,
        ),
        # a medium date and a short time in any locale ("12 paź 2025, 14:30")
        Variable(
            "estimated_delivery",
            "The expected delivery date and time, in the shop's time zone",
            "12 mar 2025, 14:30",
            max_length=40,
        ),
        Variable(
            "preparation_time", "How long the order takes to prepare", "30 min", max_length=20
        ),
        # statuses are at most 64 characters (the API's limit)
        Variable("status", "The order's current status", "shipped", max_length=64),
    ),
    TemplateKind.CAMPAIGN: _table(
        Variable(
            "promotion_name",
            "The promotion's name",
            "Spring sale",
            max_length=100,
            charset=Charset.ANY,
        ),
        Variable("promo_code", "The discount code", "SPRING20", max_length=32, charset=Charset.GSM),
        _CUSTOMER_NAME,
        _SHOP_NAME,
        # {public_url}/u/ and a token of about 60 characters
        Variable(
            "unsubscribe_url",
            "The link to stop marketing e-mail (e-mail campaigns)",
            "https://example.com/u/abc123",
            max_length=200,
            charset=Charset.GSM,
        ),
    ),
}


def variables(kind: TemplateKind) -> Mapping[str, Variable]:
    """The documented variables of a template kind, by name."""
    return _CATALOGUE[TemplateKind(kind)]


def is_available(variable: Variable, event_type: str | None) -> bool:
    """Whether a variable has a value at an event type (None = any event)."""
    if variable.events is None or event_type is None:
        return True
    if event_type in variable.events:
        return True
    return (
        CUSTOM_EVENTS in variable.events
        and event_type.startswith(CUSTOM_EVENT_PREFIX)
        and len(event_type) > len(CUSTOM_EVENT_PREFIX)
    )


def available(kind: TemplateKind, event_type: str | None) -> frozenset[str]:
    """The names of the variables of a kind that have a value at an event type."""
    return frozenset(n for n, v in variables(kind).items() if is_available(v, event_type))


@lru_cache(maxsize=256)
def _locale(*candidates: str | None) -> Locale:
    for candidate in candidates:
        if not candidate:
            continue
        try:
            return Locale.parse(str(candidate).replace("-", "_"))
        except (UnknownLocaleError, ValueError, TypeError, LookupError):
            continue
    return Locale.parse("en")


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ValueError, LookupError, OSError):
        return ZoneInfo("UTC")


def _plain(text: str) -> str:
    """Babel's no-break spaces become plain spaces: they would force UCS-2 in an SMS."""
    return text.replace("\u00a0", " ").replace("\u202f", " ")


@lru_cache(maxsize=4096)  # babel's formatting is slow and its inputs repeat
def format_money(amount: Decimal, currency: str, locale: Locale) -> str:
    """An amount with its currency, as the locale writes it ("129,90 zł", "$409.94")."""
    try:
        return _plain(format_currency(amount, currency, locale=locale))
    except (ValueError, TypeError, LookupError, ArithmeticError):
        return f"{amount:.2f} {currency}"


def format_local(moment: datetime, zone: ZoneInfo, locale: Locale) -> str:
    """A date and time in the shop's zone, as the locale writes it ("12 mar 2025, 14:30")."""
    local = moment.astimezone(zone) if moment.tzinfo is not None else moment
    try:
        pattern = str(locale.datetime_formats["medium"])
        day = format_date(local, "medium", locale=locale)
        clock = format_time(local, "short", locale=locale)
        return _plain(pattern.replace("{1}", day).replace("{0}", clock))
    except (ValueError, TypeError, LookupError):
        return local.strftime("%Y-%m-%d %H:%M")


def format_minutes(minutes: int, locale: Locale) -> str:
    """A duration in the locale's short units ("30 min", "1 h 30 min")."""
    try:
        hours, rest = divmod(max(int(minutes), 0), 60)
        parts = []
        if hours:
            parts.append(format_unit(hours, "duration-hour", length="short", locale=locale))
        if rest or not hours:
            parts.append(format_unit(rest, "duration-minute", length="short", locale=locale))
        return _plain(" ".join(parts))
    except (ValueError, TypeError, LookupError):
        return f"{minutes} min"


def _http(url: str | None) -> str:
    return url.strip() if url and url.strip().lower().startswith(("https://", "http://")) else ""


def build_context(
    kind: TemplateKind,
    *,
    shop: Shop,
    order: OrderSnapshot | None,
    customer: CustomerInfo,
    locale: str | None = None,
    extra: Mapping[str, str] | None = None,
    tracking_url: str | None = None,
) -> dict[str, str]:
    """The variables of a template kind for one message, every value a plain string."""
    loc = _locale(locale, shop.locale, "en")
    name = " ".join((customer.name or "").split())
    values: dict[str, str] = {
        "customer_name": name,
        "customer_first_name": name.split(" ", 1)[0] if name else "",
        "shop_name": shop.name,
    }
    if order is not None:
        values.update(
            order_code=order.code,
            payment_method=order.payment_method or "",
            courier=order.courier or "",
            tracking_number=order.tracking_number or "",
            tracking_url=_http(tracking_url) or _http(order.tracking_url),
            status=order.status or "",
        )
        if order.total is not None:
            currency = order.currency or shop.currency
            values["order_total"] = format_money(order.total, currency, loc)
        if order.estimated_delivery is not None:
            values["estimated_delivery"] = format_local(
                order.estimated_delivery, _zone(shop.timezone), loc
            )
        if order.preparation_minutes is not None:
            values["preparation_time"] = format_minutes(order.preparation_minutes, loc)
    known = variables(kind)
    for key, value in (extra or {}).items():
        if key in known and value is not None:
            values[key] = str(value)
    return {key: values.get(key, "") for key in known}


_SAMPLE_PEOPLE = {
    "pl": "Anna Kowalska",
    "cs": "Jana Nováková",
    "sk": "Jana Horváthová",
    "tr": "Ayşe Yılmaz",
    "de": "Anna Schmidt",
}
_SAMPLE_COURIERS = {
    "PL": "InPost",
    "CZ": "Zásilkovna",
    "SK": "Packeta",
    "TR": "Yurtiçi Kargo",
    "GB": "Royal Mail",
    "DE": "DHL",
}


def sample_context(kind: TemplateKind, shop: Shop) -> dict[str, str]:
    """Realistic made-up values for previewing a template in the shop's locale."""
    loc = _locale(shop.locale, "en")
    zone = _zone(shop.timezone)
    courier = _SAMPLE_COURIERS.get(shop.country.upper(), "UPS")
    number = "1Z999AA10123456784" if courier == "UPS" else "6800123456789"
    today = datetime.now(zone).date()
    order = OrderSnapshot(
        code="1001",
        status="shipped",
        total=Decimal("129.90"),
        currency=shop.currency,
        payment_method="card",
        courier=courier,
        tracking_number=number,
        estimated_delivery=datetime.combine(today + timedelta(days=2), time(14, 30), zone),
        preparation_minutes=30,
    )
    customer = CustomerInfo(name=_SAMPLE_PEOPLE.get(loc.language, "Jane Doe"))
    url = carrier_tracking_url(courier, number, country=shop.country, locale=str(loc))
    extra = {
        "product_name": "Bukiet 21 róż" if loc.language == "pl" else "Gift box",
        "promotion_name": "Spring sale",
        "promo_code": "SPRING20",
        "unsubscribe_url": f"https://example.com/unsubscribe/{shop.slug}",
    }
    return build_context(
        kind, shop=shop, order=order, customer=customer, extra=extra, tracking_url=url
    )
