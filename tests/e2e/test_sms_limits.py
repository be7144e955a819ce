"""SMS length and cost through the whole product: transliteration per shop (the quote, the
simulator, the preview and the text the customer gets agree), and the segment cap — a message
over it is held with its reason and never charged, and the shop's settings release it."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.conftest import Outbox, make_shop
from tests.support import assert_ledger_adds_up, drain, event, messages, rule, template

from orderbell.clock import ManualClock
from orderbell.compose import Services
from orderbell.domain.segments import GSM7, UCS2, analyse

AT = "2026-11-20T10:00:00+03:00"
UNIT = Decimal("0.05")  #: an SMS segment to TR in the default price list
CUSTOMER = {"id": "c1", "name": "Ayşe Yılmaz", "phone": "+905321234567"}


def sms_shop(client: TestClient, slug: str, body: str, **settings: Any) -> dict[str, Any]:
    """A shop (1000 credits) with `settings` and one SMS rule on order.created."""
    shop = make_shop(client, slug, locale=settings.pop("locale", "en"))
    if settings:
        r = client.patch("/v1/shop", headers=shop["auth"], json=settings)
        assert r.status_code == 200, r.text
    shop["template_id"] = tid = template(client, shop, body)
    rule(client, shop, name="new", trigger={"event_type": "order.created"},
         action={"channel": "sms", "template_id": tid})  # fmt: skip
    return shop


def credit(client: TestClient, shop: dict[str, Any]) -> tuple[str, str]:
    body = client.get("/v1/credits", headers=shop["auth"]).json()
    return body["available"], body["reserved"]


def ledger_kinds(client: TestClient, shop: dict[str, Any], message_id: int) -> list[str]:
    r = client.get("/v1/credits/ledger", headers=shop["auth"], params={"message_id": message_id})
    assert r.status_code == 200, r.text
    return sorted(e["kind"] for e in r.json()["items"])


def detail(client: TestClient, shop: dict[str, Any], message_id: int) -> dict[str, Any]:
    r = client.get(f"/v1/messages/{message_id}", headers=shop["auth"])
    assert r.status_code == 200, r.text
    return dict(r.json())


POLISH = (
    "Dzień dobry {{ customer_name }}! Zamówienie {{ order_code }} zostało wysłane. Dziękujemy "
    "za zakupy w naszym sklepie i życzymy miłego dnia. Kwota: {{ order_total }}."
)
TURKISH = (
    "Merhaba {{ customer_name }}, {{ order_code }} numaralı siparişiniz kargoya verildi. "
    "Toplam: {{ order_total }}. Teşekkür ederiz, iyi günler dileriz!"
)
LANGUAGES = [
    # template, locale, order, customer name, segments as written (UCS-2), transliterated (GSM-7),
    # a word the customer reads either way
    pytest.param(POLISH, "pl", {"code": "PL-1001", "total": "129.90", "currency": "PLN"},
                 "Zażółć Gęślą", 3, 1, ("Dziękujemy", "Dziekujemy"), id="polish"),
    pytest.param(TURKISH, "tr", {"code": "TR-1001", "total": "249.90", "currency": "TRY"},
                 "Ayşe Yılmaz", 2, 1, ("₺249,90", "TL249,90"), id="turkish"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "locale", "order", "name", "written", "plain", "words"),
                         LANGUAGES)  # fmt: skip
def test_transliteration_sends_gsm7_in_fewer_segments_for_less(
    client: TestClient,
    services: Services,
    outbox: Outbox,
    clock: ManualClock,
    body: str,
    locale: str,
    order: dict[str, Any],
    name: str,
    written: int,
    plain: int,
    words: tuple[str, str],
) -> None:
    clock.set(datetime.fromisoformat(AT))
    for on, segments, word in ((False, written, words[0]), (True, plain, words[1])):
        shop = sms_shop(client, f"{locale}-{on}".lower(), body, locale=locale,
                        sms_transliterate=on)  # fmt: skip
        customer = {**CUSTOMER, "name": name}
        [planned] = event(client, shop, "order.created", AT, order["code"],
                          order=order, customer=customer)["messages"]  # fmt: skip
        cost = f"{UNIT * segments:.4f}"
        assert planned["cost"] == cost  # the quote counts the text as it will be sent
        drain(services)
        [sent] = [line for line in outbox.lines() if line["id"] == planned["id"]]
        info = analyse(sent["text"])
        assert (info.encoding, info.segments) == ((GSM7, segments) if on else (UCS2, segments))
        assert word in sent["text"]
        assert (name in sent["text"]) is not on  # transliterated, the name loses its accents
        message = detail(client, shop, planned["id"])
        assert (message["status"], message["segments"], message["cost"]) == ("sent", segments, cost)
        assert message["body"] == sent["text"]
        assert ledger_kinds(client, shop, planned["id"]) == ["debit", "release", "reservation"]
        assert credit(client, shop) == (f"{Decimal(1000) - UNIT * segments:.4f}", "0.0000")
    assert_ledger_adds_up(services)


def test_a_10000_character_product_name_is_held_not_charged(
    client: TestClient, services: Services, outbox: Outbox, clock: ManualClock
) -> None:
    shop = sms_shop(client, "long", "Your {{ product_name }} ({{ order_code }}) is on its way")
    clock.set(datetime.fromisoformat(AT))
    data = {"product_name": "Róża " * 2000}  # 10,000 characters, Unicode: 150 segments
    reason = "segment_cap: 150 segments, the shop's cap is 10"

    simulated = client.post("/v1/simulate", headers=shop["auth"], json={
        "type": "order.created", "occurred_at": AT, "order": {"code": "1001"},
        "customer": CUSTOMER, "data": data}).json()["messages"]  # fmt: skip
    assert [(m["status"], m["reason"], m["cost"]) for m in simulated] == [("held", reason, None)]
    assert simulated[0]["sms"]["segments"] == 150

    [planned] = event(client, shop, "order.created", AT, "1001", customer=CUSTOMER,
                      data=data)["messages"]  # fmt: skip
    assert (planned["status"], planned["reason"], planned["cost"]) == ("held", reason, None)
    assert drain(services) == 0
    assert outbox.lines() == []
    message = detail(client, shop, planned["id"])
    assert (message["status"], message["segments"], message["billing"]) == ("held", 150, None)
    assert ledger_kinds(client, shop, planned["id"]) == []
    assert credit(client, shop) == ("1000.0000", "0.0000")
    # a top-up releases credit holds, never a segment-cap hold
    client.post("/v1/credits/topups", headers=shop["auth"], json={"amount": "5"})
    assert detail(client, shop, planned["id"])["status"] == "held"
    # transliteration does not bring it under the cap: still held, with the new count
    client.patch("/v1/shop", headers=shop["auth"], json={"sms_transliterate": True})
    message = detail(client, shop, planned["id"])
    assert message["status"] == "held"
    assert message["reason"] == "segment_cap: 66 segments, the shop's cap is 10"
    assert credit(client, shop) == ("1005.0000", "0.0000")
    assert_ledger_adds_up(services)


def test_over_the_cap_at_send_time_is_held_and_released_by_the_shop(
    client: TestClient, services: Services, outbox: Outbox, clock: ManualClock
) -> None:
    long = "Siparişiniz hazırlanıyor, kargoya verildiğinde size ayrıca bilgi vereceğiz. " * 2
    shop = sms_shop(client, "late", long.strip(), sms_max_segments=None)
    clock.set(datetime.fromisoformat(AT))
    [planned] = event(client, shop, "order.created", AT, "1001", customer=CUSTOMER)["messages"]
    assert (planned["status"], planned["cost"]) == ("scheduled", "0.1500")  # 3 UCS-2 segments
    assert credit(client, shop) == ("999.8500", "0.1500")

    # the shop lowers its cap before the worker gets to the message
    assert client.patch("/v1/shop", headers=shop["auth"],
                        json={"sms_max_segments": 2}).status_code == 200  # fmt: skip
    drain(services)
    message = detail(client, shop, planned["id"])
    assert (message["status"], message["reason"], message["billing"]) == (
        "held",
        "segment_cap: 3 segments, the shop's cap is 2",
        "released",
    )
    assert outbox.lines() == []
    assert ledger_kinds(client, shop, planned["id"]) == ["release", "reservation"]
    assert credit(client, shop) == ("1000.0000", "0.0000")

    # transliteration brings it to 1 GSM-7 segment: released, reserved again, sent once
    r = client.patch("/v1/shop", headers=shop["auth"], json={"sms_transliterate": True})
    assert r.status_code == 200, r.text
    message = detail(client, shop, planned["id"])
    assert message["status"] == "scheduled"
    assert message["reason"] == "released: it fits the shop's SMS settings now (1 segments)"
    assert credit(client, shop) == ("999.9500", "0.0500")
    drain(services)
    [sent] = outbox.lines()
    assert sent["text"].startswith("Siparisiniz hazirlaniyor")
    message = detail(client, shop, planned["id"])
    assert (message["status"], message["segments"], message["cost"]) == ("sent", 1, "0.0500")
    twice = ["debit", "release", "release", "reservation", "reservation"]
    assert ledger_kinds(client, shop, planned["id"]) == twice  # reserved twice, debited once
    assert credit(client, shop) == ("999.9500", "0.0000")
    assert_ledger_adds_up(services)


def test_raising_the_cap_releases_held_messages_that_fit_oldest_first(
    client: TestClient, services: Services, outbox: Outbox, clock: ManualClock
) -> None:
    shop = sms_shop(client, "raise", "{{ product_name }}")  # 2 segments at worst: fits 10
    assert client.patch("/v1/shop", headers=shop["auth"],
                        json={"sms_max_segments": 1}).status_code == 200  # fmt: skip
    clock.set(datetime.fromisoformat(AT))
    ids = []
    for code, size in (("A", 120), ("B", 300), ("C", 60)):  # 2, 5 and 1 segments
        data = {"product_name": "ş" * size}
        result = event(client, shop, "order.created", AT, code, customer=CUSTOMER, data=data)
        ids.append(result["messages"][0]["id"])
    assert [m["status"] for m in messages(client, shop)] == ["held", "held", "scheduled"]
    assert client.patch("/v1/shop", headers=shop["auth"],
                        json={"sms_max_segments": 2}).status_code == 200  # fmt: skip
    statuses = {m["id"]: (m["status"], m["reason"]) for m in messages(client, shop)}
    assert statuses[ids[0]][0] == "scheduled"
    assert statuses[ids[1]] == ("held", "segment_cap: 5 segments, the shop's cap is 2")
    drain(services)
    assert sorted(len(line["text"]) for line in outbox.lines()) == [60, 120]
    assert_ledger_adds_up(services)


AGREE = [
    # body, shop settings, encoding, segments
    pytest.param("Sipariş {{ order_code }} hazır 🎉🎁 Teşekkürler {{ customer_name }}! " * 3,
                 {}, 3, id="emoji"),
    pytest.param("Sipariş {{ order_code }} hazır 🎉🎁 Teşekkürler {{ customer_name }}! " * 3,
                 {"sms_transliterate": True}, 3, id="emoji-transliterated"),
    pytest.param("Order \u202e{{ order_code }}\u202c is ready. " * 4 + "{{ customer_name }}",
                 {"sms_transliterate": True}, 2, id="rtl-override"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "settings", "segments"), AGREE)
def test_preview_simulate_and_the_sent_message_agree(
    client: TestClient,
    services: Services,
    outbox: Outbox,
    clock: ManualClock,
    body: str,
    settings: dict[str, Any],
    segments: int,
) -> None:
    shop = sms_shop(client, "agree", body, **settings)
    clock.set(datetime.fromisoformat(AT))
    preview = client.post(f"/v1/templates/{shop['template_id']}/preview", headers=shop["auth"],
                          json={"variables": {"order_code": "1001",
                                              "customer_name": CUSTOMER["name"]}}).json()["sms"]  # fmt: skip
    simulated = client.post("/v1/simulate", headers=shop["auth"], json={
        "type": "order.created", "occurred_at": AT, "order": {"code": "1001"},
        "customer": CUSTOMER}).json()["messages"][0]  # fmt: skip
    [planned] = event(client, shop, "order.created", AT, "1001", customer=CUSTOMER)["messages"]
    drain(services)
    [sent] = outbox.lines()
    message = detail(client, shop, planned["id"])

    assert preview["text"] == simulated["text"] == sent["text"] == message["body"]
    assert preview["encoding"] == simulated["sms"]["encoding"] == UCS2
    assert analyse(sent["text"]).encoding == UCS2
    assert preview["segments"] == simulated["sms"]["segments"] == message["segments"] == segments
    assert simulated["cost"]["units"] == segments
    assert planned["cost"] == message["cost"] == f"{UNIT * segments:.4f}"
    # the preview names what forces UCS-2 even when transliterating, and shows both variants
    assert {"🎉", "\u202e"} & set(preview["unicode_chars"])
    assert preview["as_written"]["text"] == simulated["sms"]["as_written"]["text"]
    assert preview["transliterated"]["encoding"] == UCS2
