"""The running bridge: the pipeline from MQTT to the outbox, and the use cases
the HTTP API calls (health, config push, devices, events).

Ordering guarantee: every mutation of detector state happens under
``_lock`` together with the commit of its effects, so the store always holds
a consistent picture, and MQTT acknowledgements follow the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from iot_bridge.adapters.mqtt import InboundMessage, MqttClient, MqttSettings
from iot_bridge.adapters.odoo import OdooSender
from iot_bridge.adapters.store import KEPT_BATCHES, EventStore, StoredEvent
from iot_bridge.config.model import MASK, BridgeConfig, MqttSection, OdooSection
from iot_bridge.config.sources import (
    EnvSettings,
    effective_mqtt,
    effective_odoo,
    persist_config,
)
from iot_bridge.domain.events import Event, iso_utc
from iot_bridge.errors import ConfigError, ConfigIssue, MqttError, StoreError
from iot_bridge.logs import get_logger
from iot_bridge.service.delivery import DeliveryWorker
from iot_bridge.service.ingest import Ingestor, device_specs
from iot_bridge.service.metrics import Metrics
from iot_bridge.service.redelivery import split_redelivered

log = get_logger(__name__)

# Unacknowledged QoS 1 messages the broker may send us: a group commit holds at
# most this many, so it bounds both the batch size and the redelivery after a crash.
RECEIVE_MAXIMUM = 10_000
BATCH_MAX_MESSAGES = RECEIVE_MAXIMUM
PRUNE_INTERVAL_S = 3600.0
CLOSE_TIMEOUT_S = 5.0
DISCONNECTED_WAKE_S = 1.0
EventListener = Callable[[Sequence[Event]], None]


def mqtt_settings(section: MqttSection) -> MqttSettings:
    """The MQTT client's settings from the config's ``mqtt`` section."""
    return MqttSettings(
        host=section.broker,
        port=section.port,
        username=section.username or None,
        password=section.password or None,
        client_id=section.client_id,
        keepalive_s=section.keepalive,
        use_tls=section.use_tls,
        ca_file=section.ca_file,
        tls_insecure=section.tls_insecure,
        clean_start=False,
        receive_maximum=RECEIVE_MAXIMUM,
    )


def odoo_sender(section: OdooSection | None) -> OdooSender | None:
    """A sender for the config's ``odoo`` section; None means local-only mode."""
    if section is None:
        return None
    return OdooSender(
        base_url=section.base_url,
        database=section.database,
        api_key=section.api_key,
        request_format=section.request_format,
    )


def keep_masked_secrets(new: BridgeConfig, current: BridgeConfig) -> BridgeConfig:
    """A secret pushed back as ``***`` (copied from ``GET /config``) keeps its current value.

    Only for the same destination: a ``***`` sent with another broker, Odoo
    URL, database or username would hand the real secret to someone else, so
    it is a ``ConfigError`` (422), as is ``***`` where no secret is known.
    """
    updates: dict[str, Any] = {}
    issues: list[ConfigIssue] = []
    if new.mqtt is not None and new.mqtt.password == MASK:
        old = current.mqtt
        if old is not None and (old.broker, old.port, old.username) == (
            new.mqtt.broker,
            new.mqtt.port,
            new.mqtt.username,
        ):
            updates["mqtt"] = new.mqtt.model_copy(update={"password": old.password})
        else:
            issues.append(
                ConfigIssue("mqtt.password", _MASK_ONLY_SAME % "broker, port and username")
            )
    if new.odoo is not None and new.odoo.api_key == MASK:
        old_odoo = current.odoo
        if old_odoo is not None and (old_odoo.base_url, old_odoo.database, old_odoo.username) == (
            new.odoo.base_url,
            new.odoo.database,
            new.odoo.username,
        ):
            updates["odoo"] = new.odoo.model_copy(update={"api_key": old_odoo.api_key})
        else:
            issues.append(
                ConfigIssue("odoo.api_key", _MASK_ONLY_SAME % "base_url, database and username")
            )
    if issues:
        raise ConfigError(issues, source="config push")
    return new.model_copy(update=updates) if updates else new


_MASK_ONLY_SAME = "'***' keeps the current secret only for the same %s; send the real secret"


@dataclass(frozen=True, slots=True)
class ConfigApplied:
    """What ``POST /config`` reports back."""

    devices_configured: int
    mqtt_reconnected: bool
    timestamp: str


