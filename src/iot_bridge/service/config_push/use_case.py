"""The config use case (``POST /config``): validate, keep masked secrets, apply as a whole.

A push is applied all or nothing, one at a time: a sender that cannot be
built or a config that cannot be persisted refuses it before anything
changes; then, under the pipeline's lock, the device set (subscriptions,
thresholds, removed devices' sessions ended and committed), the broker
(switched through the source factory) and the Odoo sender.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from iot_bridge.config.model import MASK, BridgeConfig, OdooSection
from iot_bridge.config.sources import EnvSettings, LoadedConfig, effective_mqtt, effective_odoo
from iot_bridge.domain.events import iso_utc
from iot_bridge.errors import ConfigError, ConfigIssue, StoreError
from iot_bridge.logs import get_logger
from iot_bridge.service.delivery.worker import DeliveryWorker
from iot_bridge.service.ingest.broker_link import BrokerLink
from iot_bridge.service.ingest.ingestor import device_specs
from iot_bridge.service.ingest.pipeline import Pipeline
from iot_bridge.service.ports import ConfigRepository, EventSender, EventSenderFactory
from iot_bridge.service.views.state_out import state_out_will

log = get_logger(__name__)

_MASK_ONLY_SAME = "'***' keeps the current secret only for the same %s; send the real secret"


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


@dataclass(frozen=True, slots=True)
class ConfigApplied:
    """What ``POST /config`` reports back."""

    devices_configured: int
    mqtt_reconnected: bool
    timestamp: str


class ConfigUseCase:
    """The active config and how a pushed one replaces it."""

    def __init__(
        self,
        *,
        env: EnvSettings,
        loaded: LoadedConfig,
        repository: ConfigRepository,
        sender_factory: EventSenderFactory,
        pipeline: Pipeline,
        link: BrokerLink,
        delivery: DeliveryWorker,
    ) -> None:
        self.env = env
        self.config = loaded.config
        self.config_source = loaded.source
        self.last_config_update = loaded.last_update
        self.odoo: OdooSection | None = effective_odoo(loaded.config, env)
        self._repository = repository
        self._sender_factory = sender_factory
        self._pipeline = pipeline
        self._link = link
        self._delivery = delivery
        self._lock = asyncio.Lock()
        self._listeners: list[Callable[[], None]] = []

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every applied push (a view that sleeps until one,
        the heap's settling: the old devices are garbage then)."""
        self._listeners.append(listener)

    @property
    def shard(self) -> str | None:
        """``"i/N"`` of ``BRIDGE_SHARD``, or None when this instance takes every device."""
        return None if self.env.shard is None else str(self.env.shard)

    @property
    def odoo_configured(self) -> bool:
        """False in local-only mode."""
        return self.odoo is not None

    async def apply(self, config: BridgeConfig) -> ConfigApplied:
        """Apply a validated config as a whole: persist, devices, broker, Odoo.

        Pushes are applied one at a time. Raises ``ConfigError`` (nothing
        changed) or ``StoreError`` (the file could not be written, or the disk
        is full; nothing changed).
        """
        async with self._lock:
            return await self._apply(config)

    async def _apply(self, config: BridgeConfig) -> ConfigApplied:
        config = keep_masked_secrets(config, self.config)
        waiting = self._pipeline.disk_full
        if waiting is not None:
            # Its commit would wait behind the one holding the pipeline: refuse it now.
            raise StoreError(
                f"the disk holding the data dir is full (since {iso_utc(waiting.since)}):"
                " free space, then push again"
            )
        new_odoo = effective_odoo(config, self.env)
        new_sender = self._new_sender(new_odoo) if new_odoo != self.odoo else None
        await asyncio.to_thread(self._repository.persist, config)
        pipeline = self._pipeline
        now = pipeline.now()
        async with pipeline.lock:
            events = pipeline.ingestor.apply_devices(device_specs(config, self.env.shard), now)
            await pipeline.commit(events, now)
            self.config = config
            self.config_source = "persisted"
            self.last_config_update = datetime.now(UTC).isoformat()
            new_section = effective_mqtt(config, self.env)
            new_will = state_out_will(config, self.env.shard)
            # The will is part of the connection: a new one (state out on or off) reconnects.
            reconnect = new_section != self._link.section or new_will != self._link.will
            if reconnect:
                await self._link.switch(new_section, pipeline.ingestor.subscriptions, new_will)
            if new_odoo != self.odoo:
                self.odoo = new_odoo
                self._delivery.set_sender(new_sender)
        if not reconnect:
            # Outside the lock: waiting for the SUBACK must not stall the pipeline
            # (whose draining may be what lets the client read the SUBACK).
            await self._link.source.set_subscriptions(pipeline.ingestor.subscriptions)
        log.info(
            "config_applied",
            devices=len(config.devices),
            devices_taken=len(pipeline.ingestor.device_ids),
            shard=self.shard,
            mqtt_reconnected=reconnect,
            broker=self._link.broker_address,
            removed_sessions=sum(
                1
                for e in events
                if (ended := e.ended_data()) is not None and ended["reason"] == "device_removed"
            ),
        )
        for listener in self._listeners:
            listener()
        return ConfigApplied(
            devices_configured=len(pipeline.ingestor.device_ids),
            mqtt_reconnected=reconnect,
            timestamp=self.last_config_update,
        )

    def _new_sender(self, section: OdooSection | None) -> EventSender | None:
        # Before anything changes: a sender that cannot be built refuses the push.
        try:
            return self._sender_factory(section)
        except ValueError as err:
            issue = ConfigIssue("odoo.base_url", f"cannot be used: {err}")
            raise ConfigError([issue], source="config push") from err
