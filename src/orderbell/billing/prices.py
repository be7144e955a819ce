"""Prices: per channel × destination country (× SMS segments), in credits (Decimal, never float).

A shop's own prices win over its plan's; a plan's over the default list shipped here.
"*" as a country is the fallback for every country without its own line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

import phonenumbers
from sqlalchemy import Connection, and_, or_, select

from orderbell.domain.calendar import validate_country
from orderbell.domain.model import Channel
from orderbell.errors import InvalidInput
from orderbell.store.schema import price_plans, prices
from orderbell.store.shops import bump_config, bump_config_of_plan

#: The most decimal places a price may have.
PRICE_PLACES = 4
MAX_PRICE = Decimal("1000")

#: The list shipped with orderbell (seeds/001: an SMS to the US is 0.11 credit, an e-mail 0.05).
DEFAULT_PRICES: dict[tuple[Channel, str], Decimal] = {
    (Channel.SMS, "*"): Decimal("0.10"),
    (Channel.SMS, "US"): Decimal("0.11"),
    (Channel.SMS, "CA"): Decimal("0.11"),
    (Channel.SMS, "GB"): Decimal("0.08"),
    (Channel.SMS, "PL"): Decimal("0.07"),
    (Channel.SMS, "CZ"): Decimal("0.07"),
    (Channel.SMS, "SK"): Decimal("0.07"),
    (Channel.SMS, "TR"): Decimal("0.05"),
    (Channel.SMS, "DE"): Decimal("0.09"),
    (Channel.SMS, "PT"): Decimal("0.06"),
    (Channel.EMAIL, "*"): Decimal("0.05"),
}


QUANTUM = Decimal("0.0001")
_ZERO = Decimal("0.0000")  # added to a -0.0000, gives 0.0000


def money(value: object) -> Decimal:
    """Credits as an exact Decimal with four places (SQLite sums come back as floats).
    Never a negative zero: a float sum a hair below zero is 0.0000, not -0.0000."""
    return Decimal(str(value)).quantize(QUANTUM) + _ZERO


def fmt(value: object) -> str:
    """Credits as text with four places: "0.1100"."""
    return str(money(value))


@lru_cache(maxsize=4096)
def fmt_cost(cost: Decimal) -> str:
    """`fmt` of a quote's cost, cached: planning shows one for every message it stores."""
    return fmt(cost)


