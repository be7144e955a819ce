"""The SMTP module as a gateway: per-shop settings validated and built into a provider,
internationalised addresses (SMTPUTF8), display names, and no callbacks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tests.smtp_harness import Server, start_server
from tests.support import send_all as send

from orderbell.channels import smtp
from orderbell.channels.base import Callback, CallbackRejected, Outcome, OutgoingMessage
from orderbell.domain.model import Channel
from orderbell.errors import InvalidInput

pytestmark = pytest.mark.smtp

GOOD = {"host": "smtp.shop.example", "from_address": "Orders@Shop.example"}


def msg(id_: int = 1, to: str = "jane@customer.example", **fields: Any) -> OutgoingMessage:
    base: dict[str, Any] = {"subject": "Your order", "text": "Thanks."}
    base.update(fields)
    return OutgoingMessage(id=id_, shop_id=7, channel=Channel.EMAIL, to=to, **base)


@pytest.fixture
def utf8_server() -> Iterator[Server]:
    srv = start_server(enable_SMTPUTF8=True)
    yield srv
    srv.controller.stop()


@pytest.fixture
def server() -> Iterator[Server]:
    """A server without SMTPUTF8 (aiosmtpd offers it by default)."""
    srv = start_server(enable_SMTPUTF8=False)
    yield srv
    srv.controller.stop()


def test_module_declares_the_gateway_conventions() -> None:
    assert smtp.KIND == "smtp"
    assert smtp.CHANNEL is Channel.EMAIL
    assert {"password"} == set(smtp.SECRET_FIELDS)


def test_validate_normalises_and_fills_defaults() -> None:
    out = smtp.validate({**GOOD, "username": "u", "password": "p", "from_name": " Flower Shop "})
    assert out == {
        "host": "smtp.shop.example",
        "port": 587,
        "security": "starttls",
        "username": "u",
        "password": "p",
        "from_address": "Orders@shop.example",
        "from_name": "Flower Shop",
        "timeout": 10.0,
        "max_messages_per_connection": 100,
    }
    assert smtp.validate({**GOOD, "security": "tls"})["port"] == 465
    assert smtp.validate({**GOOD, "security": "none", "port": 2525})["port"] == 2525


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        pytest.param({"from_address": "a@b.example"}, "settings.host", id="no-host"),
        pytest.param({**GOOD, "host": "smtp.example\r\nX: y"}, "settings.host", id="host-crlf"),
        pytest.param({**GOOD, "host": "a b"}, "settings.host", id="host-space"),
        pytest.param({**GOOD, "port": 0}, "settings.port", id="port-zero"),
        pytest.param({**GOOD, "port": "25"}, "settings.port", id="port-string"),
        pytest.param({**GOOD, "port": True}, "settings.port", id="port-bool"),
        pytest.param({**GOOD, "port": 25.5}, "settings.port", id="port-fraction"),
        pytest.param({**GOOD, "security": "ssl"}, "settings.security", id="security"),
        pytest.param({**GOOD, "password": "p"}, "settings.username", id="password-alone"),
        pytest.param({**GOOD, "password": 5}, "settings.password", id="password-number"),
        pytest.param({"host": "h"}, "settings.from_address", id="no-from"),
        pytest.param({**GOOD, "from_address": "nobody"}, "settings.from_address", id="bad-from"),
        pytest.param(
            {**GOOD, "from_address": "a@b.c\r\nBcc: x@y.z"}, "settings.from_address", id="from-crlf"
        ),
        pytest.param(
            {**GOOD, "from_address": "用户@例子.广告"}, "settings.from_address", id="from-utf8"
        ),
        pytest.param({**GOOD, "from_name": "A\nBcc: x"}, "settings.from_name", id="name-lf"),
        pytest.param({**GOOD, "from_name": "A <b@c.d>"}, "settings.from_name", id="name-angle"),
        pytest.param({**GOOD, "from_name": "x" * 101}, "settings.from_name", id="name-long"),
        pytest.param({**GOOD, "timeout": 0}, "settings.timeout", id="timeout"),
        pytest.param(
            {**GOOD, "max_messages_per_connection": 0},
            "settings.max_messages_per_connection",
            id="per-connection",
        ),
        pytest.param({**GOOD, "tls_verify": False}, "settings.tls_verify", id="unknown-key"),
    ],
)
def test_validate_names_the_bad_setting(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        smtp.validate(settings)
    assert info.value.field == field


def test_build_sends_through_the_shops_server_and_reuses_the_connection(server: Server) -> None:
    provider = smtp.build(
        {"host": "127.0.0.1", "port": server.port, "security": "none", **_from()},
        name="shop-smtp",
        callback_url=None,
    )
    assert provider.name == "shop-smtp"
    assert "secret" not in repr(provider.settings)
    results = send(provider, msg(1), msg(2), msg(3))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 3
    assert len(server.handler.peers) == 1
    mail = server.handler.received[0].parsed()
    assert mail["From"] == '"Shop, Inc." <orders@shop.example>'
    assert mail["From"].addresses[0].display_name == "Shop, Inc."


def _from() -> dict[str, Any]:
    return {"from_address": "orders@shop.example", "from_name": "Shop, Inc.", "password": None}


def test_smtp_has_no_callbacks() -> None:
    provider = smtp.build({**GOOD}, name="x", callback_url=None)
    callback = Callback(method="POST", url="http://x/", query={}, headers={}, body=b"")
    with pytest.raises(CallbackRejected) as info:
        provider.parse_callback(callback)
    assert info.value.reason == "no callbacks"


def test_display_name_with_comma_and_quotes_round_trips(server: Server) -> None:
    provider = smtp.SmtpProvider(server.settings())
    [result] = send(provider, msg(sender='Jan "the florist", Ltd <jan@shop.example>'))
    assert result.outcome is Outcome.ACCEPTED
    parsed = server.handler.received[0].parsed()
    [sender] = parsed["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ('Jan "the florist", Ltd', "jan@shop.example")


# -- internationalised addresses -------------------------------------------------------


def test_idn_domain_goes_out_as_punycode_without_smtputf8(server: Server) -> None:
    [result] = send(smtp.SmtpProvider(server.settings()), msg(to="user@bücher.de"))
    assert result.outcome is Outcome.ACCEPTED
    got = server.handler.received[0]
    assert got.rcpt_tos == ["user@xn--bcher-kva.de"]
    assert b"To: user@xn--bcher-kva.de" in got.content


def test_utf8_local_part_uses_smtputf8_when_the_server_offers_it(utf8_server: Server) -> None:
    [result] = send(smtp.SmtpProvider(utf8_server.settings()), msg(to="用户@例子.广告"))
    assert result.outcome is Outcome.ACCEPTED
    got = utf8_server.handler.received[0]
    assert got.rcpt_tos == ["用户@xn--fsqu00a.xn--4rr70v"]
    assert "To: 用户@xn--fsqu00a.xn--4rr70v\r\n".encode() in got.content  # raw UTF-8 header


def test_utf8_local_part_is_permanent_when_the_server_lacks_smtputf8(server: Server) -> None:
    [result] = send(smtp.SmtpProvider(server.settings()), msg(to="用户@例子.广告"))
    assert (result.outcome, result.error_code) == (Outcome.PERMANENT, "smtputf8_unsupported")
    assert server.handler.rcpts == []
