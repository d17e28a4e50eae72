"""In-memory fakes of the service's ports (``service/ports.py``), for unit tests of the service.

Each fake writes what happens to it into a shared ``journal`` so a test can
check the order of commits and acknowledgements.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from iot_bridge.bootstrap import build_bridge
from iot_bridge.config.model import BridgeConfig, MqttSection, OdooSection
from iot_bridge.config.parse import parse_config
from iot_bridge.config.sources import EnvSettings, LoadedConfig
from iot_bridge.domain.events import Event
from iot_bridge.errors import DiskFullError, StoreError
from iot_bridge.service.ports import (
    STATUS_PENDING,
    EventSender,
    LastWill,
    MessageSource,
    OutboxItem,
    OutboxStats,
    SourceMessage,
    StoredEvent,
    StoreUsage,
)

T0 = 1_770_000_000.0


@dataclass(frozen=True, slots=True)
class FakeMessage:
    """A QoS 1 message as the MQTT client hands it over."""

    topic: str
    payload: bytes
    packet_id: int
    retain: bool = False
    duplicate: bool = False

    @property
    def ack_token(self) -> tuple[int, int] | None:
        """Connection generation 1 and the packet id."""
        return (1, self.packet_id)


def shelly(device_id: str, power_w: float, packet_id: int) -> FakeMessage:
    """A Shelly PM Gen3 ``status/pm1:0`` reading of ``device_id``."""
    body = {"id": 0, "apower": power_w, "voltage": 230.0, "aenergy": {"total": 1000.0}}
    return FakeMessage(topic_of(device_id), json.dumps(body).encode(), packet_id)


def topic_of(device_id: str) -> str:
    """The data topic of a test device."""
    return f"shellypmminig3-{device_id}/status/pm1:0"


def config(*device_ids: str, broker: str = "broker-a", odoo: str | None = None) -> BridgeConfig:
    """A validated config with these devices (fast detection timings)."""
    document: dict[str, Any] = {
        "mqtt": {"broker": broker, "port": 1883, "username": "u", "password": "secret"},
        "devices": [
            {
                "device_id": device_id,
                "machine_name": f"Machine {device_id}",
                "mqtt_topic": topic_of(device_id),
                "parser_type": "shelly_pm",
                "session_config": {
                    "standby_threshold_w": 10.0,
                    "working_threshold_w": 100.0,
                    "start_debounce_s": 5.0,
                    "stop_debounce_s": 20.0,
                    "message_timeout_s": 600.0,
                    "heartbeat_interval_s": 3600.0,
                },
            }
            for device_id in device_ids
        ],
    }
    if odoo is not None:
        document["odoo"] = {"base_url": odoo, "api_key": "k"}
    return parse_config(document, source="test")


class FakeClock:
    """Time that moves only when the test says so.

    ``sleep`` ends once ``advance`` has moved the time past its end (setting
    ``time`` directly wakes no one): the housekeeping loop and delivery sleep
    until the stop cancels them, unless a test advances the clock.
    """

    def __init__(self, now: float = T0) -> None:
        self.time = now
        self.sleeps: list[float] = []  # every sleep asked for, in order
        self._moved = asyncio.Event()

    def now(self) -> float:
        """The test's time."""
        return self.time

    async def sleep(self, seconds: float) -> None:
        """Wait until ``advance`` takes the time to ``now() + seconds``."""
        self.sleeps.append(seconds)
        until = self.time + seconds
        while self.time < until:
            moved = self._moved
            await moved.wait()

    def advance(self, seconds: float) -> None:
        """Move the time on and wake the sleepers whose end it reached."""
        self.time += seconds
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()


