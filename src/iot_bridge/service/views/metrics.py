"""Prometheus metrics (CONTRACT section 3, ``GET /metrics``).

Hot-path counts are kept as plain ints by the ingestor and added here once per
batch; outbox gauges are read from the store when scraped.

The text is what ``prometheus_client.generate_latest`` writes (format 0.0.4,
counters with their ``_created`` series), from a few lines here instead of
the library: it cost an idle bridge 1.4 MiB for two metric kinds.
``tests/unit/service/test_metrics_text.py`` compares both outputs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

from iot_bridge.service.ingest.ingestor import IngestCounters


def go_float(value: float) -> str:
    """A sample value as Prometheus (and ``prometheus_client``) writes it."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(float(value))
    dot = text.find(".")
    if value > 0 and dot > 6:  # Go switches to exponents sooner than Python
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def _escape(text: str) -> str:
    """HELP text escaping: backslash and newline."""
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _label_value(text: str) -> str:
    """Label value escaping: backslash, newline and double quote."""
    return _escape(text).replace('"', r"\"")


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    pairs = sorted(zip(names, values, strict=True))
    inner = ",".join(f'{name}="{_label_value(value)}"' for name, value in pairs)
    return f"{{{inner}}}" if inner else ""


class _CounterChild:
    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.value += amount


class Counter:
    """A counter with labels: ``counter.labels(parser="x").inc(n)``."""

    def __init__(self, name: str, documentation: str, labelnames: list[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], _CounterChild] = {}

    def labels(self, **labels: object) -> _CounterChild:
        """The child for these label values (created at 0 on first use)."""
        if sorted(labels) != sorted(self.labelnames):
            raise ValueError(f"{self.name}: labels must be {self.labelnames}")
        key = tuple(str(labels[name]) for name in self.labelnames)
        child = self._children.get(key)
        if child is None:
            child = self._children.setdefault(key, _CounterChild())
        return child

    def lines(self) -> Iterator[str]:
        doc = _escape(self.documentation)
        children = tuple(self._children.items())  # the loop may add children meanwhile
        yield f"# HELP {self.name}_total {doc}\n# TYPE {self.name}_total counter\n"
        for key, child in children:
            yield f"{self.name}_total{_labels(self.labelnames, key)} {go_float(child.value)}\n"
        if children:
            yield f"# HELP {self.name}_created {doc}\n# TYPE {self.name}_created gauge\n"
            for key, child in children:
                labels = _labels(self.labelnames, key)
                yield f"{self.name}_created{labels} {go_float(child.created)}\n"


class Gauge:
    """A gauge without labels: ``gauge.set(v)``."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        self.value = 0.0

    def set(self, value: float) -> None:
        """Set the gauge to ``value``."""
        self.value = float(value)

    def lines(self) -> Iterator[str]:
        yield f"# HELP {self.name} {_escape(self.documentation)}\n# TYPE {self.name} gauge\n"
        yield f"{self.name} {go_float(self.value)}\n"


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
