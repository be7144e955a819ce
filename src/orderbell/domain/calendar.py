"""Shop-local time: time zones, local wall clocks, public holidays and closed days."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
import phonenumbers

from orderbell.domain.model import Shop
from orderbell.errors import InvalidInput


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def zone(name: str | ZoneInfo, field: str = "timezone") -> ZoneInfo:
    """The IANA zone of that name, or InvalidInput naming the field and the zone."""
    if isinstance(name, ZoneInfo):
        return name
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("must be an IANA time zone name such as Europe/Warsaw", field=field)
    try:
        return _zone(name.strip())
    except (ZoneInfoNotFoundError, ValueError, IsADirectoryError):
        raise InvalidInput(
            f"unknown time zone {name!r}: use an IANA name such as Europe/Warsaw", field=field
        ) from None


def local(instant: datetime, tz: str | ZoneInfo) -> datetime:
    """The shop-local wall-clock time of an aware instant."""
    if instant.tzinfo is None:
        raise ValueError("instant must carry a timezone offset")
    return instant.astimezone(zone(tz))


def at_local(day: date, moment: time, tz: str | ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time on a day.

    A time skipped by a DST change (02:30 on the spring-forward night) is moved forward
    by the gap; an ambiguous time (the autumn repeat) is its first occurrence.
    """
    z = zone(tz)
    naive = datetime.combine(day, moment.replace(tzinfo=None))
    candidate = naive.replace(tzinfo=z, fold=0)
    utc = candidate.astimezone(UTC)
    if utc.astimezone(z).replace(tzinfo=None) != naive:
        # In a gap: fold=0 read the time with the offset before the change,
        # which lands after the gap in wall-clock terms. That is what we want.
        return utc
    return utc


def next_local_day(instant: datetime, tz: str | ZoneInfo, days: int = 1) -> date:
    """The local date `days` after the local date of an instant."""
    return local(instant, tz).date() + timedelta(days=days)


def validate_country(code: object, field: str = "country") -> str:
    """An ISO 3166 alpha-2 country code, upper-cased, or InvalidInput."""
    if not isinstance(code, str) or len(code.strip()) != 2 or not code.strip().isalpha():
        raise InvalidInput("must be a two-letter ISO 3166 country code such as PL", field=field)
    value = code.strip().upper()
    if value not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidInput(f"unknown country code {value!r}", field=field)
    return value


#: Holiday names appear in rule verdicts and the audit trail, next to English reasons. Left
#: unset, the holidays library guesses the language from the process locale (LANG, LC_ALL …),
#: so the same event would be explained differently on two machines.
HOLIDAY_NAME_LANGUAGE = "en_US"


@lru_cache(maxsize=512)
def _public_holidays(country: str, year: int) -> dict[date, str]:
    try:
        table = holidays.country_holidays(country, years=year, language=HOLIDAY_NAME_LANGUAGE)
    except NotImplementedError:
        return {}
    return {day: str(name) for day, name in table.items()}


def public_holiday(day: date, country: str) -> str | None:
    """The name of the public holiday in that country on that day, or None."""
    return _public_holidays(country.upper(), day.year).get(day)


def holiday_name(day: date, shop: Shop) -> str | None:
    """Why this shop-local day counts as a holiday (shop closed day or public holiday)."""
    if day in shop.closed_dates:
        return "shop closed day"
    return public_holiday(day, shop.country)
