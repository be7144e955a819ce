"""Logs carry what operators need and no personal data: recipients masked, texts redacted."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient
from tests.support import drain, event, rule, template

from orderbell.clock import ManualClock
from orderbell.compose import Services
from orderbell.logs import configure, mask_text

PHONE = "+905321234567"
EMAIL = "ayse.yilmaz@example.com"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure("DEBUG", json=True, stream=stream)
    yield stream
    structlog.reset_defaults()


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


@pytest.mark.parametrize(
    ("raw", "hidden"),
    [
        ("550 5.1.1 <ayse.yilmaz@example.com>: no such user", "ayse.yilmaz"),
        ("invalid destination +905321234567", "5321234567"),
        ("invalid destination +90 532 123 45 67", "532 123 45"),
        ("call 0532 123 45 67", "532 123 45"),
        ("actor=admin:ann{x}@shop.test", "ann{x}"),
        ("actor=admin:o'brien!x@shop.test", "brien!x"),
        ("to a#b$c%d&e*f/g=h?i^j`k|l~m@shop.test", "b$c%d"),
    ],
)
def test_mask_text_hides_recipients(raw: str, hidden: str) -> None:
    masked = mask_text(raw)
    assert hidden not in masked
    assert masked != raw


def test_mask_text_leaves_times_and_ids_alone() -> None:
    line = "message 123456789 due 2026-11-20T10:00:00+03:00"
    assert mask_text(line) == line


def test_pipeline_logs_are_json_and_hold_no_personal_data(
    client: TestClient,
    shop: dict[str, Any],
    services: Services,
    clock: ManualClock,
    log_stream: io.StringIO,
) -> None:
    body = template(client, shop, "Secret text for {{ customer_name }}", name="t")
    rule(client, shop, name="new", trigger={"event_type": "order.created"},
         action={"channel": "sms", "template_id": body})  # fmt: skip
    at = "2026-11-20T10:00:00+03:00"
    clock.set(datetime.fromisoformat(at))
    event(client, shop, "order.created", at, "L-1",
          customer={"id": "c1", "name": "Ayşe", "phone": PHONE, "email": EMAIL})  # fmt: skip
    assert drain(services) == 1
    structlog.get_logger("test").warning(
        "provider_said", error=f"rejected {PHONE} and {EMAIL}", text="Secret text for Ayşe"
    )
    lines = records(log_stream)
    names = {r["event"] for r in lines}
    assert {"event_ingested", "batch_done", "provider_said"} <= names
    done = next(r for r in lines if r["event"] == "batch_done")
    assert done["claimed"] == 1 and done["sent"] == 1
    raw = log_stream.getvalue()
    assert PHONE not in raw and "5321234567" not in raw
    assert EMAIL not in raw
    assert "Secret text" not in raw
