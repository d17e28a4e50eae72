"""Removal, reconfiguration, bridge restart, time handling and event shapes."""

from __future__ import annotations

import dataclasses
import json

from iot_bridge.domain.events import EventType, iso_utc
from iot_bridge.domain.readings import Reading
from iot_bridge.domain.session import DetectorState, SessionDetector

from .session_sim import CONFIG, T0, Sim

ONLINE = EventType.DEVICE_ONLINE
OFFLINE = EventType.DEVICE_OFFLINE
STARTED = EventType.SESSION_STARTED
STOPPED = EventType.SESSION_STOPPED
TIMEOUT = EventType.SESSION_TIMEOUT
HEARTBEAT = EventType.SESSION_HEARTBEAT


def restarted(sim: Sim, offset: float) -> Sim:
    """The detector after a bridge restart at T0 + offset (snapshot, restore, resume)."""
    data = json.loads(json.dumps(sim.detector.snapshot()))
    sim.detector = SessionDetector.restore(
        data, device_id="dev-1", machine_name="Mill", config=sim.detector.config
    )
    sim.detector.resume_after_restart(T0 + offset)
    return sim


def test_remove_ends_a_running_session_now() -> None:
    """Removing the device ends its session at once with reason device_removed."""
    sim = Sim()
    sim.start_working()
    session_id = sim.detector.session_id
    events = sim.remove(10)
    assert [e.event_type for e in events] == [STOPPED]
    assert events[0].session_id == session_id
    assert events[0].timestamp == T0 + 10
    assert events[0].data["ended_at"] == iso_utc(T0 + 10)
    assert events[0].data["duration_s"] == 10.0
    assert events[0].data["reason"] == "device_removed"
    assert sim.detector.state is DetectorState.IDLE
    assert sim.detector.next_deadline() is None
    assert sim.tick(10_000) == []
    assert sim.detector.online is None


def test_remove_while_stopping_ends_at_the_first_low_reading() -> None:
    """Removing during a stop debounce ends the session at its first low reading."""
    sim = Sim()
    sim.start_working()
    sim.read(8, 0.0)
    events = sim.remove(10)
    assert events[0].data["ended_at"] == iso_utc(T0 + 8)
    assert events[0].data["reason"] == "device_removed"


def test_remove_while_starting_or_idle_gives_nothing() -> None:
    """Removing without a confirmed session gives no event."""
    sim = Sim()
    sim.read(0, 100.0)
    assert sim.remove(1) == []
    assert sim.detector.state is DetectorState.IDLE
    assert Sim().remove(0) == []


def test_remove_fires_due_timers_first() -> None:
    """remove first fires the timers due before it (the start), then ends the session."""
    sim = Sim()
    sim.read(0, 100.0)
    events = sim.remove(5)
    assert [e.event_type for e in events] == [STARTED, STOPPED]


def test_reconfigure_applies_thresholds_from_the_next_reading() -> None:
    """New thresholds change nothing until the next reading, which is judged by them."""
    sim = Sim()
    sim.start_working(0, 100.0)
    new = dataclasses.replace(CONFIG, standby_threshold_w=200.0, working_threshold_w=300.0)
    sim.detector.reconfigure(machine_name="Mill 2", config=new)
    assert sim.detector.state is DetectorState.WORKING
    assert sim.detector.config is new
    sim.read(5, 150.0)
    assert sim.detector.state is DetectorState.STOPPING
    sim.tick(20)
    stopped = sim.only(STOPPED)
    assert stopped.machine_name == "Mill 2"
    assert sim.detector.machine_name == "Mill 2"


def test_reconfigure_heartbeat_keeps_the_next_one() -> None:
    """A new heartbeat interval keeps the scheduled heartbeat; later ones follow the new one."""
    config = dataclasses.replace(CONFIG, message_timeout_s=1000.0, heartbeat_interval_s=10.0)
    sim = Sim(config)
    sim.start_working()
    sim.detector.reconfigure(
        machine_name="Mill", config=dataclasses.replace(config, heartbeat_interval_s=25.0)
    )
    sim.tick(60)
    assert [e.timestamp - T0 for e in sim.all_of(HEARTBEAT)] == [10.0, 35.0, 60.0]


def test_reconfigure_enables_and_disables_heartbeats() -> None:
    """Switching heartbeats off stops them; switching on resumes the schedule from started_at."""
    config = dataclasses.replace(CONFIG, message_timeout_s=1000.0, heartbeat_interval_s=10.0)
    sim = Sim(config)
    sim.start_working()
    sim.detector.reconfigure(
        machine_name="Mill", config=dataclasses.replace(config, heartbeat_interval_s=0.0)
    )
    assert sim.tick(25) == []
    sim.detector.reconfigure(machine_name="Mill", config=config)
    sim.tick(40)
    heartbeats = sim.all_of(HEARTBEAT)
    assert [e.timestamp - T0 for e in heartbeats] == [30.0, 40.0]
    assert heartbeats[0].data["interval_s"] == 30.0


def test_reconfigure_timeout_applies_from_the_next_message() -> None:
    """The armed silence timer keeps its time; the next message uses the new timeout."""
    sim = Sim()
    sim.read(0, 0.0)
    sim.detector.reconfigure(
        machine_name="Mill", config=dataclasses.replace(CONFIG, message_timeout_s=50.0)
    )
    assert sim.detector.next_deadline() == T0 + 20
    sim.read(10, 0.0)
    assert sim.detector.next_deadline() == T0 + 60


