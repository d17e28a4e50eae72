"""snapshot() / restore(): JSON round trip, exact continuation, corrupt data rejected."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from iot_bridge.domain.readings import Reading
from iot_bridge.domain.session import SessionDetector

from .session_sim import CONFIG, T0, Sim, counting_uids, without_uid

SLOW = dataclasses.replace(CONFIG, message_timeout_s=1000.0, heartbeat_interval_s=10.0)


def scenarios() -> dict[str, Sim]:
    """One detector in each interesting state."""
    fresh = Sim()
    idle = Sim()
    idle.read(0, 0.0, 10.0)
    starting = Sim()
    starting.read(0, 100.0, 10.0)
    working = Sim(SLOW)
    working.read(0, 100.0, 10.0)
    working.read(5, 20.0, 10.5)
    working.read(12, 80.0)
    working.tick(15)
    stopping = Sim(SLOW)
    stopping.start_working()
    stopping.read(14, 1.0)
    offline = Sim()
    offline.read(0, 0.0)
    offline.tick(30)
    return {
        "fresh": fresh,
        "idle": idle,
        "starting": starting,
        "working": working,
        "stopping": stopping,
        "offline": offline,
    }


def roundtrip(sim: Sim) -> SessionDetector:
    """Restore a detector from its snapshot after a trip through JSON text."""
    data = json.loads(json.dumps(sim.detector.snapshot(), allow_nan=False))
    return SessionDetector.restore(
        data,
        device_id="dev-1",
        machine_name="Mill",
        config=sim.detector.config,
        uid_factory=counting_uids(),
    )


def working_snapshot() -> dict[str, Any]:
    """A valid snapshot of a session in stopping (the richest shape)."""
    return scenarios()["stopping"].detector.snapshot()


@pytest.mark.parametrize("name", list(scenarios()))
def test_snapshot_survives_json_and_restores_identically(name: str) -> None:
    """restore(json(snapshot)) has the same snapshot and properties as the original."""
    sim = scenarios()[name]
    restored = roundtrip(sim)
    assert restored.snapshot() == sim.detector.snapshot()
    for attribute in ("state", "online", "last_seen", "power_w", "session_id"):
        assert getattr(restored, attribute) == getattr(sim.detector, attribute)
    assert restored.next_deadline() == sim.detector.next_deadline()


@pytest.mark.parametrize("name", list(scenarios()))
def test_restored_detector_continues_like_the_original(name: str) -> None:
    """After restore, the same inputs give the same events as running straight through."""
    sim = scenarios()[name]
    restored = roundtrip(sim)

    def drive(detector: SessionDetector) -> list[Any]:
        events = []
        events += detector.on_reading(T0 + 16, Reading(60.0, 11.0))
        events += detector.tick(T0 + 40)
        events += detector.on_reading(T0 + 41, Reading(0.0, 12.0))
        events += detector.on_availability(T0 + 42, True)
        events += detector.tick(T0 + 2000)
        return without_uid(events)

    assert drive(restored) == drive(sim.detector)


_V1_NAMES = {
    "debounce_due": "state_due",
    "segment_started_at": "seg_t",
    "segment_working": "seg_working",
    "power_integral_ws": "integral_ws",
    "peak_power_w": "peak_w",
    "heartbeat_due": "hb_due",
    "heartbeat_base": "hb_base",
    "heartbeat_number": "hb_k",
    "last_heartbeat_at": "hb_prev_t",
    "last_heartbeat_working_s": "hb_prev_working_s",
    "last_heartbeat_power_integral_ws": "hb_prev_integral_ws",
    "first_low_at": "low_at",
    "state_before_stop": "prev_state",
}


def _as_version_1(data: dict[str, Any]) -> dict[str, Any]:
    """The snapshot in the abbreviated keys version 1 wrote."""
    old = copy.deepcopy(data)
    old["version"] = 1
    session = old["session"]
    if session is not None:
        old["session"] = {_V1_NAMES.get(key, key): value for key, value in session.items()}
        stopping = old["session"]["stopping"]
        if stopping is not None:
            old["session"]["stopping"] = {
                _V1_NAMES.get(key, key): value for key, value in stopping.items()
            }
    return old


@pytest.mark.parametrize("name", list(scenarios()))
def test_a_version_1_snapshot_restores_like_the_current_one(name: str) -> None:
    """Snapshots written before the names were spelled out restore to the same detector."""
    sim = scenarios()[name]
    old = _as_version_1(json.loads(json.dumps(sim.detector.snapshot())))
    restored = SessionDetector.restore(
        old, device_id="dev-1", machine_name="Mill", config=sim.detector.config
    )
    assert restored.snapshot() == sim.detector.snapshot()


def test_restore_with_a_new_config_applies_it_like_reconfigure() -> None:
    """Restoring under a different heartbeat interval keeps the next heartbeat, then follows it."""
    sim = scenarios()["working"]
    data = sim.detector.snapshot()
    restored = SessionDetector.restore(
        data,
        device_id="dev-1",
        machine_name="Mill",
        config=dataclasses.replace(SLOW, heartbeat_interval_s=25.0),
    )
    events = restored.tick(T0 + 50)
    assert [e.timestamp - T0 for e in events] == [20.0, 45.0]


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        target = data
        for key in parents:
            target = target[key]
        target[leaf] = value

    return mutate


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        target = data
        for key in parents:
            target = target[key]
        del target[leaf]

    return mutate


def _both(
    first: Callable[[dict[str, Any]], None], second: Callable[[dict[str, Any]], None]
) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        first(data)
        second(data)

    return mutate


CORRUPTIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "missing key": _delete("last_seen"),
    "missing session key": _delete("session.segment_started_at"),
    "missing stopping key": _delete("session.stopping.first_low_at"),
    "unknown version": _set("version", 99),
    "version as string": _set("version", "1"),
    "other device": _set("device_id", "someone-else"),
    "unknown state": _set("state", "running"),
    "number as string": _set("last_seen", "yesterday"),
    "bool as number": _set("power_w", True),
    "nan": _set("session.working_s", float("nan")),
    "infinity": _set("session.power_integral_ws", float("inf")),
    "online not a bool": _set("online", "yes"),
    "online disagrees with announced": _set("online", False),
    "silence without announcement": _both(_set("announced_online", False), _set("online", None)),
    "session missing": _set("session", None),
    "session not an object": _set("session", [1, 2]),
    "session while idle": _set("state", "idle"),
    "session id while starting": _set("state", "starting"),
    "no session id while running": _set("session.session_id", None),
    "no stop due while stopping": _set("session.debounce_due", None),
    "stopping missing": _both(_set("state", "working"), _set("session.debounce_due", None)),
    "bad previous state": _set("session.stopping.state_before_stop", "idle"),
    "negative heartbeat index": _set("session.heartbeat_number", -1),
    "heartbeat index float": _set("session.heartbeat_number", 1.5),
    "no power in a session": _set("power_w", None),
    "segment_working not a bool": _set("session.segment_working", 1),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_restore_rejects_corrupt_data(name: str) -> None:
    """Corrupt snapshot data raises ValueError (never a half-built detector)."""
    data = copy.deepcopy(working_snapshot())
    CORRUPTIONS[name](data)
    with pytest.raises(ValueError, match="snapshot"):
        SessionDetector.restore(data, device_id="dev-1", machine_name="Mill", config=CONFIG)


@pytest.mark.parametrize("data", [None, [], "snapshot", 42])
def test_restore_rejects_non_objects(data: Any) -> None:
    """A snapshot that is not an object raises ValueError."""
    with pytest.raises(ValueError, match="expected an object"):
        SessionDetector.restore(data, device_id="dev-1", machine_name="Mill", config=CONFIG)


def test_restore_rejects_a_session_on_an_unannounced_device() -> None:
    """A running session on a device never announced online is inconsistent."""
    data = working_snapshot()
    data.update(online=None, announced_online=False, silence_due=None)
    with pytest.raises(ValueError, match="announced"):
        SessionDetector.restore(data, device_id="dev-1", machine_name="Mill", config=CONFIG)
