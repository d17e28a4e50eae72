"""Message in -> route -> parse -> detect: the synchronous core of the pipeline.

The ``Ingestor`` owns one parser and one ``SessionDetector`` per device. It
does no I/O and reads no clock: the caller passes ``now`` and then commits the
returned events together with ``take_changes()`` before acknowledging the
messages. Counters are plain ints on the hot path and drained per batch into
the metrics.

For the in-process feed (``service/feed.py``) the ingestor also notes the
readings accepted and the state changes of the detectors, but only while the
feed has subscribers (checked once per batch): ``take_observations()`` hands
them to the pipeline, which publishes them after the commit.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from iot_bridge.config.shard import Shard
from iot_bridge.domain.events import Event
from iot_bridge.domain.session import SessionDetector
from iot_bridge.domain.session_config import SessionConfig
from iot_bridge.errors import PayloadError
from iot_bridge.logs import RateLimiter, get_logger
from iot_bridge.parsers import DeviceParser, make_parser
from iot_bridge.service.feed import Feed, ReadingAccepted, StateChanged
from iot_bridge.service.ingest.routing import AVAILABILITY, DATA, Route, Router

log = get_logger(__name__)


# Due timers fired per ``handle``: bounds the events and snapshots of one commit.
TICK_LIMIT = 1000


class Message(Protocol):
    """What the ingestor needs of an MQTT message."""

    @property
    def topic(self) -> str: ...

    @property
    def payload(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One configured device, as the ingestor needs it (built from the config model)."""

    device_id: str
    machine_name: str
    mqtt_topic: str
    parser_type: str
    parser_options: Mapping[str, Any]
    session_config: SessionConfig


@dataclass(slots=True)
class _Device:
    spec: DeviceSpec
    parser: DeviceParser
    detector: SessionDetector


@dataclass(slots=True)
class IngestCounters:
    """What happened since the last drain: labels -> counts.

    ``negative_power``: data messages whose power was negative (read as 0 W), by parser.
    """

    received: Counter[str]
    rejected: Counter[tuple[str, str]]
    emitted: Counter[str]
    negative_power: Counter[str]