class Bridge:
    """Owns the ingestor, the store, the MQTT client and the delivery worker."""

    def __init__(
        self,
        *,
        env: EnvSettings,
        config: BridgeConfig,
        config_source: str,
        last_config_update: str | None,
        store: EventStore,
        data_dir: Path,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.env = env
        self.config = config
        self.config_source = config_source
        self.last_config_update = last_config_update
        self.store = store
        self.data_dir = data_dir
        self.metrics = Metrics()
        self.ingestor = Ingestor()
        self._clock = clock
        self._last_now = 0.0
        self._lock = asyncio.Lock()
        # Fingerprints of the last committed batches (see ``_unseen``).
        self._committed: deque[set[int]] = deque(maxlen=KEPT_BATCHES)
        self._listeners: list[EventListener] = []
        self._odoo: OdooSection | None = effective_odoo(config, env)
        self._mqtt_section: MqttSection = effective_mqtt(config, env)
        self.mqtt = MqttClient(mqtt_settings(self._mqtt_section))
        self._mqtt_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._config_lock = asyncio.Lock()
        self._client_switched = asyncio.Event()
        self.delivery = DeliveryWorker(
            store=store,
            sender=odoo_sender(self._odoo),
            on_result=self.metrics.on_delivery_result,
        )
        self._stopping = asyncio.Event()
        self._fatal: BaseException | None = None
        self.metrics.on_scrape(self._refresh_gauges)

    # -- lifecycle -----------------------------------------------------

    def now(self) -> float:
        """Wall-clock time that never runs backwards within this process."""
        now = self._clock()
        now = max(now, self._last_now)
        self._last_now = now
        return now

    def add_listener(self, listener: EventListener) -> None:
        """Call ``listener`` with every batch of committed events (the demo's screen)."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Apply the loaded config, restore detectors, and start MQTT."""
        now = self.now()
        async with self._lock:
            events = self.ingestor.apply_devices(device_specs(self.config), now)
            snapshots = await asyncio.to_thread(self.store.load_snapshots)
            for fingerprints in await asyncio.to_thread(self.store.load_committed_batches):
                self._committed.append(set(fingerprints))
            ended, unusable = self.ingestor.restore(snapshots, now)
            if unusable:
                log.error("snapshots_dropped", device_ids=unusable)
            await self._commit(events + ended, now)
        await self.mqtt.set_subscriptions(self.ingestor.subscriptions)
        self._start_mqtt()
        log.info(
            "bridge_started",
            devices=len(self.ingestor.device_ids),
            config_source=self.config_source,
            broker=self.broker_address,
            odoo=self._odoo.base_url if self._odoo else None,
            data_dir=str(self.data_dir),
        )

    async def run(self) -> None:
        """Run the pipeline, the timers and delivery until ``stop()``, then shut down cleanly."""
        tasks = {
            asyncio.create_task(self._pipeline(), name="pipeline"),
            asyncio.create_task(self.delivery.run(), name="delivery"),
            asyncio.create_task(self._prune_loop(), name="prune"),
        }
        stop_wait = asyncio.create_task(self._stopping.wait(), name="stop-wait")
        await asyncio.wait(tasks | {stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        # Taking the lock waits for a batch being committed; nothing is cut mid-commit.
        async with self._lock:
            for task in tasks:
                task.cancel()
        stop_wait.cancel()
        await self.delivery.close()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        failures = [
            r
            for r in results
            if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)
        ]
        if self._fatal is not None:
            raise self._fatal
        if failures:
            raise failures[0]

    def stop(self) -> None:
        """Ask everything to finish; ``run()`` returns after a clean shutdown."""
        if not self._stopping.is_set():
            log.info("shutdown_requested")
        self._stopping.set()

    async def close(self) -> None:
        """Close connections (no MQTT unsubscribe: the session persists)."""
        await self._close_client(self.mqtt, self._mqtt_task)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await asyncio.to_thread(self.store.close)

    # -- the pipeline --------------------------------------------------

    async def _pipeline(self) -> None:
        while True:
            client = self.mqtt
            deadline = self.ingestor.next_deadline()
            wait_s = None if deadline is None else max(0.0, deadline - self.now())
            if not client.connected:
                # Wake up often enough to keep excusing silence (see below).
                wait_s = DISCONNECTED_WAKE_S if wait_s is None else min(wait_s, DISCONNECTED_WAKE_S)
            batch = await self._receive(client, wait_s)
            # Stamped when taken from the queue, before waiting for the lock (a
            # config push may hold it): timers must not overtake these readings.
            now = self.now()
            async with self._lock:
                if client is not self.mqtt and batch:
                    # Received from a client replaced by a config push: not acked, the
                    # old broker keeps them for our persistent session.
                    batch = []
                if not self.mqtt.connected:
                    # We cannot hear the devices: their silence is not theirs. The
                    # broker keeps their messages for our session and delivers them later.
                    self.ingestor.excuse_silence(now)
                fresh, fingerprints = self._unseen(batch)
                events = self.ingestor.handle(fresh, now)
                await self._commit(events, now, fingerprints)
                if batch:
                    client.ack(batch)

    async def _receive(self, client: MqttClient, wait_s: float | None) -> list[InboundMessage]:
        self._client_switched.clear()
        receive = asyncio.ensure_future(client.receive_batch(BATCH_MAX_MESSAGES))
        switched = asyncio.ensure_future(self._client_switched.wait())
        try:
            done, _ = await asyncio.wait(
                {receive, switched}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            switched.cancel()
        if receive in done:
            return receive.result()
        receive.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receive
        return []

    def _unseen(self, batch: list[InboundMessage]) -> tuple[list[InboundMessage], list[int]]:
        fresh, fingerprints = split_redelivered(batch, self._committed)
        skipped = len(batch) - len(fresh)
        if skipped:
            log.info("mqtt_redelivery_skipped", messages=skipped, reason="already committed")
        return fresh, fingerprints

    async def _commit(
        self, events: list[Event], now: float, fingerprints: list[int] | None = None
    ) -> None:
        """Commit events, changed detector state and the batch's fingerprints; holds ``_lock``."""
        changes = self.ingestor.take_changes()
        self.metrics.add_ingest(self.ingestor.drain_counters())
        if not events and not changes:
            return
        try:
            await asyncio.to_thread(self.store.commit, events, changes, now=now, batch=fingerprints)
        except StoreError as err:
            # Detector state is ahead of the disk now: stop, and let the restart
            # restore from disk while the broker redelivers the unacked messages.
            log.critical("store_commit_failed", error=str(err))
            self._fatal = err
            self.stop()
            raise
        if fingerprints:
            self._committed.append(set(fingerprints))
        if events:
            self.delivery.wake()
            for event in events:
                self._log_event(event)
            for listener in self._listeners:
                listener(events)

    def _log_event(self, event: Event) -> None:
        log.info(
            "event_emitted",
            event_type=str(event.event_type),
            device_id=event.device_id,
            session_id=event.session_id,
            at=iso_utc(event.timestamp),
        )

    async def _prune_loop(self) -> None:
        while True:
            try:
                pruned = await asyncio.to_thread(self.store.prune, self.now())
            except StoreError as err:  # housekeeping: try again next time
                log.error("outbox_prune_failed", error=str(err))
            else:
                if pruned:
                    log.info("outbox_pruned", events=pruned)
            await asyncio.sleep(PRUNE_INTERVAL_S)

    # -- use cases for the HTTP API ----------------------------------------

    @property
    def broker_address(self) -> str:
        """``host:port`` of the current broker."""
        return f"{self._mqtt_section.broker}:{self._mqtt_section.port}"

    @property
    def odoo_configured(self) -> bool:
        """False in local-only mode."""
        return self._odoo is not None

    async def apply_config(self, config: BridgeConfig) -> ConfigApplied:
        """Apply a validated config as a whole: persist, devices, broker, Odoo.

        Pushes are applied one at a time. Raises ``ConfigError`` (nothing
        changed) or ``StoreError`` (the file could not be written; nothing
        changed).
        """
        async with self._config_lock:
            return await self._apply_config(config)

    async def _apply_config(self, config: BridgeConfig) -> ConfigApplied:
        config = keep_masked_secrets(config, self.config)
        new_odoo = effective_odoo(config, self.env)
        new_sender = None
        if new_odoo != self._odoo:
            try:  # before anything changes: a sender that cannot be built refuses the push
                new_sender = odoo_sender(new_odoo)
            except ValueError as err:
                issue = ConfigIssue("odoo.base_url", f"cannot be used: {err}")
                raise ConfigError([issue], source="config push") from err
        await asyncio.to_thread(persist_config, self.data_dir, config)
        now = self.now()
        async with self._lock:
            events = self.ingestor.apply_devices(device_specs(config), now)
            await self._commit(events, now)
            self.config = config
            self.config_source = "persisted"
            self.last_config_update = datetime.now(UTC).isoformat()
            new_section = effective_mqtt(config, self.env)
            reconnect = new_section != self._mqtt_section
            if reconnect:
                await self._switch_broker(new_section)
            if new_odoo != self._odoo:
                self._odoo = new_odoo
                self.delivery.set_sender(new_sender)
        if not reconnect:
            # Outside the lock: waiting for the SUBACK must not stall the pipeline
            # (whose draining may be what lets the client read the SUBACK).
            await self.mqtt.set_subscriptions(self.ingestor.subscriptions)
        log.info(
            "config_applied",
            devices=len(config.devices),
            mqtt_reconnected=reconnect,
            broker=self.broker_address,
            removed_sessions=sum(1 for e in events if e.data.get("reason") == "device_removed"),
        )
        return ConfigApplied(
            devices_configured=len(config.devices),
            mqtt_reconnected=reconnect,
            timestamp=self.last_config_update,
        )

    def _start_mqtt(self) -> None:
        self._mqtt_task = asyncio.create_task(self.mqtt.run(), name="mqtt")
        self._mqtt_task.add_done_callback(self._mqtt_task_done)

    def _mqtt_task_done(self, task: asyncio.Task[None]) -> None:
        # The client reconnects forever by itself; its task ending while it is
        # still ours and not closed is a bug that would leave the bridge deaf.
        if task is not self._mqtt_task or self.mqtt.closed or task.cancelled():
            return
        error = task.exception()
        log.critical("mqtt_client_stopped", error=repr(error) if error else None)
        self._fatal = MqttError(f"the MQTT client stopped unexpectedly: {error!r}")
        self.stop()

    async def _switch_broker(self, section: MqttSection) -> None:
        old_client, old_task = self.mqtt, self._mqtt_task
        self._mqtt_section = section
        self.mqtt = MqttClient(mqtt_settings(section), subscriptions=self.ingestor.subscriptions)
        self._start_mqtt()
        self._client_switched.set()
        # Closing the old connection can take long (a hung TLS peer): not under the lock.
        closing = asyncio.create_task(self._close_client(old_client, old_task), name="mqtt-close")
        self._background.add(closing)
        closing.add_done_callback(self._background.discard)
        log.info("mqtt_broker_switched", broker=self.broker_address)

    @staticmethod
    async def _close_client(client: MqttClient, task: asyncio.Task[None] | None) -> None:
        try:
            await asyncio.wait_for(client.close(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.warning("mqtt_close_timeout", broker=client.broker, seconds=CLOSE_TIMEOUT_S)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def health(self) -> dict[str, Any]:
        """``GET /health``: always an answer; a store that cannot be read is ``degraded``."""
        connected = self.mqtt.connected
        outbox: dict[str, Any]
        try:
            stats = await asyncio.to_thread(self.store.outbox_stats, self.now())
        except StoreError as err:
            log.error("health_store_error", error=str(err))
            outbox = {"pending": None, "dead": None, "flagged": None, "error": str(err)}
            failing = True
        else:
            outbox = {"pending": stats.pending, "dead": stats.dead, "flagged": stats.flagged}
            failing = stats.flagged > 0 or stats.dead > 0
        endpoint = self.delivery.endpoint
        odoo_down = self.odoo_configured and not endpoint.up
        failing = failing or odoo_down
        return {
            "status": "ok" if connected and not failing else "degraded",
            "devices": len(self.ingestor.device_ids),
            "subscriptions": len(self.mqtt.subscriptions),
            "last_config_update": self.last_config_update,
            "mqtt": {
                "connected": connected,
                "broker": self.broker_address,
                "last_error": None if connected else self.mqtt.last_error,
            },
            "outbox": outbox,
            "odoo": {
                "configured": self.odoo_configured,
                "available": None if not self.odoo_configured else endpoint.up,
                "since": iso_utc(endpoint.changed_at) if endpoint.changed_at else None,
                "last_error": endpoint.last_error if odoo_down else None,
            },
        }

    def devices(self) -> list[dict[str, Any]]:
        """``GET /devices``."""
        result = []
        for device_id in self.ingestor.device_ids:
            detector = self.ingestor.detector(device_id)
            spec = self.ingestor.spec(device_id)
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
        stored = await asyncio.to_thread(self.store.recent_events, limit)
        return [self._event_view(event) for event in stored]

    def _event_view(self, stored: StoredEvent) -> dict[str, Any]:
        status = stored.status
        if status == "pending" and not self.odoo_configured:
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

    async def retry_dead(self) -> int:
        """``POST /events/retry-dead``: dead events go back into delivery."""
        count = await asyncio.to_thread(self.store.retry_dead, self.now())
        self.delivery.wake(reload=True)
        log.info("dead_events_retried", events=count)
        return count

    def _refresh_gauges(self) -> None:
        self.metrics.mqtt_connected.set(1 if self.mqtt.connected else 0)
        endpoint = self.delivery.endpoint
        self.metrics.odoo_up.set(1 if self.odoo_configured and endpoint.up else 0)
        self.metrics.odoo_changed.set(endpoint.changed_at or 0.0)
        try:
            stats = self.store.outbox_stats(self.now())
        except StoreError as err:  # /metrics keeps answering; the gauges keep their last values
            log.error("metrics_store_error", error=str(err))
            return
        self.metrics.outbox_pending.set(stats.pending)
        self.metrics.outbox_dead.set(stats.dead)
        self.metrics.outbox_flagged.set(stats.flagged)
        self.metrics.outbox_oldest_pending_age.set(stats.oldest_pending_age_s or 0.0)
