"""The provider form without a database: typed text into settings, edits that keep or forget
secrets, and errors placed at their inputs."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest

from orderbell.channels import registry
from orderbell.web import provider_form
from orderbell.web.forms import Errors, Form


def form(**fields: str) -> Form:
    return Form.parse(urlencode(fields).encode())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("{host: 1}", "is not valid JSON", id="not-json"),
        pytest.param("[200, ", "is not valid JSON", id="cut-short"),
    ],
)
def test_a_json_setting_that_is_not_json_is_named(text: str, message: str) -> None:
    errors = Errors()
    provider_form.settings_from(form(**{"settings.success_status": text}), registry.load("http"),
                                errors)  # fmt: skip
    assert message in (errors.get("settings.success_status") or "")


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
