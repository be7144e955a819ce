"""When a matched rule's message is due: delays, follow-ups, validity and sending windows."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orderbell.domain.calendar import local
from orderbell.domain.model import Category, Channel, HourRange, Shop
from orderbell.domain.schedule import effective_window, next_opening, plan, window_for

from .builders import WARSAW, hours, make_action, make_event, make_rule, make_shop, utc, warsaw

QUIET = hours("08:00", "21:00")
SHOP = make_shop()
QUIET_SHOP = make_shop(quiet_hours=QUIET)
STRICT_SHOP = make_shop(quiet_hours=QUIET, transactional_obeys_quiet_hours=True)


# --- delay, follow-ups, validity --------------------------------------------------------------


def test_immediate_plan() -> None:
    at = warsaw(2026, 3, 4, 10, 15)
    rule = make_rule(7)
    result = plan(rule, make_event(at), SHOP)
    assert result.rule_id == 7
    assert result.channel is Channel.SMS
    assert result.category is Category.TRANSACTIONAL
    assert result.due_at == utc(2026, 3, 4, 9, 15)
    assert result.due_at.tzinfo is UTC
    assert result.expires_at is None
    assert result.notes == ()


def test_delay_minutes() -> None:
    rule = make_rule(1, action=make_action(delay_minutes=45))
    result = plan(rule, make_event(warsaw(2026, 3, 4, 10)), SHOP)
    assert result.due_at == utc(2026, 3, 4, 9, 45)
    assert result.notes == ("delayed 45 min",)


def test_validity_sets_expires_at_from_the_event_time() -> None:
    rule = make_rule(1, action=make_action(delay_minutes=10, validity_minutes=120))
    result = plan(rule, make_event(warsaw(2026, 3, 4, 10)), SHOP)
    assert result.expires_at == utc(2026, 3, 4, 11, 0)
    assert result.expires_at is not None and result.expires_at.utcoffset() == timedelta(0)


def test_follow_up_two_days_later_at_10_keeps_local_time_across_spring_dst() -> None:
    """Friday 27 March (CET) + 2 days at 10:00 → Sunday 29 March 10:00 CEST = 08:00 UTC."""
    rule = make_rule(1, action=make_action(days_after=2, at_local_time=time(10, 0)))
    result = plan(rule, make_event(warsaw(2026, 3, 27, 16, 20)), SHOP)
    assert result.due_at == utc(2026, 3, 29, 8, 0)
    assert local(result.due_at, WARSAW).time() == time(10, 0)
    assert result.notes == ("2 day(s) after the event at 10:00 shop time",)


def test_follow_up_across_autumn_dst() -> None:
    """Friday 23 October (CEST) + 2 days at 10:00 → Sunday 25 October 10:00 CET = 09:00 UTC."""
    rule = make_rule(1, action=make_action(days_after=2, at_local_time=time(10, 0)))
    result = plan(rule, make_event(warsaw(2026, 10, 23, 9)), SHOP)
    assert result.due_at == utc(2026, 10, 25, 9, 0)
    assert local(result.due_at, WARSAW).time() == time(10, 0)


def test_follow_up_without_a_time_keeps_the_event_local_time() -> None:
    rule = make_rule(1, action=make_action(days_after=2))
    result = plan(rule, make_event(warsaw(2026, 3, 28, 18, 45)), SHOP)
    assert result.due_at == utc(2026, 3, 30, 16, 45)  # 18:45 CEST
    assert result.notes == ("2 day(s) after the event at 18:45 shop time",)


def test_follow_up_counts_days_from_the_local_date() -> None:
    """23:30 UTC on 3 March is already 4 March in Warsaw: +1 day is 5 March."""
    rule = make_rule(1, action=make_action(days_after=1, at_local_time=time(9, 0)))
    result = plan(rule, make_event(utc(2026, 3, 3, 23, 30)), SHOP)
    assert result.due_at == utc(2026, 3, 5, 8, 0)


def test_follow_up_plus_delay() -> None:
    rule = make_rule(
        1, action=make_action(days_after=1, at_local_time=time(10, 0), delay_minutes=30)
    )
    result = plan(rule, make_event(warsaw(2026, 3, 4, 12)), SHOP)
    assert result.due_at == utc(2026, 3, 5, 9, 30)


def test_follow_up_at_midnight_is_honoured() -> None:
    rule = make_rule(1, action=make_action(days_after=1, at_local_time=time(0, 0)))
    result = plan(rule, make_event(warsaw(2026, 3, 4, 12)), SHOP)
    assert result.due_at == utc(2026, 3, 4, 23, 0)  # 5 March 00:00 CET


def test_follow_up_validity_still_counts_from_the_event() -> None:
    rule = make_rule(
        1, action=make_action(days_after=3, at_local_time=time(10, 0), validity_minutes=60 * 24)
    )
    at = warsaw(2026, 3, 4, 12)
    result = plan(rule, make_event(at), SHOP)
    assert result.expires_at == at.astimezone(UTC) + timedelta(days=1)
    assert result.expires_at < result.due_at


# --- sending windows ----------------------------------------------------------------------------


def test_due_after_the_window_closes_is_deferred_to_next_morning() -> None:
    rule = make_rule(1, action=make_action(category=Category.MARKETING))
    result = plan(rule, make_event(warsaw(2026, 3, 4, 22, 30)), QUIET_SHOP)
    assert result.due_at == utc(2026, 3, 5, 7, 0)  # Thursday 08:00 CET
    assert local(result.due_at, WARSAW).time() == time(8, 0)
    assert len(result.notes) == 1
    assert "deferred" in result.notes[0]
    assert result.notes[0] == (
        "deferred from Wed 22:30 to Thu 2026-03-05 08:00 by the sending window 08:00-21:00"
    )


def test_due_before_the_window_opens_is_deferred_to_the_same_morning() -> None:
    rule = make_rule(1, action=make_action(category=Category.MARKETING))
    result = plan(rule, make_event(warsaw(2026, 3, 4, 3, 0)), QUIET_SHOP)
    assert result.due_at == utc(2026, 3, 4, 7, 0)
    assert "deferred" in result.notes[0]


@pytest.mark.parametrize(("hour", "minute"), [(8, 0), (12, 0), (20, 59)])
def test_due_inside_the_window_is_not_deferred(hour: int, minute: int) -> None:
    rule = make_rule(1, action=make_action(category=Category.MARKETING))
    at = warsaw(2026, 3, 4, hour, minute)
    result = plan(rule, make_event(at), QUIET_SHOP)
    assert result.due_at == at.astimezone(UTC)
    assert not any("deferred" in note for note in result.notes)


def test_window_21_00_is_already_closed() -> None:
    rule = make_rule(1, action=make_action(category=Category.MARKETING))
    result = plan(rule, make_event(warsaw(2026, 3, 4, 21, 0)), QUIET_SHOP)
    assert result.due_at == utc(2026, 3, 5, 7, 0)


def test_delay_pushes_the_due_time_out_of_the_window() -> None:
    rule = make_rule(1, action=make_action(category=Category.MARKETING, delay_minutes=90))
    result = plan(rule, make_event(warsaw(2026, 3, 4, 20, 0)), QUIET_SHOP)
    assert result.due_at == utc(2026, 3, 5, 7, 0)
    assert result.notes[0] == "delayed 90 min"
    assert "deferred from Wed 21:30" in result.notes[1]


def test_deferral_does_not_move_the_expiry() -> None:
    rule = make_rule(1, action=make_action(category=Category.MARKETING, validity_minutes=60))
    at = warsaw(2026, 3, 4, 22, 30)
    result = plan(rule, make_event(at), QUIET_SHOP)
    assert result.expires_at == at.astimezone(UTC) + timedelta(hours=1)
    assert result.due_at > result.expires_at  # the dispatcher records it as expired


def test_transactional_sms_ignores_quiet_hours_unless_the_shop_says_so() -> None:
    rule = make_rule(1)  # transactional SMS
    at = warsaw(2026, 3, 4, 22, 30)
    assert plan(rule, make_event(at), QUIET_SHOP).due_at == at.astimezone(UTC)
    assert plan(rule, make_event(at), STRICT_SHOP).due_at == utc(2026, 3, 5, 7, 0)


def test_email_ignores_quiet_hours_even_for_marketing() -> None:
    rule = make_rule(1, action=make_action(channel=Channel.EMAIL, category=Category.MARKETING))
    at = warsaw(2026, 3, 4, 22, 30)
    result = plan(rule, make_event(at), STRICT_SHOP)
    assert result.due_at == at.astimezone(UTC)
    assert result.notes == ()


def test_email_keeps_to_the_rule_own_window() -> None:
    action = make_action(channel=Channel.EMAIL, send_window=hours("09:00", "17:00"))
    result = plan(make_rule(1, action=action), make_event(warsaw(2026, 3, 4, 18)), SHOP)
    assert result.due_at == utc(2026, 3, 5, 8, 0)
    assert "by the sending window 09:00-17:00" in result.notes[0]


def test_rule_window_overrides_shop_quiet_hours() -> None:
    action = make_action(category=Category.MARKETING, send_window=hours("10:00", "12:00"))
    result = plan(make_rule(1, action=action), make_event(warsaw(2026, 3, 4, 9)), QUIET_SHOP)
    assert result.due_at == utc(2026, 3, 4, 9, 0)  # 10:00 CET, not 08:00
    night = make_action(category=Category.MARKETING, send_window=hours("22:00", "06:00"))
    at = warsaw(2026, 3, 4, 23)
    assert plan(make_rule(2, action=night), make_event(at), QUIET_SHOP).due_at == at.astimezone(UTC)


def test_window_crossing_midnight_defers_to_the_evening() -> None:
    action = make_action(send_window=hours("22:00", "06:00"))
    result = plan(make_rule(1, action=action), make_event(warsaw(2026, 3, 4, 7)), SHOP)
    assert result.due_at == utc(2026, 3, 4, 21, 0)


def test_follow_up_at_night_is_deferred_into_the_window() -> None:
    action = make_action(category=Category.MARKETING, days_after=1, at_local_time=time(23, 0))
    result = plan(make_rule(1, action=action), make_event(warsaw(2026, 3, 4, 12)), QUIET_SHOP)
    assert result.due_at == utc(2026, 3, 6, 7, 0)  # Friday 08:00
    assert len(result.notes) == 2
    assert "deferred" in result.notes[1]


# --- effective_window / window_for ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "category", "obeys", "expected"),
    [
        (Channel.SMS, Category.MARKETING, False, QUIET),
        (Channel.SMS, Category.MARKETING, True, QUIET),
        (Channel.SMS, Category.TRANSACTIONAL, False, None),
        (Channel.SMS, Category.TRANSACTIONAL, True, QUIET),
        (Channel.EMAIL, Category.MARKETING, False, None),
        (Channel.EMAIL, Category.MARKETING, True, None),
        (Channel.EMAIL, Category.TRANSACTIONAL, True, None),
    ],
)
def test_effective_window_without_own_window(
    channel: Channel, category: Category, obeys: bool, expected: HourRange | None
) -> None:
    shop = make_shop(quiet_hours=QUIET, transactional_obeys_quiet_hours=obeys)
    assert effective_window(None, shop, channel, category) == expected


@pytest.mark.parametrize("channel", list(Channel))
@pytest.mark.parametrize("category", list(Category))
def test_own_window_always_wins(channel: Channel, category: Category) -> None:
    own = hours("10:00", "11:00")
    assert effective_window(own, STRICT_SHOP, channel, category) == own
    assert effective_window(own, SHOP, channel, category) == own


@pytest.mark.parametrize("category", list(Category))
def test_no_quiet_hours_no_window(category: Category) -> None:
    shop = make_shop(transactional_obeys_quiet_hours=True)
    assert effective_window(None, shop, Channel.SMS, category) is None


def test_window_for_reads_the_rule_action() -> None:
    own = hours("09:00", "10:00")
    assert window_for(make_rule(1, action=make_action(send_window=own)), SHOP) == own
    marketing = make_rule(2, action=make_action(category=Category.MARKETING))
    assert window_for(marketing, QUIET_SHOP) == QUIET
    assert window_for(make_rule(3), QUIET_SHOP) is None


# --- next_opening ------------------------------------------------------------------------------------


def test_next_opening_inside_returns_the_instant_in_utc() -> None:
    instant = warsaw(2026, 3, 4, 12)
    opening = next_opening(instant, QUIET, "Europe/Warsaw")
    assert opening == instant
    assert opening.tzinfo is UTC


def test_next_opening_across_spring_forward() -> None:
    """Saturday 28 March 22:00 CET → Sunday 29 March 08:00 CEST (06:00 UTC, not 07:00)."""
    opening = next_opening(warsaw(2026, 3, 28, 22), QUIET, "Europe/Warsaw")
    assert opening == utc(2026, 3, 29, 6, 0)


def test_next_opening_across_fall_back() -> None:
    """Saturday 24 October 22:00 CEST → Sunday 25 October 08:00 CET (07:00 UTC)."""
    opening = next_opening(warsaw(2026, 10, 24, 22), QUIET, "Europe/Warsaw")
    assert opening == utc(2026, 10, 25, 7, 0)


def test_next_opening_uses_the_given_zone() -> None:
    instant = utc(2026, 3, 4, 6, 30)  # 07:30 in Warsaw, 09:30 in Istanbul
    assert next_opening(instant, QUIET, "Europe/Warsaw") == utc(2026, 3, 4, 7, 0)
    assert next_opening(instant, QUIET, "Europe/Istanbul") == instant


def test_next_opening_window_starting_in_the_repeated_autumn_hour() -> None:
    """02:10 on the second pass of the fall-back night (CET) reaches 02:30 twenty minutes later.

    The first 02:30 (CEST) is already past; the window must not be skipped for a whole day.
    """
    window = hours("02:30", "06:00")
    second_pass = utc(2026, 10, 25, 1, 10)
    assert local(second_pass, WARSAW).time() == time(2, 10)
    assert next_opening(second_pass, window, "Europe/Warsaw") == utc(2026, 10, 25, 1, 30)
    # on the first pass, the first 02:30 is next
    first_pass = utc(2026, 10, 25, 0, 10)
    assert next_opening(first_pass, window, "Europe/Warsaw") == utc(2026, 10, 25, 0, 30)


def test_next_opening_window_starting_in_the_spring_gap_opens_after_the_gap() -> None:
    """02:00 does not exist on 29 March; a 02:00–06:00 window opens at 03:00 CEST."""
    opening = next_opening(utc(2026, 3, 29, 0, 30), hours("02:00", "06:00"), "Europe/Warsaw")
    assert opening == utc(2026, 3, 29, 1, 0)


def test_next_opening_window_swallowed_by_the_spring_gap_waits_a_day() -> None:
    """A 02:00–02:45 window never opens on 29 March: the next one is 30 March 02:00 CEST."""
    opening = next_opening(utc(2026, 3, 29, 0, 30), hours("02:00", "02:45"), "Europe/Warsaw")
    assert opening == utc(2026, 3, 30, 0, 0)


ZONES = ["Europe/Warsaw", "Europe/Lisbon", "America/New_York", "Europe/Istanbul", "Asia/Tokyo"]
# DST changes in these zones happen between 00:00 and 04:00 local time; windows whose edges
# lie outside those hours have one well-defined opening a day (see the explicit DST tests).
EDGE_MINUTES = st.integers(min_value=4 * 60, max_value=24 * 60 - 1)


@st.composite
def windows(draw: st.DrawFn) -> HourRange:
    start = draw(EDGE_MINUTES)
    end = draw(st.one_of(st.just(0), EDGE_MINUTES))
    if end == start:
        end = 0  # start is never midnight here
    return HourRange(start=time(start // 60, start % 60), end=time(end // 60, end % 60))


@settings(max_examples=150, deadline=None)
@given(
    instant=st.datetimes(
        min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
    ).map(lambda d: d.replace(second=0, microsecond=0)),
    window=windows(),
    tz=st.sampled_from(ZONES),
)
def test_next_opening_is_the_first_minute_inside_the_window(
    instant: datetime, window: HourRange, tz: str
) -> None:
    opening = next_opening(instant, window, tz)
    assert opening.tzinfo is UTC
    assert opening >= instant
    assert window.contains(local(opening, tz).time())
    assert opening - instant <= timedelta(hours=25)
    minute = instant
    while minute < opening:  # every minute before the opening is outside the window
        assert not window.contains(local(minute, tz).time()), minute
        minute += timedelta(minutes=1)


@settings(max_examples=100)
@given(
    hour=st.integers(min_value=0, max_value=23),
    minute=st.integers(min_value=0, max_value=59),
    day=st.integers(min_value=1, max_value=28),
    month=st.integers(min_value=1, max_value=12),
)
def test_plan_due_is_always_inside_the_quiet_hours(
    hour: int, minute: int, day: int, month: int
) -> None:
    shop: Shop = QUIET_SHOP
    rule = make_rule(1, action=make_action(category=Category.MARKETING))
    at = datetime(2026, month, day, hour, minute, tzinfo=ZoneInfo("Europe/Warsaw"))
    result = plan(rule, make_event(at), shop)
    assert result.due_at >= at.astimezone(UTC)
    assert QUIET.contains(local(result.due_at, WARSAW).time())
    deferred = any("deferred" in note for note in result.notes)
    assert deferred is (not 8 <= hour < 21)
