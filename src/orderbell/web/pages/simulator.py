"""The inline rule simulator: "an order placed Friday 16:30 → this text, sent Monday 08:00,
because …" — the engine's Simulator over the stored rules; nothing is stored or sent."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from orderbell.api.schemas import EventIn, parse_clock
from orderbell.compose import Services
from orderbell.domain.calendar import local
from orderbell.domain.model import EventType
from orderbell.errors import OrderbellError
from orderbell.store import shops as shop_store
from orderbell.web.core import Me, Posted, Svc, render, shop_tz
from orderbell.web.forms import Errors

router = APIRouter()
FIELDS = ("sim.event_type", "sim.status", "sim.date", "sim.time", "sim.name", "sim.phone")
# where EventIn's errors are shown in the simulator form
_FIELD_OF = {
    "type": "sim.event_type",
    "status": "sim.status",
    "customer.phone": "sim.phone",
    "customer.name": "sim.name",
}


def simulator_defaults(svc: Services, shop_id: int, tz: str) -> dict[str, str]:
    """Now in the shop's time, and an example phone number of the shop's country."""
    with svc.engine.connect() as conn:
        country = shop_store.get_row(conn, shop_id).country
    example = phonenumbers.example_number_for_type(country, phonenumbers.PhoneNumberType.MOBILE)
    phone = (
        phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164) if example else ""
    )
    now = local(svc.clock.now(), tz)
    return {
        "sim.event_type": EventType.ORDER_CREATED.value,
        "sim.status": "",
        "sim.date": now.date().isoformat(),
        "sim.time": now.strftime("%H:%M"),
        "sim.name": "Sample Customer",
        "sim.phone": phone,
    }


def _when(values: dict[str, str], tz: str, errors: Errors) -> datetime | None:
    try:
        day = date.fromisoformat(values["sim.date"].strip())
    except ValueError:
        errors.add("sim.date", "must be a date, YYYY-MM-DD")
        day = None
    try:
        moment = parse_clock(values["sim.time"])
    except ValueError as exc:
        errors.add("sim.time", f"{exc} (24-hour HH:MM, e.g. 14:59)")
        return None
    if day is None:
        return None
    return datetime.combine(day, moment, ZoneInfo(tz))


@router.post("/simulate")
def simulate(request: Request, svc: Svc, me: Me, form: Posted) -> Response:
    """What the stored rules would send for an event at a shop-local time."""
    tz = shop_tz(svc, me.shop_id)
    values = {f: form.get(f).strip() for f in FIELDS}
    errors = Errors()
    when = _when(values, tz, errors)
    result: dict[str, Any] | None = None
    if when is not None:
        customer = {"name": values["sim.name"] or None, "phone": values["sim.phone"] or None}
        body = {
            "type": values["sim.event_type"],
            "occurred_at": when.isoformat(),
            "status": values["sim.status"] or None,
            "order": {"code": "SIM-1", "total": "100.00", "payment_method": "card"},
            "customer": {k: v for k, v in customer.items() if v},
        }
        try:
            result = svc.simulator.simulate(me.shop_id, EventIn.model_validate(body))
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"])
                errors.add(
                    _FIELD_OF.get(loc, "sim.event_type"),
                    str(err["msg"]).removeprefix("Value error, "),
                )
        except OrderbellError as exc:
            errors.add(_FIELD_OF.get(exc.field or "", "sim.event_type"), exc.message)
    return render(
        request,
        "rules/_sim.html",
        me=me,
        tz=tz,
        errors=errors,
        sim=values,
        when=when,
        result=result,
        event_types=[e.value for e in EventType],
    )
