"""Settings → SMS length and cost in the admin (labelled inputs, errors at the field, saved
like PATCH /v1/shop) and the template editor's preview of both variants, the cap and the worst
case — HTTP level, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.web.http_support import create_user, field_error, log_in

from orderbell.compose import Services

OWNER = "owner@shop.test"


def settings_form(csrf: str, **sms: str) -> dict[str, str]:
    """The Settings form as the page posts it, with the shop's own values."""
    return {
        "csrf_token": csrf,
        "name": "Shop shop",
        "timezone": "Europe/Istanbul",
        "country": "TR",
        "locale": "en",
        "currency": "TRY",
        "sms_sender": "",
        "email_from": "",
        "quiet_hours": "",
        "closed_dates": "",
        "sms_max_segments": "10",
        **sms,
    }


def sms_settings(client: TestClient, shop: dict[str, Any]) -> tuple[bool, int | None]:
    body = client.get("/v1/shop", headers=shop["auth"]).json()
    return body["sms_transliterate"], body["sms_max_segments"]


def test_the_settings_page_has_labelled_sms_inputs_that_save(
    client: TestClient, services: Services, shop: dict[str, Any]
) -> None:
    create_user(services, shop, OWNER)
    csrf = log_in(client, OWNER)
    page = client.get("/admin/settings/").text
    assert '<label for="f-sms_transliterate">' in page
    assert '<label for="f-sms_max_segments">Most segments per SMS</label>' in page
    assert re.search(r'id="f-sms_max_segments"[^>]*value="10"', page)

    saved = client.post("/admin/settings/shop", follow_redirects=False,
                        data=settings_form(csrf, sms_transliterate="1", sms_max_segments="3"))  # fmt: skip
    assert saved.status_code == 303, saved.text
    assert sms_settings(client, shop) == (True, 3)
    page = client.get("/admin/settings/").text
    assert re.search(r'id="f-sms_transliterate"[^>]*checked', page)

    # empty is "no cap"; an unticked box turns transliteration off
    saved = client.post("/admin/settings/shop", follow_redirects=False,
                        data=settings_form(csrf, sms_max_segments=""))  # fmt: skip
    assert saved.status_code == 303, saved.text
    assert sms_settings(client, shop) == (False, None)


BAD = [
    pytest.param("0", "greater than or equal to 1", id="zero"),
    pytest.param("11", "less than or equal to 10", id="eleven"),
    pytest.param("three", "integer", id="words"),
    pytest.param("2.5", "integer", id="fraction"),
    pytest.param("-1", "integer", id="negative"),
]


@pytest.mark.parametrize(("value", "message"), BAD)
def test_a_bad_cap_is_shown_at_its_input(
    client: TestClient, services: Services, shop: dict[str, Any], value: str, message: str
) -> None:
    create_user(services, shop, OWNER)
    csrf = log_in(client, OWNER)
    r = client.post("/admin/settings/shop", data=settings_form(csrf, sms_max_segments=value))
    assert r.status_code == 422
    assert message in field_error(r, "sms_max_segments")
    assert re.search(rf'id="f-sms_max_segments"[^>]*value="{re.escape(value)}"', r.text)
    assert sms_settings(client, shop) == (False, 10)


PREVIEWS = [
    # settings, body, what the preview says
    pytest.param({}, "Teşekkürler, siparişiniz yolda!",
                 ["With transliteration on", "Tesekkürler, siparisiniz yolda!",
                  "Worst case, every variable at its longest: 1 segment (UCS-2)"],
                 id="off-shows-the-transliterated-variant"),
    pytest.param({"sms_transliterate": True}, "Teşekkürler, siparişiniz yolda!",
                 ["Sent transliterated", "As written: 1 segment, UCS-2",
                  "Tesekkürler, siparisiniz yolda!"],
                 id="on-shows-the-written-variant"),
    pytest.param({"sms_max_segments": 1}, "Merhaba {{ customer_name }}! " + "Siparişiniz yolda. " * 4,
                 ["Over the shop's cap of 1 segment:",
                  "Worst case, every variable at its longest: 3 segments (UCS-2); "
                  "the shop's cap is 1, so saving is refused"],
                 id="over-the-cap"),
]  # fmt: skip


@pytest.mark.parametrize(("settings", "body", "expected"), PREVIEWS)
def test_the_editor_preview_shows_both_variants_and_the_cap(
    client: TestClient,
    services: Services,
    shop: dict[str, Any],
    settings: dict[str, Any],
    body: str,
    expected: list[str],
) -> None:
    if settings:
        assert client.patch("/v1/shop", headers=shop["auth"], json=settings).status_code == 200
    create_user(services, shop, OWNER)
    csrf = log_in(client, OWNER)
    form = {"csrf_token": csrf, "name": "t", "channel": "sms", "kind": "order", "body": body}
    r = client.post("/admin/templates/preview", data=form)
    assert r.status_code == 200, r.text
    for text in expected:
        assert text in r.text, (text, r.text)
    for unknown in ("99999999999999999999", "²"):  # no stored template: previewed as typed
        r = client.post("/admin/templates/preview", data={**form, "template_id": unknown})
        assert r.status_code == 200, r.text
