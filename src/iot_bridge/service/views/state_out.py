"""Machine state back out on MQTT (CONTRACT section 8), off unless ``state_out.enabled``.

``StateOut`` follows the in-process feed in its own task and publishes through
the bridge's MQTT connection, so it never holds up ingestion or
acknowledgements: the pipeline only offers batches to a bounded queue.

- ``<topic_prefix>/<device_id>/state``: retained, QoS 1, JSON, on every state
  change or online change at once, and at most every ``power_interval_s`` while
  only the power or the energy counter changes.
- ``<topic_prefix>/bridge/availability``: ``online`` after every connect, last
  (the configs and states are out by then); ``offline`` is the connection's
  MQTT will, and is published on a clean stop.
  With ``BRIDGE_SHARD`` each instance has its own,
  ``<topic_prefix>/bridge/shard<i>/availability``.
- ``<topic_prefix>/bridge/status`` (per shard likewise): the bridge's
  diagnostics (outbox, Odoo, MQTT protocol) as JSON, polled every
  ``bridge_status_interval_s`` and published when they changed.
- With ``homeassistant_discovery``: retained discovery configs
  (``ha_discovery.py``) per machine of this instance (state, power, running,
  meter connectivity, and energy once the meter reported a counter) and for
  the bridge itself.
- A device removed from the config, or the whole section switched off or
  moved to another prefix, has its retained topics cleared (empty retained
  messages).
- After every (re)connect everything is published again: the broker may have
  lost retained messages, and a will may have said ``offline``.

While off, with nothing left to clear, it is not even subscribed to the feed:
it sleeps until ``config_changed`` (each applied push) wakes it.

What has been retained is remembered per process: a device removed while the
bridge was down keeps its retained topics until cleared by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Protocol

import orjson

from iot_bridge import __version__
from iot_bridge.config.model import BridgeConfig, DeviceConfig, StateOutSection
from iot_bridge.config.shard import Shard
from iot_bridge.domain.events import EventType, iso_utc
from iot_bridge.errors import MqttError
from iot_bridge.logs import get_logger
from iot_bridge.service.feed import Feed, FeedBatch, Subscription
from iot_bridge.service.ports import LastWill
from iot_bridge.service.views.ha_discovery import (
    availability_topic,
    bridge_discovery,
    bridge_status_topic,
    legacy_discovery_topics,
    legacy_node_id,
    machine_discovery,
    node_id,
    state_topic,
)
from iot_bridge.service.views.types import MachineDirectory, MachineStatus

__all__ = [
    "POLL_S",
    "POWER_INTERVAL_S",
    "Publisher",
    "StateOut",
    "availability_topic",
    "bridge_status_payload",
    "state_out_will",
    "state_payload",
    "state_topic",
]

log = get_logger(__name__)

POWER_INTERVAL_S: Final = 5.0
BRIDGE_STATUS_INTERVAL_S: Final = 10.0
POLL_S: Final = 1.0
PUBLISH_CONCURRENCY: Final = 64
# At the stop, the retained ``offline`` waits this long for its PUBACK (within the bridge's
# SHUTDOWN_STEP_TIMEOUT_S for each closer).
OFFLINE_PUBACK_TIMEOUT_S: Final = 2.0
ONLINE: Final = b"online"
OFFLINE: Final = b"offline"
_ONLINE_EVENTS: Final = frozenset({EventType.DEVICE_ONLINE, EventType.DEVICE_OFFLINE})

# ``GET /health``'s answer (StatusQueries.health): the bridge status is read from it.
HealthSource = Callable[[], Awaitable[Mapping[str, Any]]]


class Publisher(Protocol):
    """What state out needs of the MQTT client."""

    @property
    def connected(self) -> bool:
        """True while publishing can work."""
        ...

    @property
    def connection_count(self) -> int:
        """How many times the client connected (a change means: publish everything again)."""
        ...

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False
    ) -> None:
        """Publish one message (QoS 1 waits for the PUBACK); ``MqttError`` on failure."""
        ...


def state_out_will(config: BridgeConfig, shard: Shard | None = None) -> LastWill | None:
    """The MQTT will the bridge connects with (``offline``, retained), when state out is on."""
    section = config.state_out
    if section is None or not section.enabled:
        return None
    return LastWill(availability_topic(section, shard), OFFLINE)


def state_payload(status: MachineStatus, now: float) -> bytes:
    """The retained state message of one device (CONTRACT section 8)."""
    started = status.session_started_at
    return orjson.dumps(
        {
            "device_id": status.device_id,
            "machine_name": status.machine_name,
            "state": status.state,
            "online": bool(status.online),
            "power_w": status.power_w,
            "session_id": status.session_id,
            "session_started_at": None if started is None else iso_utc(started),
            "updated_at": iso_utc(now),
            "energy_wh_total": _rounded(status.energy_wh_total),
        }
    )


def bridge_status_payload(health: Mapping[str, Any]) -> bytes:
    """The bridge's retained diagnostics, from ``GET /health``'s answer."""
    outbox = health.get("outbox") or {}
    odoo = health.get("odoo") or {}
    mqtt = health.get("mqtt") or {}
    return orjson.dumps(
        {
            "status": health.get("status"),
            "version": __version__,
            "shard": health.get("shard"),
            "devices": health.get("devices"),
            "outbox_pending": outbox.get("pending"),
            "outbox_dead": outbox.get("dead"),
            "odoo_configured": bool(odoo.get("configured")),
            "odoo_reachable": odoo.get("available"),
            "mqtt_protocol": mqtt.get("protocol"),
        }
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class StateOut:
    """Publishes machine state from the feed; see the module docstring."""

    def __init__(
        self,
        *,
        feed: Feed,
        directory: MachineDirectory,
        config: Callable[[], BridgeConfig],
        client: Callable[[], Publisher],
        clock: Callable[[], float],
        shard: Shard | None = None,
        health: HealthSource | None = None,
        power_interval_s: float = POWER_INTERVAL_S,
        bridge_status_interval_s: float = BRIDGE_STATUS_INTERVAL_S,
        poll_s: float = POLL_S,
    ) -> None:
        """``shard``: this instance's ``BRIDGE_SHARD`` (its machines, its own topics);
        ``health``: where the bridge status comes from (None: no status published)."""
        self._feed = feed
        self._directory = directory
        self._config = config
        self._client = client
        self._clock = clock
        self._shard = shard
        self._health = health
        self._power_interval_s = power_interval_s
        self._bridge_status_interval_s = bridge_status_interval_s
        self._poll_s = poll_s
        self._subscription: Subscription | None = None  # only while on: off costs no wake-up
        self._config_pushed = asyncio.Event()
        self._closing = False
        self._seen_config: BridgeConfig | None = None
        self._section: StateOutSection | None = None
        self._devices: dict[str, DeviceConfig] = {}  # this instance's, by id
        self._synced: tuple[int, int] | None = None  # (id(client), connection_count)
        self._retained: dict[str, bytes] = {}  # what the broker holds from us, as we know it
        self._to_clear: set[str] = set()  # retained topics still to empty
        self._device_topics: dict[str, set[str]] = {}
        self._with_energy: set[str] = set()  # devices whose energy sensor is announced
        self._legacy_cleared: set[str] = set()
        self._bridge_topics: set[str] = set()  # the bridge's discovery configs
        self._odoo_configured = False
        self._last_status_poll = -float("inf")
        self._urgent: set[str] = set()
        self._power_dirty: set[str] = set()
        self._last_power_publish: dict[str, float] = {}
        self._dropped = 0
        self.published = 0

    # -- lifecycle -------------------------------------------------------

    async def run(self) -> None:
        """Follow the feed and publish until cancelled (the bridge's task ``state-out``).

        While state out is off with nothing left to clear, it leaves the feed and
        sleeps until ``config_changed`` (or ``close``): no wake-up per message,
        none per second.
        """
        while True:
            try:
                await self.step()
                if self._config() is not self._seen_config:
                    continue  # pushed while that step published: take it in at once
                if self.dormant():
                    await self._sleep_until_config_pushed()
                    continue
                batch = await self._next_batch(self.wait_s())
                while batch is not None:
                    self.apply(batch)
                    batch = self._next_queued()
            except EOFError:
                return  # closed
            except Exception:  # a bug here must not end state out for good, nor the bridge
                log.exception("state_out_failed")
                self._synced = None
                await asyncio.sleep(self._poll_s)

    def config_changed(self) -> None:
        """A config push was applied: wake ``run``, asleep while off or waiting on the feed."""
        self._config_pushed.set()
        if self._subscription is not None:
            self._subscription.offer(FeedBatch(ts=self._clock()))  # empty: only a wake-up

    def dormant(self) -> bool:
        """Off, that config seen, nothing left to clear: nothing to do until a push."""
        return (
            self._section is None
            and not self._to_clear
            and self._seen_config is not None
            and self._config() is self._seen_config
        )

    async def _sleep_until_config_pushed(self) -> None:
        if self._subscription is not None:
            self._subscription.close()  # the feed stops offering us batches
            self._subscription = None
        self._config_pushed.clear()
        if not self._closing:
            await self._config_pushed.wait()
        if self._closing:
            raise EOFError("state-out")

    async def close(self) -> None:
        """Say ``offline`` (a clean DISCONNECT drops the will); before the link closes."""
        self._closing = True
        self._config_pushed.set()
        if self._subscription is not None:
            self._subscription.close()
        section = self._section
        client = self._client()
        if section is not None and client.connected:
            topic = availability_topic(section, self._shard)
            with contextlib.suppress(MqttError, TimeoutError):
                async with asyncio.timeout(OFFLINE_PUBACK_TIMEOUT_S):
                    await client.publish(topic, OFFLINE, qos=1, retain=True)

    def _subscribed(self) -> Subscription:
        if self._closing:
            raise EOFError("state-out")
        if self._subscription is None:
            self._subscription = self._feed.subscribe("state-out", max_batches=4096)
            self._dropped = 0
        return self._subscription

    def _next_queued(self) -> FeedBatch | None:
        return self._subscribed().get_nowait()

    async def _next_batch(self, timeout_s: float) -> FeedBatch | None:
        subscription = self._subscribed()
        ready = subscription.get_nowait()
        if ready is not None:
            return ready
        try:
            async with asyncio.timeout(timeout_s):
                return await subscription.get()
        except TimeoutError:
            return None

    def wait_s(self) -> float:
        """How long ``run`` may sleep: until the next power update is due, at most ``poll_s``.

        Nothing is due while nothing can be published (state out off, or the
        client disconnected: the next connect publishes everything anyway).
        """
        if not self._power_dirty or self._section is None or not self._client().connected:
            return self._poll_s
        now = self._clock()
        due = min(
            self._last_power_publish.get(d, -float("inf")) + self._power_interval_s
            for d in self._power_dirty
        )
        return max(0.0, min(self._poll_s, due - now))

    # -- what to publish -------------------------------------------------

    def apply(self, batch: FeedBatch) -> None:
        """Note which devices need publishing after ``batch``."""
        subscription = self._subscription
        if subscription is not None and subscription.dropped != self._dropped:
            # Batches were missed: the picture is unknown, publish every state again.
            self._dropped = subscription.dropped
            self._urgent.update(self._device_topics)
        for change in batch.changes:
            self._urgent.add(change.device_id)
        for event in batch.events:
            if event.event_type in _ONLINE_EVENTS:
                self._urgent.add(event.device_id)
        for reading in batch.readings:
            self._power_dirty.add(reading.device_id)
        self._power_dirty.update(batch.energy_read)  # the energy total moved

    async def step(self) -> None:
        """Publish what is due now: everything after a (re)connect or a config change.

        A failed publish (the connection dropped mid-way) is logged; everything
        is sent again at the next step.
        """
        try:
            await self._step()
        except MqttError as err:
            log.warning("state_out_publish_failed", error=str(err))
            self._synced = None

    async def _step(self) -> None:
        client = self._client()
        config = self._config()
        if config is not self._seen_config:
            await self._config_changed(client, config)
        if not client.connected:
            return
        await self._send_clears(client)
        section = self._section
        if section is None:
            self._urgent.clear()  # nothing to publish them to
            self._power_dirty.clear()
            return
        synced = (id(client), client.connection_count)
        if synced != self._synced:
            await self._publish_all(client, section)
            self._synced = synced
            return
        now = self._clock()
        if now - self._last_status_poll >= self._bridge_status_interval_s:
            await self._publish_bridge(client, section)
        due = set(self._urgent)
        for device_id in self._power_dirty:
            last = self._last_power_publish.get(device_id, -float("inf"))
            if now - last >= self._power_interval_s:
                due.add(device_id)
        self._urgent.clear()
        self._power_dirty.difference_update(due)
        await self._publish_states(client, section, due, now)

    async def _config_changed(self, client: Publisher, config: BridgeConfig) -> None:
        self._seen_config = config
        section = config.state_out if config.state_out and config.state_out.enabled else None
        old = self._section
        if old is not None and (section is None or _moved(old, section)):
            # Switched off or moved: nothing of ours may stay behind under the old topics.
            self._clear(list(self._retained))
            self._device_topics.clear()
            self._with_energy.clear()
            self._bridge_topics.clear()
            self._synced = None
        self._section = section
        shard = self._shard
        self._devices = {
            device.device_id: device
            for device in (config.devices if shard is None else shard.select(config.devices))
        }
        if section is None:
            return
        removed = [d for d in self._device_topics if d not in self._devices]
        for device_id in removed:
            self._clear(sorted(self._device_topics.pop(device_id)))
            self._with_energy.discard(device_id)
            self._last_power_publish.pop(device_id, None)
            self._urgent.discard(device_id)
            self._power_dirty.discard(device_id)
        if removed:
            log.info("state_out_devices_cleared", devices=len(removed))
        self._last_status_poll = -float("inf")  # Odoo may have come or gone: look again
        if client.connected and self._synced is not None:
            # Names or models may have changed: discovery again (unchanged ones are skipped).
            await self._publish_discovery(client, section, config)
            self._urgent.update(set(self._devices) - set(self._device_topics))

    async def _publish_all(self, client: Publisher, section: StateOutSection) -> None:
        config = self._seen_config
        assert config is not None
        self._retained.clear()  # the broker may have lost them: send everything
        await self._publish_bridge(client, section)
        await self._publish_discovery(client, section, config)
        self._urgent.clear()
        self._power_dirty.clear()
        await self._publish_states(client, section, list(self._devices), self._clock())
        # Last: whoever sees "online" finds the configs and states already there.
        await self._send(client, [(availability_topic(section, self._shard), ONLINE)])
        log.info("state_out_synced", devices=len(self._devices), prefix=section.topic_prefix)

    async def _publish_bridge(self, client: Publisher, section: StateOutSection) -> None:
        """The bridge's status, and its discovery configs (which depend on Odoo being set)."""
        self._last_status_poll = self._clock()
        if self._health is None:
            return
        try:
            health = await self._health()
        except Exception:  # diagnostics must never stop the machines' state
            log.exception("state_out_bridge_status_failed")
            return
        self._odoo_configured = bool((health.get("odoo") or {}).get("configured"))
        messages: list[tuple[str, bytes]] = []
        if section.homeassistant_discovery:
            found = bridge_discovery(
                section, shard=self._shard, odoo_configured=self._odoo_configured
            )
            self._clear(sorted(self._bridge_topics - set(found)))
            self._bridge_topics = set(found)
            messages.extend(found.items())
        messages.append((bridge_status_topic(section, self._shard), bridge_status_payload(health)))
        await self._send_clears(client)
        await self._send(client, [m for m in messages if self._retained.get(m[0]) != m[1]])

    async def _publish_discovery(
        self, client: Publisher, section: StateOutSection, config: BridgeConfig
    ) -> None:
        if not section.homeassistant_discovery:
            return
        messages: list[tuple[str, bytes]] = []
        for device in self._devices.values():
            messages.extend(self._machine_discovery(section, device))
        await self._send(client, messages)
        legacy = [d for d in self._devices if d not in self._legacy_cleared]
        clears = self._legacy_clears(section, config, legacy)
        await self._send(client, [(topic, b"") for topic in clears], remember=False)
        self._legacy_cleared.update(legacy)

    def _machine_discovery(
        self, section: StateOutSection, device: DeviceConfig
    ) -> list[tuple[str, bytes]]:
        """The device's discovery messages the broker does not hold yet."""
        device_id = device.device_id
        status = self._directory.status(device_id)
        with_energy = status is not None and status.energy_wh_total is not None
        if with_energy:
            self._with_energy.add(device_id)
        found = machine_discovery(section, device, shard=self._shard, with_energy=with_energy)
        self._device_topics.setdefault(device_id, set()).update(found)
        return [(t, p) for t, p in found.items() if self._retained.get(t) != p]

    @staticmethod
    def _legacy_clears(
        section: StateOutSection, config: BridgeConfig, device_ids: Sequence[str]
    ) -> list[str]:
        """The configs an earlier version left under a node id these devices gave up.

        ``press.1`` used to share ``iot_bridge_press_1`` with ``press_1``: that
        node is left alone while any configured device (of any shard) owns it.
        """
        moved = [d for d in device_ids if legacy_node_id(d) != node_id(d)]
        if not moved:
            return []
        owned = {node_id(device.device_id) for device in config.devices}
        return [
            topic
            for device_id in moved
            if legacy_node_id(device_id) not in owned
            for topic in legacy_discovery_topics(section, device_id)
        ]

    async def _publish_states(
        self,
        client: Publisher,
        section: StateOutSection,
        device_ids: Sequence[str] | set[str],
        now: float,
    ) -> None:
        messages: list[tuple[str, bytes]] = []
        for device_id in device_ids:
            status = self._directory.status(device_id)
            if status is None:
                continue
            if (
                status.energy_wh_total is not None
                and device_id not in self._with_energy
                and section.homeassistant_discovery
                and device_id in self._devices
            ):
                # The meter's first counter: its energy sensor appears, before the value.
                messages.extend(self._machine_discovery(section, self._devices[device_id]))
            topic = state_topic(section, device_id)
            self._device_topics.setdefault(device_id, set()).add(topic)
            self._last_power_publish[device_id] = now
            messages.append((topic, state_payload(status, now)))
        await self._send(client, messages)

    def _clear(self, topics: Sequence[str]) -> None:
        """Empty these retained topics (now if connected, else after the next connect)."""
        for topic in topics:
            self._retained.pop(topic, None)
            self._to_clear.add(topic)

    async def _send_clears(self, client: Publisher) -> None:
        if not self._to_clear:
            return
        topics = sorted(self._to_clear)
        await self._send(client, [(topic, b"") for topic in topics], remember=False)
        self._to_clear.difference_update(topics)

    async def _send(
        self, client: Publisher, messages: Sequence[tuple[str, bytes]], *, remember: bool = True
    ) -> None:
        """Publish retained QoS 1, up to ``PUBLISH_CONCURRENCY`` waiting for PUBACKs at once."""
        for start in range(0, len(messages), PUBLISH_CONCURRENCY):
            chunk = messages[start : start + PUBLISH_CONCURRENCY]
            await asyncio.gather(
                *(client.publish(topic, payload, qos=1, retain=True) for topic, payload in chunk)
            )
            self.published += len(chunk)
            if remember:
                self._retained.update(chunk)

    @property
    def retained(self) -> Mapping[str, bytes]:
        """What the broker holds from us, as far as we know (for tests)."""
        return self._retained


def _moved(old: StateOutSection, new: StateOutSection) -> bool:
    return (old.topic_prefix, old.discovery_prefix, old.homeassistant_discovery) != (
        new.topic_prefix,
        new.discovery_prefix,
        new.homeassistant_discovery,
    )
