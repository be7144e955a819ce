"""The generic HTTP JSON gateway against a loopback gateway: request shape, outcomes for
500 / 429 / 400 / garbage / timeout / no server, many requests in flight, and callbacks."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.gateway_harness import Gateway, settings_for

from orderbell.channels import http_gateway
from orderbell.channels.base import (
    Callback,
    CallbackRejected,
    DeliveryState,
    Inbound,
    Outcome,
    OutgoingMessage,
    Receipt,
)
from orderbell.domain.model import Channel
from orderbell.errors import InvalidInput


@pytest.fixture
def gw() -> Iterator[Gateway]:
    server = Gateway().start()
    yield server
    server.stop()


def msg(i: int = 1) -> OutgoingMessage:
    return OutgoingMessage(
        id=i, shop_id=1, channel=Channel.SMS, to="+48600100200", text=f"hello {i}", sender="Shop"
    )


def send(gateway: http_gateway.HttpGateway, batch: list[OutgoingMessage]) -> list[Any]:
    async def go() -> list[Any]:
        try:
            return await gateway.send(batch)
        finally:
            await gateway.close()

    return asyncio.run(go())


def build(settings: dict[str, Any], **extra: Any) -> http_gateway.HttpGateway:
    """As the dispatcher builds it: validated settings plus `concurrency` riding along."""
    return http_gateway.build(
        {**http_gateway.validate(settings), **extra}, name="gw", callback_url=None
    )


def test_request_shape_mapping_auth_and_provider_id(gw: Gateway) -> None:
    settings = settings_for(
        gw,
        fields={"to": "message.to", "text": "message.body", "reference": "ref", "from": "sender"},
        static={"route": "premium"},
    )
    [result] = send(build(settings), [msg(7)])
    assert result.outcome is Outcome.ACCEPTED
    assert result.provider_message_id == "gw-1"
    sent = gw.requests[0]
    assert sent["json"] == {
        "message": {"to": "+48600100200", "body": "hello 7"},
        "ref": "7",
        "sender": "Shop",
        "route": "premium",
    }
    assert sent["headers"]["X-Api-Key"] == "k3y-secret-value"


@pytest.mark.parametrize(
    ("mode", "outcome", "code"),
    [
        pytest.param("500", Outcome.RETRYABLE, "http_500", id="server-error"),
        pytest.param("429", Outcome.RETRYABLE, "http_429", id="throttled"),
        pytest.param("400", Outcome.PERMANENT, "http_400", id="invalid-number"),
        pytest.param("garbage", Outcome.AMBIGUOUS, "bad_response", id="garbage-200"),
        pytest.param("error_body", Outcome.PERMANENT, "no_funds", id="error-in-200-body"),
        pytest.param("sleep", Outcome.AMBIGUOUS, "timeout", id="timeout-after-request"),
    ],
)
def test_outcomes(gw: Gateway, mode: str, outcome: Outcome, code: str) -> None:
    gw.mode = mode
    gw.sleep_seconds = 4.0
    settings = settings_for(gw, timeout_seconds=1.0, error_path="error")
    [result] = send(build(settings), [msg()])
    assert (result.outcome, result.error_code) == (outcome, code)
    assert len(gw.requests) == 1  # the request did reach the gateway


def test_no_server_is_retryable_nothing_left() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    [result] = send(build({"url": f"http://127.0.0.1:{port}/sms"}), [msg()])
    assert (result.outcome, result.error_code) == (Outcome.RETRYABLE, "connect_error")


def test_many_requests_in_flight_bounded_by_concurrency(gw: Gateway) -> None:
    gw.delay_seconds = 0.2
    gateway = build(settings_for(gw), concurrency=50)
    started = time.monotonic()
    results = send(gateway, [msg(i) for i in range(1, 101)])
    elapsed = time.monotonic() - started
    assert all(r.outcome is Outcome.ACCEPTED for r in results)
    assert gw.max_in_flight == 50
    assert elapsed < 2.0  # two waves of 0.2 s, not 100 x 0.2 s


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        pytest.param({"url": "ftp://example.com"}, "settings.url", id="not-http"),
        pytest.param({"url": "http://"}, "settings.url", id="no-host"),
        pytest.param({}, "settings.url", id="missing-url"),
        pytest.param(
            {"url": "http://a.example", "auth_header": "X-Key"},
            "settings.auth_value",
            id="missing-secret",
        ),
        pytest.param(
            {"url": "http://a.example", "callback_auth": "hmac"},
            "settings.callback_secret",
            id="hmac-without-secret",
        ),
        pytest.param(
            {"url": "http://a.example", "fields": {"to": "to"}}, "settings.fields", id="no-text"
        ),
        pytest.param(
            {"url": "http://a.example", "auth_header": "X\r\nY", "auth_value": "v"},
            "settings.auth_header",
            id="header-injection",
        ),
        pytest.param(
            {"url": "http://a.example", "timeout_seconds": -1},
            "settings.timeout_seconds",
            id="negative-timeout",
        ),
        pytest.param({"url": "http://a.example", "colour": 1}, "settings.colour", id="unknown"),
    ],
)
def test_bad_settings_name_the_field(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        http_gateway.validate(settings)
    assert err.value.field == field


# ---------------------------------------------------------------- callbacks


def cb(body: bytes = b"", *, headers: dict[str, str] | None = None, **kw: Any) -> Callback:
    return Callback(
        method=kw.pop("method", "POST"),
        url="http://127.0.0.1:8000/v1/callbacks/x",
        query=kw.pop("query", {}),
        headers=headers or {},
        body=body,
        form=kw.pop("form", {}),
    )


def test_receipts_json_object_list_form_and_query() -> None:
    gateway = build({"url": "http://a.example", "status_map": {"DONE": "delivered"}})
    [one] = gateway.parse_callback(
        cb(b'{"id": "gw-1", "reference": "42", "status": "DELIVRD", "time": 1790000000}')
    )
    assert one == Receipt(
        state=DeliveryState.DELIVERED,
        message_id=42,
        provider_message_id="gw-1",
        code="DELIVRD",
        at=datetime.fromtimestamp(1790000000, tz=UTC),
    )
    many = gateway.parse_callback(
        cb(json.dumps([{"id": "a", "status": "done"}, {"id": "b", "status": "rejected"}]).encode())
    )
    assert [r.state for r in many] == [DeliveryState.DELIVERED, DeliveryState.FAILED]  # type: ignore[union-attr]
    [form] = gateway.parse_callback(cb(form={"id": "c", "status": "expired", "code": "E7"}))
    assert form.state is DeliveryState.UNDELIVERED and form.code == "E7"  # type: ignore[union-attr]
    [query] = gateway.parse_callback(cb(method="GET", query={"id": "d", "status": "weird"}))
    assert query.state is DeliveryState.ACCEPTED  # unknown words never move a message


def test_inbound_message() -> None:
    gateway = build({"url": "http://a.example"})
    [item] = gateway.parse_callback(cb(b'{"from": "48600100200", "text": "STOP", "id": "in-1"}'))
    assert item == Inbound(sender="48600100200", text="STOP", provider_message_id="in-1")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="bad-json"),
        pytest.param(b"[1, 2]", id="not-objects"),
        pytest.param(b'{"hello": "world"}', id="neither-receipt-nor-inbound"),
        pytest.param(b"", id="empty"),
    ],
)
def test_garbage_callbacks_are_rejected(body: bytes) -> None:
    gateway = build({"url": "http://a.example"})
    with pytest.raises(CallbackRejected) as err:
        gateway.parse_callback(cb(body))
    assert err.value.status_code == 400


def test_hmac_signature() -> None:
    secret = "shared-secret-123"
    gateway = build({"url": "http://a.example", "callback_auth": "hmac", "callback_secret": secret})
    body = b'{"id": "gw-1", "status": "delivered"}'
    good = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert gateway.parse_callback(cb(body, headers={"x-signature": f"sha256={good}"}))
    for headers in ({"x-signature": "0" * 64}, {}):
        with pytest.raises(CallbackRejected) as err:
            gateway.parse_callback(cb(body, headers=headers))
        assert err.value.status_code == 403