class FakeSource:
    """A message source fed by the test; records acknowledgements in the journal."""

    def __init__(self, section: MqttSection, subscriptions: frozenset[str], journal: list[Any]):
        self.section = section
        self.wanted = subscriptions
        self.journal = journal
        self.connected = True
        self.closed = False
        self.last_error: str | None = None
        self.protocol: str | None = "5"
        self.acked: list[int] = []
        self.will: LastWill | None = None
        self.receiving = 0  # receive_batch calls so far
        self.receive_cancelled = asyncio.Event()
        # Set by a test: a cancelled receive ends only once this is set (a slow cleanup).
        self.hold_cancel: asyncio.Event | None = None
        self._batches: asyncio.Queue[list[FakeMessage]] = asyncio.Queue()
        self._stop = asyncio.Event()

    @property
    def broker(self) -> str:
        """``host:port``."""
        return f"{self.section.broker}:{self.section.port}"

    @property
    def subscriptions(self) -> frozenset[str]:
        """The wanted filters."""
        return self.wanted

    def push(self, *messages: FakeMessage) -> None:
        """The broker delivers these as one batch."""
        self._batches.put_nowait(list(messages))

    async def run(self) -> None:
        """Stays 'connected' until closed."""
        await self._stop.wait()

    async def receive_batch(self, max_messages: int) -> Sequence[SourceMessage]:
        """The next pushed batch; ``[]`` at once when closed (as the MQTT client)."""
        self.receiving += 1
        try:
            if self.closed and self._batches.empty():
                return []
            return await self._batches.get()
        except asyncio.CancelledError:
            self.receive_cancelled.set()
            if self.hold_cancel is not None:
                await self.hold_cancel.wait()
            raise

    def ack(self, messages: Iterable[SourceMessage]) -> int:
        """Record the packet ids, in order."""
        ids = [token[1] for m in messages if (token := m.ack_token) is not None]
        self.acked.extend(ids)
        self.journal.append(("ack", self.section.broker, ids))
        return len(ids)

    async def set_subscriptions(self, filters: Iterable[str]) -> None:
        """Remember the filters."""
        self.wanted = frozenset(filters)

    async def close(self) -> None:
        """End ``run``; a waiting ``receive_batch`` returns ``[]``."""
        self.closed = True
        self._stop.set()
        self._batches.put_nowait([])


@dataclass
class FakeOutbox:
    """The outbox in memory: events, snapshots and fingerprints, committed all or nothing."""

    journal: list[Any] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    snapshots: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    batches: list[list[int]] = field(default_factory=list)
    fail_commits: bool = False
    disk_full: bool = False  # commits fail as on a full disk (DiskFullError) while set
    commit_attempts: int = 0
    closed: bool = False

    def commit(
        self,
        events: Sequence[Event],
        snapshots: Mapping[str, Mapping[str, Any] | None] | None = None,
        *,
        now: float,
        batch: Sequence[int] | None = None,
    ) -> None:
        """All of it, or ``StoreError`` and nothing."""
        self.commit_attempts += 1
        if self.fail_commits:
            raise StoreError("I/O error (fake)")
        if self.disk_full:
            raise DiskFullError("database or disk is full (fake)")
        self.events.extend(events)
        for device_id, snapshot in (snapshots or {}).items():
            if snapshot is None:
                self.snapshots.pop(device_id, None)
            else:
                self.snapshots[device_id] = snapshot
        if batch:
            self.batches.append(list(batch))
        self.journal.append(("commit", len(events), list(batch or ())))

    def load_snapshots(self) -> dict[str, dict[str, Any]]:
        """A copy of the snapshots."""
        return {k: dict(v) for k, v in self.snapshots.items()}

    def load_committed_batches(self) -> list[list[int]]:
        """The last two batches' fingerprints."""
        return self.batches[-2:]

    def recent_events(self, limit: int = 100) -> list[StoredEvent]:
        """Newest first, all pending."""
        return [
            StoredEvent(
                seq=i,
                event_uid=e.event_uid,
                device_id=e.device_id,
                event_type=str(e.event_type),
                payload=e.to_dict(),
                status=STATUS_PENDING,
                attempts=0,
                next_attempt_at=e.timestamp,
                last_error=None,
                created_at=e.timestamp,
                delivered_at=None,
            )
            for i, e in reversed(list(enumerate(self.events)))
        ][:limit]

    def outbox_stats(self, now: float) -> OutboxStats:
        """Everything pending."""
        return OutboxStats(pending=len(self.events), dead=0, flagged=0, oldest_pending_age_s=None)

    def retry_dead(self, now: float) -> int:
        """Nothing is dead here."""
        return 0

    def prune(
        self, now: float, retention_s: float | None = None, *, chunk: int | None = None
    ) -> int:
        """Nothing to prune."""
        return 0

    def prune_oldest_delivered(self, bytes_to_free: int, *, chunk: int | None = None) -> int:
        """Nothing is delivered here."""
        return 0

    def kept_events_bytes(self) -> int:
        """About 600 bytes an event (all pending)."""
        return 600 * len(self.events)

    def usage(self) -> StoreUsage:
        """A small data dir on a roomy disk."""
        return StoreUsage(
            data_dir_bytes=1 << 20, wal_bytes=0, reusable_bytes=0, disk_free_bytes=1 << 30
        )

    def limit_wal(self, budget_bytes: int | None) -> None:
        """Nothing to limit."""

    def close(self) -> None:
        """Remember it."""
        self.closed = True

    def retry_now(self, now: float) -> int:
        """No delivery in these tests."""
        return 0

    def due_devices(
        self, now: float, exclude_devices: Collection[str] = ()
    ) -> tuple[list[str], float | None]:
        """Nothing to deliver (local-only)."""
        return [], None

    def pending_chunks(
        self, device_ids: Sequence[str], now: float, limit: int
    ) -> list[list[OutboxItem]]:
        """Nothing to deliver."""
        return []

    def make_due(self, seqs: Collection[int], now: float) -> None:
        """Unused."""

    def mark_delivered_many(self, seqs: Collection[int], now: float) -> None:
        """Unused."""

    def mark_retry(self, seq: int, now: float, next_attempt_at: float, error: str) -> None:
        """Unused."""

    def mark_dead(self, seq: int, now: float, error: str) -> None:
        """Unused."""


