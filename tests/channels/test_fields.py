"""Each configurable provider kind declares how a form asks for its settings, consistently with
its secrets and its own validate()."""

from __future__ import annotations

from typing import Any

import pytest

from orderbell.channels import http_gateway, registry

MINIMAL: dict[str, dict[str, Any]] = {
    "http": {"url": "https://gw.example/sms"},
    "smsapi": {"access_token": "token-1234"},
    "serwersms": {"api_token": "token-1234"},
    "twilio": {"account_sid": "AC" + "0" * 32, "auth_token": "a" * 32, "from_number": "+4850010"},
    "smtp": {"host": "smtp.example.com", "from_address": "shop@example.com"},
    "kannel": {"base_url": "http://127.0.0.1:13013", "username": "shop", "password": "secret"},
}


@pytest.mark.parametrize("kind", registry.configurable(), ids=lambda k: k.name)
def test_a_kinds_form_fields_cover_its_secrets_and_name_each_setting_once(
    kind: registry.Kind,
) -> None:
    names = [f.name for f in kind.fields]
    assert names, f"{kind.name} declares no FIELDS"
    assert len(names) == len(set(names))
    assert kind.secret_fields <= set(names), "every credential must be asked for"
    assert kind.title != kind.name, "a TITLE people recognise"
    for field in kind.fields:
        assert field.label
        assert (field.type == "choice") == bool(field.choices), field.name


@pytest.mark.parametrize("name", sorted(MINIMAL))
def test_declared_fields_are_settings_the_kind_knows(name: str) -> None:
    """A field its validate() does not know would be a form that can never be saved."""
    kind = registry.load(name)
    known = set(kind.validate(MINIMAL[name]))
    if name == "http":  # it leaves unset options out of its answer
        known |= set(http_gateway.HttpSettings.model_fields)
    assert {f.name for f in kind.fields} <= known


def test_every_configurable_kind_is_covered() -> None:
    assert {k.name for k in registry.configurable()} <= set(MINIMAL)
