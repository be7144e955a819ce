"""The provider form without a database: typed text into settings, and a kind that declares no
FIELDS yet (as a new gateway module may) still gets its credentials and a JSON box."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest

from orderbell.channels import registry
from orderbell.domain.model import Channel
from orderbell.web import provider_form
from orderbell.web.forms import Errors, Form

BARE = registry.Kind(
    name="bare",
    channels=frozenset({Channel.SMS}),
    secret_fields=frozenset({"password"}),
    validate=dict,
    build=lambda *a, **k: None,
)


def form(**fields: str) -> Form:
    return Form.parse(urlencode(fields).encode())


def test_a_kind_without_fields_gets_an_input_per_secret_and_a_json_box() -> None:
    [secret] = provider_form.inputs(BARE)
    assert (secret.name, secret.type, secret.label) == ("settings.password", "secret", "Password")
    assert provider_form.has_box(BARE)
    stored = {"host": "smsc.example", "port": 13013}
    shown = provider_form.shown(BARE, stored)
    assert "settings.password" not in shown
    assert '"host": "smsc.example"' in shown[provider_form.BOX]

    errors = Errors()
    posted = form(**{"settings": '{"host": "smsc.example"}', "settings.password": ""})
    edited = provider_form.settings_from(posted, BARE, errors, stored=stored)
    assert not errors
    assert edited == {"host": "smsc.example", "port": None}  # port taken out: removed

    assert provider_form.error_field("settings.port", BARE) == "settings"
    assert provider_form.error_field("settings.password", BARE) == "settings.password"
    assert provider_form.error_field("name", BARE) == "name"


@pytest.mark.parametrize(
    ("box", "message"),
    [
        pytest.param("{host: 1}", "is not valid JSON", id="not-json"),
        pytest.param("[1, 2]", "must be a JSON object", id="not-an-object"),
    ],
)
def test_a_bad_json_box_is_named(box: str, message: str) -> None:
    errors = Errors()
    provider_form.settings_from(form(settings=box), BARE, errors)
    assert message in (errors.get("settings") or "")


def test_typed_text_becomes_numbers_and_json_and_secrets_follow_the_edit_rules() -> None:
    http = registry.load("http")
    errors = Errors()
    posted = form(
        **{
            "settings.url": " https://gw.example/sms ",
            "settings.timeout_seconds": "2.5",
            "settings.success_status": "[200, 202]",
            "settings.auth_value": "Bearer k3y",
            "settings.id_path": "",
        }
    )
    new: dict[str, Any] = provider_form.settings_from(posted, http, errors)
    assert not errors
    assert new == {
        "url": "https://gw.example/sms",
        "timeout_seconds": 2.5,
        "success_status": [200, 202],
        "auth_value": "Bearer k3y",
    }
    stored = http.validate({"url": "https://gw.example/sms", "callback_secret": "x" * 8})
    kept = provider_form.settings_from(form(**{"settings.url": "https://b.example/"}), http, errors)
    edit = provider_form.settings_from(
        form(**{"settings.url": "https://b.example/", "forget.callback_secret": "1"}),
        http,
        errors,
        stored=stored,
    )
    assert "auth_value" not in kept and "auth_value" not in edit  # empty secret: kept
    assert edit["callback_secret"] is None and edit["id_path"] is None  # forgotten, cleared
    assert provider_form.error_field("settings.status_map.foo", http) == "settings.status_map"
    assert provider_form.error_field("settings.nonsense", http) is None  # the summary
