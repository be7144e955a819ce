"""Bad e-mail input through the whole product, against a real SMTP server whose transcript
(the raw DATA) proves what did and did not go out.

Decisions these tests pin down:
- CR/LF/NUL in an address is refused when the event comes in (422 naming the field).
- A subject that *renders* with a newline (from an order field) is rejected, not folded: the
  message fails with ``render_error: the subject must be a single line`` and nothing is sent.
- An IDN domain is accepted and goes out as punycode; a non-ASCII local part is accepted
  (email-validator allows it) and goes out with SMTPUTF8, which aiosmtpd offers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.conftest import make_shop
from tests.smtp_harness import Server, start_server
from tests.support import drain, event, messages, rule, template

from orderbell.channels.smtp import SmtpProvider
from orderbell.clock import ManualClock
from orderbell.compose import Services
from orderbell.domain.model import Channel
from orderbell.store.schema import customers, events

pytestmark = pytest.mark.smtp

AT = "2026-11-20T10:00:00+01:00"


@pytest.fixture
def smtp(services: Services) -> Iterator[Server]:
    server = start_server()  # aiosmtpd offers SMTPUTF8
    provider = SmtpProvider(server.settings(from_address="orders@shop.example"))
    services.providers[Channel.EMAIL] = provider
    yield server
    asyncio.run(provider.close())
    server.controller.stop()


@pytest.fixture
def shop(client: TestClient, clock: ManualClock) -> dict[str, Any]:
    clock.set(datetime.fromisoformat(AT))
    shop = make_shop(client, "mailshop", timezone="Europe/Warsaw", country="PL")
    tid = template(
        client,
        shop,
        "Hello {{ customer_name }}, order {{ order_code }} is confirmed.",
        channel="email",
        name="confirmation",
        subject="Order {{ order_code }} for {{ customer_name }}",
        html="<p>Hello {{ customer_name }}, order <b>{{ order_code }}</b> is confirmed.</p>",
    )
    rule(
        client,
        shop,
        name="confirm",
        trigger={"event_type": "order.created"},
        action={"channel": "email", "template_id": tid},
    )
    return shop


def post(
    client: TestClient, shop: dict[str, Any], customer: dict[str, Any], code: str = "A-1"
) -> httpx.Response:
    body = {
        "type": "order.created",
        "occurred_at": AT,
        "order": {"code": code},
        "customer": customer,
    }
    return client.post("/v1/events", headers=shop["auth"], json=body)


def stored(services: Services) -> tuple[int, int]:
    with services.engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(events)).scalar_one(),
            conn.execute(select(func.count()).select_from(customers)).scalar_one(),
        )


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("a@b.c\r\nBcc: x@y.z", id="crlf-bcc"),
        pytest.param("a@b.c\nBcc: x@y.z", id="lf-bcc"),
        pytest.param("a@b.c\rBcc: x@y.z", id="cr-bcc"),
        pytest.param("jan@customer.example\x00", id="nul"),
        pytest.param("a" * 64 + "@" + "b" * 251 + ".com", id="320-characters"),
        pytest.param("Jan <jan@customer.example>", id="display-name"),
    ],
)
def test_a_bad_address_is_refused_at_the_door_and_nothing_goes_out(
    client: TestClient, services: Services, shop: dict[str, Any], smtp: Server, address: str
) -> None:
    assert len("a" * 64 + "@" + "b" * 251 + ".com") == 320
    r = post(client, shop, {"id": "c1", "email": address})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "customer.email"
    assert stored(services) == (0, 0)
    drain(services)
    assert smtp.handler.received == [] and smtp.handler.rcpts == []


def test_injection_through_a_stored_recipient_never_reaches_the_transcript(
    client: TestClient, services: Services, shop: dict[str, Any], smtp: Server
) -> None:
    """Defence in depth: even an address written around the API (an old row) is refused by
    the provider before MAIL FROM, and the server sees no extra header or recipient."""
    assert post(client, shop, {"id": "c1", "email": "jan@customer.example"}).status_code == 201
    with services.engine.begin() as conn:
        conn.execute(customers.update().values(email="jan@customer.example\r\nBcc: x@y.z"))
    post(client, shop, {"id": "c1"}, code="A-2")
    drain(services)
    raw = b"".join(r.content for r in smtp.handler.received)
    assert b"Bcc" not in raw and b"x@y.z" not in raw
    assert all("x@y.z" not in rcpt for rcpt in smtp.handler.rcpts)
    statuses = sorted(m["status"] for m in messages(client, shop))
    assert statuses == ["failed", "failed"]
    assert all("header_injection" in m["reason"] for m in messages(client, shop))


def test_subject_rendered_with_a_newline_is_rejected_not_sent(
    client: TestClient, services: Services, shop: dict[str, Any], smtp: Server
) -> None:
    r = post(client, shop, {"id": "c1", "email": "jan@customer.example"}, code="A-1\r\nBcc: x@y.z")
    assert r.status_code == 201, r.text  # an order code may hold anything but NUL
    drain(services)
    [message] = messages(client, shop)
    assert message["status"] == "failed"
    assert message["reason"] == "render_error: the subject must be a single line"
    assert smtp.handler.received == [] and smtp.handler.rcpts == []


def test_customer_name_with_markup_is_escaped_in_html_and_literal_in_text(
    client: TestClient, services: Services, shop: dict[str, Any], smtp: Server
) -> None:
    name = "<img src=x onerror=alert(1)> Jan"
    r = post(client, shop, {"id": "c1", "name": name, "email": "jan@customer.example"})
    assert r.status_code == 201
    assert drain(services) == 1
    [received] = smtp.handler.received
    mail = received.parsed()
    html = mail.get_body(("html",))
    text = mail.get_body(("plain",))
    assert html is not None and text is not None
    assert "&lt;img src=x onerror=alert(1)&gt; Jan" in html.get_content()
    assert "<img" not in html.get_content()
    assert f"Hello {name}, order A-1" in text.get_content()
    assert mail["Subject"] == f"Order A-1 for {name}"  # a header is text: literal, encoded


def test_idn_domain_is_accepted_and_sent_as_punycode(
    client: TestClient, services: Services, shop: dict[str, Any], smtp: Server
) -> None:
    r = post(client, shop, {"id": "c1", "email": "user@Bücher.de"})
    assert r.status_code == 201, r.text
    customer = client.get("/v1/customers", headers=shop["auth"]).json()["items"][0]
    assert customer["email"] == "user@bücher.de"  # stored normalised, in Unicode
    assert drain(services) == 1
    [received] = smtp.handler.received
    assert received.rcpt_tos == ["user@xn--bcher-kva.de"]
    assert b"To: user@xn--bcher-kva.de\r\n" in received.content


def test_unicode_local_part_goes_out_with_smtputf8(
    client: TestClient, services: Services, shop: dict[str, Any], smtp: Server
) -> None:
    r = post(client, shop, {"id": "c1", "email": "用户@例子.广告"})
    assert r.status_code == 201, r.text
    assert drain(services) == 1
    [received] = smtp.handler.received
    assert received.rcpt_tos == ["用户@xn--fsqu00a.xn--4rr70v"]
    assert [m["status"] for m in messages(client, shop)] == ["sent"]


def test_unicode_local_part_fails_permanently_without_smtputf8(
    client: TestClient, services: Services, shop: dict[str, Any]
) -> None:
    server = start_server(enable_SMTPUTF8=False)
    provider = SmtpProvider(server.settings(from_address="orders@shop.example"))
    services.providers[Channel.EMAIL] = provider
    try:
        assert post(client, shop, {"id": "c1", "email": "用户@例子.广告"}).status_code == 201
        drain(services)
        [message] = messages(client, shop)
        assert message["status"] == "failed"
        assert "smtputf8_unsupported" in message["reason"]
        assert server.handler.rcpts == []
    finally:
        asyncio.run(provider.close())
        server.controller.stop()


def test_a_good_customer_is_unaffected_by_a_bad_one_in_the_same_batch(
    client: TestClient, services: Services, shop: dict[str, Any], smtp: Server
) -> None:
    assert post(client, shop, {"id": "c1", "email": "jan@customer.example"}).status_code == 201
    assert (
        post(client, shop, {"id": "c2", "email": "x@y.z\r\nBcc: a@b.c"}, "A-2").status_code == 422
    )
    event(client, shop, "order.created", AT, "A-3", customer={"id": "c3", "email": "eva@c.example"})
    assert drain(services) == 2
    assert sorted(smtp.handler.rcpts) == ["eva@c.example", "jan@customer.example"]
