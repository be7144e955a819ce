"""Shop-local time: zones, wall clocks across DST, countries, public holidays, closed days."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orderbell.domain.calendar import (
    _public_holidays,
    at_local,
    holiday_name,
    local,
    next_local_day,
    public_holiday,
    validate_country,
    zone,
)
from orderbell.errors import InvalidInput

from .builders import WARSAW, make_shop, utc

# --- zone ---------------------------------------------------------------------------------


def test_zone_by_name() -> None:
    assert zone("Europe/Warsaw") == ZoneInfo("Europe/Warsaw")


def test_zone_strips_whitespace() -> None:
    assert zone("  Europe/Istanbul \n") == ZoneInfo("Europe/Istanbul")


def test_zone_passes_a_zoneinfo_through() -> None:
    tz = ZoneInfo("America/New_York")
    assert zone(tz) is tz


def test_unknown_zone_names_field_and_zone() -> None:
    with pytest.raises(InvalidInput) as info:
        zone("Mars/Olympus")
    assert info.value.field == "timezone"
    assert "Mars/Olympus" in info.value.message
    assert "unknown time zone" in info.value.message
    assert info.value.as_dict()["error"] == {
        "code": "invalid_input",
        "message": info.value.message,
        "field": "timezone",
    }


def test_unknown_zone_uses_the_given_field() -> None:
    with pytest.raises(InvalidInput) as info:
        zone("Mars/Olympus", field="shop.timezone")
    assert info.value.field == "shop.timezone"


@pytest.mark.parametrize(
    "name",
    ["Europe", "../../etc/passwd", "/etc/localtime", "Europe/Warsaw\x00", "Not A Zone"],
)
def test_odd_zone_names_are_invalid_input(name: str) -> None:
    """Directories, paths and NUL bytes are refused as input errors, not crashes."""
    with pytest.raises(InvalidInput) as info:
        zone(name)
    assert info.value.field == "timezone"


@pytest.mark.parametrize("name", ["", "   ", None, 42])
def test_empty_or_non_string_zone(name: object) -> None:
    with pytest.raises(InvalidInput) as info:
        zone(name)  # type: ignore[arg-type]
    assert "IANA" in info.value.message
    assert info.value.field == "timezone"


# --- local / at_local -------------------------------------------------------------------------


def test_local_converts_to_shop_wall_clock() -> None:
    winter = local(utc(2026, 1, 15, 23, 30), "Europe/Warsaw")
    assert (winter.date(), winter.time()) == (date(2026, 1, 16), time(0, 30))
    summer = local(utc(2026, 7, 15, 23, 30), "Europe/Warsaw")
    assert summer.time() == time(1, 30)
    assert summer.utcoffset() == timedelta(hours=2)


def test_local_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone offset"):
        local(datetime(2026, 1, 1, 12, 0), "Europe/Warsaw")


def test_local_refuses_unknown_zone() -> None:
    with pytest.raises(InvalidInput):
        local(utc(2026, 1, 1), "Mars/Olympus")


@pytest.mark.parametrize(
    ("day", "moment", "expected"),
    [
        (date(2026, 1, 15), time(10, 0), utc(2026, 1, 15, 9, 0)),  # CET, +01:00
        (date(2026, 7, 15), time(10, 0), utc(2026, 7, 15, 8, 0)),  # CEST, +02:00
        (date(2026, 1, 15), time(0, 0), utc(2026, 1, 14, 23, 0)),
        (date(2026, 3, 29), time(1, 59), utc(2026, 3, 29, 0, 59)),  # just before the gap
        (date(2026, 3, 29), time(3, 0), utc(2026, 3, 29, 1, 0)),  # just after the gap
        (date(2026, 10, 25), time(3, 0), utc(2026, 10, 25, 2, 0)),  # after the repeat
    ],
)
def test_at_local(day: date, moment: time, expected: datetime) -> None:
    result = at_local(day, moment, "Europe/Warsaw")
    assert result == expected
    assert result.utcoffset() == timedelta(0)


def test_at_local_in_the_spring_forward_gap_moves_forward() -> None:
    """2026-03-29 02:30 does not exist in Warsaw (02:00 → 03:00): it becomes 03:30 CEST."""
    result = at_local(date(2026, 3, 29), time(2, 30), "Europe/Warsaw")
    assert result == utc(2026, 3, 29, 1, 30)
    shown = result.astimezone(WARSAW)
    assert shown.time() == time(3, 30)
    assert shown.utcoffset() == timedelta(hours=2)


def test_at_local_ambiguous_autumn_time_is_the_first_occurrence() -> None:
    """2026-10-25 02:30 happens twice in Warsaw (CEST, then CET): the first one is taken."""
    result = at_local(date(2026, 10, 25), time(2, 30), "Europe/Warsaw")
    assert result == utc(2026, 10, 25, 0, 30)
    assert result.astimezone(WARSAW).utcoffset() == timedelta(hours=2)
    # the second occurrence is one hour later and is not what at_local returns
    assert result != utc(2026, 10, 25, 1, 30)


def test_at_local_ignores_tzinfo_on_the_time() -> None:
    moment = time(10, 0, tzinfo=UTC)
    assert at_local(date(2026, 1, 15), moment, "Europe/Warsaw") == utc(2026, 1, 15, 9, 0)


def test_at_local_other_zone() -> None:
    assert at_local(date(2026, 10, 29), time(9, 0), "Europe/Istanbul") == utc(2026, 10, 29, 6)
    assert at_local(date(2026, 3, 8), time(2, 30), "America/New_York") == utc(2026, 3, 8, 7, 30)


@given(
    day=st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 12, 31)),
    moment=st.times(),
    name=st.sampled_from(["Europe/Warsaw", "America/New_York", "Europe/Lisbon", "Asia/Tokyo"]),
)
def test_at_local_round_trips_or_moves_forward_by_the_gap(
    day: date, moment: time, name: str
) -> None:
    """Existing wall-clock times round-trip; skipped ones land less than two hours later."""
    result = at_local(day, moment, name)
    shown = result.astimezone(ZoneInfo(name)).replace(tzinfo=None)
    wanted = datetime.combine(day, moment)
    assert wanted <= shown < wanted + timedelta(hours=2)
    if shown != wanted:  # only inside a DST gap, which always is one hour here
        assert shown - wanted == timedelta(hours=1)


# --- next_local_day ------------------------------------------------------------------------------


def test_next_local_day_uses_the_local_date() -> None:
    late = utc(2026, 3, 28, 23, 30)  # already Sunday 00:30 in Warsaw
    assert next_local_day(late, "Europe/Warsaw") == date(2026, 3, 30)
    assert next_local_day(late, "UTC") == date(2026, 3, 29)
    assert next_local_day(late, "Europe/Warsaw", days=0) == date(2026, 3, 29)
    assert next_local_day(late, "Europe/Warsaw", days=3) == date(2026, 4, 1)


# --- validate_country ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"), [("PL", "PL"), ("pl", "PL"), (" tr ", "TR"), ("Cz", "CZ")]
)
def test_validate_country_normalises(raw: str, expected: str) -> None:
    assert validate_country(raw) == expected


def test_validate_country_unknown_code() -> None:
    with pytest.raises(InvalidInput) as info:
        validate_country("XX")
    assert "unknown country code 'XX'" in info.value.message
    assert info.value.field == "country"


@pytest.mark.parametrize("raw", ["POL", "P", "", "P1", "  ", 48, None, ["PL"]])
def test_validate_country_shape(raw: object) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_country(raw, field="shipping_country")
    assert "two-letter" in info.value.message
    assert info.value.field == "shipping_country"


# --- holidays -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "country", "word"),
    [
        (date(2026, 11, 11), "PL", "Independence"),
        (date(2026, 5, 3), "PL", "May"),
        (date(2026, 4, 6), "PL", "Easter"),  # Easter Monday: a movable feast
        (date(2026, 10, 29), "TR", "Republic"),
        (date(2026, 7, 4), "US", "Independence"),
        (date(2026, 6, 10), "PT", "Portugal"),
    ],
)
def test_public_holiday(day: date, country: str, word: str) -> None:
    name = public_holiday(day, country)
    assert name is not None
    assert word.lower() in name.lower()


@pytest.mark.parametrize(
    ("day", "country"),
    [
        (date(2026, 11, 12), "PL"),
        (date(2026, 11, 11), "TR"),
        (date(2026, 10, 29), "PL"),
        (date(2026, 10, 28), "TR"),
        (date(2026, 4, 7), "PL"),
    ],
)
def test_not_a_public_holiday(day: date, country: str) -> None:
    assert public_holiday(day, country) is None


def test_public_holiday_country_is_case_insensitive() -> None:
    assert public_holiday(date(2026, 11, 11), "pl") == public_holiday(date(2026, 11, 11), "PL")


def test_public_holiday_country_without_a_calendar() -> None:
    """Regions phonenumbers knows but the holidays library does not: no holidays, no crash."""
    assert public_holiday(date(2026, 1, 1), "TA") is None


def test_holiday_name_public_holiday_of_the_shop_country() -> None:
    pl_shop = make_shop(country="PL")
    tr_shop = make_shop(country="TR", timezone="Europe/Istanbul")
    assert holiday_name(date(2026, 11, 11), pl_shop) == public_holiday(date(2026, 11, 11), "PL")
    assert holiday_name(date(2026, 11, 11), tr_shop) is None
    tr_name = holiday_name(date(2026, 10, 29), tr_shop)
    assert tr_name is not None and "republic" in tr_name.lower()
    assert holiday_name(date(2026, 10, 29), pl_shop) is None


def test_holiday_name_shop_closed_days() -> None:
    shop = make_shop(closed_dates=frozenset({date(2026, 8, 3), date(2026, 11, 11)}))
    assert holiday_name(date(2026, 8, 3), shop) == "shop closed day"
    assert holiday_name(date(2026, 8, 4), shop) is None
    # a closed day that is also a public holiday is reported as the shop's own decision
    assert holiday_name(date(2026, 11, 11), shop) == "shop closed day"


@pytest.mark.parametrize("locale_name", ["pl_PL.UTF-8", "tr_TR.UTF-8", "de_DE.UTF-8"])
def test_holiday_names_do_not_depend_on_the_process_locale(
    monkeypatch: pytest.MonkeyPatch, locale_name: str
) -> None:
    """Verdicts and the audit trail must read the same on every machine."""
    for variable in ("LANG", "LC_ALL", "LC_MESSAGES", "LANGUAGE"):
        monkeypatch.setenv(variable, locale_name)
    _public_holidays.cache_clear()
    try:
        assert public_holiday(date(2026, 11, 11), "PL") == "National Independence Day"
        assert public_holiday(date(2026, 10, 29), "TR") == "Republic Day"
    finally:
        _public_holidays.cache_clear()
