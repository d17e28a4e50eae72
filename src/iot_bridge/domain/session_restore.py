"""A detector snapshot (any version) read back into typed parts, strictly.

``SessionDetector.restore`` takes what ``read_snapshot`` returns; every bad
field, and every contradiction between fields, is a ValueError naming it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from iot_bridge.domain.session_parts import (
    Debounce,
    DetectorState,
    DevicePresence,
    HeartbeatSchedule,
    SessionTotals,
)
from iot_bridge.domain.session_snapshot import SnapshotReader, upgraded

__all__ = ["RestoredDetector", "RestoredSession", "read_snapshot"]

_INF = math.inf
_DEBOUNCING = (DetectorState.STARTING, DetectorState.STOPPING)


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
    presence = DevicePresence.restore(reader.mapping("presence"))
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
    debounce_reader = reader.optional_mapping("debounce")
    reader.check((debounce_reader is None) != (state in _DEBOUNCING), "debounce does not fit state")
    debounce = Debounce() if debounce_reader is None else Debounce.restore(debounce_reader)
    reader.check(
        state is not DetectorState.STOPPING
        or debounce.state_before_stop in (DetectorState.STANDBY, DetectorState.WORKING),
        "debounce.state_before_stop must be standby/working",
    )
    totals = SessionTotals.restore(reader.mapping("totals"))
    reader.check(
        (totals.checkpoint is not None) == (state is DetectorState.STOPPING),
        "totals.checkpoint does not fit state",
    )
    heartbeats.restore_from(reader.mapping("heartbeat"))
    reader.check(
        heartbeats.due == _INF or state is not DetectorState.STARTING,
        "heartbeat.due set while starting",
    )
    return RestoredSession(
        session_id=session_id,
        started_at=reader.number("started_at"),
        debounce=debounce,
        totals=totals,
    )
