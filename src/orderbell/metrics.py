"""Prometheus metrics: counters and histograms fed by the dispatcher's hook, and the queue
(depth and oldest-due age per shop and channel) read by one cheap query at scrape time.

Each Services has its own registry, so tests and several apps in one process never clash.
A failing hook or query never breaks a send or a scrape of the other metrics.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, case, func, select

from orderbell.channels.base import Outcome, SendResult
from orderbell.clock import Clock
from orderbell.store.messages import pending_condition
from orderbell.store.schema import UtcDateTime, events, messages

log = structlog.get_logger("orderbell.metrics")
_DELAY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


class QueueCollector(Collector):
    """Queue depth and oldest-due age per shop and channel, computed when scraped."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        """One GROUP BY over pending messages (the pending partial index keeps it small)."""
        depth = GaugeMetricFamily(
            "orderbell_queue_depth",
            "Messages waiting to be sent (scheduled or deferred), due or not",
            labels=["shop", "channel"],
        )
        due = GaugeMetricFamily(
            "orderbell_queue_due",
            "Messages due now and not yet claimed",
            labels=["shop", "channel"],
        )
        age = GaugeMetricFamily(
            "orderbell_queue_oldest_due_age_seconds",
            "How long the oldest due message has been waiting (0 if none is due)",
            labels=["shop", "channel"],
        )
        waiting = GaugeMetricFamily(
            "orderbell_events_waiting",
            "Accepted events (Prefer: respond-async) not planned yet",
            labels=["shop"],
        )
        waiting_age = GaugeMetricFamily(
            "orderbell_events_oldest_waiting_age_seconds",
            "How long the oldest accepted event has waited to be planned",
            labels=["shop"],
        )
        now = self._clock.now()
        is_due = messages.c.due_at <= now
        try:
            with self._engine.connect() as conn:
                accepted = conn.execute(
                    select(events.c.shop_id, func.count(), func.min(events.c.received_at))
                    .where(events.c.planned_at.is_(None))
                    .group_by(events.c.shop_id)
                ).all()
                rows = conn.execute(
                    select(
                        messages.c.shop_id,
                        messages.c.channel,
                        func.count(),
                        func.count(case((is_due, 1))),
                        func.min(case((is_due, messages.c.due_at))),
                    )
                    .where(pending_condition())
                    .group_by(messages.c.shop_id, messages.c.channel)
                ).all()
                dialect = conn.dialect
        except Exception as exc:  # a scrape must not fail because the database hiccups
            log.warning("queue_metrics_failed", error=type(exc).__name__)
            return
        for shop_id, channel, total, due_count, oldest in rows:
            labels = [str(shop_id), str(channel)]
            depth.add_metric(labels, float(total))
            due.add_metric(labels, float(due_count))
            oldest_at: datetime | None = UtcDateTime().process_result_value(oldest, dialect)
            age.add_metric(
                labels, max(0.0, (now - oldest_at).total_seconds()) if oldest_at else 0.0
            )
        for shop_id, count, oldest in accepted:
            since: datetime | None = UtcDateTime().process_result_value(oldest, dialect)
            waiting.add_metric([str(shop_id)], float(count))
            waiting_age.add_metric(
                [str(shop_id)], max(0.0, (now - since).total_seconds()) if since else 0.0
            )
        yield depth
        yield due
        yield age
        yield waiting
        yield waiting_age


class Metrics:
    """The counters and histograms of one orderbell process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.sent = Counter(
            "orderbell_messages_sent",
            "Messages a provider accepted",
            ["channel", "provider"],
            registry=self.registry,
        )
        self.failures = Counter(
            "orderbell_send_failures",
            "Messages a provider did not accept, by outcome (retryable, permanent, ambiguous)",
            ["channel", "provider", "outcome"],
            registry=self.registry,
        )
        self.provider_seconds = Histogram(
            "orderbell_provider_call_seconds",
            "Duration of one provider call (a chunk of messages)",
            ["channel", "provider"],
            registry=self.registry,
        )
        self.handoff_delay = Histogram(
            "orderbell_due_to_handoff_seconds",
            "Delay between a message's due time and its hand-off to the provider",
            ["channel"],
            buckets=_DELAY_BUCKETS,
            registry=self.registry,
        )
        self.claimed = Counter(
            "orderbell_messages_claimed", "Messages claimed by workers", registry=self.registry
        )

    def watch_queue(self, engine: Engine, clock: Clock) -> None:
        """Add the scrape-time queue gauges for this database."""
        self.registry.register(QueueCollector(engine, clock))

    def observe_send(
        self,
        *,
        channel: str,
        provider: str,
        seconds: float,
        delays: Sequence[float],
        results: Sequence[SendResult],
    ) -> None:
        """Record one provider call: its duration, each message's delay and outcome."""
        self.provider_seconds.labels(channel, provider).observe(seconds)
        histogram = self.handoff_delay.labels(channel)
        for delay in delays:
            histogram.observe(max(0.0, delay))
        accepted = sum(r.outcome is Outcome.ACCEPTED for r in results)
        if accepted:
            self.sent.labels(channel, provider).inc(accepted)
        for result in results:
            if result.outcome is not Outcome.ACCEPTED:
                self.failures.labels(channel, provider, result.outcome.value).inc()