#: An amount as it is written: ASCII digits, optionally a fraction, optionally a minus first
#: (no exponent, no digit separators, no other scripts' digits) — the API's `DecimalText`.
DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def parse_credits(
    value: object, field: str, *, maximum: Decimal, allow_zero: bool, example: str = "0.07"
) -> Decimal:
    """An amount of credits: a decimal written as a string (or an integer), finite, not
    negative (positive unless `allow_zero`), at most `maximum`, at most four places."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise InvalidInput(
            f'must be a decimal number written as a string, e.g. "{example}"', field=field
        )
    if isinstance(value, Decimal) and not value.is_finite():
        raise InvalidInput("must be a finite number", field=field)
    text = format(value, "f") if isinstance(value, Decimal) else str(value).strip()
    if not DECIMAL_TEXT.fullmatch(text):  # as the API's DecimalText: the CLI's too
        raise InvalidInput(
            f"{text[:40]!r} is not a number written as digits with an optional fraction, "
            f'e.g. "{example}"',
            field=field,
        )
    try:
        amount = Decimal(text)
    except InvalidOperation:  # pragma: no cover - DECIMAL_TEXT is a decimal's form
        raise InvalidInput(f"{value!r} is not a number", field=field) from None
    if amount < 0 or (amount == 0 and not allow_zero):
        raise InvalidInput(
            "must not be negative" if allow_zero else "must be greater than zero", field=field
        )
    if amount > maximum:
        raise InvalidInput(f"must be at most {maximum}", field=field)
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > PRICE_PLACES:
        raise InvalidInput(f"has more than {PRICE_PLACES} decimal places", field=field)
    return amount


def parse_price(value: object, field: str) -> Decimal:
    """A price in credits: zero or more, at most four places."""
    return parse_credits(value, field, maximum=MAX_PRICE, allow_zero=True)


def parse_country(value: object, field: str, channel: Channel = Channel.SMS) -> str:
    """A price list country: ISO alpha-2 (validated) or "*"; only "*" for e-mail, which has
    no destination country (a line for one would be listed, and never charge anything)."""
    if value == "*":
        return "*"
    country = validate_country(value, field=field)
    if channel is not Channel.SMS:
        raise InvalidInput(
            f'an {channel.value} has no destination country: its price is the "*" line',
            field=field,
        )
    return country


#: An E.164 number as orderbell stores recipients: "+", then 7 to 15 digits, the first of
#: them (the country calling code's) not 0.
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
#: Country calling code → the regions that share it (one for all but a dozen codes).
_REGIONS: dict[int, tuple[str, ...]] = phonenumbers.COUNTRY_CODE_TO_REGION_CODE


def destination_country(channel: Channel, recipient: str | None) -> str | None:
    """The country an SMS goes to (from its E.164 number); None for e-mail or no number.

    Priced for every SMS planned and again when it is settled, mostly for numbers never
    seen before: a calling code that belongs to one region (+90 → TR, +48 → PL: all but a
    dozen) answers from phonenumbers' own table, as `region_code_for_number` does, without
    parsing (~11 us a number); a shared one (+1: US, CA and the Caribbean; +44, +7 …)
    needs the number's digits checked against each region's, so is parsed (cached)."""
    if channel is not Channel.SMS or not recipient:
        return None
    if _E164.fullmatch(recipient):
        # calling codes are prefix-free: the first prefix in the table is the code, the
        # way phonenumbers extracts it
        for size in (1, 2, 3):
            regions = _REGIONS.get(int(recipient[1 : size + 1]))
            if regions is not None:
                if len(regions) == 1:
                    return regions[0]
                break
    return _parsed_country(recipient)


@lru_cache(maxsize=8192)  # pure; phonenumbers parsing costs ~11-13 us a call here
def _parsed_country(recipient: str) -> str | None:
    """`destination_country` by phonenumbers' parser (None when it cannot parse)."""
    try:
        number = phonenumbers.parse(recipient, None)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.region_code_for_number(number)


