"""A detector's snapshot written from its parts, and read back into typed parts, strictly.

``SessionDetector.snapshot`` is ``write_snapshot``; ``SessionDetector.restore``
takes what ``read_snapshot`` returns. Every bad field, and every contradiction
between fields, is a ValueError naming it. This module is the detector's
persistence, apart from its state machine; it reads the detector's fields.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from iot_bridge.domain.session_parts import (
    Debounce,
    DetectorState,
    DevicePresence,
    HeartbeatSchedule,
    SessionTotals,
)
from iot_bridge.domain.session_snapshot import (
    SNAPSHOT_VERSION,
    DetectorSnapshot,
    SessionSnapshot,
    SnapshotReader,
    StoppingSnapshot,
    upgraded,
)

if TYPE_CHECKING:
    from iot_bridge.domain.session import SessionDetector

__all__ = ["RestoredDetector", "RestoredSession", "read_snapshot", "write_snapshot"]

_INF = math.inf
_DEBOUNCING = (DetectorState.STARTING, DetectorState.STOPPING)
_IDLE_STATE = DetectorState.IDLE  # a global: `is` against it is the cheapest test


@dataclass(frozen=True, slots=True)
class RestoredSession:
    """The session (or start) in progress of a snapshot."""

    session_id: str | None
    started_at: float
    debounce: Debounce
    totals: SessionTotals


@dataclass(frozen=True, slots=True)
class RestoredDetector:
    """A snapshot's state, checked; ``session`` is None exactly when idle."""

    state: DetectorState
    clock: float
    power_w: float | None
    energy_counter_wh: float | None
    energy_total_wh: float | None
    presence: DevicePresence
    heartbeats: HeartbeatSchedule
    session: RestoredSession | None


def read_snapshot(data: Any, device_id: str) -> RestoredDetector:
    """Read ``SessionDetector.snapshot()`` data of ``device_id``; ValueError if corrupt."""
    reader = SnapshotReader(upgraded(data), "snapshot")
    if reader.string("device_id") != device_id:
        raise ValueError(f"snapshot: belongs to another device, not {device_id!r}")
    state = reader.choice("state", DetectorState)
    clock = reader.optional_number("clock")
    power_w = reader.optional_number("power_w")
    presence = DevicePresence.restore(reader)
    heartbeats = HeartbeatSchedule(reader.number("heartbeat_interval_s"))
    session_reader = reader.optional_mapping("session")
    reader.check(
        (session_reader is not None) == (state is not DetectorState.IDLE),
        "session does not fit state",
    )
    session = None
    if session_reader is not None:
        reader.check(presence.announced_online, "a session needs an announced-online device")
        reader.check(power_w is not None, "a session needs power_w")
        session = _read_session(session_reader, state, heartbeats)
    return RestoredDetector(
        state=state,
        clock=-_INF if clock is None else clock,
        power_w=power_w,
        energy_counter_wh=reader.optional_number("energy_counter_wh"),
        energy_total_wh=reader.optional_number("energy_total_wh"),
        presence=presence,
        heartbeats=heartbeats,
        session=session,
    )


def _read_session(
    reader: SnapshotReader, state: DetectorState, heartbeats: HeartbeatSchedule
) -> RestoredSession:
    session_id = reader.optional_string("session_id")
    reader.check(
        (session_id is None) == (state is DetectorState.STARTING), "session_id does not fit state"
    )
    stopping = reader.optional_mapping("stopping")
    reader.check(
        (stopping is not None) == (state is DetectorState.STOPPING), "stopping does not fit state"
    )
    debounce = Debounce.restore(reader, stopping)
    reader.check(
        (debounce.due == _INF) != (state in _DEBOUNCING), "debounce_due does not fit state"
    )
    if stopping is not None:
        stopping.check(
            debounce.state_before_stop in (DetectorState.STANDBY, DetectorState.WORKING),
            "state_before_stop must be standby/working",
        )
    totals = SessionTotals.restore(reader, stopping)
    heartbeats.restore_from(reader)
    reader.check(
        heartbeats.due == _INF or state is not DetectorState.STARTING,
        "heartbeat_due set while starting",
    )
    return RestoredSession(
        session_id=session_id,
        started_at=reader.number("started_at"),
        debounce=debounce,
        totals=totals,
    )


def write_snapshot(detector: SessionDetector) -> DetectorSnapshot:
    """``detector.snapshot()``: its parts' fields, as each part's own ``snapshot()`` gives them.

    Written in one dict display (typed by the parts' ``TypedDict``s) rather than
    by merging the parts' dicts, which cost twice as much: every touched device
    is snapshotted in every batch. A unit test holds the two writings together.
    """
    state = detector._state
    presence = detector._presence
    heartbeats = detector._heartbeats
    session: SessionSnapshot | None = None
    if state is not _IDLE_STATE:
        totals = detector._totals
        debounce = detector._debounce
        checkpoint = totals.checkpoint
        stopping: StoppingSnapshot | None = None
        if checkpoint is not None:
            stopping = {
                "first_low_at": debounce.first_low_at,
                "state_before_stop": debounce.state_before_stop._value_,
                "working_s": checkpoint.working_s,
                "power_integral_ws": checkpoint.power_integral_ws,
                "peak_power_w": checkpoint.peak_power_w,
                "energy_wh": checkpoint.energy_wh,
            }
        due = debounce.due
        heartbeat_due = heartbeats.due
        session = {
            "session_id": detector._session_id,
            "started_at": detector._started_at,
            "debounce_due": None if due == _INF else due,
            "segment_started_at": totals.segment_started_at,
            "segment_working": totals.segment_working,
            "working_s": totals.working_s,
            "power_integral_ws": totals.power_integral_ws,
            "peak_power_w": totals.peak_power_w,
            "energy_wh": totals.energy_wh,
            "heartbeat_due": None if heartbeat_due == _INF else heartbeat_due,
            "heartbeat_base": heartbeats.base,
            "heartbeat_number": heartbeats.number,
            "last_heartbeat_at": heartbeats.last_at,
            "last_heartbeat_working_s": heartbeats.last_working_s,
            "last_heartbeat_power_integral_ws": heartbeats.last_power_integral_ws,
            "stopping": stopping,
        }
    silence_due = presence.silence_due
    return {
        "version": SNAPSHOT_VERSION,
        "device_id": detector._device_id,
        "state": state._value_,  # the plain attribute: ``.value`` is a slow descriptor
        "online": presence.online,
        "announced_online": presence.announced_online,
        "clock": None if detector._clock == -_INF else detector._clock,
        "last_seen": presence.last_seen,
        "power_w": detector._power_w,
        "energy_counter_wh": detector._energy_counter_wh,
        "energy_total_wh": detector._energy_total_wh,
        "silence_due": None if silence_due == _INF else silence_due,
        "heartbeat_interval_s": heartbeats.interval_s,
        "session": session,
    }
