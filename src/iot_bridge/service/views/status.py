"""The status queries: read models of health, devices and events, and the gauges.

The HTTP API (``GET /health``, ``/devices``, ``/events``, ``/metrics``) and
the board read the bridge through these; none of them changes anything. They
see the write path through the read-only Protocols of ``views/types.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from iot_bridge.config.sources import StoreLimits
from iot_bridge.domain.events import iso_utc
from iot_bridge.errors import StoreError
from iot_bridge.logs import get_logger
from iot_bridge.service.feed import Feed
from iot_bridge.service.ports import Outbox, StoredEvent, StoreUsage
from iot_bridge.service.views.metrics import Metrics
from iot_bridge.service.views.types import (
    ConfigState,
    EndpointState,
    HousekeepingState,
    LinkState,
    PipelineState,
)

log = get_logger(__name__)


class StatusQueries:
    """Answers the status questions from the pipeline, the link, the config and the outbox."""

    def __init__(
        self,
        *,
        pipeline: PipelineState,
        link: LinkState,
        configs: ConfigState,
        outbox: Outbox,
        metrics: Metrics,
        feed: Feed,
        endpoint: Callable[[], EndpointState],
        housekeeping: HousekeepingState,
        limits: Callable[[], StoreLimits],
    ) -> None:
        """``endpoint`` gives the Odoo endpoint's health as delivery sees it, ``limits``
        the store's retention and budget now."""
        self._endpoint = endpoint
        self._housekeeping = housekeeping
        self._limits = limits
        self._pipeline = pipeline
        self._feed = feed
        self._link = link
        self._configs = configs
        self._outbox = outbox
        self._metrics = metrics
        metrics.on_scrape(self._refresh_gauges)

    async def health(self) -> dict[str, Any]:
        """``GET /health``: always an answer; a store that cannot be read is ``degraded``."""
        source = self._link.source
        connected = source.connected
        outbox: dict[str, Any]
        try:
            stats = await asyncio.to_thread(self._outbox.outbox_stats, self._pipeline.now())
        except StoreError as err:
            log.error("health_store_error", error=str(err))
            outbox = {"pending": None, "dead": None, "flagged": None, "error": str(err)}
            failing = True
        else:
            outbox = {"pending": stats.pending, "dead": stats.dead, "flagged": stats.flagged}
            failing = stats.flagged > 0 or stats.dead > 0
        store = await self.store()
        failing = failing or store["error"] is not None
        endpoint = self._endpoint()
        configured = self._configs.odoo_configured
        odoo_down = configured and not endpoint.up
        failing = failing or odoo_down
        return {
            "status": "ok" if connected and not failing else "degraded",
            "devices": len(self._pipeline.ingestor.device_ids),
            "shard": self._configs.shard,
            "subscriptions": len(source.subscriptions),
            "last_config_update": self._configs.last_config_update,
            "mqtt": {
                "connected": connected,
                "broker": self._link.broker_address,
                "protocol": source.protocol,
                "last_error": None if connected else source.last_error,
            },
            "outbox": outbox,
            "store": store,
            "odoo": {
                "configured": configured,
                "available": endpoint.up if configured else None,
                "since": iso_utc(endpoint.changed_at) if endpoint.changed_at else None,
                "last_error": endpoint.last_error if odoo_down else None,
            },
        }

    async def store(self) -> dict[str, Any]:
        """The data dir for ``/health``: its size, the limits, a full disk, a warning."""
        limits = self._limits()
        usage: StoreUsage | None
        read_error: str | None = None
        try:
            usage = await asyncio.to_thread(self._outbox.usage)
        except StoreError as err:
            usage, read_error = None, str(err)
        waiting = self._pipeline.disk_full
        error = read_error
        since = None
        if waiting is not None:
            since = iso_utc(waiting.since)
            error = (
                f"the disk holding the data dir is full (since {since}): the commit of"
                f" {waiting.messages} messages and {waiting.events} events waits, and nothing"
                " is acknowledged to the broker until it succeeds; it is retried"
                f" ({waiting.attempts} tries so far). Free space and the bridge carries on by"
                f" itself. Last error: {waiting.error}"
            )
        return {
            "disk_full": waiting is not None,
            "error": error,
            "since": since,
            "warning": self._housekeeping.report.warning,
            "data_dir_bytes": None if usage is None else usage.data_dir_bytes,
            "disk_free_bytes": None if usage is None else usage.disk_free_bytes,
            "retention_days": limits.retention_days,
            "disk_budget_bytes": limits.budget_bytes,
        }

    def devices(self) -> list[dict[str, Any]]:
        """``GET /devices``: every configured device with its live state, in config order."""
        ingestor = self._pipeline.ingestor
        result = []
        for device_id in ingestor.device_ids:
            detector = ingestor.detector(device_id)
            spec = ingestor.spec(device_id)
            if detector is None or spec is None:
                continue
            result.append(
                {
                    "device_id": device_id,
                    "machine_name": spec.machine_name,
                    "parser_type": spec.parser_type,
                    "mqtt_topic": spec.mqtt_topic,
                    "state": str(detector.state),
                    "online": bool(detector.online),
                    "last_seen": iso_utc(detector.last_seen) if detector.last_seen else None,
                    "power_w": detector.power_w,
                    "session_id": detector.session_id,
                }
            )
        return result

    async def recent_events(self, limit: int) -> list[dict[str, Any]]:
        """``GET /events``: newest first, with delivery status."""
        stored = await asyncio.to_thread(self._outbox.recent_events, limit)
        return [self.event_view(event) for event in stored]

    def event_view(self, stored: StoredEvent) -> dict[str, Any]:
        """One outbox event as ``GET /events`` shows it (``local`` without Odoo)."""
        status = stored.status
        if status == "pending" and not self._configs.odoo_configured:
            status = "local"
        view = dict(stored.payload)
        view["delivery"] = {
            "status": status,
            "attempts": stored.attempts,
            "last_error": stored.last_error,
            "created_at": iso_utc(stored.created_at),
            "delivered_at": iso_utc(stored.delivered_at) if stored.delivered_at else None,
        }
        view["status"] = status
        return view

    def _refresh_gauges(self) -> None:
        metrics = self._metrics
        metrics.mqtt_connected.set(1 if self._link.source.connected else 0)
        metrics.feed_dropped.set(self._feed.dropped)
        endpoint = self._endpoint()
        metrics.odoo_up.set(1 if self._configs.odoo_configured and endpoint.up else 0)
        metrics.odoo_changed.set(endpoint.changed_at or 0.0)
        metrics.disk_budget_bytes.set(self._limits().budget_bytes or 0)
        try:
            usage = self._outbox.usage()
            stats = self._outbox.outbox_stats(self._pipeline.now())
        except StoreError as err:  # /metrics keeps answering; the gauges keep their last values
            log.error("metrics_store_error", error=str(err))
            return
        metrics.data_dir_bytes.set(usage.data_dir_bytes)
        metrics.disk_free_bytes.set(usage.disk_free_bytes)
        metrics.outbox_pending.set(stats.pending)
        metrics.outbox_dead.set(stats.dead)
        metrics.outbox_flagged.set(stats.flagged)
        metrics.outbox_oldest_pending_age.set(stats.oldest_pending_age_s or 0.0)
