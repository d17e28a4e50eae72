"""Try thresholds: kept readings replayed through the same detector, nothing changed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from iot_bridge.domain.readings import Reading
from iot_bridge.domain.session import SessionDetector
from iot_bridge.domain.session_config import SessionConfig
from iot_bridge.service.replay.tuning import compare, replay_sessions

CONFIG = SessionConfig(
    standby_threshold_w=5.0,
    working_threshold_w=50.0,
    start_debounce_s=3.0,
    stop_debounce_s=15.0,
    message_timeout_s=60.0,
)


def _trace() -> list[tuple[float, float]]:
    """Idle, a session with a 10 s dip to 20 W in the middle, idle again (one reading a second)."""
    power = [0.0] * 10 + [200.0] * 60 + [20.0] * 10 + [200.0] * 60 + [0.0] * 40
    return [(1000.0 + i, w) for i, w in enumerate(power)]


def test_the_current_settings_give_what_the_live_detector_gave() -> None:
    """Replaying with the device's own settings reproduces the live detector's sessions."""
    trace = _trace()
    live = SessionDetector(device_id="cnc", machine_name="CNC", config=CONFIG)
    events = []
    for ts, w in trace:
        events.extend(live.on_reading(ts, Reading(w)))
    live_stops = [e.data for e in events if e.event_type == "session_stopped"]
    replayed = replay_sessions(trace, CONFIG, now=trace[-1][0])
    assert [(s.duration_s, s.working_s, s.standby_s) for s in replayed] == [
        (d["duration_s"], d["working_s"], d["standby_s"]) for d in live_stops
    ]
    assert len(replayed) == 1


def test_a_standby_threshold_above_the_dip_splits_the_session() -> None:
    """With standby at 30 W and a stop debounce under the dip, the dip ends the session."""
    trace = _trace()
    proposed = SessionConfig(
        standby_threshold_w=30.0,
        working_threshold_w=50.0,
        start_debounce_s=3.0,
        stop_debounce_s=5.0,
    )
    result = compare(trace, CONFIG, proposed, now=trace[-1][0])
    assert (result["current"]["count"], result["proposed"]["count"]) == (1, 2)
    assert result["readings"] == len(trace)


def test_a_session_still_running_at_the_end_is_shown_open() -> None:
    """A session whose stop is not confirmed by ``now`` has no end yet."""
    trace = [(0.0, 0.0), (1.0, 100.0), (10.0, 100.0)]
    sessions = replay_sessions(trace, CONFIG, now=12.0)
    assert len(sessions) == 1
    assert sessions[0].ended_at is None and sessions[0].duration_s == 11.0


def test_timers_fire_at_now_after_the_last_reading() -> None:
    """A stop debounce that is over by ``now`` ends the session even with no reading after it."""
    trace = [(0.0, 100.0), (5.0, 100.0), (10.0, 0.0)]
    sessions = replay_sessions(trace, CONFIG, now=30.0)
    assert [(s.started_at, s.ended_at, s.reason) for s in sessions] == [(0.0, 10.0, "power_off")]


def test_no_readings_no_sessions() -> None:
    """An empty history gives no session on either side."""
    result = compare([], CONFIG, CONFIG, now=100.0)
    assert result["current"]["count"] == result["proposed"]["count"] == 0
    assert result["from"] is None


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(min_value=0, max_value=500, allow_nan=False), min_size=1, max_size=80),
    st.floats(min_value=1, max_value=400),
)
def test_replays_are_deterministic_and_leave_the_readings_alone(
    powers: list[float], standby_w: float
) -> None:
    """The same readings and settings give the same sessions twice; the input is not changed."""
    trace = [(float(i) * 2, w) for i, w in enumerate(powers)]
    before = list(trace)
    proposed = SessionConfig(
        standby_threshold_w=standby_w, working_threshold_w=max(standby_w, 50.0)
    )
    first = compare(trace, CONFIG, proposed, now=trace[-1][0] + 100)
    second = compare(trace, CONFIG, proposed, now=trace[-1][0] + 100)
    assert first == second
    assert trace == before
    for side in ("current", "proposed"):
        for session in first[side]["sessions"]:
            assert session["duration_s"] >= 0
