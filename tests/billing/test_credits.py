"""Credits through the API and the real pipeline: costs known before sending, holds and their
release after a top-up, packages with carry-over, spending caps, low-balance notices,
statements, and a ledger whose sum is the balance — on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select, text
from structlog.testing import capture_logs
from tests.conftest import make_shop
from tests.support import (
    assert_buckets_add_up,
    assert_ledger_adds_up,
    drain,
    messages,
    rule,
    template,
)

from orderbell.api.schemas import EventIn
from orderbell.billing import credits, plans, prices
from orderbell.billing.prices import Quote, fmt
from orderbell.clock import ManualClock
from orderbell.compose import Services
from orderbell.domain.model import Channel
from orderbell.errors import InvalidInput
from orderbell.store import claims
from orderbell.store.driver import Driver
from orderbell.store.schema import credit_accounts, ledger
from orderbell.store.schema import messages as messages_table
from orderbell.store.shops import bump_config

#: A test of row locks: PostgreSQL only (SQLite's writer holds the whole database).
postgres_only = pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)

AT = "2026-11-20T10:00:00+03:00"
TR_PHONE = "+905321234567"  # SMS to TR: 0.05 credit per segment in the default list


def billed_shop(
    client: TestClient, topup: str | None, slug: str = "paid", **fields: Any
) -> dict[str, Any]:
    shop = make_shop(client, slug, topup=topup, **fields)
    body = template(client, shop, "Order {{ order_code }} received", name="t")
    rule(client, shop, name="new", trigger={"event_type": "order.created"},
         action={"channel": "sms", "template_id": body, "validity_minutes": 600})  # fmt: skip
    return shop


def capped_shop(client: TestClient, cap: str, **settings: Any) -> dict[str, Any]:
    """A billed shop with 10 credits and a monthly spending cap of `cap`."""
    shop = billed_shop(client, "10")
    r = client.patch("/v1/credits/settings", headers=shop["auth"],
                     json={"monthly_cap": cap, **settings})  # fmt: skip
    assert r.status_code == 200, r.text
    return shop


def order_event(code: str, at: str = AT, phone: str = TR_PHONE) -> dict[str, Any]:
    return {"type": "order.created", "occurred_at": at, "order": {"code": code},
            "customer": {"id": f"c-{code}", "phone": phone}}  # fmt: skip


def post(client: TestClient, shop: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/v1/events", headers=shop["auth"], json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def summary(client: TestClient, shop: dict[str, Any]) -> dict[str, Any]:
    r = client.get("/v1/credits", headers=shop["auth"])
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_cost_is_known_when_planned_and_debited_when_sent(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    shop = billed_shop(client, "1")
    clock.set(datetime.fromisoformat(AT))
    result = post(client, shop, order_event("A-1"))
    [planned] = result["messages"]
    assert planned["cost"] == "0.0500"
    assert summary(client, shop)["reserved"] == "0.0500"
    assert summary(client, shop)["available"] == "0.9500"
    simulated = client.post("/v1/simulate", headers=shop["auth"], json=order_event("S-1")).json()
    assert simulated["messages"][0]["cost"] == {
        "cost": "0.0500", "unit_price": "0.0500", "units": 1, "country": "TR"
    }  # fmt: skip
    drain(services)
    [message] = messages(client, shop)
    detail = client.get(f"/v1/messages/{message['id']}", headers=shop["auth"]).json()
    assert (detail["status"], detail["cost"], detail["billing"]) == ("sent", "0.0500", "debited")
    after = summary(client, shop)
    assert (after["available"], after["reserved"], after["balance"]) == ("0.9500", "0.0000",
                                                                         "0.9500")  # fmt: skip
    kinds = [e["kind"] for e in client.get("/v1/credits/ledger", headers=shop["auth"],
                                           params={"message_id": message["id"]}).json()["items"]]  # fmt: skip
    assert sorted(kinds) == ["debit", "release", "reservation"]
    assert_ledger_adds_up(services)


def test_the_simulator_says_how_a_message_would_be_paid_for_or_why_it_would_be_held(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """As ingest would decide it now — credit, an allowance, or held — writing nothing."""
    shop = billed_shop(client, None)  # no credit
    clock.set(datetime.fromisoformat(AT))

    def simulated() -> list[tuple[str, str | None, str | None]]:
        r = client.post("/v1/simulate", headers=shop["auth"], json=order_event("S-1"))
        assert r.status_code == 200, r.text
        return [(m["status"], m.get("funding"), (m["reason"] or "").split(":")[0])
                for m in r.json()["messages"]]  # fmt: skip

    assert simulated() == [("held", None, "insufficient_credit")]
    assert post(client, shop, order_event("S-0"))["messages"][0]["status"] == "held"
    client.post("/v1/credits/topups", headers=shop["auth"], json={"amount": "1"})
    assert simulated()[0][:2] == ("scheduled", "credit")
    client.patch("/v1/credits/settings", headers=shop["auth"], json={"monthly_cap": "0.05"})
    assert simulated() == [("held", None, "spending_cap")]  # S-0 took the month's 0.05
    clock.set(datetime.fromisoformat("2026-12-01T00:30:00+03:00"))  # December: paid again,
    assert simulated()[0][:2] == ("scheduled", "credit")  # though the event says November
    clock.set(datetime.fromisoformat(AT))
    client.post("/v1/credits/packages", headers=shop["auth"],
                json={"name": "p", "channel": "sms", "allowance": 1, "carry_over": "none"})  # fmt: skip
    assert simulated()[0][:2] == ("scheduled", "allowance")
    with services.engine.connect() as conn:
        kinds = conn.execute(select(ledger.c.kind).order_by(ledger.c.id)).scalars().all()
    assert kinds == ["topup", "reservation", "allowance"]  # the top-up sent S-0 on
    assert_ledger_adds_up(services)


def test_long_sms_costs_per_segment(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    shop = make_shop(client, "long", topup="1")
    body = template(client, shop, "Zamówienie {{ order_code }} " + "ż" * 80, name="pl")
    rule(client, shop, name="new", trigger={"event_type": "order.created"},
         action={"channel": "sms", "template_id": body})  # fmt: skip
    clock.set(datetime.fromisoformat(AT))
    [planned] = post(client, shop, order_event("L-1", phone="+48600700800"))["messages"]
    assert planned["cost"] == "0.1400"  # UCS-2, 2 segments × 0.07 to PL


def test_no_credit_holds_and_top_up_releases_in_order(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    shop = billed_shop(client, "0.10")
    clock.set(datetime.fromisoformat(AT))
    for i in range(4):
        post(client, shop, order_event(f"H-{i}"))
    statuses = [m["status"] for m in messages(client, shop)]
    assert statuses == ["scheduled", "scheduled", "held", "held"]
    held = messages(client, shop)[2]
    assert held["reason"].startswith("insufficient_credit")
    drain(services)
    assert [m["status"] for m in messages(client, shop)] == ["sent", "sent", "held", "held"]

    clock.advance(timedelta(minutes=5))
    top = client.post("/v1/credits/topups", headers=shop["auth"],
                      json={"amount": "0.05", "reference": "pay_1"})  # fmt: skip
    assert top.status_code == 201, top.text
    assert top.json()["released"] == 1
    assert [m["status"] for m in messages(client, shop)] == ["sent", "sent", "scheduled", "held"]
    drain(services)
    # the oldest held message went first; the newer one waits for more credit
    assert [m["status"] for m in messages(client, shop)] == ["sent", "sent", "sent", "held"]
    assert_ledger_adds_up(services)


def test_a_planner_batch_reserves_in_order_and_holds_past_the_credit(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """Accepted events planned in one transaction share one read of the account: each
    reservation sees the ones queued before it, so the credit runs out exactly where it
    would one event at a time."""
    shop = billed_shop(client, "0.10")  # two SMS at 0.05
    clock.set(datetime.fromisoformat(AT))
    for i in range(4):
        r = client.post("/v1/events", json=order_event(f"B-{i}"),
                        headers={**shop["auth"], "Prefer": "respond-async"})  # fmt: skip
        assert r.status_code == 202, r.text
    assert services.ingestor.plan_waiting(100) == 4
    listed = messages(client, shop)
    assert [m["status"] for m in listed] == ["scheduled", "scheduled", "held", "held"]
    assert listed[2]["reason"].startswith("insufficient_credit")
    assert (summary(client, shop)["available"], summary(client, shop)["reserved"]) == (
        "0.0000",
        "0.1000",
    )
    with services.engine.connect() as conn:
        reserved = conn.execute(
            select(ledger.c.message_id).where(ledger.c.kind == "reservation").order_by(ledger.c.id)
        ).scalars()
        assert list(reserved) == [listed[0]["id"], listed[1]["id"]]
    assert_ledger_adds_up(services)
    drain(services)
    assert [m["status"] for m in messages(client, shop)] == ["sent", "sent", "held", "held"]
    assert_ledger_adds_up(services)


#: What `one_planned`'s copies are reserved for.
QUOTE = Quote(cost=Decimal("0.05"), units=1, country="TR", unit_price=Decimal("0.05"))


def one_planned(
    client: TestClient, services: Services, clock: ManualClock, code: str
) -> tuple[dict[str, Any], dict[str, Any], int, dict[str, Any]]:
    """A billed shop with 1 credit and one event planned at AT: the shop, its message as
    listed, the shop's id, and that message's columns to insert copies of (`insert_funded`)."""
    shop = billed_shop(client, "1")
    clock.set(datetime.fromisoformat(AT))
    post(client, shop, order_event(code))
    [first] = messages(client, shop)
    with services.engine.connect() as conn:
        shop_id = int(conn.execute(select(credit_accounts.c.shop_id)).scalar_one())
        row = dict(conn.execute(select(messages_table)).mappings().one())
    values = {k: v for k, v in row.items() if k not in ("id", "cost", "segments", "funding",
                                                        "bucket_id", "billing")}  # fmt: skip
    values["rule_id"] = None  # (event, rule) is unique: these copies stand for a manual send
    return shop, first, shop_id, values


def test_an_event_rolled_back_in_a_batch_takes_its_reservations_with_it(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """`Reservations.item`: what a failed event queued is dropped with its savepoint, and so
    is the account it read, so the next event reads it again instead of trusting a copy."""
    shop, first, shop_id, values = one_planned(client, services, clock, "T-0")
    now = clock.now()
    with services.engine.begin() as conn:  # the account keeps this month's spending
        assert credits.month_spend(conn, shop_id, now, keep=True) == Decimal(first["cost"])

    def reserve_one(conn: Any, batch: credits.Reservations) -> int:
        message_id, hold = credits.insert_funded(
            conn, dict(values), quote=QUOTE, account_cache=batch.account_cache(shop_id),
            now=now, actor="test", entries=batch,
        )  # fmt: skip
        assert hold is None
        return message_id

    with services.engine.begin() as conn:
        batch = credits.Reservations()

        def failing_event() -> None:
            with batch.item(), conn.begin_nested():
                reserve_one(conn, batch)
                raise RuntimeError("the event failed after its reservation was queued")

        with pytest.raises(RuntimeError):
            failing_event()
        assert batch.entries.rows == [] and batch.account_cache(shop_id) == []
        with batch.item(), conn.begin_nested():
            kept = reserve_one(conn, batch)
            reserve_one(conn, batch)
        assert [r[credits._COLUMNS.index("message_id")] for r in batch.entries.rows] == [
            kept,
            kept + 1,
        ]
        batch.write(conn, now)
    after = summary(client, shop)
    assert Decimal(after["reserved"]) == Decimal(first["cost"] or 0) + Decimal("0.10")
    assert Decimal(after["month_spend"]) == Decimal(first["cost"]) + Decimal("0.10")
    assert_ledger_adds_up(services)


def test_a_month_kept_after_the_account_was_read_is_dropped_not_left_short(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """An account that kept no month when it was read has its reservations queued without
    tracking spending. Were a month kept before they are written (only a capped decision
    keeps one, and it tracks), the write drops that month rather than leave it short: the
    next capped decision sums the ledger again."""
    shop, first, shop_id, values = one_planned(client, services, clock, "U-0")
    now = clock.now()
    with services.engine.begin() as conn:
        batch = credits.Reservations()
        credits.insert_funded(
            conn, values, quote=QUOTE, account_cache=batch.account_cache(shop_id), now=now,
            actor="test", entries=batch,
        )  # fmt: skip
        assert shop_id in batch.entries.untracked
        credits.month_spend(conn, shop_id, now, keep=True)  # kept after the read
        batch.write(conn, now)
    with services.engine.connect() as conn:
        assert conn.execute(select(credit_accounts.c.cap_from)).scalar_one() is None
    assert_ledger_adds_up(services)
    r = client.patch("/v1/credits/settings", headers=shop["auth"], json={"monthly_cap": "5"})
    assert r.status_code == 200, r.text
    assert Decimal(summary(client, shop)["month_spend"]) == Decimal(first["cost"]) + QUOTE.cost


def test_held_message_past_validity_expires_instead_of_sending(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    shop = billed_shop(client, None)
    clock.set(datetime.fromisoformat(AT))
    post(client, shop, order_event("V-1"))
    assert messages(client, shop)[0]["status"] == "held"
    clock.advance(timedelta(hours=11))  # validity is 600 minutes
    r = client.post("/v1/credits/topups", headers=shop["auth"], json={"amount": "5"})
    assert r.json()["released"] == 0
    drain(services)
    [message] = messages(client, shop)
    assert message["status"] == "expired"
    assert summary(client, shop)["available"] == "5.0000"


@pytest.mark.parametrize(
    ("amount", "reason"),
    [("0", "greater than zero"), ("-5", "greater than zero"), ("ten", "pattern"),
     ("1.00001", "decimal places"), ("1e9999", "pattern")],
)  # fmt: skip
def test_bad_top_ups_are_refused_and_change_nothing(
    client: TestClient, services: Services, amount: str, reason: str
) -> None:
    shop = billed_shop(client, "1")
    r = client.post("/v1/credits/topups", headers=shop["auth"], json={"amount": amount})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "amount"
    assert reason in r.json()["error"]["message"] or reason == "pattern"
    assert summary(client, shop)["available"] == "1.0000"
    bad_type = client.post("/v1/credits/topups", headers=shop["auth"], json={"amount": 5.5})
    assert bad_type.status_code == 422 and bad_type.json()["error"]["field"] == "amount"


@pytest.mark.parametrize(
    ("line", "field", "reason"),
    [
        ({"channel": "sms", "country": "PL", "unit_price": "0.07001"}, "prices[0].unit_price",
         "decimal places"),
        ({"channel": "sms", "country": "QQ", "unit_price": "0.07"}, "prices[0].country",
         "unknown country"),
        ({"channel": "fax", "country": "PL", "unit_price": "0.07"}, "prices.0.channel", ""),
        ({"channel": "sms", "country": "PL", "unit_price": "-1"}, "prices[0].unit_price",
         "negative"),
        ({"channel": "email", "country": "TR", "unit_price": "0.5"}, "prices[0].country",
         "no destination country"),
    ],
)  # fmt: skip
def test_bad_prices_are_refused(
    client: TestClient, services: Services, line: dict[str, str], field: str, reason: str
) -> None:
    shop = billed_shop(client, "1")
    r = client.put("/v1/credits/prices", headers=shop["auth"],
                   json={"prices": [{"channel": "email", "country": "*", "unit_price": "0.04"},
                                    line][1:]})  # fmt: skip
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field
    assert reason in r.json()["error"]["message"]
    own = [p for p in client.get("/v1/credits/prices", headers=shop["auth"]).json()["items"]
           if p["source"] == "shop"]  # fmt: skip
    assert own == []


def test_shop_prices_override_the_default_list(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    shop = billed_shop(client, "1")
    r = client.put("/v1/credits/prices", headers=shop["auth"],
                   json={"prices": [{"channel": "sms", "country": "TR", "unit_price": "0.0321"}]})  # fmt: skip
    assert r.status_code == 200, r.text
    clock.set(datetime.fromisoformat(AT))
    [planned] = post(client, shop, order_event("P-1"))["messages"]
    assert planned["cost"] == "0.0321"
    us = post(client, shop, order_event("P-2", phone="+12025550123"))["messages"]
    assert us[0]["cost"] == "0.1100"  # seeds/001: an SMS to the US costs 0.11 credit


def test_parallel_sends_with_credit_for_exactly_half(
    services: Services, client: TestClient, clock: ManualClock
) -> None:
    shop = billed_shop(client, "2.50")  # 50 × 0.05
    clock.set(datetime.fromisoformat(AT))
    with services.engine.connect() as conn:
        shop_id = int(conn.execute(select(credit_accounts.c.shop_id)).scalar_one())
    errors: list[BaseException] = []

    def send(i: int) -> None:
        try:
            services.ingestor.ingest(shop_id, EventIn.model_validate(order_event(f"R-{i}")))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    drain(services)
    statuses = [m["status"] for m in messages(client, shop)]
    assert statuses.count("sent") == 50 and statuses.count("held") == 50
    assert summary(client, shop)["available"] == "0.0000"
    with services.engine.connect() as conn:
        debits = conn.execute(
            select(ledger.c.message_id, func.count())
            .where(ledger.c.kind == "debit")
            .group_by(ledger.c.message_id)
        ).all()
    assert len(debits) == 50 and all(n == 1 for _, n in debits)
    assert_ledger_adds_up(services)


def test_package_allowance_first_then_credit_and_carry_over(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    shop = billed_shop(client, "1")
    clock.set(datetime.fromisoformat("2026-11-05T10:00:00+03:00"))
    pkg = client.post("/v1/credits/packages", headers=shop["auth"],
                      json={"name": "1000 SMS", "channel": "sms", "allowance": 2,
                            "carry_over": "unlimited", "price": "31"})  # fmt: skip
    assert pkg.status_code == 201, pkg.text
    [bucket] = pkg.json()["allowances"]
    assert (bucket["period"], bucket["remaining"]) == ("2026-11", 2)
    post(client, shop, order_event("K-1", at="2026-11-05T10:00:00+03:00"))
    drain(services)
    state = summary(client, shop)
    assert state["available"] == "1.0000"  # paid from the allowance
    assert state["allowances"][0]["remaining"] == 1

    # December: the unused November message carries over and is used before December's
    clock.set(datetime.fromisoformat("2026-12-01T09:00:00+03:00"))
    renewed = client.post("/v1/credits/renew", headers=shop["auth"]).json()
    assert renewed["granted"] == 1
    again = client.post("/v1/credits/renew", headers=shop["auth"]).json()
    assert again["granted"] == 0  # renewing twice for one month counts once
    kinds = {(a["period"], a["kind"]): a["remaining"] for a in again["allowances"]}
    assert kinds == {("2026-11", "carry_over"): 1, ("2026-12", "allowance"): 2}
    post(client, shop, order_event("K-2", at="2026-12-01T09:00:00+03:00"))
    drain(services)
    kinds = {(a["period"], a["kind"]): a["remaining"] for a in summary(client, shop)["allowances"]}
    assert kinds == {("2026-12", "allowance"): 2}
    # a clock that jumps back grants nothing
    clock.set(datetime.fromisoformat("2026-11-20T09:00:00+03:00"))
    assert client.post("/v1/credits/renew", headers=shop["auth"]).json()["granted"] == 0
    # spending past the allowance falls back to prepaid credit
    clock.set(datetime.fromisoformat("2026-12-02T09:00:00+03:00"))
    for i in range(3):
        post(client, shop, order_event(f"K-{3 + i}", at="2026-12-02T09:00:00+03:00"))
    drain(services)
    assert summary(client, shop)["available"] == "0.9500"
    assert_ledger_adds_up(services)


def test_a_planner_batch_draws_allowances_in_order_then_credit(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """Events planned in one transaction take allowance units from the buckets read once and
    kept in memory (`Reservations.usable_bucket`): carried-over first, then this month's,
    then prepaid credit, exactly as one event at a time would; each bucket is moved once."""
    shop = billed_shop(client, "1")
    clock.set(datetime.fromisoformat("2026-11-05T10:00:00+03:00"))
    pkg = client.post("/v1/credits/packages", headers=shop["auth"],
                      json={"name": "p", "channel": "sms", "allowance": 2,
                            "carry_over": "unlimited"})  # fmt: skip
    assert pkg.status_code == 201, pkg.text
    post(client, shop, order_event("N-1", at="2026-11-05T10:00:00+03:00"))  # 1 of 2 used
    drain(services)
    at = "2026-12-01T09:00:00+03:00"
    clock.set(datetime.fromisoformat(at))
    assert client.post("/v1/credits/renew", headers=shop["auth"]).json()["granted"] == 1
    for i in range(5):
        r = client.post("/v1/events", json=order_event(f"D-{i}", at=at),
                        headers={**shop["auth"], "Prefer": "respond-async"})  # fmt: skip
        assert r.status_code == 202, r.text
    assert services.ingestor.plan_waiting(100) == 5
    with services.engine.connect() as conn:
        buckets = {
            b.id: (b.period, b.kind)
            for b in conn.execute(text("SELECT id, period, kind FROM allowance_buckets"))
        }
        taken = conn.execute(
            select(ledger.c.bucket_id, ledger.c.units, ledger.c.credits)
            .where(ledger.c.kind == "reservation", ledger.c.at >= clock.now())
            .order_by(ledger.c.id)
        ).all()
        assert [(buckets.get(b), u, Decimal(str(c))) for b, u, c in taken] == [
            (("2026-11", "carry_over"), -1, 0),
            (("2026-12", "allowance"), -1, 0),
            (("2026-12", "allowance"), -1, 0),
            (None, 0, Decimal("-0.05")),
            (None, 0, Decimal("-0.05")),
        ]
        assert_buckets_add_up(conn)
    assert all(a["remaining"] == 0 for a in summary(client, shop)["allowances"])
    assert summary(client, shop)["available"] == "0.9000"
    drain(services)
    assert [m["status"] for m in messages(client, shop)] == ["sent"] * 6
    assert_ledger_adds_up(services)


def test_an_event_rolled_back_in_a_batch_gives_its_allowance_units_back_to_the_next(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """What a failed event took from a bucket held in memory is back there for the next."""
    shop, _first, shop_id, values = one_planned(client, services, clock, "U-0")
    r = client.post("/v1/credits/packages", headers=shop["auth"],
                    json={"name": "p", "channel": "sms", "allowance": 1, "carry_over": "none"})  # fmt: skip
    assert r.status_code == 201, r.text
    now = clock.now()
    with services.engine.begin() as conn:
        batch = credits.Reservations()

        def reserve_one() -> tuple[int, str | None]:
            message_id, hold = credits.insert_funded(
                conn, dict(values), quote=QUOTE, account_cache=batch.account_cache(shop_id),
                now=now, actor="test", entries=batch,
            )  # fmt: skip
            return message_id, hold

        def failing_event() -> None:
            with batch.item(), conn.begin_nested():
                reserve_one()
                raise RuntimeError("the event failed after its units were taken")

        with pytest.raises(RuntimeError):
            failing_event()
        with batch.item(), conn.begin_nested():
            kept, hold = reserve_one()
            assert hold is None
            second, hold = reserve_one()  # the bucket's one unit is kept's: credit pays
            assert hold is None
        batch.write(conn, now)
        funding = dict(
            conn.execute(
                select(messages_table.c.id, messages_table.c.funding).where(
                    messages_table.c.id.in_([kept, second])
                )
            ).all()
        )
        assert funding == {kept: "allowance", second: "credit"}
        assert_buckets_add_up(conn)
        left = conn.execute(text("SELECT remaining FROM allowance_buckets")).scalars().all()
        assert left == [0]
    assert_ledger_adds_up(services)


def test_the_worker_renews_each_shop_in_a_transaction_of_its_own(
    client: TestClient, services: Services, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One shop whose renewal fails leaves the others renewed (they were one transaction,
    all rolled back together, each shop's account locked until the last was done)."""
    shops = [billed_shop(client, "1", slug=slug) for slug in ("renew-a", "renew-b")]
    clock.set(datetime.fromisoformat("2026-11-05T10:00:00+03:00"))
    for shop in shops:
        r = client.post("/v1/credits/packages", headers=shop["auth"],
                        json={"name": "p", "channel": "sms", "allowance": 2, "carry_over": "none"})  # fmt: skip
        assert r.status_code == 201, r.text
    with services.engine.connect() as conn:
        failing = int(
            conn.execute(text("SELECT id FROM shops WHERE slug = 'renew-a'")).scalar_one()
        )
    real = credits.renew

    def renew(conn: Any, shop_id: int, now: datetime, **kw: Any) -> int:
        if shop_id == failing:
            raise RuntimeError("this shop's renewal fails")
        return real(conn, shop_id, now, **kw)

    monkeypatch.setattr(credits, "renew", renew)
    clock.set(datetime.fromisoformat("2026-12-01T09:00:00+03:00"))
    services.dispatcher("test-worker").renew_packages()
    periods = [[a["period"] for a in summary(client, shop)["allowances"]] for shop in shops]
    assert periods == [["2026-11"], ["2026-12"]]