@dataclass
class FakeRepository:
    """Remembers the persisted configs."""

    persisted: list[BridgeConfig] = field(default_factory=list)

    def persist(self, config: BridgeConfig) -> None:
        """Keep it."""
        self.persisted.append(config)


class NullSender:
    """An event sender that accepts everything."""

    async def send(self, event: Mapping[str, Any]) -> None:
        """Accepted."""


class Rig:
    """A ``Bridge`` built by the composition root (``bootstrap.build_bridge``) on fakes, plus
    the fakes, for one test."""

    def __init__(
        self,
        bridge_config: BridgeConfig,
        outbox: FakeOutbox | None = None,
        env: EnvSettings | None = None,
    ) -> None:
        self.journal: list[Any] = []
        self.outbox = outbox or FakeOutbox(journal=self.journal)
        self.outbox.journal = self.journal
        self.clock = FakeClock()
        self.repository = FakeRepository()
        self.sources: list[FakeSource] = []
        self.senders: list[OdooSection | None] = []
        self.bridge = build_bridge(
            env=env or EnvSettings(),
            loaded=LoadedConfig(config=bridge_config, source="file"),
            outbox=self.outbox,
            config_repository=self.repository,
            source_factory=self._source,
            sender_factory=self._sender,
            clock=self.clock,
        )
        self.task: asyncio.Task[None] | None = None

    def _source(
        self, section: MqttSection, subscriptions: frozenset[str], will: LastWill | None = None
    ) -> MessageSource:
        source = FakeSource(section, subscriptions, self.journal)
        source.will = will
        self.sources.append(source)
        return source

    def _sender(self, section: OdooSection | None) -> EventSender | None:
        if section is not None and "invalid" in section.base_url:
            raise ValueError("cannot use this URL")
        self.senders.append(section)
        return None if section is None else NullSender()

    @property
    def source(self) -> FakeSource:
        """The source the bridge uses now."""
        current = self.bridge.link.source
        assert isinstance(current, FakeSource)
        return current

    async def start(self) -> Rig:
        """``start()`` then ``run()`` in a task."""
        await self.bridge.start()
        self.task = asyncio.create_task(self.bridge.run())
        return self

    async def stop(self) -> None:
        """A clean stop; re-raises what ``run()`` raised."""
        self.bridge.stop()
        assert self.task is not None
        await self.task
        await self.bridge.close()

    async def until(self, condition: Any, what: str) -> None:
        """Poll ``condition()`` (commits run in a thread) with a deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while not condition():
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            if self.task is not None and self.task.done():
                return
            await asyncio.sleep(0.001)