class Ingestor:
    """Routes messages to per-device parsers and detectors; schedules their timers."""

    def __init__(
        self, *, uid_factory: Callable[[], str] | None = None, feed: Feed | None = None
    ) -> None:
        self._uid_factory = uid_factory
        self._feed = feed
        self._readings: list[ReadingAccepted] = []
        self._energy_read: list[str] = []
        self._state_changes: list[StateChanged] = []
        self._devices: dict[str, _Device] = {}
        self._router = Router()
        self._changed: dict[str, None] = {}  # device ids touched since take_changes()
        self._heap: list[tuple[float, str]] = []
        self._scheduled: dict[str, float] = {}
        self._received: Counter[str] = Counter()
        self._rejected: Counter[tuple[str, str]] = Counter()
        self._emitted: Counter[str] = Counter()
        self._negative_power: Counter[str] = Counter()
        self._reject_log = RateLimiter(interval_s=60.0)

    # -- configuration -------------------------------------------------

    @property
    def subscriptions(self) -> frozenset[str]:
        """Every topic filter the MQTT client must subscribe."""
        return self._router.filters

    @property
    def device_ids(self) -> list[str]:
        """Configured devices, in config order."""
        return list(self._devices)

    def detector(self, device_id: str) -> SessionDetector | None:
        """The detector of a device, for status views."""
        device = self._devices.get(device_id)
        return device.detector if device else None

    def spec(self, device_id: str) -> DeviceSpec | None:
        """The configured spec of a device."""
        device = self._devices.get(device_id)
        return device.spec if device else None

    def apply_devices(self, specs: Sequence[DeviceSpec], now: float) -> list[Event]:
        """Make the device set equal to ``specs``; removed devices end their sessions.

        Kept devices keep their detector (a running session goes on) and take
        the new thresholds from the next reading on.
        """
        events: list[Event] = []
        wanted = {spec.device_id: spec for spec in specs}
        observing = self._observing()
        for device_id in [d for d in self._devices if d not in wanted]:
            device = self._devices.pop(device_id)
            before = device.detector.state
            events.extend(device.detector.remove(now))
            if observing and device.detector.state is not before:
                self._note_change(device, before, now)
            self._changed[device_id] = None
            self._scheduled.pop(device_id, None)
        for spec in specs:
            self._changed[spec.device_id] = None
            current = self._devices.get(spec.device_id)
            if current is not None and _same_parser(current.spec, spec):
                parser = current.parser  # keeps its per-channel state
            else:
                parser = make_parser(spec.parser_type, spec.mqtt_topic, dict(spec.parser_options))
            if current is None:
                detector = self._new_detector(spec)
                self._devices[spec.device_id] = _Device(spec, parser, detector)
            else:
                current.detector.reconfigure(
                    machine_name=spec.machine_name, config=spec.session_config
                )
                if parser is not current.parser and parser.channels is not None:
                    # Other channels: the import counter continues from what was counted.
                    old = current.parser.channels
                    parser.channels.resume(
                        old.snapshot() if old else None, current.detector.energy_counter_wh
                    )
                current.spec = spec
                current.parser = parser
                self._schedule(spec.device_id, current.detector)
        self._router = Router(self._routes())
        self._count(events)
        return events

    def restore(
        self, snapshots: Mapping[str, Mapping[str, Any]], now: float
    ) -> tuple[list[Event], list[str]]:
        """Continue from persisted detector state after a restart.

        A configured device continues exactly (same session, same aggregates).
        A device that is no longer configured (its removal was persisted but the
        bridge stopped before committing its effects, or it was dropped from the
        ``--config`` file while the bridge was down) ends its running session
        with ``reason: "device_removed"``, as a push would have. Returns those
        events and the device ids whose snapshot could not be used (corrupt);
        those devices start fresh.
        """
        events: list[Event] = []
        unusable: list[str] = []
        for device_id, stored in snapshots.items():
            device = self._devices.get(device_id)
            try:
                data = stored["detector"]
                machine_name = device.spec.machine_name if device else str(stored["machine_name"])
                config = device.spec.session_config if device else SessionConfig()
                detector = SessionDetector.restore(
                    data,
                    device_id=device_id,
                    machine_name=machine_name,
                    config=config,
                    **self._uid_kwargs(),
                )
            except (ValueError, KeyError, TypeError) as err:
                log.error("snapshot_unusable", device_id=device_id, error=str(err))
                unusable.append(device_id)
                self._changed[device_id] = None
                continue
            self._changed[device_id] = None
            if device is None:
                removed = detector.remove(now)
                if removed:
                    log.warning("removed_device_session_ended", device_id=device_id)
                events.extend(removed)
                continue
            detector.resume_after_restart(now)
            device.detector = detector
            if device.parser.channels is not None:
                device.parser.channels.resume(stored.get("channels"), detector.energy_counter_wh)
            self._schedule(device_id, detector)
        self._count(events)
        return events, unusable

    # -- the hot path --------------------------------------------------

    def handle(self, messages: Iterable[Message], now: float) -> list[Event]:
        """Route, parse and detect a batch of messages that arrived at ``now``.

        Fires at most ``TICK_LIMIT`` due timers first (``tick``); the caller
        sees ``next_deadline() <= now`` and comes back for the rest. A device
        with a message here fires its own due timers anyway (the detector
        applies every timer due before a message), so only the commit batches
        change: 10,000 sessions starting at once are committed in chunks, not
        as one batch of 10,000 events and snapshots held in memory together.
        """
        events = self.tick(now, limit=TICK_LIMIT)
        devices = self._devices
        routes_for = self._router.routes
        changed = self._changed
        received = self._received
        scheduled = self._scheduled
        heap = self._heap
        # Checked once per batch; None skips building the feed's readings.
        readings = self._readings if self._observing() else None
        for message in messages:
            topic = message.topic
            for route in routes_for(topic):
                device_id = route.device_id
                device = devices[device_id]
                detector = device.detector
                before = detector.state
                parser_type = device.spec.parser_type
                received[parser_type] += 1
                try:
                    if route.role == DATA:
                        if getattr(message, "retain", False):
                            # A retained reading is the broker's old copy, not the
                            # device speaking now: it must not start or extend a session.
                            continue
                        reading = device.parser.parse(topic, message.payload)
                        if reading.negative_power:
                            self._negative_power[parser_type] += 1
                        new = detector.on_reading(now, reading)
                        if readings is not None:
                            if reading.power_w is not None:
                                readings.append(ReadingAccepted(device_id, now, reading.power_w))
                            elif reading.energy_wh is not None:
                                self._energy_read.append(device_id)
                    else:
                        online = device.parser.parse_availability(message.payload)
                        new = detector.on_availability(now, online)
                except PayloadError as err:
                    self._reject(device.spec, topic, err, now)
                    continue
                if new:
                    events.extend(new)
                    self._count(new)
                if detector.state is not before:
                    self._transition(device, before, now)
                changed[device_id] = None  # snapshot taken once per batch
                # self._schedule, inlined (the hot path)
                deadline = detector.next_deadline()
                if deadline is not None:
                    due = scheduled.get(device_id)
                    if due is None or deadline < due:
                        scheduled[device_id] = deadline
                        heapq.heappush(heap, (deadline, device_id))
        return events

    def excuse_silence(self, now: float) -> None:
        """The broker link is down: no device's silence counts until ``now``.

        Cheap enough to call at every wake-up of the pipeline while disconnected;
        not persisted (a restart excuses the downtime anyway).
        """
        for device in self._devices.values():
            device.detector.excuse_silence(now)

    def next_deadline(self) -> float | None:
        """The earliest time ``tick`` has something to do."""
        heap = self._heap
        while heap and self._scheduled.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def tick(self, now: float, limit: int | None = None) -> list[Event]:
        """Fire every timer due at or before ``now``, across devices in time order.

        With ``limit``, the earliest ``limit`` devices' timers only (the rest stay due).
        """
        events: list[Event] = []
        heap = self._heap
        left = -1 if limit is None else limit
        while heap and heap[0][0] <= now and left:
            due, device_id = heapq.heappop(heap)
            if self._scheduled.get(device_id) != due:
                continue
            del self._scheduled[device_id]
            device = self._devices.get(device_id)
            if device is None:
                continue
            left -= 1
            before = device.detector.state
            new = device.detector.tick(due)
            if device.detector.state is not before:
                self._transition(device, before, due)
            if new:
                events.extend(new)
                self._count(new)
            self._changed[device_id] = None
            self._schedule(device_id, device.detector)
        return events

    def take_changes(self) -> dict[str, dict[str, Any] | None]:
        """Snapshots of every device touched since the last call (None = deleted)."""
        changes: dict[str, dict[str, Any] | None] = {}
        for device_id in self._changed:
            device = self._devices.get(device_id)
            # The machine name travels with the state so that a restart can still
            # end the session of a device whose removal it did not see committed.
            if device is None:
                changes[device_id] = None
                continue
            change = {
                "machine_name": device.spec.machine_name,
                "detector": device.detector.snapshot(),
            }
            channels = device.parser.channels
            if channels is not None:
                change["channels"] = channels.snapshot()
            changes[device_id] = change
        self._changed = {}
        return changes

    def take_observations(
        self,
    ) -> tuple[list[ReadingAccepted], list[StateChanged], list[str]]:
        """Readings accepted, state changes and energy-only reads since the last call.

        All are empty while the feed has no subscribers (``FeedBatch`` says what
        each is).
        """
        readings, changes, energy = self._readings, self._state_changes, self._energy_read
        if readings or changes or energy:
            self._readings, self._state_changes, self._energy_read = [], [], []
        return readings, changes, energy

    def drain_counters(self) -> IngestCounters:
        """Counters since the last drain; resets them."""
        counters = IngestCounters(
            self._received, self._rejected, self._emitted, self._negative_power
        )
        self._received, self._rejected, self._emitted = Counter(), Counter(), Counter()
        self._negative_power = Counter()
        return counters

    # -- internals -----------------------------------------------------

    def _observing(self) -> bool:
        return self._feed is not None and self._feed.has_subscribers

    def _transition(self, device: _Device, before: Any, now: float) -> None:
        _log_transition(device, before)
        if self._observing():
            self._note_change(device, before, now)

    def _note_change(self, device: _Device, before: Any, now: float) -> None:
        detector = device.detector
        self._state_changes.append(
            StateChanged(
                device_id=detector.device_id,
                ts=now,
                previous=before._value_,  # the one plain str of the state, not a copy
                state=detector.state._value_,
                session_id=detector.session_id,
            )
        )

    def _new_detector(self, spec: DeviceSpec) -> SessionDetector:
        return SessionDetector(
            device_id=spec.device_id,
            machine_name=spec.machine_name,
            config=spec.session_config,
            **self._uid_kwargs(),
        )

    def _uid_kwargs(self) -> dict[str, Any]:
        return {"uid_factory": self._uid_factory} if self._uid_factory else {}

    def _routes(self) -> list[tuple[str, Route]]:
        entries: list[tuple[str, Route]] = []
        for device_id, device in self._devices.items():
            data = Route(device_id, DATA)  # one per device and role, shared by its topics
            entries.extend((topic, data) for topic in device.parser.data_topics)
            if device.parser.availability_topic:
                entries.append((device.parser.availability_topic, Route(device_id, AVAILABILITY)))
        return entries

    def _schedule(self, device_id: str, detector: SessionDetector) -> None:
        deadline = detector.next_deadline()
        if deadline is None:
            return
        scheduled = self._scheduled.get(device_id)
        # A later deadline needs no new entry: the earlier one fires, finds
        # nothing due, and reschedules with the detector's real deadline.
        if scheduled is None or deadline < scheduled:
            self._scheduled[device_id] = deadline
            heapq.heappush(self._heap, (deadline, device_id))

    def _count(self, events: Iterable[Event]) -> None:
        for event in events:
            self._emitted[event.event_type.value] += 1

    def _reject(self, spec: DeviceSpec, topic: str, err: PayloadError, now: float) -> None:
        self._rejected[(spec.parser_type, err.reason)] += 1
        allowed, suppressed = self._reject_log.allow(spec.device_id, now)
        if allowed:
            log.warning(
                "payload_rejected",
                device_id=spec.device_id,
                topic=topic,
                parser=spec.parser_type,
                reason=err.reason,
                detail=err.detail[:200],
                suppressed_since_last=suppressed,
            )


