"""SessionDetector: one device's session state machine (CONTRACT sections 5 and 6).

The detector is pure: it does no I/O and reads no clock. Every call takes
``now`` (unix seconds, float) and returns the events it caused, in time order.
Timers (start/stop debounce, message timeout, heartbeat) fire at their exact
due times, either from ``tick(now)`` or at the start of the next call.

Decisions where the contract is silent (each pinned by a unit test):

- **Timers before messages.** Every call first fires every timer due at or
  before ``now`` (so ``tick(t)`` followed by a message at ``t`` gives the same
  events as the message alone), then applies its input, then fires any timer
  that input made due at once (a zero debounce). Timers due at the same instant
  fire in this order: start/stop debounce, message timeout, heartbeat.
- **Time never runs backwards.** A ``now`` earlier than the latest one the
  detector has seen is taken as that latest one.
- **A message without power** (``Reading.power_w is None``) is a sign of life:
  the last power is held, the energy counter is taken, and it counts as a
  message for the timeout and for ``device_online``. When idle with a held
  power at or above the standby threshold (a Shelly that reports power only on
  change, after a timeout), it starts ``starting`` with that power.
- **Silence the bridge caused** (``excuse_silence``, while its broker link is
  down) is not the device's: silence is measured from ``max(last_seen, now)``.
- **Availability online** is a sign of life too (a message without power).
  **Availability offline** during a session ends it as ``session_timeout`` at
  once (ending at the last message), then ``device_offline``; while starting it
  goes back to idle with no session event. Availability offline for a device
  that was never announced online changes ``online`` to False without an event.
- **Timeout while starting**: back to idle, no session event (the start was
  never confirmed), then ``device_offline``. A start debounce shorter than the
  timeout fires first, so the session starts and then times out.
- **Timeout (or availability offline, or removal) while stopping** ends the
  session at its first low reading, as the stop would have: the power was below
  the standby threshold from then on. The event type still says why
  (``session_timeout`` / ``reason: "device_removed"``).
- **The first low reading belongs to the session**: its energy counter and
  power sample count, and the session ends at its timestamp. Readings of a dip
  that ends in a stop are rolled back; a dip that recovers counts as time of
  the state before it (the power samples of the dip count as they were).
- **Back from stopping**, the state follows the new reading (``working`` if it
  is at or above the working threshold, else ``standby``).
- **Heartbeats** are due at ``started_at + k * heartbeat_interval_s``, the first
  one strictly after the ``session_started`` moment (its interval covers the
  time since ``started_at``). A heartbeat inside a stop debounce reports the dip
  as time of the state before it (what it becomes if the power comes back); if
  the session then stops, the final event (ending at the first low reading) is
  authoritative. A non-positive interval disables heartbeats.
- **Energy** is the sum of the positive steps of the device's cumulative
  counter from the last value known when the session started (the first
  reading's, else the last one before it); a counter that goes down is a reset
  and its new value counts as the step. ``None`` until a counter value arrives
  at or after the session's first reading. A multi-channel device's counter is
  already the sum over its channels with each channel's resets bridged (the
  parser's ``ChannelState``), so it only goes down if that state was lost.
- **The device's energy total** (``energy_total_wh``, for Home Assistant's
  energy sensor) adds the same steps for the device's whole life on this
  bridge, sessions or not: ``None`` until a counter value arrives, then 0
  plus every step, so it never goes down across meter resets, and it is
  persisted with the snapshot, so it survives restarts.
- **Aggregates**: power is held between readings; time in a class is counted by
  the class of the held power, ``working_s = min(working time, duration)`` and
  ``standby_s = duration_s - working_s``. A zero-length session reports
  ``avg_power_w = peak_power_w``. Computed figures (durations, averages,
  energies) are rounded to 3 decimals in events (``2.344``, never
  ``2.344000000000051``), durations from whole milliseconds so that
  ``working_s + standby_s`` is ``duration_s``; readings (``power_w``,
  ``peak_power_w``) pass as the device sent them.
- **Removal** (``remove``) ends a running session at ``now`` (``session_stopped``,
  ``reason: "device_removed"``); a start in progress is dropped silently; no
  ``device_offline`` is sent, then or later: the detector is left with no timer
  and ``online`` unknown.
- **Reconfigure** applies thresholds from the next reading; timers already
  armed keep their due times; the next heartbeat keeps its time and later ones
  follow the new interval from it; a new timeout applies from the next message.
- **Restart** (``resume_after_restart``): ``online`` becomes unknown, the silence
  timer is measured from ``max(last_seen, now)``, a start or stop debounce in
  progress restarts in full from ``max(its first reading, now)`` (downtime
  neither confirms nor contradicts), heartbeats missed during the downtime are
  skipped (the next one's interval covers the gap), the session keeps its id.
- ``device_online``/``device_offline`` carry ``session_id: null``; they are
  about the device, not a session.
- Readings are trusted to be valid (finite, non-negative): the parsers check.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Callable
from typing import Any

from iot_bridge.domain.events import (
    EndReason,
    Event,
    EventData,
    EventType,
    SessionStartedData,
    iso_utc,
)
from iot_bridge.domain.readings import Reading
from iot_bridge.domain.session_config import SessionConfig
from iot_bridge.domain.session_parts import (
    Debounce,
    DetectorState,
    DevicePresence,
    HeartbeatSchedule,
    SessionTotals,
)
from iot_bridge.domain.session_persistence import read_snapshot, write_snapshot
from iot_bridge.domain.session_snapshot import DetectorSnapshot

__all__ = ["DetectorState", "SessionDetector", "session_id_for"]

_INF = math.inf

# Module-level aliases: `is` against a global is the cheapest state test.
_IDLE = DetectorState.IDLE
_STARTING = DetectorState.STARTING
_STANDBY = DetectorState.STANDBY
_WORKING = DetectorState.WORKING
_STOPPING = DetectorState.STOPPING
_RUNNING = frozenset({_STANDBY, _WORKING, _STOPPING})


def session_id_for(device_id: str, started_at: float) -> str:
    """The deterministic session id of a session: a UUID4-shaped digest of device and start."""
    digest = hashlib.sha256(f"{device_id}|{started_at!r}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _random_uid() -> str:
    return str(uuid.uuid4())


class SessionDetector:
    """The session state machine of one device; see the module docstring for the rules.

    Its parts (``session_parts``): ``_presence`` for the device, and ``_totals``,
    ``_heartbeats`` and ``_debounce`` for the session (reset when it ends).
    """

    __slots__ = (
        "_clock",
        "_config",
        "_debounce",
        "_device_id",
        "_energy_counter_wh",
        "_energy_total_wh",
        "_heartbeats",
        "_machine_name",
        "_power_w",
        "_presence",
        "_session_id",
        "_started_at",
        "_state",
        "_totals",
        "_uid_factory",
    )

    def __init__(
        self,
        *,
        device_id: str,
        machine_name: str,
        config: SessionConfig,
        uid_factory: Callable[[], str] = _random_uid,
    ) -> None:
        """A detector in ``idle`` that has never heard from its device."""
        self._device_id = device_id
        self._uid_factory = uid_factory
        self._machine_name = machine_name
        self._config = config  # thresholds apply from the next reading on
        self._state: DetectorState = _IDLE
        self._clock = -_INF
        self._power_w: float | None = None
        self._energy_counter_wh: float | None = None
        self._energy_total_wh: float | None = None
        self._presence = DevicePresence()
        # The session (or a start in progress); reset by _clear_session.
        self._session_id: str | None = None
        self._started_at = 0.0
        self._totals = SessionTotals()
        self._heartbeats = HeartbeatSchedule(config.heartbeat_interval_s)
        self._debounce = Debounce()

    # ----------------------------------------------------------------- properties

    @property
    def device_id(self) -> str:
        """The device this detector follows."""
        return self._device_id

    @property
    def machine_name(self) -> str:
        """The machine name put on events."""
        return self._machine_name

    @property
    def config(self) -> SessionConfig:
        """The active thresholds and timings."""
        return self._config

    @property
    def state(self) -> DetectorState:
        """The current state."""
        return self._state

    @property
    def online(self) -> bool | None:
        """True/False once known; None before the first message or after a restart."""
        return self._presence.online

    @property
    def last_seen(self) -> float | None:
        """When the device last sent a message (unix seconds), or None."""
        return self._presence.last_seen

    @property
    def power_w(self) -> float | None:
        """The last known power (W), or None before any."""
        return self._power_w

    @property
    def energy_counter_wh(self) -> float | None:
        """The device's last energy counter value (Wh), or None before any."""
        return self._energy_counter_wh

    @property
    def energy_total_wh(self) -> float | None:
        """Energy counted since the bridge first heard a counter (Wh), resets bridged, or None."""
        return self._energy_total_wh

    @property
    def started_at(self) -> float | None:
        """When the running session (or the start in progress) began; None while idle."""
        return None if self._state is _IDLE else self._started_at

    @property
    def session_id(self) -> str | None:
        """The running session's id; None while idle or starting."""
        return self._session_id

    # ----------------------------------------------------------------- inputs

    def on_reading(self, now: float, reading: Reading) -> list[Event]:  # noqa: PLR0915 (hot path, inlined)
        """Fire every timer due at or before ``now``, then apply one device message."""
        if now < self._clock:
            now = self._clock
        else:
            self._clock = now
        events: list[Event] = []
        config = self._config
        presence = self._presence
        if now >= self._debounce.due or now >= presence.silence_due or now >= self._heartbeats.due:
            self._advance(now, events)
        presence.last_seen = now
        presence.silence_due = now + config.message_timeout_s
        if presence.online is not True:
            self._come_online(now, events)
        state = self._state
        totals = self._totals
        energy = reading.energy_wh
        if energy is not None:
            counter = self._energy_counter_wh
            if counter is None:
                step = 0.0
            elif energy >= counter:
                step = energy - counter
            else:
                step = energy  # the counter was reset: count from 0
            self._energy_counter_wh = energy
            total = self._energy_total_wh
            self._energy_total_wh = step if total is None else total + step
            if state is not _IDLE:
                total = totals.energy_wh
                totals.energy_wh = step if total is None else total + step
        power = reading.power_w
        if power is None:
            held = self._power_w
            if state is _IDLE and held is not None and held >= config.standby_threshold_w:
                # A device that reports power only on change (Shelly Gen2+) may go on
                # drawing its last power after a timeout: the held power starts again.
                self._begin_starting(now, held, energy is not None, events)
            return events
        if state is _IDLE:
            self._power_w = power
            if power >= config.standby_threshold_w:
                self._begin_starting(now, power, energy is not None, events)
            return events
        # Close the open segment: the previous power was held until now (inlined
        # SessionTotals.close_segment, the hot path).
        elapsed = now - totals.segment_started_at
        totals.power_integral_ws += self._power_w * elapsed  # type: ignore[operator]
        if totals.segment_working:
            totals.working_s += elapsed
        totals.segment_started_at = now
        self._power_w = power
        if power > totals.peak_power_w:  # noqa: PLR1730 (a compare is cheaper than max())
            totals.peak_power_w = power
        if state is _WORKING:
            if power >= config.working_threshold_w:
                return events
            if power >= config.standby_threshold_w:
                self._state = _STANDBY
                totals.segment_working = False
            else:
                self._begin_stopping(now, state, events)
        elif state is _STANDBY:
            if power < config.standby_threshold_w:
                self._begin_stopping(now, state, events)
            elif power >= config.working_threshold_w:
                self._state = _WORKING
                totals.segment_working = True
        elif state is _STARTING:
            if power < config.standby_threshold_w:
                self._clear_session()  # never confirmed: no event
            else:
                totals.segment_working = power >= config.working_threshold_w
        elif power >= config.standby_threshold_w:  # stopping, and the power is back
            totals.segment_working = power >= config.working_threshold_w
            self._state = _WORKING if totals.segment_working else _STANDBY
            self._debounce.reset()
            totals.checkpoint = None
        return events

    def on_availability(self, now: float, online: bool) -> list[Event]:
        """Apply the device's availability topic (online/offline)."""
        now = self._advance_clock(now)
        events: list[Event] = []
        self._advance(now, events)
        if online:
            self._presence.last_seen = now
            self._presence.silence_due = now + self._config.message_timeout_s
            if self._presence.online is not True:
                self._come_online(now, events)
        else:
            self._go_silent(now, events)
            self._presence.online = False
        return events

    def next_deadline(self) -> float | None:
        """The earliest time at which ``tick`` has something to do, or None."""
        due = min(self._debounce.due, self._presence.silence_due, self._heartbeats.due)
        return None if due == _INF else due

    def tick(self, now: float) -> list[Event]:
        """Fire every timer due at or before ``now``, each at its due time, in time order."""
        now = self._advance_clock(now)
        events: list[Event] = []
        self._advance(now, events)
        return events

    def remove(self, now: float) -> list[Event]:
        """The device was removed: end a running session; no timer is left afterwards."""
        now = self._advance_clock(now)
        events: list[Event] = []
        self._advance(now, events)
        state = self._state
        if state is _STARTING:
            self._clear_session()
        elif state is not _IDLE:
            self._end_session(now, now, "device_removed", events)
        # A removed device is forgotten: no timer left, so no device_offline later.
        self._presence.forget()
        return events

    def reconfigure(self, *, machine_name: str, config: SessionConfig) -> None:
        """Take new thresholds (from the next reading on) and a new machine name."""
        self._machine_name = machine_name
        self._config = config
        self._heartbeats.set_interval(
            config.heartbeat_interval_s, self._state in _RUNNING, self._started_at, self._clock
        )

    def excuse_silence(self, now: float) -> None:
        """The bridge could not hear the device until ``now`` (its broker link was down).

        Its own outage never counts as the device's silence; nothing else changes.
        """
        self._presence.excuse_silence(self._advance_clock(now), self._config.message_timeout_s)

    def resume_after_restart(self, now: float) -> None:
        """The bridge restarted: forget ``online`` and do not count the downtime."""
        now = self._advance_clock(now)
        self._presence.resume_after_restart(now, self._config.message_timeout_s)
        state = self._state
        debounce = self._debounce
        if state is _STARTING:
            debounce.due = max(self._started_at, now) + self._config.start_debounce_s
        elif state is _STOPPING:
            debounce.due = max(debounce.first_low_at, now) + self._config.stop_debounce_s
        self._heartbeats.skip_missed(now)

    # ----------------------------------------------------------------- timers

    def _advance_clock(self, now: float) -> float:
        if now < self._clock:
            return self._clock
        self._clock = now
        return now

    def _advance(self, now: float, events: list[Event]) -> None:
        """Fire due timers in time order; ties: debounce, then timeout, then heartbeat."""
        debounce = self._debounce
        heartbeats = self._heartbeats
        presence = self._presence
        while True:
            debounce_due = debounce.due
            silence_due = presence.silence_due
            heartbeat_due = heartbeats.due
            if debounce_due <= silence_due and debounce_due <= heartbeat_due:
                if debounce_due > now:
                    return
                if self._state is _STARTING:
                    self._confirm_start(debounce_due, events)
                else:
                    self._end_session(debounce_due, debounce.first_low_at, "power_off", events)
            elif silence_due <= heartbeat_due:
                if silence_due > now:
                    return
                self._go_silent(silence_due, events)
            else:
                if heartbeat_due > now:
                    return
                power = self._power_w
                assert power is not None  # a running session always has a power
                data = heartbeats.fire(self._state, power, self._totals, self._started_at)
                kind = EventType.SESSION_HEARTBEAT
                self._events_append(kind, heartbeat_due, self._session_id, data, events)

    def _confirm_start(self, at: float, events: list[Event]) -> None:
        state = _WORKING if self._totals.segment_working else _STANDBY
        self._state = state
        self._debounce.due = _INF
        started_at = self._started_at
        self._session_id = session_id_for(self._device_id, started_at)
        self._heartbeats.start(started_at, at)
        power = self._power_w
        data: SessionStartedData = {
            "started_at": iso_utc(started_at),
            "state": state.value,
            "power_w": None if power is None else float(power),
        }
        self._events_append(EventType.SESSION_STARTED, at, self._session_id, data, events)

    # ----------------------------------------------------------------- transitions

    def _begin_starting(
        self, now: float, power: float, has_energy: bool, events: list[Event]
    ) -> None:
        self._state = _STARTING
        self._started_at = float(now)  # its repr names the session: 5 and 5.0 must agree
        self._totals.begin(now, power, power >= self._config.working_threshold_w, has_energy)
        due = self._debounce.due = now + self._config.start_debounce_s
        if due <= now:
            self._advance(now, events)

    def _begin_stopping(self, now: float, previous: DetectorState, events: list[Event]) -> None:
        self._state = _STOPPING
        self._debounce.begin_stop(now, previous, self._config.stop_debounce_s)
        self._totals.take_checkpoint()
        if self._debounce.due <= now:
            self._advance(now, events)

    def _end_session(
        self, at: float, ended_at: float, reason: EndReason, events: list[Event]
    ) -> None:
        """End the running session at ``ended_at`` (the first low reading when stopping).

        The event is ``session_timeout`` for a timeout, else ``session_stopped``.
        """
        totals = self._totals
        if self._state is _STOPPING:
            ended_at = self._debounce.first_low_at
            totals.rollback()
        else:
            totals.close_segment(ended_at, self._power_w)  # type: ignore[arg-type]
        data = totals.ended_data(self._started_at, ended_at, reason)
        session_id = self._session_id
        self._clear_session()
        kind = EventType.SESSION_TIMEOUT if reason == "timeout" else EventType.SESSION_STOPPED
        self._events_append(kind, at, session_id, data, events)

    def _go_silent(self, at: float, events: list[Event]) -> None:
        """Silence or availability offline: end what runs, then ``device_offline`` once."""
        state = self._state
        if state is _STARTING:
            self._clear_session()
        elif state is not _IDLE:
            last_seen = self._presence.last_seen
            assert last_seen is not None
            self._end_session(at, last_seen, "timeout", events)
        data = self._presence.go_offline()
        if data is not None:
            self._events_append(EventType.DEVICE_OFFLINE, at, None, data, events)

    def _come_online(self, now: float, events: list[Event]) -> None:
        data = self._presence.come_online(now)
        self._events_append(EventType.DEVICE_ONLINE, now, None, data, events)

    def _clear_session(self) -> None:
        self._state = _IDLE
        self._session_id = None
        self._started_at = 0.0
        self._totals.reset()
        self._heartbeats.reset()
        self._debounce.reset()

    def _events_append(
        self,
        kind: EventType,
        at: float,
        session_id: str | None,
        data: EventData,
        events: list[Event],
    ) -> None:
        uid = self._uid_factory()
        events.append(
            Event(uid, kind, self._device_id, self._machine_name, session_id, float(at), data)
        )

    # ----------------------------------------------------------------- persistence

    def snapshot(self) -> DetectorSnapshot:
        """The whole state as JSON-ready plain data (``restore`` takes it back)."""
        return write_snapshot(self)

    @classmethod
    def restore(
        cls,
        data: Any,
        *,
        device_id: str,
        machine_name: str,
        config: SessionConfig,
        uid_factory: Callable[[], str] = _random_uid,
    ) -> SessionDetector:
        """Rebuild a detector from ``snapshot()`` data; ValueError if the data is corrupt.

        With the same config, the restored detector gives exactly the events the
        original would have; a different config applies as ``reconfigure`` would.
        Snapshots of versions 1 and 2 are read too (``session_persistence``).
        """
        restored = read_snapshot(data, device_id)
        detector = cls(
            device_id=device_id, machine_name=machine_name, config=config, uid_factory=uid_factory
        )
        detector._state = restored.state
        detector._clock = restored.clock
        detector._power_w = restored.power_w
        detector._energy_counter_wh = restored.energy_counter_wh
        detector._energy_total_wh = restored.energy_total_wh
        detector._presence = restored.presence
        detector._heartbeats = restored.heartbeats
        session = restored.session
        if session is not None:
            detector._session_id = session.session_id
            detector._started_at = session.started_at
            detector._debounce = session.debounce
            detector._totals = session.totals
        detector.reconfigure(machine_name=machine_name, config=config)  # the interval may differ
        return detector
