"""The SMSAPI.pl gateway against a loopback server speaking its documented shapes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.gateway_servers import SMSAPI_TOKEN, FakeGateway
from tests.support import send_all as send

from orderbell.channels import smsapi
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

CALLBACK = "https://orderbell.example/callbacks/smsapi/tok-abc123/receipt"


def msg(
    id_: int = 7, to: str = "+48600100200", text: str = "Order 1001 shipped"
) -> OutgoingMessage:
    return OutgoingMessage(id=id_, shop_id=1, channel=Channel.SMS, to=to, text=text)


@pytest.fixture
def server() -> Iterator[FakeGateway]:
    srv = FakeGateway("smsapi").start()
    yield srv
    srv.stop()


def gateway(base_url: str, **extra: Any) -> smsapi.SmsapiGateway:
    settings = {"access_token": SMSAPI_TOKEN, "sender": "Sklep", "base_url": base_url}
    settings.update(extra)
    return smsapi.build(settings, name="main", callback_url=CALLBACK)


# ---------------------------------------------------------------- sending


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("Order 1001 shipped: tracking YK123 {ok} [2] ~€", id="gsm7"),
        pytest.param("Zamówienie 1001 wysłane — dziękujemy! 📦", id="ucs2"),
    ],
)
def test_sends_text_intact_with_our_id_as_idx(server: FakeGateway, text: str) -> None:
    [res] = send(gateway(server.base_url), msg(text=text))
    assert res.outcome is Outcome.ACCEPTED, res
    assert res.provider_message_id and res.message_id == 7
    [sub] = server.submissions
    assert sub.fields["message"] == text
    assert sub.fields["to"] == "48600100200"
    assert sub.fields["from"] == "Sklep"
    assert sub.fields["idx"] == "7"
    assert sub.fields["encoding"] == "utf-8"
    assert sub.fields["notify_url"] == CALLBACK


def test_many_in_flight_each_get_their_own_result(server: FakeGateway) -> None:
    server.latency = 0.05
    batch = [msg(id_=i) for i in range(1, 101)]
    results = send(gateway(server.base_url, concurrency=50), *batch)
    assert sorted(r.message_id for r in results) == list(range(1, 101))
    assert {r.outcome for r in results} == {Outcome.ACCEPTED}
    assert len({r.provider_message_id for r in results}) == 100


@pytest.mark.parametrize(
    ("mode", "outcome", "code"),
    [
        pytest.param("invalid_number", Outcome.PERMANENT, "invalid_number:13", id="invalid-number"),
        pytest.param("no_funds", Outcome.RETRYABLE, "no_funds:103", id="no-funds"),
        pytest.param("throttled", Outcome.RETRYABLE, "throttled:203", id="throttled"),
        pytest.param("error500", Outcome.RETRYABLE, "http_500", id="server-error"),
        pytest.param("garbage", Outcome.AMBIGUOUS, "garbage", id="garbage"),
        pytest.param("timeout", Outcome.AMBIGUOUS, "timeout", id="timeout-after-send"),
    ],
)
def test_error_classes(server: FakeGateway, mode: str, outcome: Outcome, code: str) -> None:
    server.mode = mode
    server.hang = 2.0
    [res] = send(gateway(server.base_url, timeout_seconds=0.3), msg())
    assert (res.outcome, res.error_code) == (outcome, code), res
    assert server.submissions == []


def test_bad_token_is_an_account_problem_not_the_messages(server: FakeGateway) -> None:
    gw = smsapi.build(
        {"access_token": "wrong-token-123456", "base_url": server.base_url},
        name="main",
        callback_url=None,
    )
    [res] = send(gw, msg())
    assert (res.outcome, res.error_code) == (Outcome.RETRYABLE, "auth:101")
    assert "wrong-token" not in (res.error_message or "")


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    [res] = send(gateway(f"http://127.0.0.1:{port}"), msg())
    assert (res.outcome, res.error_code) == (Outcome.RETRYABLE, "connect")


def test_empty_text_is_permanent_without_a_request(server: FakeGateway) -> None:
    [res] = send(gateway(server.base_url), msg(text=""))
    assert res.outcome is Outcome.PERMANENT
    assert server.submissions == []


# ---------------------------------------------------------------- callbacks


def callback(query: dict[str, str], *, url: str = CALLBACK, method: str = "GET") -> Callback:
    return Callback(method=method, url=url, query=query, headers={}, body=b"")


@pytest.mark.parametrize(
    ("status", "state"),
    [
        pytest.param("404", DeliveryState.DELIVERED, id="delivered"),
        pytest.param("405", DeliveryState.UNDELIVERED, id="undelivered"),
        pytest.param("402", DeliveryState.UNDELIVERED, id="expired"),
        pytest.param("406", DeliveryState.FAILED, id="failed"),
        pytest.param("407", DeliveryState.FAILED, id="rejected"),
        pytest.param("403", DeliveryState.ACCEPTED, id="sent"),
        pytest.param("DELIVERED", DeliveryState.DELIVERED, id="by-name"),
    ],
)
def test_delivery_report(status: str, state: DeliveryState) -> None:
    gw = gateway("http://127.0.0.1:9")
    [receipt] = gw.parse_callback(
        callback({"MsgId": "ABC123", "status": status, "idx": "7", "donedate": "1795683600",
                  "username": "shop@example.com", "points": "0.16"})
    )  # fmt: skip
    assert isinstance(receipt, Receipt)
    assert receipt.state is state
    assert (receipt.message_id, receipt.provider_message_id) == (7, "ABC123")
    assert receipt.code in {status, "404"}
    assert receipt.at == datetime.fromtimestamp(1795683600, UTC)


def test_comma_joined_reports() -> None:
    gw = gateway("http://127.0.0.1:9")
    receipts = gw.parse_callback(
        callback({"MsgId": "A1,A2", "status": "404,406", "idx": "7,8", "donedate": "1,2"})
    )
    assert [(r.message_id, r.state) for r in receipts if isinstance(r, Receipt)] == [
        (7, DeliveryState.DELIVERED),
        (8, DeliveryState.FAILED),
    ]


def test_inbound_message() -> None:
    gw = gateway("http://127.0.0.1:9")
    [inbound] = gw.parse_callback(
        Callback(
            method="POST",
            url=CALLBACK.replace("/receipt", "/inbound"),
            query={},
            headers={},
            body=b"",
            form={"sms_from": "48600100200", "sms_to": "48799000111", "sms_text": "STOP",
                  "sms_date": "1795683600", "MsgId": "M1", "username": "u"},
        )
    )  # fmt: skip
    assert isinstance(inbound, Inbound)
    assert (inbound.sender, inbound.text, inbound.recipient) == (
        "48600100200",
        "STOP",
        "48799000111",
    )
    assert inbound.received_at == datetime.fromtimestamp(1795683600, UTC)


@pytest.mark.parametrize(
    ("url", "query", "status"),
    [
        pytest.param(CALLBACK.replace("tok-abc123", "tok-abc124"), {"MsgId": "A", "status": "404"}, 403, id="bad-token"),
        pytest.param(CALLBACK, {"what": "ever"}, 400, id="not-a-callback"),
        pytest.param(CALLBACK, {"MsgId": "A", "status": "999"}, 400, id="unknown-status"),
    ],
)  # fmt: skip
def test_bad_callbacks_are_rejected(url: str, query: dict[str, str], status: int) -> None:
    gw = gateway("http://127.0.0.1:9")
    with pytest.raises(CallbackRejected) as err:
        gw.parse_callback(callback(query, url=url))
    assert err.value.status_code == status


def test_username_must_match_when_configured() -> None:
    gw = gateway("http://127.0.0.1:9", username="shop@example.com")
    with pytest.raises(CallbackRejected):
        gw.parse_callback(callback({"MsgId": "A", "status": "404", "username": "other"}))
    assert gw.parse_callback(
        callback({"MsgId": "A", "status": "404", "username": "shop@example.com"})
    )


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        pytest.param({}, "settings.access_token", id="no-token"),
        pytest.param({"access_token": "a b"}, "settings.access_token", id="bad-token"),
        pytest.param({"access_token": SMSAPI_TOKEN, "sender": "WayTooLongSender"}, "settings.sender", id="long-sender"),
        pytest.param({"access_token": SMSAPI_TOKEN, "base_url": "ftp://x"}, "settings.base_url", id="bad-url"),
        pytest.param({"access_token": SMSAPI_TOKEN, "concurrency": 0}, "settings.concurrency", id="zero-concurrency"),
        pytest.param({"access_token": SMSAPI_TOKEN, "timeout_seconds": "soon"}, "settings.timeout_seconds", id="bad-timeout"),
    ],
)  # fmt: skip
def test_settings_validation_names_the_field(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        smsapi.validate(settings)
    assert err.value.field == field
    assert SMSAPI_TOKEN not in str(err.value)


def test_module_conventions() -> None:
    assert smsapi.KIND == "smsapi" and smsapi.CHANNEL is Channel.SMS
    assert {"access_token"} == smsapi.SECRET_FIELDS
    assert SMSAPI_TOKEN not in repr(gateway("http://127.0.0.1:9"))