def _same_parser(old: DeviceSpec, new: DeviceSpec) -> bool:
    return (old.parser_type, old.mqtt_topic, dict(old.parser_options)) == (
        new.parser_type,
        new.mqtt_topic,
        dict(new.parser_options),
    )


def _log_transition(device: _Device, before: Any) -> None:
    detector = device.detector
    log.info(
        "state_transition",
        device_id=detector.device_id,
        from_state=str(before),
        to_state=str(detector.state),
        power_w=detector.power_w,
        session_id=detector.session_id,
    )


_NO_OPTIONS: Mapping[str, Any] = MappingProxyType({})


def device_specs(config: Any, shard: Shard | None = None) -> list[DeviceSpec]:
    """The ingestor's view of a validated ``BridgeConfig``'s devices.

    With a ``shard`` (``BRIDGE_SHARD``), only the devices of that shard: the
    ones this instance runs; the config itself stays whole.
    """
    # Devices usually share their settings: one mapping and one SessionConfig per
    # distinct (validated, immutable) model, not one per device (10,000 devices).
    options_of: dict[int, Mapping[str, Any]] = {}
    session_of: dict[int, SessionConfig] = {}
    shared: dict[object, Any] = {}
    specs = []
    for device in config.devices:
        options_model, session_model = device.parser_options, device.session_config
        options = options_of.get(id(options_model))
        if options is None:
            dumped = options_model.model_dump(exclude_none=True)
            options = options_of[id(options_model)] = (
                shared.setdefault(("options", repr(dumped)), dumped) if dumped else _NO_OPTIONS
            )
        session = session_of.get(id(session_model))
        if session is None:
            domain = session_model.to_domain()
            session = session_of[id(session_model)] = shared.setdefault(
                ("session", repr(domain)), domain
            )
        specs.append(
            DeviceSpec(
                device_id=device.device_id,
                machine_name=device.machine_name,
                mqtt_topic=device.mqtt_topic,
                parser_type=device.parser_type,
                parser_options=options,
                session_config=session,
            )
        )
    return specs if shard is None else shard.select(specs)
