"""The ports: what the service needs from the outside, as small ``Protocol``s.

The service layer names only these; ``bootstrap.py`` hands it the adapters
that implement them (``net/mqtt`` the message source, ``adapters/store``
the outbox, ``adapters/odoo`` the event sender, ``runtime/clock`` the clock,
``config/sources`` the config repository). Ports are called per batch, never
per message: the hot path is ``Ingestor.handle`` on plain lists.

Adapters translate third-party errors into ``iot_bridge.errors`` (``StoreError``,
``MqttError``, ``DeliveryError``) or ``ValueError`` before they cross a port.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from iot_bridge.config.model import BridgeConfig, MqttSection, OdooSection
from iot_bridge.domain.events import Event
from iot_bridge.errors import DeliveryError

# An event that failed this many times is "flagged" (still retried, shown in /health).
FLAG_AFTER_ATTEMPTS = 10
# Fingerprints of this many committed batches are kept (see service/ingest/redelivery.py): the
# last one committed but maybe not acknowledged, the one before it acknowledged but
# its PUBACKs still in a socket buffer when the process died.
KEPT_BATCHES = 2

# A disk budget's share the WAL may take before the writer checkpoints it (``limit_wal``).
WAL_SHARE_OF_BUDGET = 16

STATUS_PENDING = "pending"
STATUS_DELIVERED = "delivered"
STATUS_DEAD = "dead"


# -- the message source (MQTT) --------------------------------------------------------


class SourceMessage(Protocol):
    """One received message, as the pipeline needs it."""

    @property
    def topic(self) -> str: ...

    @property
    def payload(self) -> bytes: ...

    @property
    def retain(self) -> bool: ...

    @property
    def duplicate(self) -> bool: ...

    @property
    def ack_token(self) -> tuple[int, int] | None: ...


class MessageSource(Protocol):
    """Where messages come from: a batch at a time, acknowledged after their commit."""

    @property
    def broker(self) -> str:
        """``host:port``, for logs."""
        ...

    @property
    def connected(self) -> bool:
        """Whether the source hears the devices right now."""
        ...

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        ...

    @property
    def last_error(self) -> str | None:
        """Why the last connection attempt failed, for /health."""
        ...

    @property
    def protocol(self) -> str | None:
        """The protocol version the broker accepted (``"5"``, ``"3.1.1"``), for /health."""
        ...

    @property
    def subscriptions(self) -> frozenset[str]:
        """The wanted topic filters."""
        ...

    async def run(self) -> None:
        """Connect and stay connected until ``close()``."""
        ...

    async def receive_batch(self, max_messages: int) -> Sequence[SourceMessage]:
        """Wait for at least one message; return up to ``max_messages``."""
        ...

    def ack(self, messages: Iterable[SourceMessage]) -> int:
        """Acknowledge messages whose effects are committed; returns how many."""
        ...

    async def set_subscriptions(self, filters: Iterable[str]) -> None:
        """Make the subscriptions equal to ``filters``."""
        ...

    async def close(self) -> None:
        """Disconnect (the persistent session stays) and end ``run()``."""
        ...

    # -- out, on the same connection (the MQTT state out) --

    @property
    def connection_count(self) -> int:
        """How many times the source connected (a change: publish retained state again)."""
        ...

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False
    ) -> None:
        """Publish one message (QoS 1 waits for the broker's PUBACK); ``MqttError`` on failure."""
        ...


@dataclass(frozen=True, slots=True)
class LastWill:
    """What the broker publishes (retained, QoS 1) for us if our connection dies."""

    topic: str
    payload: bytes


# Builds a source for an ``mqtt`` section, subscribed to the given filters, with the
# connection's will (None: no will).
MessageSourceFactory = Callable[[MqttSection, frozenset[str], LastWill | None], MessageSource]


# -- the outbox (the durable store) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event in the outbox with its delivery state.

    ``payload`` is the EVENT object of CONTRACT section 6 (``Event.to_dict()``);
    ``attempts`` counts failed delivery tries.
    """

    seq: int
    event_uid: str
    device_id: str
    event_type: str
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    created_at: float
    delivered_at: float | None

    @property
    def flagged(self) -> bool:
        """True when the event failed 10 or more times and is still being retried."""
        return self.status == STATUS_PENDING and self.attempts >= FLAG_AFTER_ATTEMPTS


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """What delivery needs of one pending event: its EVENT object as stored JSON text."""

    seq: int
    event_uid: str
    device_id: str
    event_type: str
    attempts: int
    payload_json: bytes


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Counts for /health and /metrics."""

    pending: int
    dead: int
    flagged: int
    oldest_pending_age_s: float | None


@dataclass(frozen=True, slots=True)
class StoreUsage:
    """The data dir on disk, for /health, /metrics and the disk budget."""

    data_dir_bytes: int  # the data dir's files, as allocated on disk (the WAL included)
    wal_bytes: int  # of which the write-ahead log (bounded apart, see limit_wal)
    reusable_bytes: int  # pages inside the database freed by deletes: reused before it grows
    disk_free_bytes: int  # room the filesystem has left

    @property
    def stored_bytes(self) -> int:
        """What the data holds: the files but the WAL, less the free pages inside the
        database. What the disk budget's pruning acts on."""
        return max(0, self.data_dir_bytes - self.wal_bytes - self.reusable_bytes)


Snapshots = Mapping[str, Mapping[str, Any] | None]


class DeliveryQueue(Protocol):
    """The delivery worker's side of the outbox (blocking calls, ``StoreError``)."""

    def retry_now(self, now: float) -> int:
        """Every pending event due now (after the sender changed)."""
        ...

    def due_devices(
        self, now: float, exclude_devices: Collection[str] = ()
    ) -> tuple[list[str], float | None]:
        """Devices whose oldest pending event is due, most overdue first; when the next is."""
        ...

    def pending_chunks(
        self, device_ids: Sequence[str], now: float, limit: int
    ) -> list[list[OutboxItem]]:
        """Each device's oldest pending events in order, up to the first not yet due."""
        ...

    def make_due(self, seqs: Collection[int], now: float) -> None:
        """These pending events are due at ``now``."""
        ...

    def mark_delivered_many(self, seqs: Collection[int], now: float) -> None:
        """Odoo accepted these."""
        ...

    def mark_retry(self, seq: int, now: float, next_attempt_at: float, error: str) -> None:
        """A transient failure: try again at ``next_attempt_at``."""
        ...

    def mark_dead(self, seq: int, now: float, error: str) -> None:
        """A permanent failure."""
        ...


class Outbox(DeliveryQueue, Protocol):
    """The unit of work of the pipeline, the read side of the outbox, the delivery queue.

    Every method blocks (the service calls them through ``asyncio.to_thread``)
    and raises ``StoreError`` on failure.
    """

    def commit(
        self,
        events: Sequence[Event],
        snapshots: Snapshots | None = None,
        *,
        now: float,
        batch: Sequence[int] | None = None,
    ) -> None:
        """Events, detector snapshots and the batch's fingerprints in ONE durable transaction."""
        ...

    def load_snapshots(self) -> dict[str, dict[str, Any]]:
        """The detector snapshots of the last run."""
        ...

    def load_committed_batches(self) -> list[list[int]]:
        """The fingerprints of the last ``KEPT_BATCHES`` commits, oldest first."""
        ...

    def recent_events(self, limit: int = 100) -> list[StoredEvent]:
        """Newest first."""
        ...

    def outbox_stats(self, now: float) -> OutboxStats:
        """Counts for /health and /metrics."""
        ...

    def retry_dead(self, now: float) -> int:
        """Dead events back to pending; returns how many."""
        ...

    def prune(
        self, now: float, retention_s: float | None = None, *, chunk: int | None = None
    ) -> int:
        """Delete delivered events older than ``retention_s`` (the store's default when
        None), ``chunk`` per transaction; returns how many."""
        ...

    def prune_oldest_delivered(self, bytes_to_free: int, *, chunk: int | None = None) -> int:
        """Delete the oldest delivered events, about ``bytes_to_free`` of them, ``chunk``
        per transaction; how many. Pending and dead events are never deleted."""
        ...

    def kept_events_bytes(self) -> int:
        """About how many bytes the pending and dead events take."""
        ...

    def usage(self) -> StoreUsage:
        """The data dir's size, the room for reuse inside it, the disk's free room.

        Raises ``StoreError`` when the data dir vanished under the running bridge.
        """
        ...

    def limit_wal(self, budget_bytes: int | None) -> None:
        """Keep the write-ahead log to a share of ``budget_bytes`` (None: the default)."""
        ...

    def close(self) -> None:
        """Release the store."""
        ...


# -- the event sender (Odoo) ---------------------------------------------------------


class EventSender(Protocol):
    """Delivers one EVENT object or raises ``DeliveryError`` (``OdooSender`` is one)."""

    async def send(self, event: Mapping[str, Any]) -> None:
        """Return on success; raise ``DeliveryError`` on failure."""
        ...


@runtime_checkable
class BatchEventSender(EventSender, Protocol):
    """A sender that also delivers several events in one call (``request_format: batch``).

    Its ``send`` is a call with one event. The delivery worker batches for a
    sender that is one of these (``OdooBatchSender``) and sends one at a time
    otherwise.
    """

    async def send_batch(
        self, events: Sequence[Mapping[str, Any]]
    ) -> Sequence[DeliveryError | None]:
        """Each event's result, in order: None when Odoo has it (``ok``/``duplicate``).

        Raises ``DeliveryError`` when the call as a whole failed (no answer, an
        HTTP or JSON-RPC error, a result that does not match the events sent).
        """
        ...


# Builds a sender for an ``odoo`` section (None: local-only mode, no sender).
# Raises ``ValueError`` when the section cannot be used.
EventSenderFactory = Callable[[OdooSection | None], EventSender | None]


# -- the clock and the config repository ----------------------------------------------


class Clock(Protocol):
    """Where the service reads time and waits; tests pass a fake one."""

    def now(self) -> float:
        """Unix seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class ConfigRepository(Protocol):
    """Where an applied config is kept for the next start."""

    def persist(self, config: BridgeConfig) -> None:
        """Write ``config`` durably; raises ``StoreError`` (nothing changed) on failure."""
        ...
