"""Heartbeats and session aggregates: time, power, energy (CONTRACT sections 5 and 6)."""

from __future__ import annotations

import dataclasses

import pytest

from iot_bridge.domain.events import EventType, iso_utc

from .session_sim import CONFIG, HEARTBEAT_KEYS, T0, Sim

HEARTBEAT = EventType.SESSION_HEARTBEAT
STOPPED = EventType.SESSION_STOPPED
TIMEOUT = EventType.SESSION_TIMEOUT
SLOW = dataclasses.replace(CONFIG, message_timeout_s=1000.0, heartbeat_interval_s=10.0)


def test_heartbeats_carry_interval_and_session_aggregates() -> None:
    """Heartbeats at started_at + k*interval report the interval's and the session's figures."""
    sim = Sim(SLOW)
    sim.read(0, 100.0, 1000.0)
    sim.read(5, 20.0, 1000.2)
    sim.read(12, 80.0, 1000.3)
    sim.tick(20)
    events = sim.events[1:]
    assert [e.event_type for e in events] == [EventType.SESSION_STARTED, HEARTBEAT, HEARTBEAT]
    first, second = events[1], events[2]
    assert set(first.data) == HEARTBEAT_KEYS
    assert first.timestamp == T0 + 10
    assert first.session_id == events[0].session_id
    assert first.data == {
        "state": "standby",
        "power_w": 20.0,
        "interval_s": 10.0,
        "interval_avg_power_w": 60.0,
        "interval_working_s": 5.0,
        "interval_standby_s": 5.0,
        "session_duration_s": 10.0,
        "session_working_s": 5.0,
        "session_standby_s": 5.0,
        "session_energy_wh": pytest.approx(0.2),
    }
    assert second.timestamp == T0 + 20
    assert second.data == {
        "state": "working",
        "power_w": 80.0,
        "interval_s": 10.0,
        "interval_avg_power_w": 68.0,
        "interval_working_s": 8.0,
        "interval_standby_s": 2.0,
        "session_duration_s": 20.0,
        "session_working_s": 13.0,
        "session_standby_s": 7.0,
        "session_energy_wh": pytest.approx(0.3),
    }
    assert sim.detector.next_deadline() == T0 + 30


def test_first_heartbeat_is_after_the_start_moment() -> None:
    """With an interval shorter than the start debounce, the first heartbeat follows the start."""
    sim = Sim(dataclasses.replace(SLOW, heartbeat_interval_s=2.0))
    sim.read(0, 100.0)
    events = sim.tick(6)
    assert [e.event_type for e in events] == [EventType.SESSION_STARTED, HEARTBEAT, HEARTBEAT]
    assert [e.timestamp for e in events] == [T0 + 3, T0 + 4, T0 + 6]
    assert [e.data["interval_s"] for e in events[1:]] == [4.0, 2.0]


def test_heartbeat_energy_is_null_without_a_counter() -> None:
    """A device without an energy counter gives session_energy_wh null."""
    sim = Sim(SLOW)
    sim.read(0, 100.0)
    sim.tick(10)
    assert sim.only(HEARTBEAT).data["session_energy_wh"] is None


def test_heartbeat_inside_a_stop_debounce_counts_the_dip_as_before() -> None:
    """A heartbeat during stopping reports state stopping and the dip as the earlier state."""
    sim = Sim(SLOW)
    sim.start_working(0, 100.0)
    sim.read(8, 1.0)
    sim.tick(10)
    data = sim.only(HEARTBEAT).data
    assert data["state"] == "stopping"
    assert data["interval_working_s"] == 10.0
    assert data["interval_avg_power_w"] == pytest.approx((800 + 2) / 10)
    sim.tick(23)
    stopped = sim.only(STOPPED).data
    assert stopped["ended_at"] == iso_utc(T0 + 8)
    assert stopped["duration_s"] == 8.0


