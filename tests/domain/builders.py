"""Small builders for domain objects, so each test states only what it is about."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

from orderbell.domain.model import (
    Action,
    Category,
    Channel,
    CustomerInfo,
    EventType,
    HolidayMode,
    HourRange,
    OrderConditions,
    OrderEvent,
    OrderSnapshot,
    Rule,
    Shop,
    TimeConditions,
    Trigger,
)

WARSAW = ZoneInfo("Europe/Warsaw")
WEEKDAYS = frozenset({0, 1, 2, 3, 4})
WEEKEND = frozenset({5, 6})


def hm(text: str) -> time:
    """'15:30' → time(15, 30)."""
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def hours(start: str, end: str) -> HourRange:
    """HourRange from 'HH:MM' strings."""
    return HourRange(start=hm(start), end=hm(end))


def warsaw(
    year: int, month: int, day: int, hour: int = 12, minute: int = 0, second: int = 0
) -> datetime:
    """An aware instant given in Warsaw wall-clock time (fold=0)."""
    return datetime(year, month, day, hour, minute, second, tzinfo=WARSAW)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """An aware UTC instant."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def make_shop(
    *,
    timezone: str = "Europe/Warsaw",
    country: str = "PL",
    quiet_hours: HourRange | None = None,
    transactional_obeys_quiet_hours: bool = False,
    closed_dates: frozenset[date] = frozenset(),
) -> Shop:
    """A shop in Poland unless told otherwise."""
    return Shop(
        id=1,
        name="Sklep",
        slug="sklep",
        timezone=timezone,
        country=country,
        quiet_hours=quiet_hours,
        transactional_obeys_quiet_hours=transactional_obeys_quiet_hours,
        closed_dates=closed_dates,
    )


def make_event(
    at: datetime,
    *,
    type: str = EventType.ORDER_CREATED.value,
    status: str | None = None,
    from_status: str | None = None,
    order_status: str | None = None,
    payment_method: str | None = None,
    total: Decimal | None = None,
    shipping_country: str | None = None,
) -> OrderEvent:
    """An order event at an aware instant."""
    return OrderEvent(
        type=type,
        occurred_at=at,
        order=OrderSnapshot(
            code="A-1",
            status=order_status,
            total=total,
            payment_method=payment_method,
            shipping_country=shipping_country,
        ),
        customer=CustomerInfo(name="Jan", phone="+48501234567"),
        status=status,
        from_status=from_status,
    )


def make_action(
    *,
    channel: Channel = Channel.SMS,
    category: Category = Category.TRANSACTIONAL,
    delay_minutes: int = 0,
    days_after: int | None = None,
    at_local_time: time | None = None,
    validity_minutes: int | None = None,
    send_window: HourRange | None = None,
) -> Action:
    """An action sending template 1."""
    return Action(
        channel=channel,
        template_id=1,
        delay_minutes=delay_minutes,
        days_after=days_after,
        at_local_time=at_local_time,
        validity_minutes=validity_minutes,
        send_window=send_window,
        category=category,
    )


def make_rule(
    rule_id: int,
    *,
    name: str | None = None,
    event_type: str = EventType.ORDER_CREATED.value,
    to_status: str | None = None,
    from_status: str | None = None,
    active: bool = True,
    weekdays: frozenset[int] | None = None,
    ranges: tuple[HourRange, ...] = (),
    holidays: HolidayMode = HolidayMode.ANY,
    payment_methods: frozenset[str] | None = None,
    total_min: Decimal | None = None,
    total_max: Decimal | None = None,
    countries: frozenset[str] | None = None,
    group: str | None = None,
    priority: int = 100,
    action: Action | None = None,
) -> Rule:
    """A rule; everything not given is unconstrained."""
    return Rule(
        id=rule_id,
        name=name or f"rule {rule_id}",
        trigger=Trigger(event_type=event_type, to_status=to_status, from_status=from_status),
        action=action or make_action(),
        active=active,
        time=TimeConditions(weekdays=weekdays, hours=ranges, holidays=holidays),
        order=OrderConditions(
            payment_methods=payment_methods,
            total_min=total_min,
            total_max=total_max,
            countries=countries,
        ),
        group=group,
        priority=priority,
    )
