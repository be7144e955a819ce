"""The SerwerSMS.pl gateway against a loopback server speaking its documented shapes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from structlog.testing import capture_logs
from tests.gateway_servers import SERWERSMS_TOKEN, FakeGateway
from tests.support import send_all as send

from orderbell.channels import serwersms
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

CALLBACK = "https://orderbell.example/callbacks/serwersms/Tk9xQ2/receipt"
PHONE = "+48600100200"


def msg(id_: int = 7, to: str = PHONE, text: str = "Order 1001 shipped") -> OutgoingMessage:
    return OutgoingMessage(id=id_, shop_id=1, channel=Channel.SMS, to=to, text=text)


@pytest.fixture
def server() -> Iterator[FakeGateway]:
    srv = FakeGateway("serwersms").start()
    yield srv
    srv.stop()


def gateway(base_url: str, **extra: Any) -> serwersms.SerwerSmsGateway:
    settings = {"api_token": SERWERSMS_TOKEN, "sender": "SKLEP", "base_url": base_url}
    settings.update(extra)
    return serwersms.build(settings, name="main", callback_url=CALLBACK)


@pytest.mark.parametrize(
    ("text", "utf"),
    [
        pytest.param("Order 1001 shipped {ok} €", None, id="gsm7"),
        pytest.param("Zamówienie wysłane, dziękujemy 📦", True, id="ucs2"),
    ],
)
def test_sends_text_intact_with_unique_id(server: FakeGateway, text: str, utf: bool | None) -> None:
    [res] = send(gateway(server.base_url), msg(text=text))
    assert res.outcome is Outcome.ACCEPTED, res
    assert res.provider_message_id and res.segments == 1
    [sub] = server.submissions
    assert sub.fields["text"] == text
    assert sub.fields["phone"] == PHONE
    assert sub.fields["unique_id"] == "7"
    assert sub.fields["sender"] == "SKLEP"
    assert sub.fields.get("utf") is utf


def test_many_in_flight(server: FakeGateway) -> None:
    server.latency = 0.05
    results = send(gateway(server.base_url), *[msg(id_=i) for i in range(1, 81)])
    assert sorted(r.message_id for r in results) == list(range(1, 81))
    assert {r.outcome for r in results} == {Outcome.ACCEPTED}


@pytest.mark.parametrize(
    ("mode", "outcome", "code"),
    [
        pytest.param(
            "invalid_number", Outcome.PERMANENT, "invalid_number:2200", id="invalid-number"
        ),
        pytest.param("no_funds", Outcome.RETRYABLE, "no_funds:3002", id="no-funds"),
        pytest.param("throttled", Outcome.RETRYABLE, "throttled", id="throttled"),
        pytest.param("error500", Outcome.RETRYABLE, "http_500", id="server-error"),
        pytest.param("garbage", Outcome.AMBIGUOUS, "garbage", id="garbage"),
        pytest.param("timeout", Outcome.AMBIGUOUS, "timeout", id="timeout-after-send"),
    ],
)
def test_error_classes(server: FakeGateway, mode: str, outcome: Outcome, code: str) -> None:
    server.mode, server.hang = mode, 2.0
    with capture_logs() as logs:
        [res] = send(gateway(server.base_url, timeout_seconds=0.3), msg())
    assert (res.outcome, res.error_code) == (outcome, code), res
    assert server.submissions == []
    dump = repr(logs) + repr(res)
    assert SERWERSMS_TOKEN not in dump and PHONE not in dump and "Order 1001" not in dump


def test_bad_token(server: FakeGateway) -> None:
    gw = serwersms.build(
        {"api_token": "not-the-token-123", "base_url": server.base_url}, name="m", callback_url=None
    )
    [res] = send(gw, msg())
    assert (res.outcome, res.error_code) == (Outcome.RETRYABLE, "auth:1001")


def callback(params: dict[str, str], url: str = CALLBACK) -> Callback:
    return Callback(method="GET", url=url, query=params, headers={}, body=b"")


@pytest.mark.parametrize(
    ("status", "state"),
    [
        pytest.param("delivered", DeliveryState.DELIVERED, id="delivered"),
        pytest.param("undelivered", DeliveryState.UNDELIVERED, id="undelivered"),
        pytest.param("unsent", DeliveryState.FAILED, id="unsent"),
        pytest.param("sent", DeliveryState.ACCEPTED, id="sent"),
    ],
)
def test_delivery_report(status: str, state: DeliveryState) -> None:
    gw = gateway("http://127.0.0.1:9")
    [receipt] = gw.parse_callback(
        callback(
            {"id": "aca3944055", "status": status, "unique_id": "7", "date": "2026-11-20 11:00:00"}
        )
    )
    assert isinstance(receipt, Receipt)
    assert (receipt.state, receipt.message_id, receipt.provider_message_id) == (
        state,
        7,
        "aca3944055",
    )
    assert receipt.code == status
    assert receipt.at == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)  # Warsaw is UTC+1 in November


def test_failed_report_keeps_the_error_code() -> None:
    gw = gateway("http://127.0.0.1:9")
    [receipt] = gw.parse_callback(callback({"smsid": "x1", "stan": "niedoreczone", "kod": "2001"}))
    assert isinstance(receipt, Receipt)
    assert (receipt.state, receipt.code, receipt.message_id) == (
        DeliveryState.UNDELIVERED,
        "2001",
        None,
    )


def test_reply() -> None:
    gw = gateway("http://127.0.0.1:9")
    [inbound] = gw.parse_callback(
        callback({"phone": PHONE, "text": "NIE", "to": "+48799000111", "date": "1795683600"},
                 url=CALLBACK.replace("/receipt", "/inbound"))
    )  # fmt: skip
    assert isinstance(inbound, Inbound)
    assert (inbound.sender, inbound.text, inbound.recipient) == (PHONE, "NIE", "+48799000111")
    assert inbound.received_at == datetime.fromtimestamp(1795683600, UTC)


@pytest.mark.parametrize(
    ("url", "params", "status"),
    [
        pytest.param(CALLBACK.replace("Tk9xQ2", "Tk9xQ3"), {"id": "a", "status": "delivered"}, 403, id="bad-token"),
        pytest.param(CALLBACK, {"id": "a", "status": "lost"}, 400, id="unknown-status"),
        pytest.param(CALLBACK, {}, 400, id="empty"),
    ],
)  # fmt: skip
def test_bad_callbacks(url: str, params: dict[str, str], status: int) -> None:
    with pytest.raises(CallbackRejected) as err:
        gateway("http://127.0.0.1:9").parse_callback(callback(params, url=url))
    assert err.value.status_code == status


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        pytest.param({}, "settings.api_token", id="no-token"),
        pytest.param({"api_token": SERWERSMS_TOKEN, "sender": "-bad"}, "settings.sender", id="bad-sender"),
        pytest.param({"api_token": SERWERSMS_TOKEN, "concurrency": "many"}, "settings.concurrency", id="bad-concurrency"),
        pytest.param({"api_token": SERWERSMS_TOKEN, "base_url": "http://"}, "settings.base_url", id="bad-url"),
    ],
)  # fmt: skip
def test_settings_validation_names_the_field(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        serwersms.validate(settings)
    assert err.value.field == field
    assert SERWERSMS_TOKEN not in str(err.value)


def test_module_conventions() -> None:
    assert serwersms.KIND == "serwersms" and serwersms.CHANNEL is Channel.SMS
    assert {"api_token"} == serwersms.SECRET_FIELDS
    assert SERWERSMS_TOKEN not in repr(gateway("http://127.0.0.1:9"))
