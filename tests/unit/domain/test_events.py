"""The TypedDict of each event type's data: the keys CONTRACT §6 names, and what the detector emits."""

from __future__ import annotations

import dataclasses
from typing import get_args, get_type_hints

from iot_bridge.domain.events import (
    DevicePresenceData,
    EndReason,
    Event,
    EventType,
    SessionEndedData,
    SessionHeartbeatData,
    SessionStartedData,
)

from .session_sim import CONFIG, HEARTBEAT_KEYS, SESSION_END_KEYS, Sim

# CONTRACT §6, "data by type", as written there.
CONTRACT_KEYS = {
    EventType.SESSION_STARTED: {"started_at", "state", "power_w"},
    EventType.SESSION_HEARTBEAT: HEARTBEAT_KEYS,
    EventType.SESSION_STOPPED: SESSION_END_KEYS,
    EventType.SESSION_TIMEOUT: SESSION_END_KEYS,
    EventType.DEVICE_ONLINE: {"last_seen"},
    EventType.DEVICE_OFFLINE: {"last_seen"},
}
TYPED = {
    EventType.SESSION_STARTED: SessionStartedData,
    EventType.SESSION_HEARTBEAT: SessionHeartbeatData,
    EventType.SESSION_STOPPED: SessionEndedData,
    EventType.SESSION_TIMEOUT: SessionEndedData,
    EventType.DEVICE_ONLINE: DevicePresenceData,
    EventType.DEVICE_OFFLINE: DevicePresenceData,
}


def every_event_type() -> list[Event]:
    """A run of one detector that gives each of the six event types."""
    sim = Sim(dataclasses.replace(CONFIG, heartbeat_interval_s=10.0))
    sim.start_working(0.0)
    sim.read(12.0, 80.0, 5.0)
    sim.read(14.0, 0.0, 6.0)
    sim.tick(40.0)  # stopped, then silent: offline
    sim.read(50.0, 100.0)
    sim.tick(53.0)
    sim.tick(200.0)  # timed out
    return sim.events


def test_each_typed_dict_has_the_contract_keys() -> None:
    """Every event type's TypedDict declares exactly the data keys of CONTRACT §6."""
    for event_type, typed in TYPED.items():
        assert set(get_type_hints(typed)) == CONTRACT_KEYS[event_type], event_type
        assert typed.__required_keys__ == CONTRACT_KEYS[event_type], event_type


def test_the_end_reasons_are_the_contract_values() -> None:
    """``reason`` takes the three values of CONTRACT §6."""
    assert set(get_args(EndReason)) == {"power_off", "timeout", "device_removed"}


def test_the_detector_emits_each_type_with_its_typed_keys() -> None:
    """What the detector puts in ``data`` has the keys of the type's TypedDict."""
    events = every_event_type()
    assert {e.event_type for e in events} == set(EventType)
    for event in events:
        assert set(event.data) == set(get_type_hints(TYPED[event.event_type])), event.event_type


def test_each_accessor_gives_its_types_data_and_none_for_others() -> None:
    """``started_data()`` and its siblings narrow an event to its own type's data only."""
    for event in every_event_type():
        kind = event.event_type
        accessors = {
            event.started_data: {EventType.SESSION_STARTED},
            event.heartbeat_data: {EventType.SESSION_HEARTBEAT},
            event.ended_data: {EventType.SESSION_STOPPED, EventType.SESSION_TIMEOUT},
            event.presence_data: {EventType.DEVICE_ONLINE, EventType.DEVICE_OFFLINE},
        }
        for accessor, kinds in accessors.items():
            assert (accessor() is event.data) == (kind in kinds), (kind, accessor)
            if kind not in kinds:
                assert accessor() is None
