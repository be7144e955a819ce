"""StockMount: orders until 15:00 ship today by 18:00, later ones tomorrow by 13:00,
with weekend and holiday wording — exactly one message per order, boundaries included."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.conftest import Outbox
from tests.support import drain, event, messages, rule, template

from orderbell.clock import ManualClock
from orderbell.compose import Services

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


def stockmount_rules(client: TestClient, shop: dict[str, Any]) -> dict[str, int]:
    """The four exclusive variants in one group, as a shop owner would set them."""
    texts = {
        "today": "Hello {{ customer_name }}, your order {{ order_code }} has been taken. "
        "Your order will be shipped today until 18:00. {{ shop_name }}",
        "tomorrow": "Hello {{ customer_name }}, your order {{ order_code }} has been taken. "
        "Your order will be shipped tomorrow until 13:00. {{ shop_name }}",
        "weekend": "Hello {{ customer_name }}, order {{ order_code }}: shipped on Monday.",
        "holiday": "Hello {{ customer_name }}, order {{ order_code }}: shipped after the holiday.",
    }
    ids = {k: template(client, shop, v, name=k) for k, v in texts.items()}
    created = {"event_type": "order.created"}
    rule(
        client,
        shop,
        name="holiday",
        group="ship",
        priority=1,
        trigger=created,
        conditions={"holidays": "only"},
        action={"channel": "sms", "template_id": ids["holiday"]},
    )
    rule(
        client,
        shop,
        name="weekend",
        group="ship",
        priority=2,
        trigger=created,
        conditions={"weekdays": ["sat", "sun"]},
        action={"channel": "sms", "template_id": ids["weekend"]},
    )
    rule(
        client,
        shop,
        name="today",
        group="ship",
        priority=3,
        trigger=created,
        conditions={"weekdays": WEEKDAYS, "hours": ["00:00-15:00"]},
        action={"channel": "sms", "template_id": ids["today"]},
    )
    rule(
        client,
        shop,
        name="tomorrow",
        group="ship",
        priority=4,
        trigger=created,
        conditions={"weekdays": WEEKDAYS, "hours": ["15:00-00:00"]},
        action={"channel": "sms", "template_id": ids["tomorrow"]},
    )
    return ids


CASES = [
    pytest.param(
        "2026-11-20T14:59:59+03:00", "today", "shipped today until 18:00", id="fri-14:59:59-today"
    ),
    pytest.param(
        "2026-11-20T15:00:00+03:00",
        "tomorrow",
        "shipped tomorrow until 13:00",
        id="fri-15:00:00-tomorrow",
    ),
    pytest.param("2026-11-20T23:59:00+03:00", "tomorrow", "shipped tomorrow", id="fri-23:59"),
    pytest.param("2026-11-20T00:00:00+03:00", "today", "shipped today", id="fri-00:00"),
    pytest.param("2026-11-19T23:59:59+03:00", "tomorrow", "shipped tomorrow", id="thu-23:59:59"),
    pytest.param("2026-11-21T10:00:00+03:00", "weekend", "shipped on Monday", id="saturday"),
    pytest.param("2026-11-22T16:00:00+03:00", "weekend", "shipped on Monday", id="sunday"),
    pytest.param(
        "2026-10-29T10:00:00+03:00", "holiday", "after the holiday", id="republic-day-thursday"
    ),
    pytest.param("2026-11-20T11:59:59Z", "today", "shipped today", id="utc-input-14:59:59-local"),
]


@pytest.mark.parametrize(("at", "rule_name", "text"), CASES)
def test_exactly_one_variant_is_sent(
    client: TestClient,
    services: Services,
    shop: dict[str, Any],
    outbox: Outbox,
    clock: ManualClock,
    at: str,
    rule_name: str,
    text: str,
) -> None:
    stockmount_rules(client, shop)
    clock.set(datetime.fromisoformat(at))
    result = event(client, shop, "order.created", at, "1001")
    matched = [v["rule"] for v in result["verdicts"] if v["matched"]]
    assert matched == [rule_name]
    assert drain(services) == 1
    sent = outbox.lines()
    assert len(sent) == 1
    assert text in sent[0]["text"]
    assert "Ayşe Yılmaz" in sent[0]["text"] and "1001" in sent[0]["text"]
    assert sent[0]["to"] == "+905321234567"
    [message] = messages(client, shop)
    assert message["status"] == "sent"


def test_replayed_event_sends_once(
    client: TestClient,
    services: Services,
    shop: dict[str, Any],
    outbox: Outbox,
    clock: ManualClock,
) -> None:
    stockmount_rules(client, shop)
    at = "2026-11-20T10:00:00+03:00"
    clock.set(datetime.fromisoformat(at))
    first = event(client, shop, "order.created", at, "1001", id="evt-1")
    again = event(client, shop, "order.created", at, "1001", id="evt-1")
    assert again["duplicate"] is True
    assert again["event_id"] == first["event_id"]
    assert again["messages"] == first["messages"]
    drain(services)
    assert len(outbox.lines()) == 1


def test_passive_rule_is_skipped_with_reason(
    client: TestClient,
    services: Services,
    shop: dict[str, Any],
    clock: ManualClock,
) -> None:
    stockmount_rules(client, shop)
    rules = client.get("/v1/rules", headers=shop["auth"]).json()["items"]
    today = next(r for r in rules if r["name"] == "today")
    r = client.patch(f"/v1/rules/{today['id']}", headers=shop["auth"], json={"active": False})
    assert r.status_code == 200 and r.json()["active"] is False
    at = "2026-11-20T10:00:00+03:00"
    clock.set(datetime.fromisoformat(at))
    result = event(client, shop, "order.created", at, "1001")
    verdict = next(v for v in result["verdicts"] if v["rule"] == "today")
    assert verdict["matched"] is False and "inactive" in verdict["reason"]
    assert result["messages"] == []
