"""Prometheus metrics (CONTRACT section 3, ``GET /metrics``).

Hot-path counts are kept as plain ints by the ingestor and added here once per
batch; outbox gauges are read from the store when scraped.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from iot_bridge.service.ingest import IngestCounters


class Metrics:
    """The bridge's metrics in a registry of their own (tests run several bridges)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.messages_received = Counter(
            "iot_bridge_messages_received",
            "Device messages routed to a configured device (data and availability, "
            "rejected ones included), by parser type.",
            ["parser"],
            registry=self.registry,
        )
        self.messages_rejected = Counter(
            "iot_bridge_messages_rejected",
            "Device messages dropped as unusable, by parser type and reason.",
            ["parser", "reason"],
            registry=self.registry,
        )
        self.negative_power = Counter(
            "iot_bridge_negative_power",
            "Device messages whose power was negative (export, or a clamp the wrong way "
            "round), read as 0 W, by parser type.",
            ["parser"],
            registry=self.registry,
        )
        self.events_emitted = Counter(
            "iot_bridge_events_emitted",
            "Events committed to the outbox, by event type.",
            ["type"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "iot_bridge_deliveries",
            "Delivery attempts to Odoo, by result (ok, transient, permanent).",
            ["result"],
            registry=self.registry,
        )
        self.outbox_pending = Gauge(
            "iot_bridge_outbox_pending", "Events not yet delivered.", registry=self.registry
        )
        self.outbox_dead = Gauge(
            "iot_bridge_outbox_dead",
            "Events that failed permanently and wait for retry-dead.",
            registry=self.registry,
        )
        self.outbox_flagged = Gauge(
            "iot_bridge_outbox_flagged",
            "Pending events that failed 10 times or more (still retried).",
            registry=self.registry,
        )
        self.outbox_oldest_pending_age = Gauge(
            "iot_bridge_outbox_oldest_pending_age_seconds",
            "Age of the oldest pending event (0 when none).",
            registry=self.registry,
        )
        self.mqtt_connected = Gauge(
            "iot_bridge_mqtt_connected",
            "1 when the MQTT connection is up.",
            registry=self.registry,
        )
        self.feed_dropped = Gauge(
            "iot_bridge_feed_dropped_batches",
            "Feed batches a slow view (board, state out) missed since start (never the pipeline).",
            registry=self.registry,
        )
        self.odoo_up = Gauge(
            "iot_bridge_odoo_up",
            "1 while the Odoo endpoint answers (0 when it is down or not configured).",
            registry=self.registry,
        )
        self.odoo_changed = Gauge(
            "iot_bridge_odoo_state_changed_timestamp_seconds",
            "Unix time the Odoo endpoint last went down or came back (0: never).",
            registry=self.registry,
        )
        for result in ("ok", "transient", "permanent"):
            self.deliveries.labels(result=result)
        self._refreshers: list[Callable[[], None]] = []

    def add_ingest(self, counters: IngestCounters) -> None:
        """Add one batch's counts."""
        for parser, count in counters.received.items():
            self.messages_received.labels(parser=parser).inc(count)
        for (parser, reason), count in counters.rejected.items():
            self.messages_rejected.labels(parser=parser, reason=reason).inc(count)
        for event_type, count in counters.emitted.items():
            self.events_emitted.labels(type=event_type).inc(count)
        for parser, count in counters.negative_power.items():
            self.negative_power.labels(parser=parser).inc(count)

    def on_delivery_result(self, result: str) -> None:
        """Count one delivery attempt (ok, transient or permanent)."""
        self.deliveries.labels(result=result).inc()

    def on_scrape(self, refresh: Callable[[], None]) -> None:
        """Run ``refresh`` before each exposition (to read gauges from the store)."""
        self._refreshers.append(refresh)

    def exposition(self) -> bytes:
        """The Prometheus text format."""
        for refresh in self._refreshers:
            refresh()
        return generate_latest(self.registry)
