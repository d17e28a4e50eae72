"""standby|working -> stopping -> idle, and back (CONTRACT section 5)."""

from __future__ import annotations

import dataclasses

import pytest

from iot_bridge.domain.events import EventType, iso_utc
from iot_bridge.domain.session import DetectorState

from .session_sim import CONFIG, SESSION_END_KEYS, T0, Sim

STOPPED = EventType.SESSION_STOPPED


def test_low_reading_enters_stopping() -> None:
    """A reading below standby in a session enters stopping, with no event."""
    sim = Sim()
    sim.start_working()
    assert sim.read(10, 4.9) == []
    assert sim.detector.state is DetectorState.STOPPING
    assert sim.detector.next_deadline() == T0 + 10 + CONFIG.stop_debounce_s


def test_stop_fires_after_debounce_ending_at_first_low_reading() -> None:
    """session_stopped comes at low + stop_debounce_s and ends at the first low reading."""
    sim = Sim()
    sim.start_working()
    sim.read(10, 1.0)
    sim.read(12, 0.0)
    assert sim.tick(24.999) == []
    events = sim.tick(25)
    assert [e.event_type for e in events] == [STOPPED]
    stopped = events[0]
    assert stopped.timestamp == T0 + 25
    assert set(stopped.data) == SESSION_END_KEYS
    assert stopped.data["started_at"] == iso_utc(T0)
    assert stopped.data["ended_at"] == iso_utc(T0 + 10)
    assert stopped.data["duration_s"] == 10.0
    assert stopped.data["working_s"] == 10.0
    assert stopped.data["standby_s"] == 0.0
    assert stopped.data["avg_power_w"] == 100.0
    assert stopped.data["peak_power_w"] == 100.0
    assert stopped.data["energy_wh"] is None
    assert stopped.data["reason"] == "power_off"
    assert stopped.session_id is not None
    assert sim.detector.state is DetectorState.IDLE
    assert sim.detector.session_id is None


def test_further_low_readings_do_not_restart_the_stop_debounce() -> None:
    """The stop debounce counts from the first low reading."""
    sim = Sim()
    sim.start_working()
    sim.read(10, 1.0)
    sim.read(20, 2.0)
    sim.tick(25)
    assert sim.only(STOPPED).timestamp == T0 + 25


@pytest.mark.parametrize(("previous", "expect_working"), [(100.0, 30.0), (10.0, 0.0)])
def test_power_back_returns_without_event_and_the_dip_counts(
    previous: float, expect_working: float
) -> None:
    """A reading >= standby during stopping resumes; the dip counts as the earlier state."""
    sim = Sim()
    sim.start_working(0, previous)
    sim.read(10, 1.0)
    assert sim.read(14, previous) == []
    assert sim.detector.state is (
        DetectorState.WORKING if previous >= 50 else DetectorState.STANDBY
    )
    assert sim.tick(29) == []  # past the cancelled stop, before the timeout
    sim.read(30, 0.0)
    sim.tick(45)
    data = sim.only(STOPPED).data
    assert data["ended_at"] == iso_utc(T0 + 30)
    assert data["working_s"] == expect_working
    assert data["standby_s"] == 30.0 - expect_working
    # the dip's power counts as it was: 26 s at `previous`, 4 s at 1 W
    assert data["avg_power_w"] == pytest.approx((26 * previous + 4 * 1.0) / 30)


def test_back_from_stopping_state_follows_the_new_reading() -> None:
    """Power back above the working threshold after a standby dip resumes in working."""
    sim = Sim()
    sim.start_working(0, 10.0)
    sim.read(5, 0.0)
    sim.read(6, 80.0)
    assert sim.detector.state is DetectorState.WORKING


def test_zero_stop_debounce_stops_in_the_same_call() -> None:
    """With stop_debounce_s = 0 the first low reading stops the session."""
    sim = Sim(dataclasses.replace(CONFIG, stop_debounce_s=0.0))
    sim.start_working()
    events = sim.read(10, 0.0)
    assert [e.event_type for e in events] == [STOPPED]
    assert events[0].timestamp == T0 + 10
    assert events[0].data["ended_at"] == iso_utc(T0 + 10)


def test_stopped_dip_readings_are_rolled_back() -> None:
    """Energy and peak from readings after the first low one do not count when it stops."""
    sim = Sim(dataclasses.replace(CONFIG, standby_threshold_w=5.0))
    sim.read(0, 100.0, 1000.0)
    sim.tick(3)
    sim.read(10, 1.0, 1000.5)
    sim.read(12, 2.0, 1002.0)
    sim.tick(25)
    data = sim.only(STOPPED).data
    assert data["energy_wh"] == 0.5
    assert data["peak_power_w"] == 100.0
    assert data["duration_s"] == 10.0


def test_new_session_after_a_stop_gets_a_new_id() -> None:
    """A crossing after a stop starts a new session with a new id."""
    sim = Sim()
    sim.start_working()
    first = sim.detector.session_id
    sim.read(10, 0.0)
    sim.tick(25)
    sim.start_working(30)
    assert sim.detector.session_id not in (None, first)
    assert sim.types().count(EventType.SESSION_STARTED) == 2
