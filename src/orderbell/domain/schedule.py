"""When a matched rule's message is due: delays, follow-ups N days later, validity, and
sending windows (quiet hours) that defer a message to the next opening instead of dropping it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from orderbell.domain.calendar import at_local, local, zone
from orderbell.domain.model import Category, Channel, HourRange, OrderEvent, Plan, Rule, Shop


def effective_window(
    own: HourRange | None, shop: Shop, channel: Channel, category: Category
) -> HourRange | None:
    """The sending window a message keeps to.

    A rule's own window wins. Otherwise SMS keeps to the shop's quiet hours when it is
    marketing, or when the shop decided transactional messages obey them too.
    """
    if own is not None:
        return own
    if channel is not Channel.SMS or shop.quiet_hours is None:
        return None
    if category is Category.MARKETING or shop.transactional_obeys_quiet_hours:
        return shop.quiet_hours
    return None


def window_for(rule: Rule, shop: Shop) -> HourRange | None:
    """The sending window of a rule's messages in this shop."""
    action = rule.action
    return effective_window(action.send_window, shop, action.channel, action.category)


def _openings(day: date, start: time, tz: str | ZoneInfo) -> tuple[datetime, ...]:
    """The UTC instants the wall clock shows `start` on a local day, earliest first.

    Usually one; two on the autumn fall-back night when `start` is repeated; when `start`
    is skipped by the spring-forward gap, the moment after the gap (as `at_local` does).
    """
    first = at_local(day, start, tz)
    naive = datetime.combine(day, start.replace(tzinfo=None))
    second = naive.replace(tzinfo=zone(tz), fold=1).astimezone(UTC)
    return (first, second) if second > first else (first,)


def next_opening(instant: datetime, window: HourRange, tz: str | ZoneInfo) -> datetime:
    """The first moment at or after `instant` inside the daily window (UTC)."""
    moment = local(instant, tz)
    if window.contains(moment.time()):
        return instant.astimezone(UTC)
    day = moment.date()
    for offset in range(0, 3):
        for opening in _openings(day + timedelta(days=offset), window.start, tz):
            # The repeated autumn hour can reopen a window later the same night; a window
            # that lies wholly in the spring-forward gap does not open at all that day.
            if opening > instant and window.contains(local(opening, tz).time()):
                return opening
    raise AssertionError("a daily window opens within two days")  # pragma: no cover


def plan(rule: Rule, event: OrderEvent, shop: Shop) -> Plan:
    """The due time and expiry of the message a matched rule sends for an event."""
    action = rule.action
    occurred = event.occurred_at.astimezone(UTC)
    notes: list[str] = []
    if action.days_after is not None:
        moment = local(occurred, shop.timezone)
        at = action.at_local_time or moment.time().replace(tzinfo=None)
        due = at_local(moment.date() + timedelta(days=action.days_after), at, shop.timezone)
        due += timedelta(minutes=action.delay_minutes)
        notes.append(f"{action.days_after} day(s) after the event at {at:%H:%M} shop time")
    else:
        due = occurred + timedelta(minutes=action.delay_minutes)
        if action.delay_minutes:
            notes.append(f"delayed {action.delay_minutes} min")
    expires = (
        occurred + timedelta(minutes=action.validity_minutes)
        if action.validity_minutes is not None
        else None
    )
    window = window_for(rule, shop)
    if window is not None:
        opening = next_opening(due, window, shop.timezone)
        if opening > due:
            notes.append(
                f"deferred from {local(due, shop.timezone):%a %H:%M} to "
                f"{local(opening, shop.timezone):%a %Y-%m-%d %H:%M} by the sending window "
                f"{window.start:%H:%M}-{window.end:%H:%M}"
            )
            due = opening
    return Plan(
        rule_id=rule.id,
        channel=action.channel,
        category=action.category,
        due_at=due.astimezone(UTC),
        expires_at=expires,
        notes=tuple(notes),
    )