def test_restart_makes_online_unknown_and_the_next_message_gives_device_online() -> None:
    """After a restart, online is None and the first message gives device_online again."""
    sim = Sim()
    sim.start_working()
    session_id = sim.detector.session_id
    restarted(sim, 10)
    assert sim.detector.online is None
    assert sim.detector.session_id == session_id
    events = sim.read(11, 100.0)
    assert [e.event_type for e in events] == [ONLINE]
    assert sim.detector.state is DetectorState.WORKING


def test_restart_downtime_is_not_device_silence() -> None:
    """Silence is measured from max(last_seen, restart): downtime does not time out a session."""
    sim = Sim()
    sim.start_working()
    sim.read(5, 100.0)
    restarted(sim, 500)
    assert sim.detector.next_deadline() == T0 + 520
    assert sim.tick(519) == []
    events = sim.tick(520)
    assert [e.event_type for e in events] == [TIMEOUT, OFFLINE]
    assert events[0].data["ended_at"] == iso_utc(T0 + 5)


def test_restart_of_an_offline_device_gives_no_second_offline() -> None:
    """A device already announced offline stays quiet across a restart until it speaks."""
    sim = Sim()
    sim.read(0, 0.0)
    sim.tick(20)
    restarted(sim, 100)
    assert sim.detector.next_deadline() is None
    assert sim.tick(1000) == []
    assert [e.event_type for e in sim.read(1001, 0.0)] == [ONLINE]


def test_restart_restarts_a_debounce_in_progress() -> None:
    """A start or stop debounce in progress restarts in full after a restart."""
    sim = Sim()
    sim.read(0, 100.0)
    restarted(sim, 2)
    assert sim.tick(4.9) == []
    assert [e.event_type for e in sim.tick(5)] == [STARTED]
    assert sim.only(STARTED).data["started_at"] == iso_utc(T0)
    sim.read(6, 0.0)
    restarted(sim, 10)
    assert sim.tick(24.9) == []
    assert sim.tick(25)[0].data["ended_at"] == iso_utc(T0 + 6)


def test_restart_skips_heartbeats_missed_in_the_downtime() -> None:
    """Heartbeats due during the downtime are skipped; the next one's interval covers the gap."""
    config = dataclasses.replace(CONFIG, message_timeout_s=1000.0, heartbeat_interval_s=10.0)
    sim = Sim(config)
    sim.start_working()
    sim.tick(10)
    restarted(sim, 45)
    sim.tick(50)
    heartbeats = sim.all_of(HEARTBEAT)
    assert [e.timestamp - T0 for e in heartbeats] == [10.0, 50.0]
    assert heartbeats[1].data["interval_s"] == 40.0


def test_time_going_backwards_is_taken_as_the_latest_time() -> None:
    """A now earlier than the latest seen is clamped: no negative durations."""
    sim = Sim()
    sim.start_working()
    sim.read(10, 100.0)
    sim.read(5, 0.0)
    assert sim.detector.last_seen == T0 + 10
    sim.tick(100)
    assert sim.only(STOPPED).data["ended_at"] == iso_utc(T0 + 10)
    assert sim.only(STOPPED).data["duration_s"] == 10.0


def test_next_deadline_is_the_earliest_timer() -> None:
    """next_deadline is None for a fresh detector, else the earliest armed timer."""
    sim = Sim()
    assert sim.detector.next_deadline() is None
    sim.read(0, 100.0)
    assert sim.detector.next_deadline() == T0 + 3
    sim.tick(3)
    assert sim.detector.next_deadline() == T0 + 20
    sim.read(10, 0.0)
    assert sim.detector.next_deadline() == T0 + 25


def test_properties_describe_the_device() -> None:
    """The read-only properties show what GET /devices needs."""
    detector = SessionDetector(device_id="plug-7", machine_name="Lathe", config=CONFIG)
    assert (detector.device_id, detector.machine_name, detector.config) == (
        "plug-7",
        "Lathe",
        CONFIG,
    )
    assert (detector.state, detector.online, detector.last_seen) == ("idle", None, None)
    assert (detector.power_w, detector.session_id) == (None, None)
    events = detector.on_reading(T0, Reading(7.0))
    assert detector.power_w == 7.0
    assert detector.last_seen == T0
    assert len(events[0].event_uid) == 36  # the default uid factory gives uuid4 strings


def test_every_event_type_serialises_to_the_contract_shape() -> None:
    """Every event's to_dict is JSON with the section 6 keys and ISO-8601 times."""
    sim = Sim(dataclasses.replace(CONFIG, heartbeat_interval_s=5.0))
    sim.read(0, 100.0, 1.0)
    sim.read(9, 0.0, 2.0)
    sim.tick(40)
    sim.start_working(50)
    sim.avail(55, False)
    assert set(sim.types()) == set(EventType)
    for event in sim.events:
        body = json.loads(json.dumps(event.to_dict()))
        assert set(body) == {
            "event_uid",
            "event_type",
            "device_id",
            "machine_name",
            "session_id",
            "timestamp",
            "data",
        }
        assert body["timestamp"].endswith("+00:00")
        for key, value in body["data"].items():
            if key.endswith("_at") or key == "last_seen":
                assert value.endswith("+00:00")
            elif key.endswith(("_s", "_w", "_wh")) and value is not None:
                assert isinstance(value, float), key
