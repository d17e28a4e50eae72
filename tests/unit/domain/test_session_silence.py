"""Timeouts, device_online/device_offline and availability (CONTRACT section 5)."""

from __future__ import annotations

import dataclasses

from iot_bridge.domain.events import EventType, iso_utc
from iot_bridge.domain.session import DetectorState

from .session_sim import CONFIG, SESSION_END_KEYS, T0, Sim

ONLINE = EventType.DEVICE_ONLINE
OFFLINE = EventType.DEVICE_OFFLINE
STARTED = EventType.SESSION_STARTED
TIMEOUT = EventType.SESSION_TIMEOUT
STOPPED = EventType.SESSION_STOPPED


def test_silence_in_a_session_gives_timeout_then_offline() -> None:
    """Silence for message_timeout_s: session_timeout ending at the last message, then offline."""
    sim = Sim()
    sim.start_working()
    sim.read(10, 100.0)
    assert sim.tick(29.999) == []
    events = sim.tick(30)
    assert [e.event_type for e in events] == [TIMEOUT, OFFLINE]
    timeout, offline = events
    assert timeout.timestamp == offline.timestamp == T0 + 30
    assert set(timeout.data) == SESSION_END_KEYS
    assert timeout.data["ended_at"] == iso_utc(T0 + 10)
    assert timeout.data["duration_s"] == 10.0
    assert timeout.data["reason"] == "timeout"
    assert timeout.session_id is not None
    assert offline.data == {"last_seen": iso_utc(T0 + 10)}
    assert offline.session_id is None
    assert sim.detector.state is DetectorState.IDLE
    assert sim.detector.online is False


def test_silence_while_idle_gives_device_offline_only() -> None:
    """An idle device silent for message_timeout_s goes offline."""
    sim = Sim()
    sim.read(0, 0.0)
    events = sim.tick(20)
    assert [e.event_type for e in events] == [OFFLINE]
    assert events[0].data == {"last_seen": iso_utc(T0)}


def test_device_offline_is_given_once() -> None:
    """After device_offline, more silence gives nothing; next_deadline is None."""
    sim = Sim()
    sim.read(0, 0.0)
    sim.tick(20)
    assert sim.detector.next_deadline() is None
    assert sim.tick(10_000) == []
    assert sim.types() == [ONLINE, OFFLINE]


def test_next_message_after_offline_gives_device_online() -> None:
    """The first message after device_offline gives device_online before its session events."""
    sim = Sim(dataclasses.replace(CONFIG, start_debounce_s=0.0))
    sim.read(0, 0.0)
    sim.tick(25)
    events = sim.read(100, 80.0)
    assert [e.event_type for e in events] == [ONLINE, STARTED]
    assert events[0].data == {"last_seen": iso_utc(T0 + 100)}


def test_message_at_the_timeout_moment_comes_after_it() -> None:
    """A message exactly at last + message_timeout_s finds the device already timed out."""
    sim = Sim()
    sim.start_working()
    events = sim.read(20, 100.0)
    assert [e.event_type for e in events] == [TIMEOUT, OFFLINE, ONLINE]
    assert sim.detector.state is DetectorState.STARTING


def test_message_without_power_is_a_sign_of_life() -> None:
    """A message without power keeps the last power and restarts the silence timer."""
    sim = Sim()
    sim.start_working(0, 100.0)
    assert sim.read(15, None, 1234.0) == []
    assert sim.detector.power_w == 100.0
    assert sim.detector.state is DetectorState.WORKING
    assert sim.tick(34) == []
    sim.tick(35)
    timeout = sim.only(TIMEOUT)
    assert timeout.data["ended_at"] == iso_utc(T0 + 15)
    assert timeout.data["avg_power_w"] == 100.0
    assert timeout.data["working_s"] == 15.0


def test_sign_of_life_while_idle_does_not_start() -> None:
    """A message without power while idle changes no state, but keeps the device online."""
    sim = Sim()
    sim.read(0, 0.0)
    sim.read(15, None)
    assert sim.tick(34) == []
    assert sim.detector.state is DetectorState.IDLE
    assert sim.detector.last_seen == T0 + 15


def test_timeout_while_starting_goes_idle_without_session_events() -> None:
    """Silence longer than the timeout before the start is confirmed: no session at all."""
    sim = Sim(dataclasses.replace(CONFIG, start_debounce_s=30.0))
    sim.read(0, 100.0)
    events = sim.tick(100)
    assert [e.event_type for e in events] == [OFFLINE]
    assert sim.detector.state is DetectorState.IDLE
    assert not sim.all_of(STARTED)


def test_short_start_debounce_then_silence_starts_then_times_out() -> None:
    """A start debounce shorter than the timeout confirms, then the silence times it out."""
    sim = Sim()
    sim.read(0, 100.0)
    events = sim.tick(100)
    assert [e.event_type for e in events] == [STARTED, TIMEOUT, OFFLINE]
    assert [e.timestamp for e in events] == [T0 + 3, T0 + 20, T0 + 20]
    assert events[1].data["ended_at"] == iso_utc(T0)
    assert events[1].data["duration_s"] == 0.0


