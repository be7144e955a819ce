"""HourRange.contains: [start, end) in local wall-clock time, crossing midnight when end <= start."""

from __future__ import annotations

from datetime import UTC, time, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orderbell.domain.model import HourRange

from .builders import hours


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        (time(0, 0), True),
        (time(9, 30), True),
        (time(14, 59, 59), True),
        (time(14, 59, 59, 999999), True),
        (time(15, 0), False),
        (time(15, 0, 0, 1), False),
        (time(23, 59, 59), False),
    ],
)
def test_plain_range_includes_start_excludes_end(moment: time, inside: bool) -> None:
    assert hours("00:00", "15:00").contains(moment) is inside


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        (time(14, 59, 59), False),
        (time(15, 0, 0), True),
        (time(18, 0), True),
        (time(23, 59, 59), True),
        (time(23, 59, 59, 999999), True),
        (time(0, 0), False),
        (time(0, 0, 1), False),
        (time(3, 0), False),
    ],
)
def test_range_until_midnight(moment: time, inside: bool) -> None:
    """15:00–00:00 means "from 15:00 until midnight"; midnight itself belongs to the next day."""
    assert hours("15:00", "00:00").contains(moment) is inside


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        (time(21, 59, 59), False),
        (time(22, 0), True),
        (time(23, 59, 59), True),
        (time(0, 0), True),
        (time(3, 0), True),
        (time(5, 59, 59), True),
        (time(6, 0), False),
        (time(12, 0), False),
    ],
)
def test_range_crossing_midnight(moment: time, inside: bool) -> None:
    assert hours("22:00", "06:00").contains(moment) is inside


@pytest.mark.parametrize("moment", [time(0, 0), time(8, 0), time(12, 34, 56), time(23, 59, 59)])
def test_start_equal_to_end_is_the_whole_day(moment: time) -> None:
    assert hours("08:00", "08:00").contains(moment)
    assert hours("00:00", "00:00").contains(moment)


def test_tzinfo_on_the_moment_is_ignored() -> None:
    """The range is about the wall clock; an offset on the time does not shift it."""
    plus_two = timezone(timedelta(hours=2))
    assert hours("15:00", "00:00").contains(time(15, 0, tzinfo=plus_two))
    assert not hours("15:00", "00:00").contains(time(14, 59, 59, tzinfo=UTC))


times = st.times()
minutes = st.integers(min_value=0, max_value=24 * 60 - 1).map(lambda m: time(m // 60, m % 60))


@given(start=minutes, end=minutes, moment=times)
def test_a_range_and_its_complement_split_the_day(start: time, end: time, moment: time) -> None:
    """[a, b) and [b, a) cover every moment exactly once (for a != b)."""
    if start == end:
        assert HourRange(start=start, end=end).contains(moment)
        return
    first = HourRange(start=start, end=end).contains(moment)
    second = HourRange(start=end, end=start).contains(moment)
    assert first != second


@given(start=minutes, end=minutes)
def test_start_is_always_inside(start: time, end: time) -> None:
    assert HourRange(start=start, end=end).contains(start)


@given(start=minutes, end=minutes)
def test_end_is_outside_unless_whole_day(start: time, end: time) -> None:
    assert HourRange(start=start, end=end).contains(end) is (start == end)