def test_no_carry_over_expires_unused_allowance(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    shop = billed_shop(client, "1")
    clock.set(datetime.fromisoformat("2026-11-05T10:00:00+03:00"))
    client.post("/v1/credits/packages", headers=shop["auth"],
                json={"name": "p", "channel": "sms", "allowance": 5, "carry_over": "none"})  # fmt: skip
    clock.set(datetime.fromisoformat("2026-12-01T00:00:01+03:00"))
    state = client.post("/v1/credits/renew", headers=shop["auth"]).json()
    assert [(a["period"], a["remaining"]) for a in state["allowances"]] == [("2026-12", 5)]
    expired = client.get("/v1/credits/ledger", headers=shop["auth"],
                         params={"kind": "expiry"}).json()["items"]  # fmt: skip
    assert [e["units"] for e in expired] == [-5]
    assert_ledger_adds_up(services)


def test_spending_cap_holds_like_missing_credit(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    shop = billed_shop(client, "10")
    r = client.patch("/v1/credits/settings", headers=shop["auth"], json={"monthly_cap": "0.10"})
    assert r.status_code == 200 and r.json()["monthly_cap"] == "0.1000"
    clock.set(datetime.fromisoformat(AT))
    for i in range(3):
        post(client, shop, order_event(f"C-{i}"))
    statuses = [(m["status"], m["reason"][:12]) for m in messages(client, shop)]
    assert statuses[2] == ("held", "spending_cap")
    assert [s for s, _ in statuses[:2]] == ["scheduled", "scheduled"]
    lifted = client.patch("/v1/credits/settings", headers=shop["auth"],
                          json={"clear_monthly_cap": True})  # fmt: skip
    assert lifted.status_code == 200 and lifted.json()["monthly_cap"] is None
    assert [m["status"] for m in messages(client, shop)] == ["scheduled"] * 3
    drain(services)
    assert [m["status"] for m in messages(client, shop)] == ["sent"] * 3
    assert_ledger_adds_up(services)


def statuses(client: TestClient, shop: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["status"], (m["reason"] or "").split(":")[0]) for m in messages(client, shop)]


def test_held_by_the_cap_goes_out_when_a_new_month_begins(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """Nothing else happens at the turn of the month: the worker's look at held messages
    (`Dispatcher.release_held`) sends on what the new month's cap allows, oldest first."""
    shop = billed_shop(client, "10")
    client.patch("/v1/credits/settings", headers=shop["auth"], json={"monthly_cap": "0.05"})
    at = "2026-11-30T20:00:00+03:00"  # the rule's 600 minutes end on Dec 1 at 06:00
    clock.set(datetime.fromisoformat(at))
    for code in ("M-1", "M-2", "M-3"):
        post(client, shop, order_event(code, at=at))
    assert [s for s, _ in statuses(client, shop)] == ["scheduled", "held", "held"]
    worker = services.dispatcher("test-worker")
    assert worker.release_held() == 0  # still November
    clock.set(datetime.fromisoformat("2026-12-01T00:30:00+03:00"))
    assert worker.release_held() == 1  # December's 0.05: M-2, not M-3
    assert statuses(client, shop)[1:] == [("scheduled", "released"), ("held", "spending_cap")]
    drain(services)
    assert [s for s, _ in statuses(client, shop)] == ["sent", "sent", "held"]
    assert_ledger_adds_up(services)


def test_held_messages_past_their_validity_are_closed_and_credit_given_back_sends_others(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """A message held for credit whose validity ends is expired by the worker's look at
    held messages, without waiting for a top-up; credit that comes back (a message that
    expired unsent) pays for the next held one."""
    shop = billed_shop(client, "0.05")
    start = datetime.fromisoformat(AT)
    clock.set(start)
    post(client, shop, order_event("V-1"))  # reserves the 0.05
    post(client, shop, order_event("V-2"))  # held; valid until AT + 600 minutes
    clock.set(start + timedelta(hours=5))
    post(client, shop, order_event("V-3", at=clock.now().isoformat()))  # held, valid longer
    clock.set(start + timedelta(minutes=601))  # V-1 and V-2 are past their validity
    worker = services.dispatcher("test-worker")
    with services.engine.connect() as conn:  # V-2 is valid and cannot be paid for: no work
        shop_id = int(conn.execute(select(credit_accounts.c.shop_id)).scalar_one())
        assert not credits.held_can_move(conn, shop_id, start + timedelta(minutes=1))
    drain(services)  # V-1 expires unsent: its 0.05 comes back
    assert [s for s, _ in statuses(client, shop)] == ["expired", "held", "held"]
    with services.engine.connect() as conn:
        assert credits.held_can_move(conn, shop_id, clock.now())
    assert worker.release_held() == 1
    assert statuses(client, shop)[1:] == [("expired", "expired"), ("scheduled", "released")]
    drain(services)
    assert [s for s, _ in statuses(client, shop)] == ["expired", "expired", "sent"]
    assert_ledger_adds_up(services)


def test_a_top_up_reads_held_messages_a_chunk_at_a_time_in_order(
    client: TestClient, services: Services, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(credits, "_RESUME_CHUNK", 2)
    shop = billed_shop(client, None)
    clock.set(datetime.fromisoformat(AT))
    for i in range(7):
        post(client, shop, order_event(f"H-{i}"))
        clock.advance(timedelta(seconds=1))
    assert {s for s, _ in statuses(client, shop)} == {"held"}
    r = client.post("/v1/credits/topups", headers=shop["auth"], json={"amount": "0.25"})
    assert r.json()["released"] == 5
    assert [s for s, _ in statuses(client, shop)] == ["scheduled"] * 5 + ["held"] * 2
    r = client.post("/v1/credits/topups", headers=shop["auth"], json={"amount": "1"})
    assert r.json()["released"] == 2
    drain(services)
    assert [s for s, _ in statuses(client, shop)] == ["sent"] * 7
    assert_ledger_adds_up(services)


def test_an_sms_whose_text_costs_more_segments_at_send_time_is_charged_its_new_price(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """Priced at 1 segment (transliterated), sent after the shop stopped transliterating:
    2 segments. It is held at send time, reserved again at 2 segments and sent — charged
    what it was last priced at, and what the shop saw (`repriced`), never the old price."""
    shop = make_shop(client, "tr-text", topup="1")
    body = template(client, shop, "Siparis {{ order_code }} " + "ş" * 100, name="tr")
    rule(client, shop, name="new", trigger={"event_type": "order.created"},
         action={"channel": "sms", "template_id": body, "validity_minutes": 600})  # fmt: skip
    client.patch("/v1/shop", headers=shop["auth"], json={"sms_transliterate": True})
    clock.set(datetime.fromisoformat(AT))
    [planned] = post(client, shop, order_event("T-1"))["messages"]
    assert planned["cost"] == "0.0500"
    client.patch("/v1/shop", headers=shop["auth"], json={"sms_transliterate": False})
    drain(services)
    detail = client.get(f"/v1/messages/{planned['id']}", headers=shop["auth"]).json()
    assert (detail["status"], detail["segments"], detail["cost"], detail["billing"]) == (
        "sent", 2, "0.1000", "debited"
    )  # fmt: skip
    reasons = [a["reason"] for a in detail["audit"]]
    assert any(r.startswith("repriced: the text is now 2 segments, not 1") for r in reasons)
    # reserved at 1 segment, released when held, reserved at 2, released and debited when sent
    kinds = ledger_kinds(client, shop, planned["id"])
    assert sorted(kinds) == ["debit", "release", "release", "reservation", "reservation"]
    assert summary(client, shop)["available"] == "0.9000"
    assert_ledger_adds_up(services)


def test_an_sms_to_a_customer_whose_number_moved_country_is_priced_and_booked_there(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """The customer's number changed (TR → US) after the message was planned: it goes to the
    new number, at the US price, on the statement's US line; its detail says where it went.
    A shop that is not charged (unmetered) just sends it there."""
    for slug, mode in (("moved", "prepaid"), ("moved-free", "unmetered")):
        shop = billed_shop(client, "1", slug=slug, billing=mode)
        clock.set(datetime.fromisoformat(AT))
        [planned] = post(client, shop, order_event("P-1"))["messages"]
        assert planned["cost"] == "0.0500"  # TR
        # the customer's next order (no rule for it) brings their new number
        moved = {**order_event("P-2", phone="+12025550123"), "type": "order.shipped"}
        moved["customer"]["id"] = "c-P-1"
        assert post(client, shop, moved)["messages"] == []
        drain(services)
        detail = client.get(f"/v1/messages/{planned['id']}", headers=shop["auth"]).json()
        assert (detail["status"], detail["recipient"]) == ("sent", "+12025550123")
        if mode == "unmetered":
            assert detail["billing"] is None
            continue
        assert (detail["cost"], detail["billing"]) == ("0.1100", "debited")
        r = client.get("/v1/credits/statement", headers=shop["auth"], params={"month": "2026-11"})
        assert [(x["country"], x["messages"], x["credits"]) for x in r.json()["lines"]] == [
            ("US", 1, "0.1100")
        ]
    assert_ledger_adds_up(services)


def _ledger_sums(services: Services) -> list[str]:
    """The statements that sum ledger entries, as they run from now on (the list fills)."""
    seen: list[str] = []

    def listen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "sum(ledger.credits)" in statement.lower():
            seen.append(statement)

    event.listen(services.engine, "before_cursor_execute", listen)
    return seen


def test_a_capped_shop_sums_the_month_once_then_keeps_it(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """A spending cap is checked against the month the account keeps: the ledger is summed
    for the first decision of a month, not for every message (that grew with the month)."""
    shop = capped_shop(client, "0.20")
    clock.set(datetime.fromisoformat(AT))
    sums = _ledger_sums(services)
    post(client, shop, order_event("K-1"))
    assert len(sums) == 1  # the month's first decision: summed once, kept from then on
    for i in range(2, 6):
        post(client, shop, order_event(f"K-{i}"))
    assert len(sums) == 1
    listed = messages(client, shop)
    assert [m["status"] for m in listed] == ["scheduled"] * 4 + ["held"]
    assert listed[-1]["reason"].startswith("spending_cap")
    assert summary(client, shop)["month_spend"] == "0.2000"
    assert_ledger_adds_up(services)  # the kept sum is the ledger's too (assert_month_spend...)

    # a failure before submission gives its reservation back: the month has spent less
    with services.engine.begin() as conn:
        conn.execute(
            text("UPDATE messages SET expires_at = :t WHERE status = 'scheduled' AND id = "
                 "(SELECT min(id) FROM messages)"), {"t": clock.now()}
        )  # fmt: skip
    clock.advance(timedelta(seconds=1))
    drain(services)
    assert summary(client, shop)["month_spend"] == "0.1500"
    assert_ledger_adds_up(services)
    # so the next message fits under the cap again, still without summing the ledger
    summed = len(sums)  # (the checks above sum it themselves)
    post(client, shop, order_event("K-6"))
    assert len(sums) == summed
    assert messages(client, shop)[-1]["status"] == "scheduled"
    assert summary(client, shop)["month_spend"] == "0.2000"
    assert_ledger_adds_up(services)


def test_a_lifted_cap_still_keeps_its_month_current_and_no_cap_keeps_none(
    client: TestClient, services: Services, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reservations skip the kept month only where there is none: a shop that never had a
    cap keeps no month; one whose cap was lifted still keeps it, so its spending while
    uncapped is counted when a cap comes back, without summing the ledger again."""
    moves: list[str] = []
    execute = Driver.execute

    def spy(self: Driver, sql: str, params: Any = ()) -> int:
        if sql.startswith("UPDATE credit_accounts"):
            moves.append(sql)
        return execute(self, sql, params)

    monkeypatch.setattr(Driver, "execute", spy)
    clock.set(datetime.fromisoformat(AT))
    plain = billed_shop(client, "10", slug="plain")
    moves.clear()
    post(client, plain, order_event("N-1"))
    assert moves == [credits._MOVE_UNKEPT]  # without the spending arms
    shop = capped_shop(client, "10")
    post(client, shop, order_event("L-1"))  # the month is summed once and kept
    sums = _ledger_sums(services)
    r = client.patch("/v1/credits/settings", headers=shop["auth"],
                     json={"clear_monthly_cap": True})  # fmt: skip
    assert r.status_code == 200, r.text
    moves.clear()
    for i in range(2, 4):
        post(client, shop, order_event(f"L-{i}"))  # uncapped, still counted in the month
    assert moves == [credits._MOVE_SPENDING] * 2
    with services.engine.connect() as conn:
        kept = {row.shop_id: row.cap_spent for row in conn.execute(select(credit_accounts))}
    assert kept[plain["id"]] is None
    assert credits.money(kept[shop["id"]]) == Decimal("0.1500")
    assert_ledger_adds_up(services)  # the kept sum is the ledger's
    r = client.patch("/v1/credits/settings", headers=shop["auth"], json={"monthly_cap": "0.15"})
    assert r.status_code == 200, r.text
    summed = len(sums)  # (assert_ledger_adds_up sums it itself)
    post(client, shop, order_event("L-4"))
    assert messages(client, shop)[-1]["status"] == "held"  # 0.15 spent: the cap is reached
    assert len(sums) == summed  # from the kept month, not a new sum of the ledger
    assert_ledger_adds_up(services)


def test_a_capped_shop_s_events_planned_together_stay_under_the_cap(
    client: TestClient, services: Services, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A planner batch queues its reservations and writes them at its end: each decision
    counts what the batch has reserved before it, so the cap holds within one transaction.
    The month's spending written before the batch is read once for all of them."""
    shop = capped_shop(client, "0.10")
    clock.set(datetime.fromisoformat(AT))
    post(client, shop, order_event("G-0"))  # 0.05 spent before the batch
    for i in range(1, 4):
        r = client.post("/v1/events", headers={**shop["auth"], "Prefer": "respond-async"},
                        json=order_event(f"G-{i}"))  # fmt: skip
        assert r.status_code == 202, r.text
    reads: list[str] = []
    rows = Driver.rows

    def spy(self: Driver, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        if sql == credits._KEPT_MONTH:
            reads.append(sql)
        return rows(self, sql, params)

    monkeypatch.setattr(Driver, "rows", spy)
    now = clock.now

    def ticking() -> datetime:  # each event is planned at an instant of its own
        clock.advance(timedelta(milliseconds=1))
        return now()

    monkeypatch.setattr(clock, "now", ticking)
    assert services.ingestor.plan_waiting(100) == 3
    assert len(reads) == 1
    listed = messages(client, shop)
    assert [m["status"] for m in listed] == ["scheduled", "scheduled", "held", "held"]
    assert all(m["reason"].startswith("spending_cap") for m in listed[2:])
    assert summary(client, shop)["month_spend"] == "0.1000"
    assert_ledger_adds_up(services)


def test_a_refund_gives_back_to_the_kept_month(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    shop = capped_shop(client, "0.05", charge_failed_after_submission=False)
    clock.set(datetime.fromisoformat(AT))
    post(client, shop, order_event("R-1"))
    drain(services)
    [sent] = messages(client, shop)
    assert sent["status"] == "sent" and summary(client, shop)["month_spend"] == "0.0500"
    post(client, shop, order_event("R-2"))
    assert messages(client, shop)[-1]["status"] == "held"  # the cap is reached
    with services.engine.begin() as conn:  # the carrier reports it undelivered: refunded
        assert credits.refund_after_submission(conn, sent["id"], clock.now(), "test")
    assert summary(client, shop)["month_spend"] == "0.0000"
    assert_ledger_adds_up(services)
    post(client, shop, order_event("R-3"))
    assert messages(client, shop)[-1]["status"] == "scheduled"


def test_a_new_month_and_a_clock_that_jumps_back_each_sum_their_own_month(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    shop = capped_shop(client, "0.10")
    # the shop's month ends at midnight in Istanbul (21:00 UTC)
    clock.set(datetime.fromisoformat("2026-11-30T23:59:00+03:00"))
    for i in range(3):
        post(client, shop, order_event(f"N-{i}", at=clock.now().isoformat()))
    assert [m["status"] for m in messages(client, shop)] == ["scheduled", "scheduled", "held"]
    clock.set(datetime.fromisoformat("2026-12-01T00:00:00+03:00"))
    post(client, shop, order_event("D-1", at=clock.now().isoformat()))
    assert messages(client, shop)[-1]["status"] == "scheduled"  # December has spent nothing
    assert summary(client, shop)["month_spend"] == "0.0500"
    assert_ledger_adds_up(services)
    # the clock goes back into November: that month is summed again, and it is spent
    clock.set(datetime.fromisoformat("2026-11-30T23:59:30+03:00"))
    post(client, shop, order_event("N-9", at=clock.now().isoformat()))
    assert messages(client, shop)[-1]["status"] == "held"
    assert summary(client, shop)["month_spend"] == "0.1000"
    assert_ledger_adds_up(services)


_NOV = "2026-11-{}+03:00"  # the shop's November: Istanbul time


@pytest.mark.parametrize(
    ("first", "last", "kept"),
    [
        pytest.param("15T12:00:00", "15T12:00:01", "0.0700", id="inside: added"),
        pytest.param("30T23:59:59", "2026-12-01T00:00:01", None, id="across its end: dropped"),
        pytest.param("2026-10-31T23:59:59", "01T00:00:01", None, id="across its start: dropped"),
        pytest.param("2026-12-01T00:00:00", "2026-12-01T00:00:01", "0.0500", id="after: as is"),
        pytest.param("2026-10-31T23:00:00", "2026-10-31T23:59:59", "0.0500", id="before: as is"),
    ],
)
def test_a_write_adds_to_the_kept_month_only_what_falls_inside_it(
    client: TestClient, services: Services, clock: ManualClock, first: str, last: str,
    kept: str | None,
) -> None:  # fmt: skip
    """Entries of one write inside the kept month add to it; outside it, they leave it as
    it is; on both sides of its start or end, the account stops keeping the month (the next
    decision sums it from the ledger) rather than count either wrongly."""
    shop = capped_shop(client, "5")
    shop_id = int(shop["id"])
    clock.set(datetime.fromisoformat(_NOV.format("20T10:00:00")))
    post(client, shop, order_event("B-1", at=clock.now().isoformat()))  # keeps November
    [message_id] = [m["id"] for m in messages(client, shop)]
    columns = (credit_accounts.c.cap_from, credit_accounts.c.cap_until, credit_accounts.c.cap_spent)
    with services.engine.begin() as conn:
        november = conn.execute(select(*columns)).one()
        assert (november.cap_from, november.cap_until) == (
            datetime.fromisoformat(_NOV.format("01T00:00:00")),
            datetime.fromisoformat("2026-12-01T00:00:00+03:00"),
        )
        assert credits.money(november.cap_spent) == Decimal("0.05")
        entries = credits._Entries()
        for at in (first, last):
            moment = datetime.fromisoformat(
                at + "+03:00" if at.startswith("2026") else _NOV.format(at)
            )
            entries.message_credit("reserve", shop_id, moment, Decimal("0.01"), "sms", "TR",
                                   message_id, None, "test")  # fmt: skip
        entries.write(conn, clock.now())
        after = conn.execute(select(*columns)).one()
    if kept is None:
        assert after.cap_from is None
    else:
        assert (after.cap_from, after.cap_until) == (november.cap_from, november.cap_until)
        assert fmt(credits.money(after.cap_spent)) == kept
    assert_ledger_adds_up(services)
    # whatever the write did, November's spending is what its entries sum to, kept again
    expected = Decimal("0.05") + sum(
        (Decimal("0.01") for at in (first, last) if not at.startswith("2026")), Decimal(0)
    )
    with services.engine.begin() as conn:
        assert credits.month_spend(conn, shop_id, clock.now(), keep=True) == expected
        assert conn.execute(select(credit_accounts.c.cap_from)).scalar_one() is not None
    assert_ledger_adds_up(services)


@pytest.mark.parametrize("database_url", [pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)  # fmt: skip
def test_a_month_kept_while_another_writer_waits_counts_its_entries_once(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """PostgreSQL, two connections: one sums the month and keeps it while holding the
    account's lock; the other has inserted entries of that month (uncommitted, so not in
    the sum) and waits on the lock to move the account. Its update, re-read against the
    row the first committed, adds its entries to the kept month: counted once, not lost."""
    shop = billed_shop(client, "10")
    shop_id = int(shop["id"])
    clock.set(datetime.fromisoformat(AT))
    post(client, shop, order_event("W-1"))
    [message_id] = [m["id"] for m in messages(client, shop)]
    now = clock.now()
    holder = services.engine.connect()
    holding = holder.begin()
    credits.account(holder, shop_id, lock=True)
    done = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with services.engine.begin() as conn:
                entries = credits._Entries()
                entries.message_credit("reserve", shop_id, now, Decimal("0.01"), "sms", "TR",
                                       message_id, None, "test")  # fmt: skip
                entries.write(conn, now)  # inserts, then waits on the account row
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        waiting = False
        for _ in range(100):  # bounded: up to 10 s for the writer to queue on the lock
            with services.engine.connect() as probe:
                waiting = bool(probe.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE 'UPDATE credit_accounts%'")).scalar_one())  # fmt: skip
            if waiting or done.is_set():
                break
            time.sleep(0.1)
        assert waiting, "the writer never waited on the account's lock"
        assert credits.month_spend(holder, shop_id, now, keep=True) == Decimal("0.05")
        holding.commit()
    finally:
        holder.close()
        thread.join(timeout=30)
    assert not errors, errors
    with services.engine.connect() as conn:
        assert credits.money(conn.execute(select(credit_accounts.c.cap_spent)).scalar_one()) == (
            Decimal("0.06")
        )
    assert_ledger_adds_up(services)


def test_low_balance_email_once_per_threshold_crossing(
    client: TestClient, services: Services, clock: ManualClock, outbox: Any
) -> None:
    shop = billed_shop(client, "0.20", email_from="owner@shop.example")
    client.patch("/v1/credits/settings", headers=shop["auth"],
                 json={"low_balance_thresholds": ["0.12"]})  # fmt: skip
    clock.set(datetime.fromisoformat(AT))
    for i in range(3):  # 0.20 → 0.15 → 0.10 (crosses 0.12) → 0.05
        post(client, shop, order_event(f"B-{i}"))
    drain(services)
    notices = [line for line in outbox.lines() if line["channel"] == "email"]
    assert len(notices) == 1
    assert notices[0]["to"] == "owner@shop.example"
    assert "below 0.12" in notices[0]["subject"]
    client.post("/v1/credits/topups", headers=shop["auth"], json={"amount": "1"})
    for i in range(3, 23):
        post(client, shop, order_event(f"B-{i}"))
    drain(services)
    notices = [line for line in outbox.lines() if line["channel"] == "email"]
    assert len(notices) == 2  # re-armed by the top-up, crossed again once


def test_low_balance_notices_go_to_the_address_set_until_it_is_cleared(
    client: TestClient, services: Services, clock: ManualClock, outbox: Any
) -> None:
    shop = billed_shop(client, "0.20", email_from="owner@shop.example")
    r = client.patch("/v1/credits/settings", headers=shop["auth"],
                     json={"low_balance_thresholds": ["0.12"], "notify_email": "Billing@Shop.Example"})  # fmt: skip
    assert (r.status_code, r.json()["notify_email"]) == (200, "Billing@shop.example"), r.text
    r = client.patch("/v1/credits/settings", headers=shop["auth"],
                     json={"clear_notify_email": True, "notify_email": "ignored@shop.example"})  # fmt: skip
    assert (r.status_code, r.json()["notify_email"]) == (200, None), r.text
    clock.set(datetime.fromisoformat(AT))
    for i in range(2):  # 0.20 → 0.15 → 0.10: crosses 0.12
        post(client, shop, order_event(f"C-{i}"))
    drain(services)
    [notice] = [line for line in outbox.lines() if line["channel"] == "email"]
    assert notice["to"] == "owner@shop.example"  # the shop's own address again


def test_reservations_given_back_do_not_re_arm_the_low_balance_notice(
    client: TestClient, services: Services, clock: ManualClock, outbox: Any
) -> None:
    """Credit that comes back because a message was never sent (here: it expired) leaves the
    threshold crossed: each message planned and given back around it would otherwise send
    the shop another notice. A top-up re-arms it."""
    shop = billed_shop(client, "1.02", email_from="owner@shop.example")
    client.patch("/v1/credits/settings", headers=shop["auth"],
                 json={"low_balance_thresholds": ["1"]})  # fmt: skip
    clock.set(datetime.fromisoformat(AT))
    for i in range(4):  # 1.02 → 0.97 (crossed), then the message expires: back to 1.02
        post(client, shop, order_event(f"R-{i}", at=clock.now().isoformat()))
        assert summary(client, shop)["available"] == "0.9700"
        clock.advance(timedelta(minutes=601))
        drain(services)
        assert summary(client, shop)["available"] == "1.0200"
    notices = [line for line in outbox.lines() if line["channel"] == "email"]
    assert len(notices) == 1, notices
    client.post("/v1/credits/topups", headers=shop["auth"], json={"amount": "0.01"})
    post(client, shop, order_event("R-9", at=clock.now().isoformat()))  # 1.03 → 0.98
    drain(services)
    notices = [line for line in outbox.lines() if line["channel"] == "email"]
    assert len(notices) == 2, notices
    assert_ledger_adds_up(services)


def test_statement_per_channel_country_and_rule_as_json_and_csv(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    shop = billed_shop(client, "5")
    clock.set(datetime.fromisoformat(AT))
    r = client.post("/v1/credits/adjustments", headers=shop["auth"],
                    json={"amount": "-0.5", "note": "goodwill credit given twice"})  # fmt: skip
    assert r.status_code == 201, r.text
    post(client, shop, order_event("T-1"))
    post(client, shop, order_event("T-2"))
    post(client, shop, order_event("T-3", phone="+12025550123"))
    drain(services)
    data = client.get("/v1/credits/statement", headers=shop["auth"],
                      params={"month": "2026-11"}).json()  # fmt: skip
    lines = {(x["channel"], x["country"]): (x["messages"], x["credits"]) for x in data["lines"]}
    assert lines == {("sms", "TR"): (2, "0.1000"), ("sms", "US"): (1, "0.1100")}
    assert data["total_credits"] == "0.2100" and data["topups"] == "5.0000"
    assert data["adjustments"] == "-0.5000"
    text = client.get("/v1/credits/statement", headers=shop["auth"],
                      params={"month": "2026-11", "format": "csv"}).text  # fmt: skip
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:3] == ["month", "channel", "country"]
    assert [(r[1], r[2], r[4], r[5]) for r in rows[1:]] == [
        ("sms", "TR", "2", "0.1000"),
        ("sms", "US", "1", "0.1100"),
        ("total", "", "3", "0.2100"),
        ("topups", "", "", "5.0000"),
        ("adjustments", "", "", "-0.5000"),
    ]
    empty = client.get("/v1/credits/statement", headers=shop["auth"], params={"month": "2026-10"})
    assert empty.json()["lines"] == []
    bad = client.get("/v1/credits/statement", headers=shop["auth"], params={"month": "Nov"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "month"


def test_failure_after_submission_is_refunded_when_the_shop_is_not_charged(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    shop = billed_shop(client, "1")
    client.patch("/v1/credits/settings", headers=shop["auth"],
                 json={"charge_failed_after_submission": False})  # fmt: skip
    clock.set(datetime.fromisoformat(AT))
    post(client, shop, order_event("F-1"))
    drain(services)
    [message] = messages(client, shop)
    with services.engine.begin() as conn:
        assert credits.refund_after_submission(conn, message["id"], clock.now(), "dlr")
        assert not credits.refund_after_submission(conn, message["id"], clock.now(), "dlr")
    assert summary(client, shop)["available"] == "1.0000"
    assert_ledger_adds_up(services)
    # the refund is on its debit's line of the statement: one message, charged nothing
    post(client, shop, order_event("F-2"))
    drain(services)
    r = client.get("/v1/credits/statement", headers=shop["auth"], params={"month": "2026-11"})
    assert r.status_code == 200, r.text
    lines = [(x["country"], x["messages"], x["credits"]) for x in r.json()["lines"]]
    assert lines == [("TR", 2, "0.0500")]
    assert r.json()["total_messages"] == 2


def test_unmetered_shop_sees_costs_but_is_not_charged(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    shop = billed_shop(client, None, billing="unmetered")
    clock.set(datetime.fromisoformat(AT))
    [planned] = post(client, shop, order_event("U-1"))["messages"]
    assert planned["cost"] == "0.0500" and planned["status"] == "scheduled"
    drain(services)
    assert messages(client, shop)[0]["status"] == "sent"
    with services.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ledger)).scalar_one() == 0
        assert conn.execute(select(messages_table.c.billing)).scalar_one() is None
    assert Decimal(summary(client, shop)["available"]) == 0


def ledger_kinds(client: TestClient, shop: dict[str, Any], message_id: int) -> list[str]:
    r = client.get("/v1/credits/ledger", headers=shop["auth"], params={"message_id": message_id})
    assert r.status_code == 200, r.text
    return sorted(e["kind"] for e in r.json()["items"])


def test_switching_to_prepaid_reserves_what_was_planned_unmetered(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """Messages planned while the shop was unmetered, still waiting, are reserved when it
    switches to prepaid — oldest due first, held when the credit runs out — so none is sent
    uncharged on prepaid terms; a top-up releases the held one, as for any other."""
    shop = billed_shop(client, None, billing="unmetered")
    clock.set(datetime.fromisoformat(AT))
    for i in range(3):
        post(client, shop, order_event(f"M-{i}"))
    r = client.post("/v1/credits/topups", headers=shop["auth"],
                    json={"amount": "0.10", "reference": "switch"})  # fmt: skip
    assert r.status_code == 201, r.text
    assert [m["status"] for m in messages(client, shop)] == ["scheduled"] * 3
    r = client.patch("/v1/credits/settings", headers=shop["auth"], json={"mode": "prepaid"})
    assert r.status_code == 200, r.text
    assert (r.json()["mode"], r.json()["reserved"], r.json()["available"]) == (
        "prepaid", "0.1000", "0.0000"
    )  # fmt: skip
    listed = messages(client, shop)
    assert [m["status"] for m in listed] == ["scheduled", "scheduled", "held"]
    assert listed[2]["reason"].startswith("insufficient_credit")
    # switching to the mode it already has changes nothing
    r = client.patch("/v1/credits/settings", headers=shop["auth"], json={"mode": "prepaid"})
    assert r.json()["reserved"] == "0.1000"
    drain(services)
    sent = messages(client, shop)
    assert [m["status"] for m in sent] == ["sent", "sent", "held"]
    for m in sent[:2]:
        assert ledger_kinds(client, shop, m["id"]) == ["debit", "release", "reservation"]
    r = client.post("/v1/credits/topups", headers=shop["auth"],
                    json={"amount": "0.05", "reference": "more"})  # fmt: skip
    assert r.status_code == 201, r.text
    drain(services)
    last = messages(client, shop)[2]
    assert last["status"] == "sent"
    assert ledger_kinds(client, shop, last["id"]) == ["debit", "release", "reservation"]
    after = summary(client, shop)
    assert (after["available"], after["reserved"]) == ("0.0000", "0.0000")
    assert_ledger_adds_up(services)


def test_switching_to_unmetered_releases_what_waiting_messages_reserved(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """A shop switched to unmetered is not charged for what it had scheduled: the waiting
    messages' reservations are released and they go out uncharged. Switched back, they are
    reserved again."""
    shop = billed_shop(client, "1")
    clock.set(datetime.fromisoformat(AT))
    for i in range(2):
        post(client, shop, order_event(f"U-{i}"))
    assert summary(client, shop)["reserved"] == "0.1000"
    r = client.patch("/v1/credits/settings", headers=shop["auth"], json={"mode": "unmetered"})
    assert r.status_code == 200, r.text
    assert (r.json()["reserved"], r.json()["available"]) == ("0.0000", "1.0000")
    first, second = messages(client, shop)
    detail = client.get(f"/v1/messages/{first['id']}", headers=shop["auth"]).json()
    assert (detail["status"], detail["billing"], detail["cost"]) == ("scheduled", None, "0.0500")
    assert ledger_kinds(client, shop, first["id"]) == ["release", "reservation"]
    # back to prepaid before the second is sent: reserved again, and charged once
    r = client.patch("/v1/credits/settings", headers=shop["auth"], json={"mode": "prepaid"})
    assert r.json()["reserved"] == "0.1000"
    r = client.patch("/v1/credits/settings", headers=shop["auth"], json={"mode": "unmetered"})
    assert r.json()["reserved"] == "0.0000"
    drain(services)
    assert [m["status"] for m in messages(client, shop)] == ["sent", "sent"]
    for m in (first, second):
        kinds = ledger_kinds(client, shop, m["id"])
        assert "debit" not in kinds and kinds.count("reservation") == kinds.count("release") == 2
    after = summary(client, shop)
    assert (after["available"], after["reserved"], after["balance"]) == (
        "1.0000", "0.0000", "1.0000"
    )  # fmt: skip
    assert_ledger_adds_up(services)


def test_switching_to_prepaid_leaves_notices_free_and_expired_messages_alone(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """orderbell's own notices (here the low-balance e-mail) are never charged, and a
    message whose validity ended while it waited reserves nothing: the worker expires it.
    Credit given back by a switch to unmetered does not re-arm the low-balance notice (only
    credit put in does), so crossing the threshold again sends none."""
    shop = billed_shop(client, "0.10")
    r = client.patch("/v1/credits/settings", headers=shop["auth"],
                     json={"low_balance_thresholds": ["0.08"], "notify_email": "o@shop.example"})  # fmt: skip
    assert r.status_code == 200, r.text
    clock.set(datetime.fromisoformat(AT))
    post(client, shop, order_event("N-1"))  # 0.10 → 0.05: the notice is queued
    client.patch("/v1/credits/settings", headers=shop["auth"], json={"mode": "unmetered"})
    post(client, shop, order_event("N-2"))  # planned unmetered, valid for 600 minutes
    clock.advance(timedelta(minutes=601))  # N-1 and N-2 are past their validity
    post(client, shop, order_event("N-3", at=clock.now().isoformat()))  # planned unmetered, valid
    r = client.patch("/v1/credits/settings", headers=shop["auth"], json={"mode": "prepaid"})
    assert (r.json()["reserved"], r.json()["available"]) == ("0.0500", "0.0500")
    with services.engine.connect() as conn:
        rows = conn.execute(
            select(messages_table.c.id, messages_table.c.channel, messages_table.c.billing)
            .order_by(messages_table.c.id)
        ).all()  # fmt: skip
    assert [(r.channel, r.billing) for r in rows] == [
        ("sms", None), ("email", None), ("sms", None), ("sms", "reserved")
    ]  # fmt: skip
    drain(services)
    assert [m["status"] for m in messages(client, shop)] == ["expired", "sent", "expired", "sent"]
    n1, notice, n2, n3 = (r.id for r in rows)
    assert ledger_kinds(client, shop, n1) == ["release", "reservation"]
    assert ledger_kinds(client, shop, notice) == []
    assert ledger_kinds(client, shop, n2) == []
    assert ledger_kinds(client, shop, n3) == ["debit", "release", "reservation"]
    assert summary(client, shop)["available"] == "0.0500"
    assert_ledger_adds_up(services)


def test_a_message_past_its_validity_at_a_switch_to_prepaid_is_closed_not_left_unpaid(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """Left waiting unpaid for the worker to expire, it went out free once the clock was set
    back before the worker saw it (the ledger machine found this)."""
    shop = billed_shop(client, "1", billing="unmetered")
    start = datetime.fromisoformat(AT)
    clock.set(start)
    [planned] = post(client, shop, order_event("E-1"))["messages"]
    clock.set(start + timedelta(minutes=601))  # past its 600 minutes
    r = client.patch("/v1/credits/settings", headers=shop["auth"], json={"mode": "prepaid"})
    assert r.status_code == 200, r.text
    assert messages(client, shop)[0]["status"] == "expired"
    clock.set(start + timedelta(minutes=30))  # the clock goes back
    drain(services)
    [message] = messages(client, shop)
    assert (message["status"], message["billing"]) == ("expired", None)
    assert ledger_kinds(client, shop, planned["id"]) == []
    assert_ledger_adds_up(services)


@pytest.mark.parametrize("mode", ["unmetered", "prepaid"])
@pytest.mark.parametrize("attempt", ["stopped", "deferred", "sent"])
def test_a_message_being_sent_during_a_switch(
    client: TestClient, services: Services, clock: ManualClock, mode: str, attempt: str
) -> None:
    """A worker holds the message when the mode changes, and its attempt goes out, is
    retried later, or is handed back by a worker stopping. Switched to unmetered, the shop
    is not charged for it: the worker's settlement releases what it reserved. Switched to
    prepaid, it goes out on the unmetered terms it was claimed with, retry included."""
    shop = billed_shop(client, "1", billing="unmetered" if mode == "prepaid" else "prepaid")
    if mode == "prepaid":
        r = client.post("/v1/credits/topups", headers=shop["auth"],
                        json={"amount": "1", "reference": "flight"})  # fmt: skip
        assert r.status_code == 201, r.text
    clock.set(datetime.fromisoformat(AT))
    post(client, shop, order_event("F-1"))
    now = clock.now()
    with services.engine.begin() as conn:
        [row] = claims.claim(conn, worker="w1", now=now, lease_until=now + timedelta(minutes=1),
                             limit=10)  # fmt: skip
    r = client.patch("/v1/credits/settings", headers=shop["auth"], json={"mode": mode})
    assert r.status_code == 200, r.text
    assert r.json()["reserved"] == ("0.0500" if mode == "unmetered" else "0.0000")
    with services.engine.begin() as conn:
        if attempt == "stopped":
            claims.release(conn, "w1", now, [(row.id, "scheduled")])
        else:
            status = "sent" if attempt == "sent" else "deferred"
            outcome = claims.Outcome(message_id=row.id, status=status, reason=attempt,
                                     attempt_outcome="ok" if attempt == "sent" else "retryable",
                                     due_at=None if attempt == "sent" else now)  # fmt: skip
            claims.finish(conn, "w1", now, [outcome], credits.settle(conn, "w1", [outcome], now))
    clock.advance(timedelta(minutes=2))
    drain(services)
    [message] = messages(client, shop)
    assert (message["status"], message["billing"]) == ("sent", None)
    kinds = ledger_kinds(client, shop, message["id"])
    assert kinds == (["release", "reservation"] if mode == "unmetered" else [])
    after = summary(client, shop)
    assert (after["available"], after["reserved"]) == ("1.0000", "0.0000")
    assert_ledger_adds_up(services)


def package_shop_with_one_order(client: TestClient, clock: ManualClock) -> dict[str, Any]:
    """A billed shop with 1 credit and a package of 3 SMS a month, one order's SMS planned
    (reserved from the package)."""
    shop = billed_shop(client, "1")
    r = client.post("/v1/credits/packages", headers=shop["auth"],
                    json={"name": "p", "channel": "sms", "allowance": 3, "carry_over": "none"})  # fmt: skip
    assert r.status_code == 201, r.text
    clock.set(datetime.fromisoformat(AT))
    post(client, shop, order_event("A-1"))
    return shop


def test_switching_back_and_forth_gives_back_each_allowance_unit_once(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """A message reserved from a package more than once (its shop switched to unmetered and
    back) holds one reservation: released, it gives back the units it holds, not those of
    every reservation it ever had; debited, it is charged its own units."""
    shop = package_shop_with_one_order(client, clock)

    def remaining() -> list[int]:
        return [a["remaining"] for a in summary(client, shop)["allowances"]]

    seen = [remaining()]
    for mode in ("unmetered", "prepaid", "unmetered", "prepaid", "unmetered", "prepaid"):
        client.patch("/v1/credits/settings", headers=shop["auth"], json={"mode": mode})
        seen.append(remaining())
    assert seen == [[2], [3], [2], [3], [2], [3], [2]]
    assert_ledger_adds_up(services)
    drain(services)
    data = client.get("/v1/credits/statement", headers=shop["auth"],
                      params={"month": "2026-11"}).json()  # fmt: skip
    assert [(x["messages"], x["allowance_units"]) for x in data["lines"]] == [(1, 1)]
    assert remaining() == [2]
    # not delivered, and the shop is not charged for that: the one unit it was debited back
    [message] = messages(client, shop)
    with services.engine.begin() as conn:
        conn.execute(credit_accounts.update().values(charge_failed_after_submission=False))
        assert credits.refund_after_submission(conn, message["id"], clock.now(), "dlr")
    assert remaining() == [3]
    assert_ledger_adds_up(services)


@postgres_only
def test_a_planner_batch_takes_account_locks_in_shop_order(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """A batch holding events of shop B, then of shop A, locks both accounts up front in
    shop order — the order a worker settling both shops takes them in. Were it to lock B
    when planning B's event and then wait for A, a settle holding A and wanting B would
    deadlock with it, and PostgreSQL would abort one of the two."""
    shop_a = billed_shop(client, "1")
    shop_b = make_shop(client, "second", topup="1")
    body = template(client, shop_b, "Order {{ order_code }} received", name="t")
    rule(client, shop_b, name="new", trigger={"event_type": "order.created"},
         action={"channel": "sms", "template_id": body, "validity_minutes": 600})  # fmt: skip
    clock.set(datetime.fromisoformat(AT))
    for shop, code in ((shop_b, "B-1"), (shop_a, "A-1")):  # B's event is planned first
        r = client.post("/v1/events", json=order_event(code),
                        headers={**shop["auth"], "Prefer": "respond-async"})  # fmt: skip
        assert r.status_code == 202, r.text
    with services.engine.connect() as conn:
        a_id, b_id = conn.execute(
            select(credit_accounts.c.shop_id).order_by(credit_accounts.c.shop_id)
        ).scalars()
    touch = text("UPDATE credit_accounts SET updated_at = updated_at WHERE shop_id = :s")
    planned: list[int] = []
    errors: list[BaseException] = []

    settle = services.engine.connect()
    try:
        with settle.begin():
            settle.execute(text("SET LOCAL lock_timeout = '10s'"))
            settle.execute(touch, {"s": a_id})  # a settle has taken shop A
            planner = in_thread(lambda: services.ingestor.plan_waiting(100), planned, errors)
            waiting = lock_waiters(services, planner)
            assert waiting == 1, f"planner not waiting on shop A: {errors=} {planned=}"
            settle.execute(touch, {"s": b_id})  # …and now wants shop B: free, not held
    finally:
        settle.close()
    planner.join(timeout=60)
    assert errors == [] and planned == [2]
    for shop in (shop_a, shop_b):
        assert [m["status"] for m in messages(client, shop)] == ["scheduled"]
    assert_ledger_adds_up(services)


def lock_waiters(services: Services, thread: threading.Thread) -> int:
    """PostgreSQL: how many connections wait for a lock, once one does or `thread` has ended
    (at most ~10 s). Watched from a connection of its own: pg_stat_activity holds still for
    the rest of a transaction."""
    waiters = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    waiting = 0
    with services.engine.connect() as watch:
        for _ in range(200):
            waiting = int(watch.execute(waiters).scalar_one())
            watch.rollback()
            if waiting or not thread.is_alive():
                break
            threading.Event().wait(0.05)
    return waiting


def in_thread(
    work: Callable[[], object], results: list[Any], errors: list[BaseException]
) -> threading.Thread:
    """`work` started in a thread: what it returns goes to `results`, what it raises to
    `errors` (for the test to look at)."""

    def run() -> None:
        try:
            results.append(work())
        except BaseException as exc:  # surfaced by the test
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def worker_thread(services: Services, errors: list[BaseException]) -> threading.Thread:
    """The worker sending what is due, started in a thread."""
    return in_thread(lambda: drain(services), [], errors)


_LOCK_ACCOUNT = text("SELECT shop_id FROM credit_accounts FOR UPDATE")


@postgres_only
def test_a_worker_settling_package_messages_locks_the_account_before_its_buckets(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """A batch paid from a package moves no account, only buckets (a message not sent gives
    its unit back); then its low-balance check may write the account (a threshold above the
    credit, not yet noticed). Had it taken the buckets first, renewal — the account, then
    its buckets — would deadlock with it, and PostgreSQL abort one. The worker takes the
    account first, so renewal goes on."""
    shop = package_shop_with_one_order(client, clock)
    with services.engine.begin() as conn:
        conn.execute(
            credit_accounts.update().values(low_balance_thresholds=["5"], low_balance_below=[])
        )
        conn.execute(text("UPDATE rules SET active = false"))  # not sent: its unit given back
    errors: list[BaseException] = []
    renewal = services.engine.connect()
    try:
        with renewal.begin():
            renewal.execute(text("SET LOCAL lock_timeout = '10s'"))
            # were there a deadlock, this side would find it (and fail the test), not the worker
            renewal.execute(text("SET LOCAL deadlock_timeout = '50ms'"))
            renewal.execute(_LOCK_ACCOUNT)  # renewal has taken the account
            worker = worker_thread(services, errors)
            assert lock_waiters(services, worker) == 1, f"the worker is not waiting: {errors}"
            # …and now wants its buckets: free, not held by the waiting worker
            renewal.execute(text("UPDATE allowance_buckets SET remaining = remaining"))
    finally:
        renewal.close()
    worker.join(timeout=60)
    assert errors == []
    [sms] = [m for m in messages(client, shop) if m["channel"] == "sms"]
    assert (sms["status"], sms["billing"]) == ("suppressed", "released")
    assert summary(client, shop)["allowances"][0]["remaining"] == 3
    assert_ledger_adds_up(services)
    with services.engine.connect() as conn:
        assert_buckets_add_up(conn)


@postgres_only
def test_a_batch_rolled_back_to_break_a_deadlock_is_finished_again_not_sent_again(
    client: TestClient, services: Services, clock: ManualClock, outbox: Any
) -> None:
    """The provider has the batch when its outcomes are recorded and billed. Should
    PostgreSQL roll that transaction back to break a deadlock, the worker runs it again: the
    message is sent once, marked sent and debited once — not left leased, to be sent a
    second time when its lease runs out."""
    shop = billed_shop(client, "1")
    clock.set(datetime.fromisoformat(AT))
    post(client, shop, order_event("A-1"))
    [message] = messages(client, shop)
    errors: list[BaseException] = []

    def patient(dbapi_connection: Any, *_: Any) -> None:
        # PostgreSQL looks for a deadlock once, deadlock_timeout after a wait begins: the
        # worker's look must come after the cycle below is closed, however slow this machine
        dbapi_connection.execute("SET deadlock_timeout = '3s'")

    event.listen(services.engine, "checkout", patient)
    other = services.engine.connect()  # (checked out before: set to 3 s, then to 60 s)
    with capture_logs() as logs:
        try:
            with other.begin():
                other.execute(text("SET LOCAL lock_timeout = '20s'"))
                # the worker's side finds the deadlock, and is rolled back
                other.execute(text("SET LOCAL deadlock_timeout = '60s'"))
                other.execute(_LOCK_ACCOUNT)
                worker = worker_thread(services, errors)
                # the worker's finish waits for the account, holding the message's row
                assert lock_waiters(services, worker) == 1, f"not waiting: {errors}"
                other.execute(
                    text("SELECT id FROM messages WHERE id = :m FOR UPDATE"), {"m": message["id"]}
                )
        finally:
            other.close()
        worker.join(timeout=60)
    # (only once the worker is done: it checks connections out, running the listeners, until
    # then — removing one meanwhile mutates what it iterates)
    event.remove(services.engine, "checkout", patient)
    assert errors == []
    # rolled back at least once, then finished (rarely the retry meets the other side's
    # commit, and is rolled back once more)
    assert [e["attempt"] for e in logs if e["event"] == "finish_retried"][:1] == [1]
    [message] = messages(client, shop)
    assert (message["status"], message["billing"]) == ("sent", "debited")
    assert [line["to"] for line in outbox.lines()] == [TR_PHONE]
    with services.engine.connect() as conn:
        kinds = conn.execute(select(ledger.c.kind).where(ledger.c.message_id == message["id"]))
        assert sorted(kinds.scalars()) == ["debit", "release", "reservation"]
    assert_ledger_adds_up(services)


@postgres_only
def test_settling_a_batch_locks_the_account_of_every_shop_in_it_at_once(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """The finishing transaction may take an account later — a receipt that came before
    the send response refunds a sent message (`callbacks.reconcile_sent`) — for a shop
    none of whose messages was reserved. Settlement locks every shop's account of the batch
    up front, in shop order, so nothing later takes one out of that order (and deadlocks
    with a planner or renewal, which take them in shop order)."""
    free = billed_shop(client, None, slug="free", billing="unmetered")  # the lower id
    paid = billed_shop(client, "1", slug="paid")
    clock.set(datetime.fromisoformat(AT))
    for shop, code in ((free, "F-1"), (paid, "P-1")):
        post(client, shop, order_event(code))
    ids = [messages(client, shop)[0]["id"] for shop in (free, paid)]
    now = clock.now()
    with services.engine.begin() as conn:
        conn.execute(
            messages_table.update()
            .where(messages_table.c.id.in_(ids))
            .values(status="sending", lease_owner="worker-a", lease_until=now)
        )
    sent = [claims.Outcome(message_id=m, status="sent", reason="sent", attempt_outcome="sent")
            for m in ids]  # fmt: skip
    worker = services.engine.connect()
    try:
        with worker.begin():
            assert credits.settle(worker, "worker-a", sent, now) == {ids[1]: "debited"}
            with services.engine.connect() as other:
                free_to_take = other.execute(
                    text("SELECT shop_id FROM credit_accounts FOR UPDATE SKIP LOCKED")
                ).all()
                other.rollback()
            assert free_to_take == [], "an account of the batch was left to be locked later"
            claims.finish(worker, "worker-a", now, sent, {ids[1]: "debited"})
    finally:
        worker.close()
    assert_ledger_adds_up(services)


@postgres_only
def test_adding_a_package_takes_the_account_before_the_shops_row(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """A change of plan locks the account, then marks the shop's configuration changed (its
    row); adding a package marks the configuration too, then grants the allowance under the
    account's lock. Taking the account first as well, it cannot deadlock with the other."""
    shop = billed_shop(client, "1")
    clock.set(datetime.fromisoformat(AT))
    with services.engine.connect() as conn:
        shop_id = conn.execute(select(credit_accounts.c.shop_id)).scalar_one()
    errors: list[BaseException] = []
    added: list[int] = []

    def add() -> int:
        with services.engine.begin() as conn:
            return credits.add_package(
                conn, shop_id, name="p", channel=Channel.SMS, allowance=3, carry_over="none",
                carry_cap=None, carry_months=None, price=None, now=clock.now(),
            )  # fmt: skip

    plan_change = services.engine.connect()
    try:
        with plan_change.begin():
            plan_change.execute(text("SET LOCAL lock_timeout = '10s'"))
            # were there a deadlock, this side would find it (and fail the test)
            plan_change.execute(text("SET LOCAL deadlock_timeout = '50ms'"))
            plan_change.execute(_LOCK_ACCOUNT)
            adding = in_thread(add, added, errors)
            assert lock_waiters(services, adding) == 1, f"not waiting: {errors}"
            bump_config(plan_change, shop_id)  # …then the shop's row: free
    finally:
        plan_change.close()
    adding.join(timeout=60)
    assert errors == [] and len(added) == 1
    assert [a["remaining"] for a in summary(client, shop)["allowances"]] == [3]
    assert_ledger_adds_up(services)


def test_stored_figures_do_not_drift_with_many_moves(
    client: TestClient, services: Services
) -> None:
    """On SQLite the account's figures are binary floats: ten top-ups of 0.1 summed there
    unrounded come to 0.9999999999999999. Each move is rounded to four places, so what is
    stored is exactly what the ledger says, and never shows as "-0.0000"."""
    shop = billed_shop(client, None)
    for _ in range(10):
        r = client.post("/v1/credits/topups", headers=shop["auth"], json={"amount": "0.1"})
        assert r.status_code == 201, r.text
    with services.engine.connect() as conn:
        stored = conn.execute(select(credit_accounts.c.available)).scalar_one()
    assert Decimal(str(stored)) == Decimal("1")
    assert summary(client, shop)["available"] == "1.0000"
    assert_ledger_adds_up(services)


@pytest.mark.parametrize("value", [-1e-17, "-0.00001", "-0", 0.0])
def test_credits_never_read_as_negative_zero(value: object) -> None:
    assert fmt(value) == "0.0000"


def test_entries_past_one_insert_statement_all_land_in_order(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """The ledger takes entries in multi-row INSERTs of a bounded size: 70 reservations in
    one planner batch, then 140 releases and debits in one settled batch, cross that size
    twice. Every entry lands once, in the order queued, and the figures add up."""
    shop = billed_shop(client, "100")
    clock.set(datetime.fromisoformat(AT))
    count = 70
    assert count > credits._ENTRIES_PER_INSERT and 2 * count > 2 * credits._ENTRIES_PER_INSERT
    for i in range(count):
        r = client.post("/v1/events", json=order_event(f"L-{i}"),
                        headers={**shop["auth"], "Prefer": "respond-async"})  # fmt: skip
        assert r.status_code == 202, r.text
    assert services.ingestor.plan_waiting(100) == count
    ids = [m["id"] for m in messages(client, shop)]
    assert len(ids) == count

    def entries() -> list[tuple[str, int, Decimal]]:
        with services.engine.connect() as conn:
            rows = conn.execute(
                select(ledger.c.kind, ledger.c.message_id, ledger.c.credits)
                .where(ledger.c.message_id.is_not(None))
                .order_by(ledger.c.id)
            ).all()
        return [(kind, int(mid), credits.money(amount)) for kind, mid, amount in rows]

    cost = Decimal("0.0500")
    assert entries() == [("reservation", m, -cost) for m in sorted(ids)]
    assert drain(services) == count  # one batch: the worker takes 100 at a time
    settled = entries()[count:]
    assert len(settled) == 2 * count
    assert sorted(settled) == sorted(
        [("release", m, cost) for m in ids] + [("debit", m, -cost) for m in ids]
    )
    assert {(kind, m) for kind, m, _ in settled} == {
        (kind, m) for m in ids for kind in ("release", "debit")
    }
    now = summary(client, shop)
    assert (now["available"], now["reserved"]) == (fmt(Decimal(100) - count * cost), "0.0000")
    assert_ledger_adds_up(services)


@postgres_only
def test_a_settling_worker_holds_its_messages_until_finish_marks_them(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """Settlement writes the ledger entries; `claims.finish` sets the billing state later in
    the same transaction, where the lease is still the worker's. On PostgreSQL the settled
    rows stay locked in between: another worker reclaiming a lapsed lease (its claim skips
    locked rows) cannot take one there and leave it reserved, to be settled twice. (SQLite
    needs no row locks: its writer holds the whole database.)"""
    shop = billed_shop(client, "1")
    clock.set(datetime.fromisoformat(AT))
    post(client, shop, order_event("S-1"))
    (message,) = messages(client, shop)
    now = clock.now()
    with services.engine.begin() as conn:
        conn.execute(
            messages_table.update()
            .where(messages_table.c.id == message["id"])
            .values(status="sending", lease_owner="worker-a", lease_until=now)
        )
    sent = [claims.Outcome(message_id=message["id"], status="sent", reason="sent",
                           attempt_outcome="sent")]  # fmt: skip
    worker = services.engine.connect()
    try:
        with worker.begin():
            billed = credits.settle(worker, "worker-a", sent, now)
            assert billed == {message["id"]: "debited"}
            # locked FOR UPDATE from the read on: KEY SHARE (what the ledger's foreign key
            # takes when the entries go in, later) does not conflict with KEY SHARE, so
            # this finds the row unless the read locked it
            with services.engine.connect() as other:
                taken = other.execute(
                    text("SELECT id FROM messages WHERE id = :m FOR KEY SHARE SKIP LOCKED"),
                    {"m": message["id"]},
                ).all()
                other.rollback()
            assert taken == [], "the settled message was not locked when it was read"
            claims.finish(worker, "worker-a", now, sent, billed)
    finally:
        worker.close()
    with services.engine.connect() as conn:
        billing = conn.execute(
            select(messages_table.c.billing).where(messages_table.c.id == message["id"])
        ).scalar_one()
    assert billing == "debited"
    assert_ledger_adds_up(services)


def _listed(client: TestClient, shop: dict[str, Any], answer: Any = None) -> dict[Any, Any]:
    """The price list as (channel, country) → (unit price, source): from `answer` (a PUT's
    response) or read with GET."""
    r = answer if answer is not None else client.get("/v1/credits/prices", headers=shop["auth"])
    assert r.status_code == 200, r.text
    return {(p["channel"], p["country"]): (p["unit_price"], p["source"]) for p in r.json()["items"]}


def test_the_price_list_shows_what_a_star_line_charges_not_the_default_under_it(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """A shop's or a plan's "*" line prices every country of its channel, the default list's
    too: the listing shows the price a message is charged, and where it comes from."""
    shop = billed_shop(client, "5")
    clock.set(datetime.fromisoformat(AT))
    with services.engine.begin() as conn:
        plan = prices.set_plan(conn, "wholesale", [
            {"channel": "sms", "country": "*", "unit_price": "0.09"},
            {"channel": "sms", "country": "DE", "unit_price": "0.07"},
        ], clock.now())  # fmt: skip
        plans.assign(conn, shop["id"], plan, clock.now(), actor="test")
    listed = _listed(client, shop)
    assert listed[("sms", "US")] == ("0.0900", "plan")  # the default list's 0.11 is not charged
    assert listed[("sms", "DE")] == ("0.0700", "plan")
    assert listed[("email", "*")] == ("0.0500", "default")  # another channel: still the default
    [us] = post(client, shop, order_event("S-1", phone="+12025550123"))["messages"]
    assert us["cost"] == "0.0900"
    r = client.put("/v1/credits/prices", headers=shop["auth"],
                   json={"prices": [{"channel": "sms", "country": "*", "unit_price": "0.01"}]})  # fmt: skip
    shown = _listed(client, shop, r)
    assert shown == _listed(client, shop)
    assert shown[("sms", "US")] == shown[("sms", "DE")] == ("0.0100", "shop")  # over the plan's
    [us] = post(client, shop, order_event("S-2", phone="+12025550123"))["messages"]
    assert us["cost"] == "0.0100"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "0001-01-01T00:00:00+14:00"}, "since"),  # before year 1 in UTC
        ({"until": "9999-12-31T23:59:59-12:00"}, "until"),  # past year 9999 in UTC
        ({"since": "2026-11-01T00:00:00"}, "since"),  # no offset
        ({"before": str(2**63)}, "before"),  # no ledger id can be that large
        ({"before": "0"}, "before"),
    ],
)
def test_ledger_filters_no_instant_or_id_can_satisfy_are_a_422(
    client: TestClient, services: Services, params: dict[str, str], field: str
) -> None:
    shop = billed_shop(client, "1")
    r = client.get("/v1/credits/ledger", headers=shop["auth"], params=params)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field


@pytest.mark.parametrize("month", ["9999-12", "0001-01", "1969-12", "2_26-01", "+202-01",
                                   "2026-13", "2026-00", "2026-1", "Nov"])  # fmt: skip
def test_statement_months_outside_1970_to_9998_are_a_422(
    client: TestClient, services: Services, month: str
) -> None:
    shop = billed_shop(client, "1")  # Istanbul: 0001-01 would start before year 1 in UTC
    r = client.get("/v1/credits/statement", headers=shop["auth"], params={"month": month})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "month"
    assert "1970-01 to 9998-12" in r.json()["error"]["message"]


def test_statement_months_at_either_end_of_the_range_answer(
    client: TestClient, services: Services
) -> None:
    shop = billed_shop(client, "1")
    for month in ("1970-01", "9998-12"):
        r = client.get("/v1/credits/statement", headers=shop["auth"],
                       params={"month": month, "format": "csv"})  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.text.splitlines()[-3:] == [
            f"{month},total,,,0,0.0000,", f"{month},topups,,,,0.0000,",
            f"{month},adjustments,,,,0.0000,",
        ]  # fmt: skip


@pytest.mark.parametrize(
    ("price", "reason"),
    [
        ("-31.12", "negative"),
        ("31.123456789", "more than 4 decimal places"),
        ("9" * 40, "at most"),
        ("abc", "pattern"),
        ("NaN", "pattern"),
    ],
)
def test_a_package_price_is_checked_like_every_other_amount(
    client: TestClient, services: Services, price: str, reason: str
) -> None:
    shop = billed_shop(client, "1")
    r = client.post("/v1/credits/packages", headers=shop["auth"],
                    json={"name": "p", "channel": "sms", "allowance": 10, "price": price})  # fmt: skip
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "price"
    assert reason in r.json()["error"]["message"]
    assert summary(client, shop)["allowances"] == []  # nothing granted, nothing stored
    with services.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM packages")).scalar_one() == 0


def test_a_package_name_longer_than_its_column_is_refused_naming_it(
    client: TestClient, services: Services
) -> None:
    """The API's names may be 200 characters, a package's column keeps 100: PostgreSQL
    refused the row (a 500) where the field should be named, with nothing stored."""
    shop = billed_shop(client, "1")
    body = {"channel": "sms", "allowance": 10}
    r = client.post("/v1/credits/packages", headers=shop["auth"],
                    json={**body, "name": "n" * (credits.MAX_PACKAGE_NAME + 1)})  # fmt: skip
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "name"
    assert f"at most {credits.MAX_PACKAGE_NAME} characters" in r.json()["error"]["message"]
    with services.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM packages")).scalar_one() == 0
    r = client.post("/v1/credits/packages", headers=shop["auth"],
                    json={**body, "name": "n" * credits.MAX_PACKAGE_NAME})  # fmt: skip
    assert r.status_code == 201, r.text


def test_a_package_price_is_kept_exactly(client: TestClient, services: Services) -> None:
    shop = billed_shop(client, "1")
    r = client.post("/v1/credits/packages", headers=shop["auth"],
                    json={"name": "p", "channel": "sms", "allowance": 10, "price": "31.00"})  # fmt: skip
    assert r.status_code == 201, r.text
    with services.engine.connect() as conn:
        stored = conn.execute(text("SELECT price FROM packages")).scalar_one()
    assert credits.money(stored) == Decimal("31")


def test_saving_the_same_thresholds_again_sends_no_second_notice(
    client: TestClient, services: Services, clock: ManualClock, outbox: Any
) -> None:
    """A client re-saving the whole settings form must not re-arm a threshold already
    crossed; a threshold added later is notified once, when the balance is next below it."""
    shop = billed_shop(client, "0.20", email_from="owner@shop.example")
    settings = {"low_balance_thresholds": ["0.12"]}
    r = client.patch("/v1/credits/settings", headers=shop["auth"], json=settings)
    assert r.status_code == 200, r.text
    clock.set(datetime.fromisoformat(AT))
    for i in range(2):  # 0.20 → 0.15 → 0.10: crosses 0.12
        post(client, shop, order_event(f"L-{i}"))
    drain(services)

    def notices() -> list[str]:
        return [line["subject"] for line in outbox.lines() if line["channel"] == "email"]

    assert len(notices()) == 1
    r = client.patch("/v1/credits/settings", headers=shop["auth"],
                     json={**settings, "billing_day": 5})  # fmt: skip
    assert r.status_code == 200, r.text
    post(client, shop, order_event("L-2"))  # 0.10 → 0.05: still below 0.12, no new crossing
    drain(services)
    assert len(notices()) == 1
    r = client.patch("/v1/credits/settings", headers=shop["auth"],
                     json={"low_balance_thresholds": ["0.12", "0.04"]})  # fmt: skip
    assert r.status_code == 200, r.text
    post(client, shop, order_event("L-3"))  # 0.05 → 0.00: crosses the new 0.04 only
    drain(services)
    assert len(notices()) == 2 and "below 0.04" in notices()[-1]


def test_a_top_up_past_the_most_an_account_holds_is_refused_whole(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """The balance's columns hold under 10^12 on PostgreSQL: a top-up that would take it past
    MAX_BALANCE is a 422 naming the amount, not a database error, and changes nothing."""
    shop = billed_shop(client, "1")
    with services.engine.begin() as conn:  # 2 short of the ceiling (past any one correction)
        credits._entry(conn, shop["id"], clock.now(), "adjustment", actor="test", note="setup",
                       credits=credits.MAX_BALANCE - 3)  # fmt: skip
    assert_ledger_adds_up(services)
    before = summary(client, shop)
    r = client.post("/v1/credits/topups", headers=shop["auth"], json={"amount": "2.5"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "amount"
    assert "at most 100000000000" in r.json()["error"]["message"]
    assert summary(client, shop) == before
    r = client.post("/v1/credits/topups", headers=shop["auth"], json={"amount": "2"})
    assert r.status_code == 201, r.text
    assert summary(client, shop)["balance"] == "100000000000.0000"
    assert_ledger_adds_up(services)


def _topup_entries(services: Services, reference: str) -> list[tuple[int, Decimal]]:
    with services.engine.connect() as conn:
        rows = conn.execute(
            select(ledger.c.shop_id, ledger.c.credits)
            .where(ledger.c.kind == "topup", ledger.c.reference == reference)
            .order_by(ledger.c.id)
        ).all()
    return [(int(s), credits.money(c)) for s, c in rows]


def test_a_top_up_posted_again_with_its_reference_is_credited_once(
    client: TestClient, services: Services
) -> None:
    """A payment notice retried: the same reference and amount answer 200, `duplicate`,
    crediting nothing; another amount under that reference is a 409 naming it. References
    are the shop's own: another shop may use the same one, and no reference means no check."""
    shop, other = billed_shop(client, None), billed_shop(client, None, slug="other")

    def top_up(who: dict[str, Any], amount: str, reference: str | None) -> Any:
        return client.post("/v1/credits/topups", headers=who["auth"],
                           json={"amount": amount, "reference": reference})  # fmt: skip

    first = top_up(shop, "5", "pay_9")
    assert first.status_code == 201 and first.json()["duplicate"] is False, first.text
    again = top_up(shop, "5.00", "pay_9")
    assert again.status_code == 200 and again.json()["duplicate"] is True, again.text
    assert again.json()["balance"] == "5.0000"
    conflict = top_up(shop, "6", "pay_9")
    assert conflict.status_code == 409, conflict.text
    assert conflict.json()["error"]["field"] == "reference"
    assert "5.0000" in conflict.json()["error"]["message"]
    assert top_up(other, "6", "pay_9").status_code == 201
    assert top_up(shop, "5", "  pay_9 ").json()["duplicate"] is True  # blanks around: the same
    for blank in (None, "", "   ", None):  # no reference: nothing to match, each one credited
        assert top_up(shop, "1", blank).status_code == 201
    too_long = top_up(shop, "1", "x" * 201)
    assert too_long.status_code == 422 and too_long.json()["error"]["field"] == "reference"
    assert summary(client, shop)["balance"] == "9.0000"
    assert _topup_entries(services, "pay_9") == [
        (shop["id"], Decimal(5)),
        (other["id"], Decimal(6)),
    ]
    assert_ledger_adds_up(services)


def test_the_same_top_up_posted_at_once_from_many_threads_is_credited_once(
    client: TestClient, services: Services
) -> None:
    """Checked under the account's lock: of 8 requests racing with one reference, one
    credits and 7 answer `duplicate`."""
    shop = billed_shop(client, None)
    answers: list[int] = []
    errors: list[BaseException] = []

    def post_it() -> None:
        try:
            r = client.post("/v1/credits/topups", headers=shop["auth"],
                            json={"amount": "2.5", "reference": "pay_race"})  # fmt: skip
            answers.append(r.status_code)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=post_it) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sorted(answers) == [200] * 7 + [201]
    assert summary(client, shop)["balance"] == "2.5000"
    assert _topup_entries(services, "pay_race") == [(shop["id"], Decimal("2.5"))]


def test_the_reference_lookup_reads_the_partial_index_of_top_ups(services: Services) -> None:
    """Not a scan of the shop's whole ledger: the query's kind = 'topup' is the partial
    index's own condition, so each database uses it (PostgreSQL is told not to scan the
    table, which it would prefer while the table is this small); and the index is partial,
    so no reservation, debit or release is written to it."""
    with services.engine.begin() as conn:
        db = Driver(conn)
        if db.sqlite:
            [definition] = db.rows(
                "SELECT sql FROM sqlite_master WHERE name = 'ix_ledger_topup_reference'"
            )[0]
        else:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            [definition] = db.rows(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_ledger_topup_reference'"
            )[0]
        explain = "EXPLAIN QUERY PLAN " if db.sqlite else "EXPLAIN "
        plan = " ".join(
            str(row[-1]) for row in db.rows(explain + credits._TOPUP_WITH_REFERENCE, (1, "p"))
        )
    assert "ix_ledger_topup_reference" in plan, plan
    assert "WHERE" in definition.upper() and "'topup'" in definition, definition


def test_held_messages_are_read_through_their_own_index(services: Services) -> None:
    """The worker's look at held messages every 30 seconds, and a top-up's, read the partial
    index of held messages — not every message a shop (or every shop) ever had."""
    queries = {
        "shops": credits._SHOPS_HOLDING,
        "first": select(messages_table.c.id)
        .where(*credits._held_for_credit(1))
        .order_by(messages_table.c.due_at, messages_table.c.id)
        .limit(1),
    }
    with services.engine.begin() as conn:
        sqlite = Driver(conn).sqlite
        if not sqlite:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        for name, query in queries.items():
            compiled = query.compile(conn, compile_kwargs={"literal_binds": True})
            explain = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
            plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(explain + str(compiled)))
            assert "ix_messages_held_shop_due" in plan, (name, plan)


def test_a_retry_waiting_on_the_account_lock_sees_the_first_top_up_and_credits_nothing(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """The reference is looked up under the account's lock: a retry arriving while the first
    top-up is still uncommitted waits for it, then answers duplicate. (Without the lock,
    PostgreSQL's retry would not see the uncommitted entry and would credit it again.)"""
    shop = billed_shop(client, None)
    answer: list[Any] = []

    def retry() -> None:
        answer.append(client.post("/v1/credits/topups", headers=shop["auth"],
                                  json={"amount": "4", "reference": "pay_slow"}))  # fmt: skip

    waiting = threading.Thread(target=retry)
    with services.engine.begin() as conn:
        credits.topup(conn, shop["id"], "4", reference="pay_slow", actor="test", now=clock.now())
        waiting.start()
        waiting.join(timeout=0.5)
        assert waiting.is_alive() and answer == []  # held by the lock until the commit
    waiting.join(timeout=30)
    [r] = answer
    assert r.status_code == 200 and r.json()["duplicate"] is True, r.text
    assert summary(client, shop)["balance"] == "4.0000"


def _entry_ids(services: Services, shop_id: int) -> list[int]:
    """The shop's ledger ids, newest first by time, then by id (as the listing pages them)."""
    with services.engine.connect() as conn:
        rows = conn.execute(
            select(ledger.c.id).where(ledger.c.shop_id == shop_id)
            .order_by(ledger.c.at.desc(), ledger.c.id.desc())
        )  # fmt: skip
        return [int(r.id) for r in rows]


def test_the_ledger_pages_through_every_entry_once_newest_first(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """Pages follow one another by next_before through entries sharing an instant, and
    through one written after the clock jumped back (listed by its time); another shop's
    entries, written in between, never appear."""
    start = datetime.fromisoformat(AT)
    clock.set(start)
    shop, other = billed_shop(client, "1"), billed_shop(client, "1", slug="other")
    for at in (start + timedelta(hours=1), start + timedelta(hours=1),
               start - timedelta(days=1), start + timedelta(hours=2)):  # fmt: skip
        clock.set(at)
        for each in (shop, other):
            r = client.post("/v1/credits/topups", headers=each["auth"], json={"amount": "1"})
            assert r.status_code == 201, r.text
    listed: list[int] = []
    params: dict[str, Any] = {"limit": 2}
    for _ in range(10):  # bounded: 5 entries, 2 a page
        r = client.get("/v1/credits/ledger", headers=shop["auth"], params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        listed += [e["id"] for e in page["items"]]
        if page["next_before"] is None:
            break
        params["before"] = page["next_before"]
    expected = _entry_ids(services, shop["id"])
    assert len(expected) == 5 and listed == expected
    ats = [e["at"] for e in client.get("/v1/credits/ledger", headers=shop["auth"]).json()["items"]]
    assert ats == sorted(ats, reverse=True) and ats[-1].startswith("2026-11-19")  # jumped back


def test_a_page_after_another_shops_entry_or_none_is_a_422(
    client: TestClient, services: Services
) -> None:
    shop, other = billed_shop(client, "1"), billed_shop(client, "1", slug="other")
    [theirs] = _entry_ids(services, other["id"])
    for before in (theirs, theirs + 1000):
        r = client.get("/v1/credits/ledger", headers=shop["auth"], params={"before": before})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["field"] == "before"


def _ledger_reads(services: Services) -> list[tuple[str, Any]]:
    """The queries of ledger rows, with their parameters, as they run from now on."""
    seen: list[tuple[str, Any]] = []

    def listen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        if "FROM ledger" in statement and "ORDER BY" in statement:
            seen.append((statement, parameters))

    event.listen(services.engine, "before_cursor_execute", listen)
    return seen


def test_a_page_of_the_ledger_is_read_through_the_shops_index(
    client: TestClient, services: Services
) -> None:
    """A page is read from the shop's own entries, newest first, through ix_ledger_shop_at
    (not by scanning every shop's ledger backwards, as ordering by id alone did); a message's
    entries through ix_ledger_message."""
    shop = billed_shop(client, "1")
    post(client, shop, order_event("I-1"))
    [newest, *_] = _entry_ids(services, shop["id"])
    reads = _ledger_reads(services)
    for params in ({}, {"before": newest}, {"message_id": 1}):
        r = client.get("/v1/credits/ledger", headers=shop["auth"], params=params)
        assert r.status_code == 200, r.text
    reads = list(reads)  # (the EXPLAINs below are not among them)
    assert len(reads) == 3
    with services.engine.begin() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if not sqlite:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        plans = [
            " ".join(str(row[-1]) for row in conn.exec_driver_sql(
                ("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + statement, parameters
            ))
            for statement, parameters in reads
        ]  # fmt: skip
    assert "ix_ledger_shop_at" in plans[0] and "ix_ledger_shop_at" in plans[1], plans
    assert "ix_ledger_message" in plans[2], plans
    for plan in plans[:2]:  # read in the index's order (it ends with the id): nothing sorted
        assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan


def _adjust(client: TestClient, shop: dict[str, Any], amount: Any, note: Any = "x") -> Any:
    return client.post("/v1/credits/adjustments", headers=shop["auth"],
                       json={"amount": amount, "note": note})  # fmt: skip


def test_an_adjustment_gives_or_takes_back_credit_and_says_why(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    """A correction by hand is an adjustment entry with its note and actor. Taken back, it
    never reaches credit reserved for planned messages; given, it releases held messages as
    a top-up does. The month's statement shows what corrections added up to."""
    shop = billed_shop(client, "1")
    clock.set(datetime.fromisoformat(AT))
    post(client, shop, order_event("J-1"))  # reserves 0.05
    r = _adjust(client, shop, "-0.95", "  refunded to the card  ")
    assert r.status_code == 201, r.text
    assert (r.json()["amount"], r.json()["note"]) == ("-0.9500", "refunded to the card")
    assert (r.json()["available"], r.json()["reserved"]) == ("0.0000", "0.0500")
    before, entries = summary(client, shop), _entry_ids(services, shop["id"])
    r = _adjust(client, shop, "-0.0001")  # only reserved credit is left
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "amount" and "reserved" in r.json()["error"]["message"]
    assert summary(client, shop) == before and _entry_ids(services, shop["id"]) == entries
    [held] = post(client, shop, order_event("J-2"))["messages"]
    assert held["status"] == "held" and held["reason"].startswith("insufficient_credit")
    r = _adjust(client, shop, "0.05", "goodwill: late parcel")
    assert r.status_code == 201, r.text
    assert r.json()["released"] == 1 and r.json()["reserved"] == "0.1000"
    assert [m["status"] for m in messages(client, shop)] == ["scheduled", "scheduled"]
    listed = client.get("/v1/credits/ledger", headers=shop["auth"],
                        params={"kind": "adjustment"}).json()["items"]  # fmt: skip
    assert [(e["credits"], e["note"], e["actor"]) for e in listed] == [
        ("0.0500", "goodwill: late parcel", "api"), ("-0.9500", "refunded to the card", "api")
    ]  # fmt: skip
    month = client.get("/v1/credits/statement", headers=shop["auth"], params={"month": "2026-11"})
    assert month.json()["adjustments"] == "-0.9000" and month.json()["topups"] == "1.0000"
    assert_ledger_adds_up(services)


@pytest.mark.parametrize(
    ("amount", "note", "field"),
    [
        ("0", "x", "amount"),
        ("-0.0000", "x", "amount"),
        ("1.00001", "x", "amount"),  # more than four places
        ("-1.00001", "x", "amount"),
        ("abc", "x", "amount"),
        (5.5, "x", "amount"),  # a JSON number: amounts are written as strings
        ("1000000001", "x", "amount"),  # past a top-up's maximum
        ("--1", "x", "amount"),
        ("1", "", "note"),
        ("1", "   ", "note"),
        ("1", "x" * 301, "note"),
        ("1", None, "note"),
        ("1", "a\x00b", "note"),  # PostgreSQL's text cannot hold it
        (" -1", "x", "amount"),
        ("-+1", "x", "amount"),
    ],
)
def test_bad_adjustments_are_a_422_naming_the_field_and_change_nothing(
    client: TestClient, services: Services, amount: Any, note: Any, field: str
) -> None:
    shop = billed_shop(client, "1")
    before, entries = summary(client, shop), _entry_ids(services, shop["id"])
    r = _adjust(client, shop, amount, note)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field, r.text
    assert summary(client, shop) == before and _entry_ids(services, shop["id"]) == entries


def test_a_note_is_trimmed_before_its_length_is_counted_and_a_nul_reference_is_a_422(
    client: TestClient, services: Services
) -> None:
    shop = billed_shop(client, "1")
    r = _adjust(client, shop, "1", "x" * 300 + "   ")
    assert r.status_code == 201, r.text
    assert r.json()["note"] == "x" * 300
    r = client.post("/v1/credits/topups", headers=shop["auth"],
                    json={"amount": "1", "reference": "pay\x00_1"})  # fmt: skip
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "reference"
    assert summary(client, shop)["balance"] == "2.0000"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/credits/topups", {"amount": "1", "reference": "pay_\u202e1-yap"}, "reference"),
        ("/v1/credits/adjustments", {"amount": "1", "note": "refund \u2066late\u2069"}, "note"),
        ("/v1/credits/packages", {"name": "SMS \u202a1000", "channel": "sms", "allowance": 5},
         "name"),
    ],
)  # fmt: skip
def test_texts_the_ledger_shows_refuse_bidirectional_controls(
    client: TestClient, services: Services, path: str, body: dict[str, Any], field: str
) -> None:
    """A right-to-left override in a payment reference, a note or a package name would
    make the admin's ledger read otherwise than what is stored: refused, naming the field,
    nothing written."""
    shop = billed_shop(client, "1")
    before = client.get("/v1/credits/ledger", headers=shop["auth"]).json()["items"]
    r = client.post(path, headers=shop["auth"], json=body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == field and "bidirectional control" in error["message"], error
    assert client.get("/v1/credits/ledger", headers=shop["auth"]).json()["items"] == before
    assert client.get("/v1/credits/packages", headers=shop["auth"]).json()["items"] == []


@pytest.mark.parametrize(
    ("value", "parsed"),
    [("-2.5", Decimal("-2.5")), (Decimal("-2.5"), Decimal("-2.5")), (-3, Decimal(-3)),
     (" 0.0001 ", Decimal("0.0001"))],
)  # fmt: skip
def test_an_adjustment_is_parsed_signed_from_text_an_integer_or_a_decimal(
    value: Any, parsed: Decimal
) -> None:
    assert credits.parse_adjustment(value) == parsed


@pytest.mark.parametrize("value", [1.5, True, None, "1e3", "+1", "", Decimal("1E+3")])
def test_an_adjustment_not_written_as_a_decimal_number_names_the_amount(value: Any) -> None:
    with pytest.raises(InvalidInput) as raised:
        credits.parse_adjustment(value)
    assert raised.value.field == "amount"
