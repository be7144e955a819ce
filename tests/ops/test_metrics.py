"""GET /metrics: queue depth and oldest-due age per shop and channel, sends, failures and
latency histograms, in the Prometheus text format — values that move after sends."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from tests.store.test_fair_claim import add, shop
from tests.support import drain

from orderbell.clock import ManualClock
from orderbell.compose import Services


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def test_metrics_expose_the_queue_and_move_after_sends(
    client: TestClient, services: Services, clock: ManualClock
) -> None:
    shop_id = shop(services, clock, "m")
    with services.engine.begin() as conn:
        from orderbell.store.schema import messages

        conn.execute(messages.delete())
    add(services, clock, shop_id, 5, "transactional",
        first_due=timedelta(seconds=-90), step=timedelta(seconds=1))  # fmt: skip
    from sqlalchemy import update

    from orderbell.store.schema import messages

    with services.engine.begin() as conn:  # fixed texts: no template needed to send them
        conn.execute(update(messages).values(context={"_system": True, "_text": "hello"}))
    labels = (("channel", "sms"), ("shop", str(shop_id)))
    before = scrape(client)
    assert before[("orderbell_queue_depth", labels)] == 5
    assert before[("orderbell_queue_due", labels)] == 5
    assert before[("orderbell_queue_oldest_due_age_seconds", labels)] == 90
    assert drain(services) == 5
    after = scrape(client)
    assert ("orderbell_queue_depth", labels) not in after  # the queue is empty
    sent = (("channel", "sms"), ("provider", "console"))
    assert after[("orderbell_messages_sent_total", sent)] == 5
    assert after[("orderbell_provider_call_seconds_count", sent)] >= 1
    delay = (("channel", "sms"),)
    assert after[("orderbell_due_to_handoff_seconds_count", delay)] == 5
    assert after[("orderbell_due_to_handoff_seconds_sum", delay)] >= 5 * 86
    assert after[("orderbell_messages_claimed_total", ())] == 5
