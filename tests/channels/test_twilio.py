"""The Twilio gateway against a loopback server speaking the Messages API, and its signed
status callbacks and inbound webhooks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from structlog.testing import capture_logs
from tests.gateway_servers import TWILIO_SID, TWILIO_TOKEN, FakeGateway
from tests.support import send_all as send

from orderbell.channels import twilio
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

CALLBACK = "https://orderbell.example/callbacks/twilio/Zx81Qa/receipt"
PHONE = "+14155550100"
FROM = "+14155550199"


def msg(id_: int = 7, to: str = PHONE, text: str = "Order 1001 shipped") -> OutgoingMessage:
    return OutgoingMessage(id=id_, shop_id=1, channel=Channel.SMS, to=to, text=text)


@pytest.fixture
def server() -> Iterator[FakeGateway]:
    srv = FakeGateway("twilio").start()
    yield srv
    srv.stop()


def gateway(base_url: str = "http://127.0.0.1:9", **extra: Any) -> twilio.TwilioGateway:
    settings = {
        "account_sid": TWILIO_SID,
        "auth_token": TWILIO_TOKEN,
        "from_number": FROM,
        "base_url": base_url,
    }
    settings.update(extra)
    return twilio.build(settings, name="main", callback_url=CALLBACK)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("Order 1001 shipped ^{}[]~|€", id="gsm7"),
        pytest.param("Siparişiniz kargoda 🚚 — teşekkürler", id="ucs2"),
    ],
)
def test_sends_text_intact_with_signed_status_callback(server: FakeGateway, text: str) -> None:
    [res] = send(gateway(server.base_url), msg(text=text))
    assert res.outcome is Outcome.ACCEPTED, res
    assert res.provider_message_id and res.provider_message_id.startswith("SM")
    assert res.segments == 1
    [sub] = server.submissions
    assert (sub.fields["To"], sub.fields["From"], sub.fields["Body"]) == (PHONE, FROM, text)
    callback = urlsplit(sub.fields["StatusCallback"])
    assert callback.path == urlsplit(CALLBACK).path
    assert dict(parse_qsl(callback.query)) == {"ob_mid": "7"}


def test_messaging_service_instead_of_from(server: FakeGateway) -> None:
    mg = "MG" + "ab" * 16
    gw = twilio.build(
        {"account_sid": TWILIO_SID, "auth_token": TWILIO_TOKEN, "messaging_service_sid": mg,
         "base_url": server.base_url},
        name="m", callback_url=None,
    )  # fmt: skip
    [res] = send(gw, msg())
    assert res.outcome is Outcome.ACCEPTED
    assert server.submissions[0].fields["MessagingServiceSid"] == mg
    assert "From" not in server.submissions[0].fields


@pytest.mark.parametrize(
    ("mode", "outcome", "code"),
    [
        pytest.param(
            "invalid_number", Outcome.PERMANENT, "invalid_number:21211", id="invalid-number"
        ),
        pytest.param("unsubscribed", Outcome.PERMANENT, "unsubscribed:21610", id="unsubscribed"),
        pytest.param("no_funds", Outcome.RETRYABLE, "auth:20003", id="suspended-account"),
        pytest.param("throttled", Outcome.RETRYABLE, "throttled:20429", id="throttled"),
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
    dump = repr(logs) + repr(res)
    assert TWILIO_TOKEN not in dump and PHONE not in dump and "Order 1001" not in dump


def test_wrong_auth_token(server: FakeGateway) -> None:
    [res] = send(gateway(server.base_url, auth_token="0" * 32), msg())
    assert (res.outcome, res.error_code) == (Outcome.RETRYABLE, "auth:20003")


# ---------------------------------------------------------------- signed callbacks


def signed(form: dict[str, str], url: str, token: str = TWILIO_TOKEN) -> Callback:
    return Callback(
        method="POST",
        url=url,
        query=dict(parse_qsl(urlsplit(url).query)),
        headers={"x-twilio-signature": twilio.signature(token, url, form)},
        body=b"",
        form=form,
    )


def test_signature_matches_twilios_documented_example() -> None:
    # The example of Twilio's webhook-security docs and its helper libraries' tests
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675310", "Digits": "1234",
              "From": "+14158675310", "To": "+18005551212"}  # fmt: skip
    assert twilio.signature("12345", url, params) == "GvWf1cFY/Q7PnoempGyD5oXAezc="


@pytest.mark.parametrize(
    ("status", "error", "state", "code"),
    [
        pytest.param("delivered", None, DeliveryState.DELIVERED, "delivered", id="delivered"),
        pytest.param("undelivered", "30003", DeliveryState.UNDELIVERED, "30003", id="undelivered"),
        pytest.param("failed", "30008", DeliveryState.FAILED, "30008", id="failed"),
        pytest.param("sent", None, DeliveryState.ACCEPTED, "sent", id="sent"),
        pytest.param("queued", None, DeliveryState.ACCEPTED, "queued", id="queued"),
    ],
)
def test_status_callback(status: str, error: str | None, state: DeliveryState, code: str) -> None:
    form = {"MessageSid": "SM" + "1" * 32, "MessageStatus": status, "AccountSid": TWILIO_SID,
            "From": FROM, "To": PHONE, "ApiVersion": "2010-04-01", "RawDlrDoneDate": "2611201005"}  # fmt: skip
    if error:
        form["ErrorCode"] = error
    [receipt] = gateway().parse_callback(signed(form, CALLBACK + "?ob_mid=7"))
    assert isinstance(receipt, Receipt)
    assert (receipt.state, receipt.code, receipt.message_id) == (state, code, 7)
    assert receipt.provider_message_id == "SM" + "1" * 32
    assert receipt.at == datetime(2026, 11, 20, 10, 5, tzinfo=UTC)


def test_inbound_webhook() -> None:
    form = {"MessageSid": "SM" + "2" * 32, "SmsStatus": "received", "AccountSid": TWILIO_SID,
            "From": PHONE, "To": FROM, "Body": "STOP", "NumMedia": "0", "NumSegments": "1"}  # fmt: skip
    url = CALLBACK.replace("/receipt", "/inbound")
    [inbound] = gateway().parse_callback(signed(form, url))
    assert isinstance(inbound, Inbound)
    assert (inbound.sender, inbound.text, inbound.recipient) == (PHONE, "STOP", FROM)


def test_signature_over_the_default_port_variant() -> None:
    form = {"MessageSid": "SM1", "MessageStatus": "delivered", "AccountSid": TWILIO_SID}
    cb = signed(form, "https://orderbell.example:443/callbacks/twilio/Zx81Qa/receipt")
    cb = Callback(method="POST", url=CALLBACK, query={}, headers=cb.headers, body=b"", form=form)
    assert gateway().parse_callback(cb)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param("missing", id="missing-signature"),
        pytest.param("wrong-key", id="signed-with-another-token"),
        pytest.param("changed-param", id="parameter-changed-after-signing"),
        pytest.param("changed-id", id="our-id-changed-in-url"),
        pytest.param("other-account", id="another-account"),
    ],
)
def test_bad_signatures_are_403(tamper: str) -> None:
    form = {"MessageSid": "SM1", "MessageStatus": "delivered", "AccountSid": TWILIO_SID}
    url = CALLBACK + "?ob_mid=7"
    cb = signed(form, url, token="f" * 32 if tamper == "wrong-key" else TWILIO_TOKEN)
    if tamper == "missing":
        cb = Callback(method="POST", url=url, query={}, headers={}, body=b"", form=form)
    elif tamper == "changed-param":
        cb = Callback(method="POST", url=url, query={}, headers=cb.headers, body=b"",
                      form={**form, "MessageStatus": "failed"})  # fmt: skip
    elif tamper == "changed-id":
        cb = Callback(method="POST", url=CALLBACK + "?ob_mid=8", query={}, headers=cb.headers,
                      body=b"", form=form)  # fmt: skip
    elif tamper == "other-account":
        cb = signed({**form, "AccountSid": "AC" + "9" * 32}, url)
    with pytest.raises(CallbackRejected) as err:
        gateway().parse_callback(cb)
    assert err.value.status_code == 403
    assert TWILIO_TOKEN not in str(err.value)


def test_form_in_raw_body_is_verified_too() -> None:
    form = {"MessageSid": "SM1", "MessageStatus": "delivered", "AccountSid": TWILIO_SID}
    headers = {"x-twilio-signature": twilio.signature(TWILIO_TOKEN, CALLBACK, form)}
    body = b"MessageSid=SM1&MessageStatus=delivered&AccountSid=" + TWILIO_SID.encode()
    cb = Callback(method="POST", url=CALLBACK, query={}, headers=headers, body=body)
    [receipt] = gateway().parse_callback(cb)
    assert isinstance(receipt, Receipt) and receipt.state is DeliveryState.DELIVERED


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        pytest.param({"auth_token": TWILIO_TOKEN, "from_number": FROM}, "settings.account_sid", id="no-sid"),
        pytest.param({"account_sid": "AC123", "auth_token": TWILIO_TOKEN, "from_number": FROM}, "settings.account_sid", id="bad-sid"),
        pytest.param({"account_sid": TWILIO_SID, "from_number": FROM}, "settings.auth_token", id="no-token"),
        pytest.param({"account_sid": TWILIO_SID, "auth_token": TWILIO_TOKEN}, "settings.from_number", id="no-sender"),
        pytest.param({"account_sid": TWILIO_SID, "auth_token": TWILIO_TOKEN, "from_number": "+0"}, "settings.from_number", id="bad-from"),
        pytest.param({"account_sid": TWILIO_SID, "auth_token": TWILIO_TOKEN, "from_number": FROM, "api_key_sid": "SK" + "a" * 32}, "settings.api_key_secret", id="key-without-secret"),
    ],
)  # fmt: skip
def test_settings_validation_names_the_field(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        twilio.validate(settings)
    assert err.value.field == field
    assert TWILIO_TOKEN not in str(err.value)


def test_module_conventions() -> None:
    assert twilio.KIND == "twilio" and twilio.CHANNEL is Channel.SMS
    assert {"auth_token", "api_key_secret"} == twilio.SECRET_FIELDS
    assert TWILIO_TOKEN not in repr(gateway())
