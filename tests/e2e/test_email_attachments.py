"""E-mail attachments end to end: a template's static documents (uploaded through the API)
and an event's own files (the invoice PDF) arrive at a real SMTP server with the order's
e-mail; bad files are refused with a 4xx naming the field and leave nothing behind."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.conftest import make_shop
from tests.smtp_harness import Server, start_server
from tests.support import drain, event, messages, rule, template

from orderbell.channels.smtp import SmtpProvider
from orderbell.compose import Services
from orderbell.domain import attachments as files
from orderbell.domain.model import Channel
from orderbell.store.schema import event_attachments, events, template_attachments

pytestmark = pytest.mark.smtp

AT = "2026-11-20T10:00:00+01:00"
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
CUSTOMER = {"id": "c1", "name": "Jan", "email": "jan@customer.example"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def upload(client: TestClient, shop: dict[str, Any], template_id: int, **body: Any) -> Any:
    fields = {
        "filename": "terms.pdf",
        "content_type": "application/pdf",
        "content_base64": b64(PDF),
    }
    return client.post(
        f"/v1/templates/{template_id}/attachments",
        headers=shop["auth"],
        json={**fields, **body},
    )


@pytest.fixture
def smtp(services: Services) -> Iterator[Server]:
    server = start_server()
    provider = SmtpProvider(server.settings(from_address="orders@shop.example"))
    services.providers[Channel.EMAIL] = provider
    yield server
    asyncio.run(provider.close())
    server.controller.stop()


@pytest.fixture
def mail_shop(client: TestClient, clock: Any) -> dict[str, Any]:
    from datetime import datetime

    clock.set(datetime.fromisoformat(AT))
    shop = make_shop(client, "mailshop", timezone="Europe/Warsaw", country="PL")
    shop["template"] = template(
        client,
        shop,
        "Thanks for order {{ order_code }}.",
        channel="email",
        name="confirmation",
        subject="Order {{ order_code }}",
        html="<p>Thanks for order {{ order_code }}.</p>",
    )
    rule(
        client,
        shop,
        name="confirm",
        trigger={"event_type": "order.created"},
        action={"channel": "email", "template_id": shop["template"]},
    )
    return shop


def test_template_attachment_upload_list_download_delete(
    client: TestClient, mail_shop: dict[str, Any]
) -> None:
    tid = mail_shop["template"]
    r = upload(client, mail_shop, tid)
    assert r.status_code == 201, r.text
    meta = r.json()
    assert (meta["filename"], meta["content_type"], meta["size"]) == (
        "terms.pdf",
        "application/pdf",
        len(PDF),
    )
    listed = client.get(f"/v1/templates/{tid}/attachments", headers=mail_shop["auth"]).json()
    assert [a["filename"] for a in listed["items"]] == ["terms.pdf"]
    got = client.get(f"/v1/templates/{tid}/attachments/{meta['id']}", headers=mail_shop["auth"])
    assert got.status_code == 200
    assert got.content == PDF
    assert got.headers["content-type"] == "application/pdf"
    assert "attachment" in got.headers["content-disposition"]
    assert upload(client, mail_shop, tid).status_code == 409  # same name twice
    gone = client.delete(f"/v1/templates/{tid}/attachments/{meta['id']}", headers=mail_shop["auth"])
    assert gone.status_code == 204
    listed = client.get(f"/v1/templates/{tid}/attachments", headers=mail_shop["auth"]).json()
    assert listed["items"] == []


def test_another_shops_template_is_not_found(client: TestClient, mail_shop: dict[str, Any]) -> None:
    other = make_shop(client, "other")
    assert upload(client, other, mail_shop["template"]).status_code == 404
    r = client.get(f"/v1/templates/{mail_shop['template']}/attachments", headers=other["auth"])
    assert r.status_code == 404


BAD_FILES = [
    pytest.param({"content_base64": "not base64!!"}, "content_base64", id="bad-base64"),
    pytest.param(
        {"content_base64": b64(b"%PDF-" + b"x" * files.MAX_BYTES)}, "content_base64", id="too-big"
    ),
    pytest.param({"content_base64": ""}, "content_base64", id="empty"),
    pytest.param({"content_base64": b64(b"MZ\x90\x00")}, "content_base64", id="not-a-pdf"),
    pytest.param({"content_type": "text/html"}, "content_type", id="html"),
    pytest.param({"content_type": "application/x-msdownload"}, "content_type", id="exe"),
    pytest.param({"filename": "../../etc/passwd"}, "filename", id="path"),
    pytest.param({"filename": "C:\\terms.pdf"}, "filename", id="windows-path"),
    pytest.param({"filename": "a.pdf\r\nBcc: x@y.z"}, "filename", id="crlf"),
    pytest.param({"filename": "a\x00.pdf"}, "filename", id="nul"),
    pytest.param({"filename": "x" * 256}, "filename", id="long-name"),
    pytest.param({"filename": ".."}, "filename", id="dot-dot"),
]


@pytest.mark.parametrize(("body", "field"), BAD_FILES)
def test_bad_template_attachment_is_refused_naming_the_field(
    client: TestClient,
    services: Services,
    mail_shop: dict[str, Any],
    body: dict[str, Any],
    field: str,
) -> None:
    r = upload(client, mail_shop, mail_shop["template"], **body)
    assert r.status_code in (413, 422), r.text
    if r.status_code == 422:
        assert r.json()["error"]["field"] == field
    with services.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(template_attachments)).scalar() == 0


def test_sms_template_takes_no_attachments(client: TestClient, mail_shop: dict[str, Any]) -> None:
    sms = template(client, mail_shop, "Hi", name="sms")
    r = upload(client, mail_shop, sms)
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "template_id"


def test_template_and_event_files_go_out_with_the_orders_email(
    client: TestClient, services: Services, mail_shop: dict[str, Any], smtp: Server
) -> None:
    assert upload(client, mail_shop, mail_shop["template"]).status_code == 201
    invoice = PDF.replace(b"obj", b"invoice obj")
    result = event(
        client,
        mail_shop,
        "order.created",
        AT,
        "A-1",
        customer=CUSTOMER,
        attachments=[
            {
                "filename": "Faktura 2026/11?.pdf".replace("/", "-"),
                "content_type": "Application/PDF",
                "content_base64": b64(invoice),
            }
        ],
    )
    with services.engine.connect() as conn:
        payload = conn.execute(select(events.c.payload)).scalar_one()
        stored = conn.execute(select(event_attachments)).one()
    assert "attachments" not in payload  # kept once, in event_attachments
    assert (stored.event_id, stored.content_type) == (result["event_id"], "application/pdf")

    assert drain(services) == 1
    [received] = smtp.handler.received
    mail = received.parsed()
    parts = {p.get_filename(): p for p in mail.iter_attachments()}
    assert set(parts) == {"terms.pdf", "Faktura 2026-11?.pdf"}
    assert parts["terms.pdf"].get_payload(decode=True) == PDF
    assert parts["Faktura 2026-11?.pdf"].get_payload(decode=True) == invoice
    assert parts["terms.pdf"].get_content_type() == "application/pdf"
    body = mail.get_body(("plain",))
    assert body is not None and "Thanks for order A-1." in body.get_content()
    [message] = messages(client, mail_shop)
    assert message["status"] == "sent"


def test_event_files_belong_to_that_event_only(
    client: TestClient, services: Services, mail_shop: dict[str, Any], smtp: Server
) -> None:
    att = {"filename": "invoice.pdf", "content_type": "application/pdf", "content_base64": b64(PDF)}
    event(client, mail_shop, "order.created", AT, "A-1", customer=CUSTOMER, attachments=[att])
    event(client, mail_shop, "order.created", AT, "A-2", customer=CUSTOMER)
    assert drain(services) == 2
    by_subject = {r.parsed()["Subject"]: r.parsed() for r in smtp.handler.received}
    assert [p.get_filename() for p in by_subject["Order A-1"].iter_attachments()] == ["invoice.pdf"]
    assert list(by_subject["Order A-2"].iter_attachments()) == []


@pytest.mark.parametrize(
    ("attachment", "field"),
    [
        pytest.param({"filename": "x/y.pdf"}, "attachments.0.filename", id="path"),
        pytest.param({"filename": "a\r\nBcc: x@y.z"}, "attachments.0.filename", id="crlf"),
        pytest.param({"content_base64": "%%%"}, "attachments.0.content_base64", id="base64"),
        pytest.param({"content_type": "text/html"}, "attachments.0.content_type", id="type"),
        pytest.param({"content_base64": b64(b"hello")}, "attachments.0.content_base64", id="fake"),
    ],
)
def test_bad_event_attachment_is_refused_and_nothing_is_stored(
    client: TestClient,
    services: Services,
    mail_shop: dict[str, Any],
    attachment: dict[str, Any],
    field: str,
) -> None:
    body = {
        "type": "order.created",
        "occurred_at": AT,
        "order": {"code": "A-1"},
        "customer": CUSTOMER,
        "attachments": [
            {
                "filename": "invoice.pdf",
                "content_type": "application/pdf",
                "content_base64": b64(PDF),
                **attachment,
            }
        ],
    }
    r = client.post("/v1/events", headers=mail_shop["auth"], json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field
    with services.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(event_attachments)).scalar() == 0


def test_more_than_five_event_attachments_are_refused(
    client: TestClient, mail_shop: dict[str, Any]
) -> None:
    one = {"filename": "a.pdf", "content_type": "application/pdf", "content_base64": b64(PDF)}
    body = {
        "type": "order.created",
        "occurred_at": AT,
        "order": {"code": "A-1"},
        "attachments": [one] * (files.MAX_PER_EVENT + 1),
    }
    r = client.post("/v1/events", headers=mail_shop["auth"], json=body)
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "attachments"


def test_a_shops_own_smtp_account_sends_its_email(
    client: TestClient, services: Services, mail_shop: dict[str, Any]
) -> None:
    """The router builds a shop's SMTP account with its pacing fields added; the mail must
    still leave through that account's server, not the default provider."""
    own = start_server()
    try:
        r = client.post(
            "/v1/providers",
            headers=mail_shop["auth"],
            json={
                "name": "shop-mail",
                "kind": "smtp",
                "rate_per_second": "5",
                "settings": {
                    "host": "127.0.0.1",
                    "port": own.port,
                    "security": "none",
                    "from_address": "orders@mailshop.example",
                },
            },
        )
        assert r.status_code == 201, r.text
        event(client, mail_shop, "order.created", AT, "M-1", customer=CUSTOMER)
        drain(services)
        [sent] = messages(client, mail_shop)
        assert sent["status"] == "sent", sent
        assert sent["provider"] == "shop-mail"
        [received] = own.handler.received
        assert received.rcpt_tos == ["jan@customer.example"]
        assert received.parsed()["Subject"] == "Order M-1"
    finally:
        own.controller.stop()
