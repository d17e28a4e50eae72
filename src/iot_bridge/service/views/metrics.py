"""Prometheus metrics (CONTRACT section 3, ``GET /metrics``).

Hot-path counts are kept as plain ints by the ingestor and added here once per
batch; outbox gauges are read from the store when scraped. The text format is
written by ``net/prometheus.py`` (our own, in place of ``prometheus_client``).
"""

from __future__ import annotations

from collections.abc import Callable

from iot_bridge.net.prometheus import Counter, Gauge
from iot_bridge.service.ingest.ingestor import IngestCounters


class Metrics:
    """The bridge's metrics in a registry of their own (tests run several bridges)."""

    def __init__(self) -> None:
        self.messages_received = Counter(
            "iot_bridge_messages_received",
            "Device messages routed to a configured device (data and availability, "
            "rejected ones included), by parser type.",
            ["parser"],
        )
        self.messages_rejected = Counter(
            "iot_bridge_messages_rejected",
            "Device messages dropped as unusable, by parser type and reason.",
            ["parser", "reason"],
        )
        self.negative_power = Counter(
            "iot_bridge_negative_power",
            "Device messages whose power was negative (export, or a clamp the wrong way "
            "round), read as 0 W, by parser type.",
            ["parser"],
        )
        self.events_emitted = Counter(
            "iot_bridge_events_emitted",
            "Events committed to the outbox, by event type.",
            ["type"],
        )
        self.deliveries = Counter(
            "iot_bridge_deliveries",
            "Delivery attempts to Odoo, by result (ok, transient, permanent).",
            ["result"],
        )
        self.outbox_pending = Gauge("iot_bridge_outbox_pending", "Events not yet delivered.")
        self.outbox_dead = Gauge(
            "iot_bridge_outbox_dead",
            "Events that failed permanently and wait for retry-dead.",
        )
        self.outbox_flagged = Gauge(
            "iot_bridge_outbox_flagged",
            "Pending events that failed 10 times or more (still retried).",
        )
        self.outbox_oldest_pending_age = Gauge(
            "iot_bridge_outbox_oldest_pending_age_seconds",
            "Age of the oldest pending event (0 when none).",
        )
        self.mqtt_connected = Gauge(
            "iot_bridge_mqtt_connected",
            "1 when the MQTT connection is up.",
        )
        self.feed_dropped = Gauge(
            "iot_bridge_feed_dropped_batches",
            "Feed batches a slow view (board, state out) missed since start (never the pipeline).",
        )
        self.odoo_up = Gauge(
            "iot_bridge_odoo_up",
            "1 while the Odoo endpoint answers (0 when it is down or not configured).",
        )
        self.odoo_changed = Gauge(
            "iot_bridge_odoo_state_changed_timestamp_seconds",
            "Unix time the Odoo endpoint last went down or came back (0: never).",
        )
        self.events_pruned = Counter(
            "iot_bridge_events_pruned",
            "Delivered events deleted from the data dir, by reason (retention, disk_budget).",
            ["reason"],
        )
        self.store_disk_full = Gauge(
            "iot_bridge_store_disk_full",
            "1 while commits fail because the disk holding the data dir is full "
            "(nothing is acknowledged meanwhile; the commit is retried).",
        )
        self.store_disk_full_since = Gauge(
            "iot_bridge_store_disk_full_since_timestamp_seconds",
            "Unix time the disk-full condition started (0 while none).",
        )
        self.data_dir_bytes = Gauge(
            "iot_bridge_data_dir_bytes",
            "Bytes the data dir's files take on disk (database, WAL, persisted config).",
        )
        self.disk_free_bytes = Gauge(
            "iot_bridge_disk_free_bytes",
            "Bytes left on the filesystem holding the data dir.",
        )
        self.disk_budget_bytes = Gauge(
            "iot_bridge_disk_budget_bytes",
            "The data dir's disk budget in bytes (0: none set).",
        )
        for result in ("ok", "transient", "permanent"):
            self.deliveries.labels(result=result)
        for reason in ("retention", "disk_budget"):
            self.events_pruned.labels(reason=reason)
        # In this order on /metrics (the order they were registered in before).
        self.exposed: tuple[Counter | Gauge, ...] = (
            self.messages_received,
            self.messages_rejected,
            self.negative_power,
            self.events_emitted,
            self.deliveries,
            self.outbox_pending,
            self.outbox_dead,
            self.outbox_flagged,
            self.outbox_oldest_pending_age,
            self.mqtt_connected,
            self.feed_dropped,
            self.odoo_up,
            self.odoo_changed,
            self.events_pruned,
            self.store_disk_full,
            self.store_disk_full_since,
            self.data_dir_bytes,
            self.disk_free_bytes,
            self.disk_budget_bytes,
        )
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
        return "".join(line for metric in self.exposed for line in metric.lines()).encode()
