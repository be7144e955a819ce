"""Rule matching: ordering, groups, passive rules, time, holiday and order conditions."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orderbell.domain.calendar import holiday_name, local
from orderbell.domain.model import EventType, HolidayMode, Rule, RuleVerdict, Shop
from orderbell.domain.rules import evaluate, matching, mismatch

from .builders import WEEKDAYS, WEEKEND, hours, make_event, make_rule, make_shop, warsaw

SHOP = make_shop()
# Wednesday 2026-03-04, 10:00 in Warsaw: a plain working day
WEDNESDAY = warsaw(2026, 3, 4, 10)


def by_id(verdicts: list[RuleVerdict]) -> dict[int, RuleVerdict]:
    return {v.rule_id: v for v in verdicts}


# --- ordering and verdicts ----------------------------------------------------------------


def test_every_rule_gets_a_verdict_in_priority_then_id_order() -> None:
    rules = [
        make_rule(5, priority=50),
        make_rule(3, priority=10),
        make_rule(1, priority=50),
        make_rule(9, priority=1),
        make_rule(2, priority=100, event_type=EventType.ORDER_SHIPPED.value),
    ]
    verdicts = evaluate(rules, make_event(WEDNESDAY), SHOP)
    assert [v.rule_id for v in verdicts] == [9, 3, 1, 5, 2]
    assert [v.matched for v in verdicts] == [True, True, True, True, False]


def test_no_rules_no_verdicts() -> None:
    assert evaluate([], make_event(WEDNESDAY), SHOP) == []


def test_matched_reason_describes_the_event() -> None:
    rule = make_rule(1, ranges=(hours("00:00", "15:00"),), holidays=HolidayMode.EXCLUDE)
    [verdict] = evaluate([rule], make_event(WEDNESDAY), SHOP)
    assert verdict.matched
    assert verdict.reason == (
        "matched: order.created at Wed 2026-03-04 10:00, in 00:00-15:00, not a holiday"
    )
    assert verdict.as_dict() == {
        "rule_id": 1,
        "rule": "rule 1",
        "matched": True,
        "reason": verdict.reason,
    }


def test_trigger_mismatch() -> None:
    rule = make_rule(1, event_type=EventType.ORDER_SHIPPED.value)
    [verdict] = evaluate([rule], make_event(WEDNESDAY), SHOP)
    assert not verdict.matched
    assert verdict.reason == "trigger: waits for order.shipped, event is order.created"


def test_custom_event_types_match_exactly() -> None:
    rule = make_rule(1, event_type="custom.review_request")
    assert matching(rule, make_event(WEDNESDAY, type="custom.review_request"), SHOP)
    assert not matching(rule, make_event(WEDNESDAY, type="custom.review"), SHOP)


# --- groups ---------------------------------------------------------------------------------


def test_group_first_match_by_priority_wins_others_name_the_winner() -> None:
    rules = [
        make_rule(1, name="generic", group="shipping", priority=50),
        make_rule(2, name="specific", group="shipping", priority=10),
        make_rule(3, name="also generic", group="shipping", priority=50),
    ]
    verdicts = evaluate(rules, make_event(WEDNESDAY), SHOP)
    assert [v.rule_id for v in verdicts] == [2, 1, 3]
    result = by_id(verdicts)
    assert result[2].matched
    for loser in (1, 3):
        assert not result[loser].matched
        assert (
            result[loser].reason == "group 'shipping': rule 'specific' matched first (priority 10)"
        )


def test_group_winner_is_the_first_rule_that_matches_not_the_first_tried() -> None:
    rules = [
        make_rule(1, name="weekend", group="g", priority=1, weekdays=WEEKEND),
        make_rule(2, name="weekday", group="g", priority=2, weekdays=WEEKDAYS),
        make_rule(3, name="fallback", group="g", priority=3),
    ]
    result = by_id(evaluate(rules, make_event(WEDNESDAY), SHOP))
    assert not result[1].matched
    assert result[1].reason.startswith("weekday:")  # its own reason, not the group's
    assert result[2].matched
    assert "rule 'weekday' matched first (priority 2)" in result[3].reason


def test_groups_are_independent_and_ungrouped_rules_always_match() -> None:
    rules = [
        make_rule(1, group="a", priority=1),
        make_rule(2, group="b", priority=2),
        make_rule(3, group="a", priority=3),
        make_rule(4, priority=4),
        make_rule(5, priority=5),
    ]
    result = by_id(evaluate(rules, make_event(WEDNESDAY), SHOP))
    assert {i for i, v in result.items() if v.matched} == {1, 2, 4, 5}
    assert "group 'a'" in result[3].reason


def test_passive_rule_is_reported_inactive_and_does_not_win_its_group() -> None:
    rules = [
        make_rule(1, name="switched off", group="g", priority=1, active=False),
        make_rule(2, name="live", group="g", priority=2),
    ]
    result = by_id(evaluate(rules, make_event(WEDNESDAY), SHOP))
    assert not result[1].matched
    assert "inactive" in result[1].reason
    assert result[2].matched


def test_passive_rule_reason_wins_over_other_mismatches() -> None:
    rule = make_rule(1, active=False, event_type=EventType.ORDER_SHIPPED.value)
    [verdict] = evaluate([rule], make_event(WEDNESDAY), SHOP)
    assert "inactive" in verdict.reason


def test_matching_respects_active_and_mismatch_ignores_it() -> None:
    passive = make_rule(1, active=False)
    event = make_event(WEDNESDAY)
    assert not matching(passive, event, SHOP)
    assert mismatch(passive, event, SHOP) is None
    assert matching(make_rule(2), event, SHOP)


# --- time conditions -------------------------------------------------------------------------------


def test_weekday_condition() -> None:
    rule = make_rule(1, weekdays=WEEKDAYS)
    saturday = warsaw(2026, 3, 7, 10)
    assert matching(rule, make_event(WEDNESDAY), SHOP)
    reason = mismatch(rule, make_event(saturday), SHOP)
    assert reason == (
        "weekday: Sat 2026-03-07 10:00:00 (Europe/Warsaw) is not one of Mon, Tue, Wed, Thu, Fri"
    )


def test_weekday_is_taken_in_shop_local_time() -> None:
    """Friday 23:30 UTC is already Saturday 00:30 in Warsaw."""
    instant = datetime(2026, 3, 6, 23, 30, tzinfo=UTC)
    event = make_event(instant)
    assert matching(make_rule(1, weekdays=WEEKEND), event, SHOP)
    assert not matching(make_rule(2, weekdays=WEEKDAYS), event, SHOP)
    # the same instant is still Friday for a shop in New York
    ny = make_shop(timezone="America/New_York", country="US")
    assert matching(make_rule(3, weekdays=WEEKDAYS), event, ny)


@pytest.mark.parametrize(
    ("hour", "minute", "second", "today", "tomorrow"),
    [
        (0, 0, 0, True, False),
        (14, 59, 59, True, False),
        (15, 0, 0, False, True),
        (23, 59, 59, False, True),
    ],
)
def test_hour_ranges_split_the_day_at_15(
    hour: int, minute: int, second: int, today: bool, tomorrow: bool
) -> None:
    event = make_event(warsaw(2026, 3, 4, hour, minute, second))
    assert matching(make_rule(1, ranges=(hours("00:00", "15:00"),)), event, SHOP) is today
    assert matching(make_rule(2, ranges=(hours("15:00", "00:00"),)), event, SHOP) is tomorrow


def test_hours_mismatch_reason_lists_the_ranges() -> None:
    rule = make_rule(1, ranges=(hours("08:00", "12:00"), hours("22:00", "06:00")))
    assert matching(rule, make_event(warsaw(2026, 3, 4, 23)), SHOP)
    assert matching(rule, make_event(warsaw(2026, 3, 4, 5, 59)), SHOP)
    reason = mismatch(rule, make_event(warsaw(2026, 3, 4, 13)), SHOP)
    assert reason == (
        "hours: Wed 2026-03-04 13:00:00 (Europe/Warsaw) is outside 08:00-12:00, 22:00-06:00"
    )


def test_hours_use_shop_local_time_in_summer() -> None:
    """13:30 UTC in July is 15:30 in Warsaw: the afternoon rule applies."""
    event = make_event(datetime(2026, 7, 1, 13, 30, tzinfo=UTC))
    assert matching(make_rule(1, ranges=(hours("15:00", "00:00"),)), event, SHOP)
    assert not matching(make_rule(2, ranges=(hours("00:00", "15:00"),)), event, SHOP)


def test_holiday_only_rule() -> None:
    rule = make_rule(1, holidays=HolidayMode.ONLY)
    independence = make_event(warsaw(2026, 11, 11, 9))
    [verdict] = evaluate([rule], independence, SHOP)
    assert verdict.matched
    name = holiday_name(date(2026, 11, 11), SHOP)
    assert name is not None
    assert f"on a holiday ({name})" in verdict.reason
    assert mismatch(rule, make_event(warsaw(2026, 11, 12, 9)), SHOP) == (
        "holidays: 2026-11-12 is not a holiday in PL"
    )


def test_holiday_exclude_rule() -> None:
    rule = make_rule(1, holidays=HolidayMode.EXCLUDE)
    assert matching(rule, make_event(warsaw(2026, 11, 12, 9)), SHOP)
    reason = mismatch(rule, make_event(warsaw(2026, 11, 11, 9)), SHOP)
    assert reason is not None
    assert reason.startswith("holidays: 2026-11-11 is a holiday (")


def test_holiday_any_ignores_holidays() -> None:
    rule = make_rule(1)
    assert matching(rule, make_event(warsaw(2026, 11, 11, 9)), SHOP)


def test_holidays_follow_the_shop_country_and_closed_days() -> None:
    only = make_rule(1, holidays=HolidayMode.ONLY)
    republic_day = make_event(warsaw(2026, 10, 29, 12))
    turkish = make_shop(country="TR", timezone="Europe/Istanbul")
    assert matching(only, republic_day, turkish)
    assert not matching(only, republic_day, SHOP)
    closed = make_shop(closed_dates=frozenset({date(2026, 3, 4)}))
    [verdict] = evaluate([only], make_event(WEDNESDAY), closed)
    assert verdict.matched
    assert "on a holiday (shop closed day)" in verdict.reason


def test_holiday_date_is_the_shop_local_date() -> None:
    """22:30 UTC on 10 November is already 11 November (Independence Day) in Warsaw."""
    event = make_event(datetime(2026, 11, 10, 23, 30, tzinfo=UTC))
    assert matching(make_rule(1, holidays=HolidayMode.ONLY), event, SHOP)
    assert not matching(make_rule(1, holidays=HolidayMode.ONLY), event, make_shop(timezone="UTC"))


# --- order conditions --------------------------------------------------------------------------


def test_payment_method_case_insensitive_on_the_event() -> None:
    rule = make_rule(1, payment_methods=frozenset({"cod", "transfer"}))
    assert matching(rule, make_event(WEDNESDAY, payment_method="COD"), SHOP)
    assert matching(rule, make_event(WEDNESDAY, payment_method="transfer"), SHOP)
    assert mismatch(rule, make_event(WEDNESDAY, payment_method="card"), SHOP) == (
        "payment method: 'card' is not one of ['cod', 'transfer']"
    )
    assert not matching(rule, make_event(WEDNESDAY, payment_method=None), SHOP)


@pytest.mark.parametrize(
    ("total", "matches"),
    [
        (None, False),
        (Decimal("99.99"), False),
        (Decimal("100"), True),
        (Decimal("100.00"), True),
        (Decimal("250"), True),
        (Decimal("500.00"), True),
        (Decimal("500.01"), False),
    ],
)
def test_total_bounds_are_inclusive(total: Decimal | None, matches: bool) -> None:
    rule = make_rule(1, total_min=Decimal("100"), total_max=Decimal("500"))
    assert matching(rule, make_event(WEDNESDAY, total=total), SHOP) is matches


def test_total_reasons() -> None:
    low = make_rule(1, total_min=Decimal("100"))
    high = make_rule(2, total_max=Decimal("500"))
    assert mismatch(low, make_event(WEDNESDAY, total=Decimal("50")), SHOP) == (
        "total: 50 is below 100"
    )
    assert mismatch(high, make_event(WEDNESDAY, total=Decimal("501")), SHOP) == (
        "total: 501 is above 500"
    )
    assert mismatch(high, make_event(WEDNESDAY, total=None), SHOP) == "total: None is above 500"


def test_destination_country() -> None:
    rule = make_rule(1, countries=frozenset({"PL", "CZ"}))
    assert matching(rule, make_event(WEDNESDAY, shipping_country="pl"), SHOP)
    assert matching(rule, make_event(WEDNESDAY, shipping_country="CZ"), SHOP)
    assert mismatch(rule, make_event(WEDNESDAY, shipping_country="DE"), SHOP) == (
        "country: destination 'DE' is not one of ['CZ', 'PL']"
    )
    assert not matching(rule, make_event(WEDNESDAY, shipping_country=None), SHOP)


# --- status triggers ----------------------------------------------------------------------------


def _status_rule(to_status: str | None = None, from_status: str | None = None) -> Rule:
    return make_rule(
        1,
        event_type=EventType.ORDER_STATUS_CHANGED.value,
        to_status=to_status,
        from_status=from_status,
    )


def test_to_status_is_case_and_space_insensitive() -> None:
    rule = _status_rule(to_status="Shipped")
    changed = EventType.ORDER_STATUS_CHANGED.value
    assert matching(rule, make_event(WEDNESDAY, type=changed, status=" SHIPPED "), SHOP)
    assert matching(rule, make_event(WEDNESDAY, type=changed, order_status="shipped"), SHOP)
    assert mismatch(rule, make_event(WEDNESDAY, type=changed, status="ready"), SHOP) == (
        "status: waits for 'Shipped', order is 'ready'"
    )
    assert not matching(rule, make_event(WEDNESDAY, type=changed), SHOP)


def test_event_status_wins_over_order_status() -> None:
    rule = _status_rule(to_status="ready")
    changed = EventType.ORDER_STATUS_CHANGED.value
    event = make_event(WEDNESDAY, type=changed, status="Ready", order_status="in production")
    assert matching(rule, event, SHOP)


def test_from_status_is_case_insensitive() -> None:
    rule = _status_rule(to_status="ready", from_status="In Production")
    changed = EventType.ORDER_STATUS_CHANGED.value
    good = make_event(WEDNESDAY, type=changed, status="ready", from_status="in production")
    assert matching(rule, good, SHOP)
    bad = make_event(WEDNESDAY, type=changed, status="ready", from_status="accepted")
    assert mismatch(rule, bad, SHOP) == (
        "from status: waits for a change from 'In Production', was 'accepted'"
    )
    assert not matching(rule, make_event(WEDNESDAY, type=changed, status="ready"), SHOP)


# --- the StockMount example as a property ----------------------------------------------------------

STOCKMOUNT_RULES = [
    make_rule(1, name="today", group="ship", priority=30, weekdays=WEEKDAYS,
              ranges=(hours("00:00", "15:00"),)),
    make_rule(2, name="tomorrow", group="ship", priority=30, weekdays=WEEKDAYS,
              ranges=(hours("15:00", "00:00"),)),
    make_rule(3, name="weekend", group="ship", priority=20, weekdays=WEEKEND),
    make_rule(4, name="holiday", group="ship", priority=10, holidays=HolidayMode.ONLY),
]  # fmt: skip

SHOPS = [
    make_shop(timezone="Europe/Warsaw", country="PL"),
    make_shop(timezone="Europe/Istanbul", country="TR"),
    make_shop(timezone="Europe/Prague", country="CZ"),
    make_shop(timezone="Europe/Lisbon", country="PT"),
    make_shop(timezone="America/New_York", country="US"),
    make_shop(closed_dates=frozenset({date(2026, 8, d) for d in range(3, 15)})),
]


def expected_stockmount(event_at: datetime, shop: Shop) -> str:
    moment = local(event_at, shop.timezone)
    if holiday_name(moment.date(), shop) is not None:
        return "holiday"
    if moment.weekday() >= 5:
        return "weekend"
    return "today" if moment.hour < 15 else "tomorrow"


@settings(max_examples=300)
@given(
    instant=st.datetimes(
        min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
    ),
    shop=st.sampled_from(SHOPS),
    order=st.permutations(STOCKMOUNT_RULES),
)
def test_stockmount_group_exactly_one_variant_matches(
    instant: datetime, shop: Shop, order: list[Rule]
) -> None:
    verdicts = evaluate(order, make_event(instant), shop)
    winners = [v for v in verdicts if v.matched]
    assert len(winners) == 1
    assert winners[0].rule_name == expected_stockmount(instant, shop)
    assert len(verdicts) == len(STOCKMOUNT_RULES)


@pytest.mark.parametrize(
    ("when", "winner"),
    [
        (warsaw(2026, 3, 4, 14, 59, 59), "today"),
        (warsaw(2026, 3, 4, 15, 0, 0), "tomorrow"),
        (warsaw(2026, 3, 4, 23, 59, 59), "tomorrow"),
        (warsaw(2026, 3, 5, 0, 0, 0), "today"),
        (warsaw(2026, 3, 7, 11), "weekend"),
        (warsaw(2026, 11, 11, 11), "holiday"),  # a Wednesday, but Independence Day
        (warsaw(2026, 3, 29, 2, 30), "weekend"),  # in the DST gap, a Sunday
    ],
)
def test_stockmount_examples(when: datetime, winner: str) -> None:
    verdicts = evaluate(STOCKMOUNT_RULES, make_event(when), SHOP)
    assert [v.rule_name for v in verdicts if v.matched] == [winner]
    losers = [v for v in verdicts if not v.matched and v.reason.startswith("group")]
    for verdict in losers:
        assert f"rule '{winner}' matched first" in verdict.reason