@dataclass(frozen=True, slots=True)
class Quote:
    """What one message costs."""

    cost: Decimal
    unit_price: Decimal
    units: int  #: SMS segments (1 for e-mail)
    country: str | None

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly (credits as strings)."""
        return {
            "cost": fmt(self.cost),
            "unit_price": fmt(self.unit_price),
            "units": self.units,
            "country": self.country,
        }


def unit_price(
    conn: Connection, shop_id: int, plan_id: int | None, channel: Channel, country: str | None
) -> Decimal:
    """The price of one unit (SMS segment / e-mail) for this shop and destination."""
    wanted = [country, "*"] if country else ["*"]
    owner = prices.c.shop_id == shop_id
    if plan_id is not None:
        owner = or_(owner, and_(prices.c.plan_id == plan_id, prices.c.shop_id.is_(None)))
    rows = conn.execute(
        select(prices.c.shop_id, prices.c.country, prices.c.unit_price).where(
            owner, prices.c.channel == channel.value, prices.c.country.in_(wanted)
        )
    ).all()
    return _choose(rows, channel, country)[1]


def _choose(rows: Iterable[Any], channel: Channel, country: str | None) -> tuple[str, Decimal]:
    """Which line prices a destination, and where it comes from ("shop", "plan" or
    "default"), among the shop's and its plan's lines of that channel (`rows`: shop_id,
    country, unit_price): the shop's own before its plan's, the exact country before "*";
    the default list only when neither has a line that applies."""
    wanted = [country, "*"] if country and country != "*" else ["*"]
    lines = [r for r in rows if r.country in wanted]
    if lines:
        best = min(lines, key=lambda r: (r.shop_id is None, wanted.index(r.country)))
        return ("plan" if best.shop_id is None else "shop"), Decimal(best.unit_price)
    for key in wanted:
        if (channel, key) in DEFAULT_PRICES:
            return "default", DEFAULT_PRICES[(channel, key)]
    return "default", Decimal(0)


def quote(
    conn: Connection,
    shop_id: int,
    plan_id: int | None,
    channel: Channel,
    recipient: str | None,
    segments: int | None,
) -> Quote:
    """The cost of one message: unit price × segments (SMS) or the e-mail price."""
    country = destination_country(channel, recipient)
    return priced(unit_price(conn, shop_id, plan_id, channel, country), channel, country, segments)


@lru_cache(maxsize=4096)
def priced(price: Decimal, channel: Channel, country: str | None, segments: int | None) -> Quote:
    """The quote for a message at a known unit price: price × segments (SMS) or × 1.
    (Cached: a quote is immutable, and a shop's messages mostly share a handful.)"""
    units = max(1, segments or 1) if channel is Channel.SMS else 1
    return Quote(cost=price * units, unit_price=price, units=units, country=country)


def _lines(items: list[dict[str, object]]) -> list[dict[str, object]]:
    """Validated price lines; the field names the line that is wrong."""
    out: list[dict[str, object]] = []
    seen: set[tuple[str, str]] = set()
    for i, item in enumerate(items):
        channel = Channel(str(item["channel"]))
        country = parse_country(item["country"], field=f"prices[{i}].country", channel=channel)
        key = (channel.value, country)
        if key in seen:
            raise InvalidInput(f"{channel.value} {country} is listed twice", field=f"prices[{i}]")
        seen.add(key)
        price = parse_price(item["unit_price"], field=f"prices[{i}].unit_price")
        out.append({"channel": channel.value, "country": country, "unit_price": price})
    return out


def set_shop_prices(conn: Connection, shop_id: int, items: list[dict[str, object]]) -> None:
    """Replace a shop's own price lines (validated first: nothing half-written)."""
    lines = _lines(items)
    conn.execute(prices.delete().where(prices.c.shop_id == shop_id))
    if lines:
        conn.execute(prices.insert(), [{**line, "shop_id": shop_id} for line in lines])
    bump_config(conn, shop_id)


def set_plan(conn: Connection, name: str, items: list[dict[str, object]], now: datetime) -> int:
    """Create or replace a shared price plan; returns its id."""
    from orderbell.store.db import new_id

    lines = _lines(items)
    row = conn.execute(select(price_plans.c.id).where(price_plans.c.name == name)).first()
    plan_id = (
        int(row.id)
        if row
        else new_id(conn.execute(price_plans.insert().values(name=name, created_at=now)))
    )
    conn.execute(prices.delete().where(prices.c.plan_id == plan_id, prices.c.shop_id.is_(None)))
    if lines:
        conn.execute(prices.insert(), [{**line, "plan_id": plan_id} for line in lines])
    bump_config_of_plan(conn, plan_id)
    return plan_id


def plan_id(conn: Connection, name: str) -> int:
    """A plan's id by name, or InvalidInput."""
    row = conn.execute(select(price_plans.c.id).where(price_plans.c.name == name)).first()
    if row is None:
        raise InvalidInput(f"no price plan named {name!r}", field="plan")
    return int(row.id)


def effective(conn: Connection, shop_id: int, plan: int | None) -> list[dict[str, object]]:
    """Every destination with a line of its own anywhere (the default list, the plan, the
    shop), at the price a message to it is charged (`unit_price`'s choice) and where that
    price comes from: a shop's or a plan's "*" line prices the default list's countries too."""
    owner = prices.c.shop_id == shop_id
    if plan is not None:
        owner = or_(owner, and_(prices.c.plan_id == plan, prices.c.shop_id.is_(None)))
    rows = conn.execute(
        select(prices.c.shop_id, prices.c.channel, prices.c.country, prices.c.unit_price).where(
            owner
        )
    ).all()
    keys = {(ch.value, country) for ch, country in DEFAULT_PRICES}
    keys |= {(r.channel, r.country) for r in rows}
    out: list[dict[str, object]] = []
    for ch, country in sorted(keys):
        channel = Channel(ch)
        source, price = _choose([r for r in rows if r.channel == ch], channel, country)
        out.append({"channel": ch, "country": country, "source": source, "unit_price": fmt(price)})
    return out
