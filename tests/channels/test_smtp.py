"""The SMTP provider against a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Coroutine, Iterator
from dataclasses import replace
from email.message import Message
from typing import Any, TypeVar

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from tests.smtp_harness import Server, free_port, local_settings, start_server

from orderbell.channels.base import Attachment, Outcome, OutgoingMessage, SendResult
from orderbell.channels.smtp import SmtpProvider, SmtpSettings, build_email
from orderbell.domain.model import Channel

pytestmark = pytest.mark.smtp

INJ = "\r\nBcc: x@y.z"  #: a header injection attempt
BCC = "Bcc: x@y.z"

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def server() -> Iterator[Server]:
    srv = start_server()
    yield srv
    srv.controller.stop()


def msg(id_: int = 1, to: str = "jane@customer.example", **fields: Any) -> OutgoingMessage:
    base: dict[str, Any] = {"subject": "Your order #1001", "text": "Thanks for your order."}
    base.update(fields)
    return OutgoingMessage(id=id_, shop_id=7, channel=Channel.EMAIL, to=to, **base)


async def send_and_close(
    provider: SmtpProvider, *batches: list[OutgoingMessage]
) -> list[SendResult]:
    results: list[SendResult] = []
    try:
        for batch in batches:
            results.extend(await provider.send(batch))
    finally:
        await provider.close()
    return results


def deliver(settings: SmtpSettings, *batches: list[OutgoingMessage]) -> list[SendResult]:
    """Send the batches with a new provider in one event loop, then close it."""
    return run(send_and_close(SmtpProvider(settings), *batches))


def by_id(results: list[SendResult]) -> dict[int, SendResult]:
    return {r.message_id: r for r in results}


# -- content ---------------------------------------------------------------------------


def test_text_and_html_alternatives_round_trip(server: Server) -> None:
    provider = SmtpProvider(server.settings())
    [result] = run(send_and_close(provider, [msg(html="<p>Thanks for <b>your</b> order.</p>")]))

    assert result.outcome is Outcome.ACCEPTED
    [got] = server.handler.received
    assert got.mail_from == "orders@shop.example"
    assert got.rcpt_tos == ["jane@customer.example"]
    parsed = got.parsed()
    assert parsed["From"] == "Demo Shop <orders@shop.example>"
    assert parsed["To"] == "jane@customer.example"
    assert parsed["Subject"] == "Your order #1001"
    assert parsed["Date"] is not None
    assert parsed["Message-ID"].endswith("@shop.example>")
    assert result.provider_message_id == parsed["Message-ID"]
    assert parsed.get_content_type() == "multipart/alternative"
    plain = parsed.get_body(preferencelist=("plain",))
    html = parsed.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    assert plain.get_content().strip() == "Thanks for your order."
    assert html.get_content().strip() == "<p>Thanks for <b>your</b> order.</p>"


def test_text_only_non_ascii_and_leading_dot(server: Server) -> None:
    text = "Merhaba Ayşe,\n.this line starts with a dot\nŻółć 💐"
    m = msg(subject="Siparişiniz kargoda", text=text, sender="Çiçekçi <info@shop.example>")
    [result] = deliver(server.settings(), [m])

    assert result.outcome is Outcome.ACCEPTED
    parsed = server.handler.received[0].parsed()
    assert parsed.get_content_type() == "text/plain"
    assert parsed["Subject"] == "Siparişiniz kargoda"
    assert parsed["From"].addresses[0].display_name == "Çiçekçi"
    assert parsed.get_content().replace("\r\n", "\n").rstrip("\n") == text


def test_attachment_round_trip(server: Server) -> None:
    pdf = b"%PDF-1.4\n1 0 obj <<>> endobj\n\x00\xff\xfe binary tail %%EOF\n"
    m = msg(
        html="<p>Invoice attached</p>",
        attachments=(
            Attachment(filename="invoice-1001.pdf", content_type="application/pdf", data=pdf),
        ),
    )
    [result] = deliver(server.settings(), [m])

    assert result.outcome is Outcome.ACCEPTED
    parsed = server.handler.received[0].parsed()
    assert parsed.get_content_type() == "multipart/mixed"
    [part] = list(parsed.iter_attachments())
    assert isinstance(part, Message)
    assert part.get_filename() == "invoice-1001.pdf"
    assert part.get_content_type() == "application/pdf"
    assert part.get_payload(decode=True) == pdf
    html = parsed.get_body(preferencelist=("html",))
    assert html is not None and "Invoice attached" in html.get_content()


def test_reply_to_and_list_unsubscribe_headers(server: Server) -> None:
    m = msg(
        reply_to="Support <support@shop.example>",
        headers={
            "List-Unsubscribe": "<https://shop.example/u/abc123>, <mailto:unsub@shop.example>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    [result] = deliver(server.settings(), [m])

    assert result.outcome is Outcome.ACCEPTED
    parsed = server.handler.received[0].parsed()
    assert parsed["Reply-To"] == "Support <support@shop.example>"
    assert parsed["List-Unsubscribe"] == (
        "<https://shop.example/u/abc123>, <mailto:unsub@shop.example>"
    )
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_sender_name_without_address_uses_configured_address() -> None:
    settings = SmtpSettings(host="x", from_address="orders@shop.example", from_name="Default")
    built = build_email(msg(sender="Flower Shop"), settings)
    assert built["From"] == "Flower Shop <orders@shop.example>"
    assert build_email(msg(), settings)["From"] == "Default <orders@shop.example>"


# -- connections -----------------------------------------------------------------------


def test_twenty_messages_share_one_connection(server: Server) -> None:
    provider = SmtpProvider(server.settings())
    first = [msg(i, to=f"c{i}@customer.example") for i in range(10)]
    second = [msg(i, to=f"c{i}@customer.example") for i in range(10, 20)]
    results = run(send_and_close(provider, first, second))

    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 20
    assert len(server.handler.received) == 20
    assert len(server.handler.peers) == 1
    assert provider.connections_opened == 1


def test_reconnects_after_max_messages_per_connection(server: Server) -> None:
    provider = SmtpProvider(server.settings(max_messages_per_connection=5))
    results = run(send_and_close(provider, [msg(i) for i in range(12)]))

    assert all(r.outcome is Outcome.ACCEPTED for r in results)
    assert len(server.handler.peers) == 3


def test_reconnects_after_the_server_dropped_the_connection(server: Server) -> None:
    provider = SmtpProvider(server.settings())

    async def scenario() -> list[SendResult]:
        results = await provider.send([msg(1), msg(2)])
        server.drop_connections()
        await asyncio.sleep(0.2)
        results += await provider.send([msg(3), msg(4)])
        await provider.close()
        return results

    results = run(scenario())
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 4
    assert len(server.handler.received) == 4
    assert len(server.handler.peers) == 2


def test_connection_survives_a_new_event_loop(server: Server) -> None:
    provider = SmtpProvider(server.settings())
    assert run(provider.send([msg(1)]))[0].outcome is Outcome.ACCEPTED
    assert run(send_and_close(provider, [msg(2)]))[0].outcome is Outcome.ACCEPTED
    assert len(server.handler.received) == 2


# -- refusals and failures ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "reply", "outcome", "code"),
    [
        pytest.param(
            "reject",
            "550 5.1.1 <reject@customer.example>: no such user",
            Outcome.PERMANENT,
            "550",
            id="rcpt-550",
        ),
        pytest.param("gone", "553 5.1.3 bad mailbox", Outcome.PERMANENT, "553", id="rcpt-553"),
        pytest.param("later", "451 4.3.0 try again later", Outcome.RETRYABLE, "451", id="rcpt-451"),
        pytest.param("full", "452 4.2.2 mailbox full", Outcome.RETRYABLE, "452", id="rcpt-452"),
    ],
)
def test_recipient_refusals(
    server: Server, local: str, reply: str, outcome: Outcome, code: str
) -> None:
    server.handler.rcpt_replies[local] = reply
    batch = [msg(1), msg(2, to=f"{local}@customer.example"), msg(3)]
    results = by_id(deliver(server.settings(), batch))

    assert results[2].outcome is outcome
    assert results[2].error_code == code
    assert "reject@customer.example" not in (results[2].error_message or "")
    assert results[1].outcome is results[3].outcome is Outcome.ACCEPTED
    assert [r.rcpt_tos for r in server.handler.received] == [
        ["jane@customer.example"],
        ["jane@customer.example"],
    ]
    assert len(server.handler.peers) == 1  # the refusal did not cost the connection


@pytest.mark.parametrize(
    ("reply", "outcome", "code"),
    [
        pytest.param("554 5.7.1 message rejected as spam", Outcome.PERMANENT, "554", id="data-554"),
        pytest.param("452 4.3.1 insufficient storage", Outcome.RETRYABLE, "452", id="data-452"),
    ],
)
def test_data_refusals(server: Server, reply: str, outcome: Outcome, code: str) -> None:
    server.handler.data_reply = reply
    [result] = deliver(server.settings(), [msg()])
    assert (result.outcome, result.error_code) == (outcome, code)


def test_nothing_listening_is_retryable() -> None:
    results = deliver(local_settings(free_port(), timeout=2), [msg(1), msg(2)])
    assert {(r.outcome, r.error_code) for r in results} == {(Outcome.RETRYABLE, "connect_failed")}
    assert len(results) == 2


def test_silent_server_connect_timeout_is_retryable() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        [result] = deliver(local_settings(port, timeout=0.3), [msg()])
    assert (result.outcome, result.error_code) == (Outcome.RETRYABLE, "connect_failed")


def test_timeout_after_data_is_ambiguous(server: Server) -> None:
    server.handler.data_delay = 1.0
    provider = SmtpProvider(server.settings(timeout=0.3))
    [result] = run(send_and_close(provider, [msg()]))

    assert result.outcome is Outcome.AMBIGUOUS
    assert len(server.handler.received) == 1  # the content did reach the server


# -- refused before sending ------------------------------------------------------------


BAD_ATTACHMENT = Attachment(filename="a" + INJ, content_type="text/plain", data=b"x")


@pytest.mark.parametrize(
    ("fields", "settings_overrides"),
    [
        pytest.param({"subject": "Hi" + INJ}, {}, id="subject-crlf"),
        pytest.param({"subject": "Hi\nBcc: x@y.z"}, {}, id="subject-lf"),
        pytest.param({"subject": "Hi\x00there"}, {}, id="subject-nul"),
        pytest.param({"sender": "Shop\n" + BCC}, {}, id="sender-name-lf"),
        pytest.param({"sender": "Shop <a@shop.example>\r\nBcc: x@y.z"}, {}, id="sender-address"),
        pytest.param({}, {"from_name": "Demo\nBcc: x@y.z"}, id="settings-from-name"),
        pytest.param({"to": "jane@customer.example\r\nBcc: x@y.z"}, {}, id="to"),
        pytest.param({"reply_to": "a@b.example\nBcc: x@y.z"}, {}, id="reply-to"),
        pytest.param({"headers": {"List-Unsubscribe": "<x>" + INJ}}, {}, id="extra-header-value"),
        pytest.param({"headers": {"X-A\r\nBcc": "x@y.z"}}, {}, id="extra-header-name"),
        pytest.param({"attachments": (BAD_ATTACHMENT,)}, {}, id="attachment-filename"),
    ],
)
def test_header_injection_is_refused_and_nothing_is_sent(
    server: Server, fields: dict[str, Any], settings_overrides: dict[str, Any]
) -> None:
    provider = SmtpProvider(server.settings(**settings_overrides))
    [result] = run(send_and_close(provider, [msg(**fields)]))

    assert (result.outcome, result.error_code) == (Outcome.PERMANENT, "header_injection")
    assert server.handler.received == []
    assert server.handler.rcpts == []
    assert server.handler.peers == set()  # not even a connection


def test_injection_in_a_batch_does_not_leak_into_other_messages(server: Server) -> None:
    batch = [msg(1, subject="Hi" + INJ), msg(2, sender="Shop\n" + BCC), msg(3)]
    results = by_id(deliver(server.settings(), batch))

    assert results[1].error_code == results[2].error_code == "header_injection"
    assert results[3].outcome is Outcome.ACCEPTED
    assert server.handler.rcpts == ["jane@customer.example"]
    [got] = server.handler.received
    assert b"x@y.z" not in got.content
    assert got.parsed()["Bcc"] is None


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        pytest.param({"headers": {"Bcc": "x@y.z"}}, "invalid_header", id="reserved-bcc"),
        pytest.param({"headers": {"Subject": "other"}}, "invalid_header", id="reserved-subject"),
        pytest.param({"headers": {"X Bad": "v"}}, "invalid_header", id="space-in-name"),
        pytest.param({"to": "not-an-address"}, "invalid_address", id="bad-to"),
        pytest.param({"reply_to": "nobody"}, "invalid_address", id="bad-reply-to"),
        pytest.param({"to": "a" * 65 + "@example.com"}, "invalid_address", id="long-local-part"),
        pytest.param(
            {"to": "a" * 64 + "@" + "b" * 250 + ".com"}, "invalid_address", id="320-chars"
        ),
        pytest.param({"to": "a@b@example.com"}, "invalid_address", id="two-ats"),
        pytest.param({"channel": Channel.SMS}, "wrong_channel", id="sms"),
    ],
)
def test_invalid_messages_are_permanent(server: Server, fields: dict[str, Any], code: str) -> None:
    m = replace(msg(), **fields)
    [result] = deliver(server.settings(), [m])
    assert (result.outcome, result.error_code) == (Outcome.PERMANENT, code)
    assert server.handler.received == []


def test_idn_domain_is_sent_as_punycode(server: Server) -> None:
    [result] = deliver(server.settings(), [msg(to="jane@örnek.com.tr")])
    assert result.outcome is Outcome.ACCEPTED
    assert server.handler.received[0].rcpt_tos == ["jane@xn--rnek-4qa.com.tr"]


def test_password_is_not_in_repr() -> None:
    settings = SmtpSettings(host="h", from_address="a@b.example", username="u", password="s3cret!")
    assert "s3cret!" not in repr(settings)
    assert "username='u'" in repr(settings)


# -- TLS ---------------------------------------------------------------------------------

trustme = pytest.importorskip("trustme")


@pytest.fixture(scope="module")
def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


def _authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"shop", b"pw")
    return AuthResult(success=ok, handled=False)


def test_starttls_with_login(tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls_contexts
    srv = start_server(
        tls_context=server_ctx,
        require_starttls=True,
        authenticator=_authenticator,
        auth_required=True,
    )
    try:
        settings = srv.settings(
            security="starttls", username="shop", password="pw", tls_context=client_ctx
        )
        results = deliver(settings, [msg(1), msg(2)])
        assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 2
        assert len(srv.handler.received) == 2

        bad = replace(settings, password="wrong")
        [result] = deliver(bad, [msg(3)])
        assert (result.outcome, result.error_code) == (Outcome.RETRYABLE, "smtp_auth")
    finally:
        srv.controller.stop()


def test_starttls_rejects_an_untrusted_certificate(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    srv = start_server(tls_context=tls_contexts[0], require_starttls=True)
    try:
        settings = srv.settings(security="starttls", tls_context=ssl.create_default_context())
        [result] = deliver(settings, [msg()])
        assert result.outcome is Outcome.RETRYABLE
        assert srv.handler.received == []
    finally:
        srv.controller.stop()
