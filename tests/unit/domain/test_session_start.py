"""idle -> starting -> standby|working (CONTRACT section 5)."""

from __future__ import annotations

import dataclasses
import uuid

from iot_bridge.domain.events import EventType, iso_utc
from iot_bridge.domain.readings import Reading
from iot_bridge.domain.session import DetectorState, session_id_for

from .session_sim import CONFIG, T0, Sim

STARTED = EventType.SESSION_STARTED
ONLINE = EventType.DEVICE_ONLINE


def test_first_message_gives_device_online() -> None:
    """The first message ever heard gives device_online with last_seen = its time."""
    sim = Sim()
    events = sim.read(0, 0.0)
    assert [e.event_type for e in events] == [ONLINE]
    assert events[0].timestamp == T0
    assert events[0].data == {"last_seen": iso_utc(T0)}
    assert events[0].session_id is None
    assert sim.detector.online is True


def test_reading_at_standby_threshold_enters_starting() -> None:
    """A reading exactly at the standby threshold starts the debounce."""
    sim = Sim()
    sim.read(0, 5.0)
    assert sim.detector.state is DetectorState.STARTING
    assert sim.detector.session_id is None


def test_reading_below_standby_threshold_stays_idle() -> None:
    """A reading just below the standby threshold leaves the detector idle."""
    sim = Sim()
    sim.read(0, 4.999)
    assert sim.detector.state is DetectorState.IDLE
    assert sim.detector.next_deadline() == T0 + CONFIG.message_timeout_s


def test_start_timer_fires_without_a_new_message() -> None:
    """session_started comes from the timer at first crossing + start_debounce_s."""
    sim = Sim()
    sim.read(0, 10.0)
    assert sim.detector.next_deadline() == T0 + 3.0
    assert sim.tick(2.999) == []
    events = sim.tick(3.0)
    assert [e.event_type for e in events] == [STARTED]
    started = events[0]
    assert started.timestamp == T0 + 3.0
    assert started.data == {"started_at": iso_utc(T0), "state": "standby", "power_w": 10.0}
    assert started.session_id == session_id_for("dev-1", T0)
    assert sim.detector.state is DetectorState.STANDBY


def test_start_time_is_the_first_crossing_reading() -> None:
    """Later high readings during the debounce do not move started_at."""
    sim = Sim()
    sim.read(0, 10.0)
    sim.read(1, 20.0)
    sim.read(2, 30.0)
    sim.tick(10)
    assert sim.only(STARTED).data["started_at"] == iso_utc(T0)
    assert sim.only(STARTED).timestamp == T0 + 3.0


def test_session_starts_in_working_at_working_threshold() -> None:
    """A power exactly at the working threshold starts the session in working."""
    sim = Sim()
    sim.read(0, 50.0)
    sim.tick(3)
    assert sim.only(STARTED).data["state"] == "working"
    assert sim.detector.state is DetectorState.WORKING


def test_start_state_follows_the_latest_reading() -> None:
    """The state at start is decided by the power held at the start moment."""
    sim = Sim()
    sim.read(0, 100.0)
    sim.read(2, 10.0)
    sim.tick(3)
    assert sim.only(STARTED).data == {
        "started_at": iso_utc(T0),
        "state": "standby",
        "power_w": 10.0,
    }


def test_drop_during_starting_returns_to_idle_without_event() -> None:
    """A reading below standby before the debounce ends goes back to idle, silently."""
    sim = Sim()
    sim.read(0, 100.0)
    assert sim.read(2, 1.0) == []
    assert sim.detector.state is DetectorState.IDLE
    assert sim.tick(10) == []
    assert sim.types() == [ONLINE]


def test_new_crossing_after_a_drop_restarts_the_debounce() -> None:
    """After a drop, the next crossing is the new start time."""
    sim = Sim()
    sim.read(0, 100.0)
    sim.read(2, 1.0)
    sim.read(4, 100.0)
    assert sim.tick(6.9) == []
    sim.tick(7)
    assert sim.only(STARTED).data["started_at"] == iso_utc(T0 + 4)


def test_reading_at_the_due_time_comes_after_the_timer() -> None:
    """A timer due exactly at a message's time fires before the message is applied."""
    sim = Sim()
    sim.read(0, 100.0)
    events = sim.read(3, 0.0)
    assert [e.event_type for e in events] == [STARTED]
    assert sim.detector.state is DetectorState.STOPPING


def test_zero_start_debounce_starts_in_the_same_call() -> None:
    """With start_debounce_s = 0 the crossing message itself starts the session."""
    sim = Sim(dataclasses.replace(CONFIG, start_debounce_s=0.0))
    events = sim.read(0, 100.0)
    assert [e.event_type for e in events] == [ONLINE, STARTED]
    assert events[1].timestamp == T0
    assert sim.detector.state is DetectorState.WORKING


def test_equal_thresholds_never_standby() -> None:
    """With standby == working threshold a session is always working."""
    sim = Sim(dataclasses.replace(CONFIG, standby_threshold_w=20.0, working_threshold_w=20.0))
    sim.read(0, 20.0)
    sim.tick(3)
    assert sim.only(STARTED).data["state"] == "working"
    sim.read(5, 25.0)
    assert sim.detector.state is DetectorState.WORKING


def test_standby_and_working_follow_the_working_threshold() -> None:
    """standby <-> working changes with the working threshold and gives no event."""
    sim = Sim()
    sim.start_working(0, 10.0)
    assert sim.detector.state is DetectorState.STANDBY
    assert sim.read(5, 50.0) == []
    assert sim.detector.state is DetectorState.WORKING
    assert sim.read(6, 49.9) == []
    assert sim.detector.state is DetectorState.STANDBY
    assert sim.read(7, 5.0) == []
    assert sim.detector.state is DetectorState.STANDBY


def test_session_id_is_deterministic_uuid4() -> None:
    """The session id is derived from device and start time, shaped as a UUID4."""
    sim = Sim()
    sim.start_working()
    session_id = sim.detector.session_id
    assert session_id == session_id_for("dev-1", T0)
    parsed = uuid.UUID(session_id)
    assert parsed.version == 4
    assert session_id_for("dev-2", T0) != session_id
    assert session_id_for("dev-1", T0 + 1) != session_id


def test_integer_times_give_the_same_session_id() -> None:
    """A start time passed as int names the session like the same float."""
    sim = Sim()
    sim.detector.on_reading(1_700_000_000, Reading(100.0))
    sim.detector.tick(1_700_000_003)
    assert sim.detector.session_id == session_id_for("dev-1", 1_700_000_000.0)


def test_session_started_event_fields() -> None:
    """session_started carries device, machine, session id and exactly its data keys."""
    sim = Sim(machine_name="CNC Mill (Workshop)")
    sim.start_working()
    started = sim.only(STARTED)
    assert started.device_id == "dev-1"
    assert started.machine_name == "CNC Mill (Workshop)"
    assert started.event_uid == "uid-2"
    assert set(started.data) == {"started_at", "state", "power_w"}
