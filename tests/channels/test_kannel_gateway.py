"""The Kannel gateway: settings, the sendsms request, smsbox's answers, and the delivery reports
and inbound messages Kannel calls back with (recorded from Kannel 1.4.5 in
tests/fixtures/kannel/callbacks.json). The tests with the `kannel` fixture send through real
Kannel (bearerbox + smsbox + fakesmsc)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from tests.kannel_harness import PASSWORD, Kannel
from tests.support import send_all

from orderbell.channels import kannel as kannel_gw
from orderbell.channels import registry
from orderbell.channels.base import (
    Callback,
    CallbackRejected,
    DeliveryState,
    Inbound,
    Outcome,
    OutgoingMessage,
    Receipt,
)
from orderbell.channels.gateway_client import Reply
from orderbell.domain.model import Channel
from orderbell.errors import InvalidInput

CALLBACK = "https://orderbell.example/v1/callbacks/tok-abc123"
RECORDED: dict[str, str] = json.loads(
    (Path(__file__).parent.parent / "fixtures" / "kannel" / "callbacks.json").read_text()
)
SETTINGS = {"base_url": "http://127.0.0.1:9", "username": "shop", "password": "s3cret-pass"}


def msg(
    id_: int = 7, to: str = "+905321234567", text: str = "Order A-1 shipped"
) -> OutgoingMessage:
    return OutgoingMessage(id=id_, shop_id=1, channel=Channel.SMS, to=to, text=text)


def gateway(callback_url: str | None = CALLBACK, **extra: Any) -> kannel_gw.KannelGateway:
    return kannel_gw.build({**SETTINGS, **extra}, name="main", callback_url=callback_url)


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        pytest.param({"username": "u", "password": "p"}, "settings.base_url", id="no-base-url"),
        pytest.param({**SETTINGS, "base_url": "ftp://kannel"}, "settings.base_url", id="bad-base-url"),
        pytest.param({**SETTINGS, "username": ""}, "settings.username", id="no-username"),
        pytest.param({**SETTINGS, "password": None}, "settings.password", id="no-password"),
        pytest.param({**SETTINGS, "password": "a\nb"}, "settings.password", id="password-newline"),
        pytest.param({**SETTINGS, "sender": "WayTooLongSender"}, "settings.sender", id="long-sender"),
        pytest.param({**SETTINGS, "smsc_id": "a b"}, "settings.smsc_id", id="bad-smsc-id"),
        pytest.param({**SETTINGS, "sendsms_path": "cgi-bin"}, "settings.sendsms_path", id="relative-path"),
        pytest.param({**SETTINGS, "concurrency": 0}, "settings.concurrency", id="zero-concurrency"),
        pytest.param({**SETTINGS, "timeout_seconds": "soon"}, "settings.timeout_seconds", id="bad-timeout"),
    ],
)  # fmt: skip
def test_settings_validation_names_the_field(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        kannel_gw.validate(settings)
    assert err.value.field == field
    assert "s3cret-pass" not in str(err.value)


def test_module_conventions_and_defaults() -> None:
    assert (
        "kannel",
        Channel.SMS,
        frozenset({"password"}),
    ) == (kannel_gw.KIND, kannel_gw.CHANNEL, kannel_gw.SECRET_FIELDS)
    values = kannel_gw.validate({**SETTINGS, "base_url": "http://127.0.0.1:13013/"})
    assert values["base_url"] == "http://127.0.0.1:13013"
    assert values["sendsms_path"] == "/cgi-bin/sendsms"
    assert "s3cret-pass" not in repr(gateway())


# ---------------------------------------------------------------- the request


def query_of(gw: kannel_gw.KannelGateway, message: OutgoingMessage) -> dict[str, str]:
    request = gw.request_for(message)
    assert (request.method, request.path) == ("GET", "/cgi-bin/sendsms")
    assert request.query is not None
    return dict(request.query)


@pytest.mark.parametrize(
    ("text", "coding"),
    [
        pytest.param("Order A-1 shipped {ok} [2] ~€ ^", None, id="gsm7-with-extension"),
        pytest.param("Siparişiniz yolda — teşekkürler! 📦", "2", id="turkish-emoji-ucs2"),
        pytest.param("Zamówienie wysłane", "2", id="polish-ucs2"),
    ],
)
def test_request_carries_text_in_utf8_and_ucs2_only_when_needed(
    text: str, coding: str | None
) -> None:
    query = query_of(gateway(sender="Sklep"), msg(text=text))
    assert query["text"] == text and query["charset"] == "UTF-8"
    assert query.get("coding") == coding
    assert (query["to"], query["from"], query["username"]) == ("+905321234567", "Sklep", "shop")
    assert query["password"] == "s3cret-pass"


def test_dlr_url_names_our_message_and_kannels_escapes() -> None:
    query = query_of(gateway(smsc_id="smpp-1"), msg(id_=42))
    assert query["dlr-mask"] == "31" and query["smsc"] == "smpp-1"
    url = urlsplit(query["dlr-url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == CALLBACK
    assert dict(parse_qsl(url.query)) == {
        "mid": "42", "kind": "dlr", "type": "%d", "reply": "%A", "at": "%T", "smsc_msgid": "%F",
    }  # fmt: skip
    assert "from" not in query  # no sender: Kannel's own default applies


def test_no_callback_url_means_no_reports_requested() -> None:
    query = query_of(gateway(callback_url=None), msg())
    assert "dlr-url" not in query and "dlr-mask" not in query


def test_empty_text_is_permanent_without_a_request() -> None:
    [res] = send_all(gateway(), msg(text=""))
    assert (res.outcome, res.error_code) == (Outcome.PERMANENT, "rejected")


# ---------------------------------------------------------------- smsbox's answers


@pytest.mark.parametrize(
    ("status", "body", "outcome", "code"),
    [
        pytest.param(202, "0: Accepted for delivery", Outcome.ACCEPTED, None, id="accepted"),
        pytest.param(202, "3: Queued for later delivery", Outcome.ACCEPTED, None, id="queued"),
        pytest.param(403, "Authorization failed for sendsms", Outcome.RETRYABLE, "auth", id="auth"),
        pytest.param(400, "Sender missing and no global set, rejected", Outcome.RETRYABLE, "config:sender", id="no-sender"),
        pytest.param(400, "Missing receiver number, rejected", Outcome.PERMANENT, "invalid_number", id="no-receiver"),
        pytest.param(400, "Number(s) has/have been denied by white- and/or black-lists.", Outcome.PERMANENT, "invalid_number:denied", id="denied-number"),
        pytest.param(400, "Coding field misformed, rejected", Outcome.PERMANENT, "rejected", id="misformed"),
        pytest.param(404, "Unknown service", Outcome.PERMANENT, "http_404", id="wrong-path"),
        pytest.param(503, "Not routable. Do not try again.", Outcome.PERMANENT, "rejected:not_routable", id="not-routable"),
        pytest.param(503, "Temporal failure, try again later.", Outcome.RETRYABLE, "provider_error:temporary", id="temporal-failure"),
        pytest.param(500, "", Outcome.RETRYABLE, "http_500", id="server-error"),
        pytest.param(504, "", Outcome.AMBIGUOUS, "http_504", id="gateway-timeout"),
        pytest.param(202, "<html>proxy</html>", Outcome.AMBIGUOUS, "garbage", id="garbage-2xx"),
    ],
)  # fmt: skip
def test_sendsms_answers_are_classified(
    status: int, body: str, outcome: Outcome, code: str | None
) -> None:
    res = gateway().interpret(msg(), Reply(status=status, body=body.encode()))
    assert (res.outcome, res.error_code) == (outcome, code), res
    assert res.provider_message_id is None


# ---------------------------------------------------------------- callbacks


def recorded(
    name: str, *, host: str = "https://orderbell.example", token: str = "tok-abc123"
) -> Callback:
    path = RECORDED[name].replace("TOKEN", token)
    url = host + path
    return Callback(
        method="GET", url=url, query=dict(parse_qsl(urlsplit(url).query)), headers={}, body=b""
    )


def dlr(**query: str) -> Callback:
    params = {"mid": "7", "kind": "dlr", "reply": "", "at": "1796157022", **query}
    url = CALLBACK + "?" + "&".join(f"{k}={v}" for k, v in params.items())
    return Callback(method="GET", url=url, query=params, headers={}, body=b"")


def test_recorded_reports_from_the_fake_smsc() -> None:
    [ack] = gateway().parse_callback(recorded("dlr-smsc-ack"))
    [done] = gateway().parse_callback(recorded("dlr-delivered"))
    assert isinstance(ack, Receipt) and isinstance(done, Receipt)
    assert (ack.state, ack.message_id, ack.code) == (DeliveryState.ACCEPTED, 7, "8:ACK/")
    assert (done.state, done.message_id, done.code) == (DeliveryState.DELIVERED, 7, "1")
    assert done.provider_message_id == "29ab9278-c76c-4ab1-8532-e00741367184"
    assert done.at == datetime.fromtimestamp(1796157022, UTC)


@pytest.mark.parametrize(
    ("kind", "reply", "state", "code"),
    [
        pytest.param("1", "", DeliveryState.DELIVERED, "1", id="delivered"),
        pytest.param("2", "", DeliveryState.UNDELIVERED, "2", id="undelivered"),
        pytest.param("4", "", DeliveryState.ACCEPTED, "4", id="queued-on-smsc"),
        pytest.param("8", "ACK/", DeliveryState.ACCEPTED, "8:ACK/", id="smsc-ack"),
        pytest.param("16", "NACK/0x0000000b/Invalid Destination Address", DeliveryState.FAILED,
                     "16:NACK/0x0000000b/Invalid Destination Address", id="smsc-nack"),
        pytest.param("2", "id:1 sub:001 dlvrd:000 submit date:2611200900 done date:2611200905 stat:UNDELIV err:001 text:Order A-1 ship",
                     DeliveryState.UNDELIVERED, "2:UNDELIV:001", id="smpp-receipt-without-text"),
    ],
)  # fmt: skip
def test_delivery_report_types(kind: str, reply: str, state: DeliveryState, code: str) -> None:
    [receipt] = gateway().parse_callback(dlr(type=kind, reply=reply))
    assert isinstance(receipt, Receipt)
    assert (receipt.state, receipt.message_id, receipt.code) == (state, 7, code)
    assert "Order" not in (receipt.code or "")


@pytest.mark.parametrize(
    ("name", "sender", "text"),
    [
        pytest.param("inbound-gsm", "905321234567", "Where  is my parcel?", id="gsm-two-spaces-kept"),
        pytest.param("inbound-ucs2", "+48600100200", "Zażółć  gęślą jaźń, teşekkürler 📦", id="ucs2-utf16be-bytes"),
    ],
)  # fmt: skip
def test_recorded_inbound_messages_keep_their_text(name: str, sender: str, text: str) -> None:
    [inbound] = gateway().parse_callback(recorded(name))
    assert isinstance(inbound, Inbound)
    assert (inbound.sender, inbound.text, inbound.recipient) == (sender, text, "SHOP")
    assert inbound.provider_message_id and inbound.received_at is not None


@pytest.mark.parametrize(
    ("callback", "status"),
    [
        pytest.param(recorded("dlr-delivered", token="tok-abc124"), 403, id="bad-token"),
        pytest.param(recorded("inbound-gsm", token="tok-abc12"), 403, id="token-prefix"),
        pytest.param(dlr(type="1", mid=""), 400, id="no-message-id"),
        pytest.param(dlr(type="0"), 400, id="unknown-type"),
        pytest.param(dlr(type="%d"), 400, id="unsubstituted-escape"),
        pytest.param(dlr(type="1", mid="²"), 400, id="superscript-digit-id"),
        pytest.param(dlr(type="²"), 400, id="superscript-digit-type"),
        pytest.param(dlr(type="1", mid="1" * 23), 400, id="id-past-bigint"),
        pytest.param(dlr(type="1", kind="other"), 400, id="unknown-kind"),
        pytest.param(Callback(method="GET", url=CALLBACK + "?kind=inbound&text=hi", query={"kind": "inbound", "text": "hi"}, headers={}, body=b""), 400, id="inbound-without-sender"),
    ],
)  # fmt: skip
def test_bad_callbacks_are_rejected(callback: Callback, status: int) -> None:
    with pytest.raises(CallbackRejected) as err:
        gateway().parse_callback(callback)
    assert err.value.status_code == status


@pytest.mark.parametrize("charset", ["idna", "punycode", "x-unknown", "binary"])
def test_an_inbound_text_in_an_odd_charset_is_decoded_not_a_crash(charset: str) -> None:
    """Bytes the named codec refuses (idna raises UnicodeError, not a decode error) fall back
    to UTF-8 with replacement characters."""
    query = {"kind": "inbound", "from": "48600100200", "text": "h%FFi", "coding": "0",
             "charset": charset}  # fmt: skip
    url = CALLBACK + "?" + "&".join(f"{k}={v}" for k, v in query.items())
    [inbound] = gateway().parse_callback(
        Callback(method="GET", url=url, query={**query, "text": "h\ufffdi"}, headers={}, body=b"")
    )
    assert isinstance(inbound, Inbound) and inbound.text == "h\ufffdi"


def test_callback_answer_is_empty_so_kannel_texts_nothing_back() -> None:
    assert registry.load("kannel").callback_response == b""


# ---------------------------------------------------------------- real Kannel


def test_real_kannel_accepts_and_delivers_text_intact(kannel: Kannel) -> None:
    kannel.start()
    texts = ["Order A-1 shipped {ok} [2] ~€ ^", "Siparişiniz yolda — İğüşöç, Zażółć gęślą 📦"]
    results = send_all(
        kannel.gateway(sender="Shop"),
        *(msg(id_=i, text=t) for i, t in enumerate(texts, 1)),
    )
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 2, results
    got = kannel.phone.wait_for(2, timeout=5)
    assert sorted(s.text for s in got) == sorted(texts)
    assert {(s.sender, s.receiver) for s in got} == {("Shop", "+905321234567")}


@pytest.mark.parametrize(
    ("settings", "to", "outcome", "code"),
    [
        pytest.param({"password": "wrong-password"}, "+905321234567", Outcome.RETRYABLE, "auth", id="wrong-password"),
        pytest.param({}, "not-a-number", Outcome.PERMANENT, "invalid_number:denied", id="bad-number"),
        pytest.param({"sender": None}, "+905321234567", Outcome.RETRYABLE, "config:sender", id="no-sender"),
    ],
)  # fmt: skip
def test_real_kannel_refusals(
    kannel: Kannel, settings: dict[str, Any], to: str, outcome: Outcome, code: str
) -> None:
    kannel.start()
    [res] = send_all(kannel.gateway(**{"sender": "Shop", **settings}), msg(to=to))
    assert (res.outcome, res.error_code) == (outcome, code), res
    assert PASSWORD not in (res.error_message or "")
    assert kannel.phone.received() == []


def test_smsbox_down_is_retryable(kannel: Kannel) -> None:
    kannel.start()
    kannel.stop_smsbox()
    [res] = send_all(kannel.gateway(sender="Shop"), msg())
    assert (res.outcome, res.error_code) == (Outcome.RETRYABLE, "connect")
