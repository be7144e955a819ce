"""Bad input gets a 4xx JSON error naming the field and the reason — never a 500 — and
leaves nothing half-written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.support import template

from orderbell.compose import Services
from orderbell.store.schema import customers, events, messages, orders, rules, templates

EVENT = {
    "type": "order.created",
    "occurred_at": "2026-11-20T10:00:00+03:00",
    "order": {"code": "A1"},
    "customer": {"name": "Ann", "phone": "+905321234567"},
}


def counts(services: Services) -> dict[str, int]:
    with services.engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (events, messages, orders, customers, rules, templates)
        }


def with_(path: str, value: Any) -> dict[str, Any]:
    body = json.loads(json.dumps(EVENT))
    target = body
    keys = path.split(".")
    for k in keys[:-1]:
        target = target[k]
    if value is KeyError:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return body


EVENT_CASES = [
    pytest.param(with_("type", "order.exploded"), "type", "unknown event type", id="unknown-type"),
    pytest.param(with_("occurred_at", KeyError), "occurred_at", "Field required", id="missing"),
    pytest.param(
        with_("occurred_at", "2026-11-20T10:00:00"), "occurred_at", "timezone", id="naive-time"
    ),
    pytest.param(
        with_("occurred_at", "0001-01-01T00:00:00+14:00"),
        "occurred_at",
        "out of range",
        id="before-year-1-in-utc",
    ),
    pytest.param(with_("order.total", "lots"), "order.total", "decimal", id="ill-typed-total"),
    pytest.param(with_("order.total", -5), "order.total", "greater than", id="negative-total"),
    pytest.param(with_("order.surprise", 1), "order.surprise", "Extra inputs", id="extra-field"),
    pytest.param(with_("order.code", "A\u0000B"), "order.code", "NUL", id="nul-byte"),
    pytest.param(
        with_("customer.name", "\ud800x"), "customer.name", "unicode", id="lone-surrogate"
    ),
    pytest.param(
        with_("customer.phone", 48600700800), "customer.phone", "string", id="phone-as-number"
    ),
    pytest.param(
        with_("customer.phone", ["+48600700800"]), "customer.phone", "string", id="phone-as-array"
    ),
    pytest.param(
        with_("customer.phone", "+1-800-FLOWERS"), "customer.phone", "letters", id="vanity-phone"
    ),
    pytest.param(
        with_("customer.email", "a@b.c\r\nBcc: x@y.z"),
        "customer.email",
        "",
        id="email-header-injection",
    ),
    pytest.param({**EVENT, "type": "order.status_changed"}, None, "status", id="status-missing"),
]


@pytest.mark.parametrize(("body", "field", "reason"), EVENT_CASES)
def test_bad_events(
    client: TestClient,
    services: Services,
    shop: dict[str, Any],
    body: dict[str, Any],
    field: str | None,
    reason: str,
) -> None:
    before = counts(services)
    r = client.post(
        "/v1/events",
        headers={**shop["auth"], "content-type": "application/json"},
        content=json.dumps(body),
    )
    assert 400 <= r.status_code < 500, r.text
    error = r.json()["error"]
    assert error["field"] == field
    assert reason.lower() in error["message"].lower()
    assert counts(services) == before


def test_malformed_json(client: TestClient, shop: dict[str, Any]) -> None:
    r = client.post(
        "/v1/events",
        headers={**shop["auth"], "content-type": "application/json"},
        content=b'{"type": "order.created",',
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "malformed_json"


def test_ten_megabyte_body_is_413(client: TestClient, shop: dict[str, Any]) -> None:
    big = json.dumps({**EVENT, "data": {"blob": "x" * 10_000_000}})
    r = client.post(
        "/v1/events", headers={**shop["auth"], "content-type": "application/json"}, content=big
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_large"


def test_idempotency_key_with_another_body_is_409(
    client: TestClient, shop: dict[str, Any], services: Services
) -> None:
    headers = {**shop["auth"], "Idempotency-Key": "k-1"}
    assert client.post("/v1/events", headers=headers, json=EVENT).status_code == 201
    replay = client.post("/v1/events", headers=headers, json=EVENT)
    assert replay.status_code == 200 and replay.json()["duplicate"] is True
    before = counts(services)
    other = client.post("/v1/events", headers=headers, json=with_("order.code", "A2"))
    assert other.status_code == 409
    assert other.json()["error"]["field"] == "idempotency_key"
    assert counts(services) == before


RULE = {
    "name": "r",
    "trigger": {"event_type": "order.created"},
    "action": {"channel": "sms", "template_id": 0},
}


def rule_with(tid: int, **changes: Any) -> dict[str, Any]:
    body = json.loads(json.dumps(RULE))
    body["action"]["template_id"] = tid
    for path, value in changes.items():
        target = body
        keys = path.split("__")
        for k in keys[:-1]:
            target = target.setdefault(k, {})
        target[keys[-1]] = value
    return body


RULE_CASES = [
    pytest.param(
        {"conditions__hours": ["25:00-26:00"]}, "conditions.hours.0", "hour 25", id="hour-25"
    ),
    pytest.param(
        {"conditions__hours": ["12:60-13:00"]}, "conditions.hours.0", "minute 60", id="minute-60"
    ),
    pytest.param(
        {"conditions__weekdays": ["funday"]}, "conditions.weekdays.0", "", id="bad-weekday"
    ),
    pytest.param(
        {"action__delay_minutes": -1}, "action.delay_minutes", "greater than", id="negative-delay"
    ),
    pytest.param(
        {"action__delay_minutes": 525_601},
        "action.delay_minutes",
        "less than",
        id="delay-over-a-year",
    ),
    pytest.param(
        {"action__delay_minutes": 60, "action__validity_minutes": 30},
        "action",
        "validity",
        id="validity-shorter-than-delay",
    ),
    pytest.param(
        {"trigger__event_type": "order.teleported"},
        "trigger.event_type",
        "unknown event type",
        id="unknown-trigger",
    ),
    pytest.param({"action__channel": "pigeon"}, "action.channel", "", id="unknown-channel"),
]


@pytest.mark.parametrize(("changes", "field", "reason"), RULE_CASES)
def test_bad_rules(
    client: TestClient,
    services: Services,
    shop: dict[str, Any],
    changes: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    tid = template(client, shop, "Hi {{ customer_name }}")
    before = counts(services)
    r = client.post("/v1/rules", headers=shop["auth"], json=rule_with(tid, **changes))
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == field
    assert reason.lower() in error["message"].lower()
    assert counts(services) == before


def test_rule_with_template_variable_not_available_at_trigger(
    client: TestClient, shop: dict[str, Any]
) -> None:
    tid = template(client, shop, "Track: {{ tracking_number }}")
    r = client.post("/v1/rules", headers=shop["auth"], json=rule_with(tid))
    assert r.status_code == 422
    assert "tracking_number" in r.json()["error"]["message"]
    ok = client.post(
        "/v1/rules", headers=shop["auth"], json=rule_with(tid, trigger__event_type="order.shipped")
    )
    assert ok.status_code == 201


def test_rule_with_another_shops_template(client: TestClient, shop: dict[str, Any]) -> None:
    from tests.conftest import make_shop

    other = make_shop(client, "other")
    tid = template(client, other, "Hi")
    r = client.post("/v1/rules", headers=shop["auth"], json=rule_with(tid))
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "action.template_id"


TEMPLATE_CASES = [
    pytest.param({"body": "Hi {{ customer_nme }}"}, "body", "customer_name", id="unknown-var"),
    pytest.param({"body": "Hi {{ customer_name"}, "body", "", id="syntax-error"),
    pytest.param({"body": "{{ ''.__class__.__mro__ }}"}, "body", "", id="mro"),
    pytest.param({"body": "{{ cycler.__init__.__globals__ }}"}, "body", "", id="globals"),
    pytest.param({"body": "{{ customer_name|attr('format') }}"}, "body", "", id="attr-format"),
    pytest.param({"body": "{{ 'A' * 10**9 }}"}, "body", "", id="string-blowup"),
    pytest.param(
        {"body": "{% for a in range(10**6) %}{% for b in range(10**6) %}x{% endfor %}{% endfor %}"},
        "body",
        "",
        id="nested-range",
    ),
]


@pytest.mark.parametrize(("changes", "field", "reason"), TEMPLATE_CASES)
def test_bad_templates(
    client: TestClient,
    services: Services,
    shop: dict[str, Any],
    changes: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    before = counts(services)
    r = client.post(
        "/v1/templates", headers=shop["auth"], json={"name": "t", "channel": "sms", **changes}
    )
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == field
    assert reason in error["message"]
    assert counts(services) == before


def test_template_syntax_error_reports_line_and_keeps_previous_version(
    client: TestClient, shop: dict[str, Any]
) -> None:
    tid = template(client, shop, "Hi {{ customer_name }}")
    r = client.put(
        f"/v1/templates/{tid}",
        headers=shop["auth"],
        json={"name": "t", "channel": "sms", "body": "line one\nHi {{ customer_name"},
    )
    assert r.status_code == 422
    assert r.json()["error"]["line"] == 2
    current = client.get(f"/v1/templates/{tid}", headers=shop["auth"]).json()
    assert current["version"] == 1 and current["body"] == "Hi {{ customer_name }}"


SHOP_CASES = [
    pytest.param({"timezone": "Mars/Olympus"}, "timezone", "Mars/Olympus", id="bad-timezone"),
    pytest.param({"quiet_hours": "08:00-25:00"}, "quiet_hours", "hour 25", id="bad-quiet-hours"),
    pytest.param({"country": "XX"}, "country", "", id="unknown-country"),
]


@pytest.mark.parametrize(("changes", "field", "reason"), SHOP_CASES)
def test_bad_shop_settings(
    client: TestClient, shop: dict[str, Any], changes: dict[str, Any], field: str, reason: str
) -> None:
    r = client.patch("/v1/shop", headers=shop["auth"], json=changes)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field
    assert reason in r.json()["error"]["message"]
    assert client.get("/v1/shop", headers=shop["auth"]).json()["timezone"] == "Europe/Istanbul"


def test_chunked_body_past_the_limit_is_413(client: TestClient, shop: dict[str, Any]) -> None:
    """No Content-Length: the body is counted as it is read."""

    def chunks() -> Iterator[bytes]:
        yield json.dumps(EVENT)[:-1].encode() + b', "data": {"blob": "'
        for _ in range(12):
            yield b"x" * 1_000_000
        yield b'"}}'

    r = client.post(
        "/v1/events", headers={**shop["auth"], "content-type": "application/json"}, content=chunks()
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_large"
    assert r.json()["error"]["message"].startswith("the body is larger than")


def test_chunked_body_within_the_limit_is_accepted(
    client: TestClient, shop: dict[str, Any]
) -> None:
    def chunks() -> Iterator[bytes]:
        body = json.dumps(EVENT).encode()
        yield body[:10]
        yield body[10:]

    r = client.post(
        "/v1/events", headers={**shop["auth"], "content-type": "application/json"}, content=chunks()
    )
    assert r.status_code == 201, r.text


def test_content_length_that_is_not_a_number_is_400(
    client: TestClient, shop: dict[str, Any]
) -> None:
    r = client.post(
        "/v1/events",
        headers={**shop["auth"], "content-type": "application/json", "content-length": "12x"},
        content=json.dumps(EVENT),
    )
    assert r.status_code == 400
    assert r.json()["error"] == {
        "code": "invalid_input",
        "message": "bad Content-Length",
        "field": "content-length",
    }


TOO_BIG = str(2**63)  # one past the largest BIGINT id


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("get", f"/v1/events/{TOO_BIG}", "event_id"),
        ("get", f"/v1/messages/{TOO_BIG}", "message_id"),
        ("get", f"/v1/rules/{TOO_BIG}", "rule_id"),
        ("delete", f"/v1/rules/{TOO_BIG}", "rule_id"),
        ("get", f"/v1/templates/{TOO_BIG}", "template_id"),
        ("get", f"/v1/customers/{TOO_BIG}", "customer_id"),
        ("get", f"/v1/providers/{TOO_BIG}", "provider_id"),
        ("delete", f"/v1/api-keys/{TOO_BIG}", "key_id"),
        ("get", f"/v1/templates/1/attachments/{TOO_BIG}", "attachment_id"),
        ("get", f"/v1/messages?rule_id={TOO_BIG}", "rule_id"),
        ("get", f"/v1/credits/ledger?message_id={TOO_BIG}", "message_id"),
        ("get", f"/v1/credits/ledger?before={TOO_BIG}", "before"),
        ("get", "/v1/messages/0", "message_id"),
        ("get", "/v1/events/-1", "event_id"),
    ],
)
def test_an_id_no_row_can_have_is_a_422_naming_it(
    client: TestClient, shop: dict[str, Any], method: str, path: str, field: str
) -> None:
    r = client.request(method, path, headers=shop["auth"])
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field