def test_no_heartbeat_after_the_session_ends() -> None:
    """After a stop, no heartbeat is scheduled."""
    sim = Sim(dataclasses.replace(SLOW, stop_debounce_s=0.0))
    sim.start_working()
    sim.read(5, 0.0)
    assert sim.detector.next_deadline() == T0 + 1005
    sim.tick(100)
    assert sim.all_of(HEARTBEAT) == []


def test_non_positive_heartbeat_interval_disables_heartbeats() -> None:
    """heartbeat_interval_s <= 0 means no heartbeats."""
    sim = Sim(dataclasses.replace(SLOW, heartbeat_interval_s=0.0))
    sim.start_working()
    sim.tick(500)
    assert sim.all_of(HEARTBEAT) == []


def test_average_power_is_time_weighted_from_the_first_crossing() -> None:
    """avg_power_w weighs held power by time, including the start debounce."""
    sim = Sim()
    sim.read(0, 10.0)
    sim.read(2, 100.0)
    sim.read(4, 40.0)
    sim.read(8, 0.0)
    sim.tick(23)
    data = sim.only(STOPPED).data
    assert data["avg_power_w"] == pytest.approx((20 + 200 + 160) / 8)
    assert data["peak_power_w"] == 100.0
    assert data["working_s"] == 2.0
    assert data["standby_s"] == 6.0


def test_energy_counts_positive_steps_and_counter_resets() -> None:
    """A counter going down is a reset: its new value counts as the step."""
    sim = Sim()
    sim.read(0, 100.0, 500.0)
    sim.read(5, 100.0, 510.0)
    sim.read(6, 100.0, 2.0)
    sim.read(8, 0.0, 5.0)
    sim.tick(23)
    assert sim.only(STOPPED).data["energy_wh"] == 15.0


def test_energy_baseline_is_the_last_counter_before_the_start() -> None:
    """Without a counter at the crossing, the last known counter is the baseline."""
    sim = Sim()
    sim.read(0, 0.0, 100.0)
    sim.read(5, 100.0)
    sim.read(10, 100.0, 101.5)
    sim.read(12, 0.0)
    sim.tick(27)
    assert sim.only(STOPPED).data["energy_wh"] == 1.5


def test_energy_is_null_without_a_counter_in_the_session() -> None:
    """A counter known only before the session gives energy_wh null."""
    sim = Sim()
    sim.read(0, 0.0, 100.0)
    sim.read(5, 100.0)
    sim.read(12, 0.0)
    sim.tick(27)
    assert sim.only(STOPPED).data["energy_wh"] is None


def test_energy_with_one_counter_value_is_zero() -> None:
    """A counter reported only at the first reading gives energy 0.0, not null."""
    sim = Sim()
    sim.read(0, 100.0, 42.0)
    sim.read(12, 0.0)
    sim.tick(27)
    assert sim.only(STOPPED).data["energy_wh"] == 0.0


def test_zero_length_session_reports_peak_as_average() -> None:
    """A session that ends where it starts reports avg_power_w = peak_power_w."""
    sim = Sim(dataclasses.replace(CONFIG, start_debounce_s=0.0, stop_debounce_s=0.0))
    sim.read(0, 100.0)
    sim.read(0, 0.0)
    data = sim.only(STOPPED).data
    assert data["duration_s"] == 0.0
    assert data["working_s"] == data["standby_s"] == 0.0
    assert data["avg_power_w"] == data["peak_power_w"] == 100.0


def test_timeout_aggregates_end_at_the_last_message() -> None:
    """A timed-out session's aggregates stop at the last message, with power held to it."""
    sim = Sim()
    sim.read(0, 100.0, 10.0)
    sim.read(6, 10.0, 11.0)
    sim.read(9, None, 12.0)
    sim.tick(100)
    data = sim.only(TIMEOUT).data
    assert data["duration_s"] == 9.0
    assert data["working_s"] == 6.0
    assert data["standby_s"] == 3.0
    assert data["avg_power_w"] == pytest.approx((600 + 30) / 9)
    assert data["energy_wh"] == 2.0