def test_equal_start_debounce_and_timeout_fire_debounce_first() -> None:
    """Timers due at the same instant fire debounce before timeout."""
    sim = Sim(dataclasses.replace(CONFIG, start_debounce_s=20.0))
    sim.read(0, 100.0)
    assert [e.event_type for e in sim.tick(20)] == [STARTED, TIMEOUT, OFFLINE]


def test_timeout_while_stopping_ends_at_the_first_low_reading() -> None:
    """Silence during a long stop debounce ends the session at its first low reading."""
    sim = Sim(dataclasses.replace(CONFIG, stop_debounce_s=60.0))
    sim.start_working()
    sim.read(10, 1.0, None)
    sim.read(12, 2.0)
    events = sim.tick(100)
    assert [e.event_type for e in events] == [TIMEOUT, OFFLINE]
    assert events[0].timestamp == T0 + 32
    assert events[0].data["ended_at"] == iso_utc(T0 + 10)
    assert events[0].data["reason"] == "timeout"
    assert events[1].data == {"last_seen": iso_utc(T0 + 12)}


def test_stop_debounce_shorter_than_timeout_stops_first() -> None:
    """A low reading then silence: session_stopped at the debounce, offline at the timeout."""
    sim = Sim()
    sim.start_working()
    sim.read(10, 0.0)
    events = sim.tick(100)
    assert [e.event_type for e in events] == [STOPPED, OFFLINE]
    assert [e.timestamp for e in events] == [T0 + 25, T0 + 30]


def test_availability_offline_ends_a_session_as_timeout() -> None:
    """Availability offline during a session: session_timeout at the last message, then offline."""
    sim = Sim()
    sim.start_working()
    sim.read(8, 100.0)
    events = sim.avail(12, False)
    assert [e.event_type for e in events] == [TIMEOUT, OFFLINE]
    assert [e.timestamp for e in events] == [T0 + 12, T0 + 12]
    assert events[0].data["ended_at"] == iso_utc(T0 + 8)
    assert events[0].data["reason"] == "timeout"
    assert events[1].data == {"last_seen": iso_utc(T0 + 8)}
    assert sim.detector.online is False
    assert sim.detector.next_deadline() is None


def test_availability_offline_while_starting_gives_only_offline() -> None:
    """Availability offline during the start debounce drops the start."""
    sim = Sim()
    sim.read(0, 100.0)
    assert [e.event_type for e in sim.avail(1, False)] == [OFFLINE]
    assert sim.detector.state is DetectorState.IDLE
    assert sim.tick(100) == []


def test_availability_offline_while_stopping_ends_at_first_low_reading() -> None:
    """Availability offline during a stop debounce ends the session at the first low reading."""
    sim = Sim()
    sim.start_working()
    sim.read(10, 0.0)
    events = sim.avail(12, False)
    assert [e.event_type for e in events] == [TIMEOUT, OFFLINE]
    assert events[0].data["ended_at"] == iso_utc(T0 + 10)


def test_availability_offline_twice_gives_one_event() -> None:
    """device_offline is given once, however often the availability topic repeats it."""
    sim = Sim()
    sim.read(0, 0.0)
    sim.avail(1, False)
    assert sim.avail(2, False) == []
    assert sim.tick(100) == []
    assert sim.types() == [ONLINE, OFFLINE]


def test_availability_offline_for_an_unheard_device_gives_no_event() -> None:
    """Offline from the availability topic before any message: online=False, no event."""
    sim = Sim()
    assert sim.avail(0, False) == []
    assert sim.detector.online is False
    events = sim.read(5, 0.0)
    assert [e.event_type for e in events] == [ONLINE]


def test_availability_online_is_a_sign_of_life() -> None:
    """Availability online gives device_online when not online and restarts the silence timer."""
    sim = Sim()
    events = sim.avail(0, True)
    assert [e.event_type for e in events] == [ONLINE]
    assert sim.detector.last_seen == T0
    assert sim.avail(10, True) == []
    assert sim.detector.next_deadline() == T0 + 30


def test_availability_online_after_offline_gives_device_online() -> None:
    """Availability online after device_offline gives device_online."""
    sim = Sim()
    sim.read(0, 0.0)
    sim.avail(1, False)
    assert [e.event_type for e in sim.avail(5, True)] == [ONLINE]


def test_availability_fires_due_timers_first() -> None:
    """An availability message first fires the timers due before it."""
    sim = Sim()
    sim.read(0, 100.0)
    events = sim.avail(5, True)
    assert [e.event_type for e in events] == [STARTED]
    assert events[0].timestamp == T0 + 3
