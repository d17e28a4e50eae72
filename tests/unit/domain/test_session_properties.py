"""Property tests: invariants of the detector over random power/time sequences."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iot_bridge.domain.events import Event, EventType
from iot_bridge.domain.readings import Reading
from iot_bridge.domain.session import SessionDetector, session_id_for
from iot_bridge.domain.session_config import SessionConfig

from .session_sim import T0, counting_uids, without_uid

PROPERTY_SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

STARTED = EventType.SESSION_STARTED
HEARTBEAT = EventType.SESSION_HEARTBEAT
ENDS = (EventType.SESSION_STOPPED, EventType.SESSION_TIMEOUT)


@dataclass(frozen=True)
class Op:
    """One input: ``kind`` is read, avail, tick or remove; ``dt`` the time since the last."""

    kind: str
    dt: float
    power: float | None = None
    energy: float | None = None
    online: bool = True


def _seconds(maximum: float) -> st.SearchStrategy[float]:
    return st.one_of(
        st.sampled_from([0.0, 0.5, 1.0, 3.0, 15.0, 20.0]),
        st.floats(min_value=0.0, max_value=maximum).map(lambda x: round(x, 3)),
    )


@st.composite
def configs(draw: st.DrawFn) -> SessionConfig:
    """Session configs, including zero debounces and equal thresholds."""
    standby = draw(st.sampled_from([0.0, 5.0, 10.0, 7.25]))
    return SessionConfig(
        standby_threshold_w=standby,
        working_threshold_w=standby + draw(st.sampled_from([0.0, 20.0, 45.0])),
        start_debounce_s=draw(_seconds(30.0)),
        stop_debounce_s=draw(_seconds(40.0)),
        message_timeout_s=draw(st.sampled_from([5.0, 20.0, 33.3])),
        heartbeat_interval_s=draw(st.sampled_from([0.0, 2.5, 10.0, 300.0])),
    )


POWERS = st.one_of(
    st.none(),
    st.sampled_from([0.0, 1.0, 4.99, 5.0, 7.25, 10.0, 27.25, 49.9, 50.0, 55.0, 100.0, 3000.0]),
    st.floats(min_value=0.0, max_value=200.0),
)
ENERGIES = st.one_of(st.none(), st.floats(min_value=0.0, max_value=1e4))
GAPS = st.one_of(
    st.sampled_from([0.0, 0.5, 1.0, 2.5, 3.0, 5.0, 15.0, 20.0, 25.0, 100.0]),
    st.floats(min_value=0.0, max_value=60.0),
)

OPS = st.one_of(
    st.builds(Op, kind=st.just("read"), dt=GAPS, power=POWERS, energy=ENERGIES),
    st.builds(Op, kind=st.just("read"), dt=GAPS, power=POWERS, energy=ENERGIES),
    st.builds(Op, kind=st.just("read"), dt=GAPS, power=POWERS, energy=ENERGIES),
    st.builds(Op, kind=st.just("avail"), dt=GAPS, online=st.booleans()),
    st.builds(Op, kind=st.just("tick"), dt=GAPS),
    st.builds(Op, kind=st.just("remove"), dt=GAPS),
)
OP_LISTS = st.lists(OPS, min_size=1, max_size=40) | st.lists(OPS, min_size=15, max_size=60)


def times_of(ops: list[Op]) -> list[float]:
    """The absolute time of each op."""
    times = []
    now = T0
    for op in ops:
        now += op.dt
        times.append(now)
    return times


def new_detector(config: SessionConfig) -> SessionDetector:
    """A detector with a deterministic uid factory."""
    return SessionDetector(
        device_id="dev-1", machine_name="Mill", config=config, uid_factory=counting_uids()
    )


def apply(detector: SessionDetector, op: Op, now: float) -> list[Event]:
    """Feed one op to the detector."""
    if op.kind == "read":
        return detector.on_reading(now, Reading(op.power, op.energy))
    if op.kind == "avail":
        return detector.on_availability(now, op.online)
    if op.kind == "tick":
        return detector.tick(now)
    return detector.remove(now)


def run(
    config: SessionConfig, ops: list[Op], detector: SessionDetector | None = None
) -> tuple[list[list[Event]], SessionDetector]:
    """Feed every op; the events of each op, and the detector."""
    detector = detector or new_detector(config)
    per_op = [apply(detector, op, now) for op, now in zip(ops, times_of(ops), strict=True)]
    return per_op, detector


def flat(per_op: list[list[Event]]) -> list[Event]:
    """All events in order."""
    return [event for events in per_op for event in events]


def parse(iso: str) -> float:
    """An ISO-8601 time back to unix seconds."""
    return datetime.fromisoformat(iso).timestamp()


def assert_sums(working: float, standby: float, total: float) -> None:
    """working + standby == total within float rounding; none negative."""
    assert working >= 0.0
    assert standby >= 0.0
    assert working + standby == pytest.approx(total, rel=1e-9, abs=1e-9)


@PROPERTY_SETTINGS
@given(config=configs(), ops=OP_LISTS)
def test_sessions_are_well_formed(config: SessionConfig, ops: list[Op]) -> None:
    """Sessions pair up, aggregates add up, times are ordered, online/offline alternate."""
    per_op, detector = run(config, ops)
    events = flat(per_op)
    # a removed device is forgotten: the next message may announce it again
    forgotten_after = {
        sum(map(len, per_op[: i + 1])) for i, op in enumerate(ops) if op.kind == "remove"
    }
    open_session: str | None = None
    online: bool | None = None
    last_time = -1.0
    for index, event in enumerate(events):
        if index in forgotten_after:
            online = None
        assert event.timestamp >= last_time
        last_time = event.timestamp
        assert json.loads(json.dumps(event.to_dict(), allow_nan=False))
        data = event.data
        if event.event_type == STARTED:
            assert open_session is None
            assert event.session_id is not None
            open_session = event.session_id
            assert parse(data["started_at"]) <= event.timestamp + 1e-6
        elif event.event_type == HEARTBEAT:
            assert event.session_id == open_session
            assert data["interval_s"] > 0
            assert_sums(data["interval_working_s"], data["interval_standby_s"], data["interval_s"])
            assert_sums(
                data["session_working_s"], data["session_standby_s"], data["session_duration_s"]
            )
        elif event.event_type in ENDS:
            assert event.session_id == open_session
            open_session = None
            started, ended = parse(data["started_at"]), parse(data["ended_at"])
            assert started <= ended <= event.timestamp + 1e-6
            assert data["duration_s"] >= 0
            assert_sums(data["working_s"], data["standby_s"], data["duration_s"])
            assert data["avg_power_w"] <= data["peak_power_w"] * (1 + 1e-9) + 1e-9
            assert data["energy_wh"] is None or data["energy_wh"] >= 0
            if event.event_type == EventType.SESSION_TIMEOUT:
                follower = events[index + 1]
                assert follower.event_type == EventType.DEVICE_OFFLINE
                assert follower.timestamp == event.timestamp
        elif event.event_type == EventType.DEVICE_ONLINE:
            assert online is not True
            online = True
        else:
            assert online is True
            online = False
    assert open_session == detector.session_id


@PROPERTY_SETTINGS
@given(config=configs(), ops=OP_LISTS)
def test_no_session_without_power_at_the_standby_threshold(
    config: SessionConfig, ops: list[Op]
) -> None:
    """If power never reaches the standby threshold, no session event is ever given."""
    standby = max(config.standby_threshold_w, 1.0)
    config = SessionConfig(
        standby_threshold_w=standby,
        working_threshold_w=max(config.working_threshold_w, standby),
        start_debounce_s=config.start_debounce_s,
        stop_debounce_s=config.stop_debounce_s,
        message_timeout_s=config.message_timeout_s,
        heartbeat_interval_s=config.heartbeat_interval_s,
    )
    low_ops = [
        Op(op.kind, op.dt, None if op.power is None else op.power % standby * 0.999, op.energy)
        if op.kind == "read"
        else op
        for op in ops
    ]
    per_op, _ = run(config, low_ops)
    types = {event.event_type for event in flat(per_op)}
    assert types <= {EventType.DEVICE_ONLINE, EventType.DEVICE_OFFLINE}


@PROPERTY_SETTINGS
@given(config=configs(), ops=OP_LISTS)
def test_a_start_needs_the_full_debounce_above_the_threshold(
    config: SessionConfig, ops: list[Op]
) -> None:
    """session_started comes start_debounce_s after a crossing with no low reading in between."""
    per_op, _ = run(config, ops)
    times = times_of(ops)
    for fired_by, events in enumerate(per_op):
        for event in events:
            if event.event_type != STARTED:
                continue
            # the exact start time is the op time that names the session
            started = next(t for t in times if session_id_for("dev-1", t) == event.session_id)
            assert event.timestamp == started + config.start_debounce_s
            crossing = max(
                index
                for index in range(fired_by + 1)
                if times[index] == started and ops[index].kind == "read"
            )
            # A message without power keeps the last known power (CONTRACT section 4),
            # so a sign of life can be the crossing when the held power is high.
            held = [
                op.power for op in ops[: crossing + 1] if op.kind == "read" and op.power is not None
            ]
            assert held
            assert held[-1] >= config.standby_threshold_w
            for op in ops[crossing + 1 : fired_by]:
                assert op.kind != "remove"
                assert not (op.kind == "avail" and not op.online)
                if op.kind == "read" and op.power is not None:
                    assert op.power >= config.standby_threshold_w


@PROPERTY_SETTINGS
@given(config=configs(), ops=OP_LISTS)
def test_same_input_gives_same_events(config: SessionConfig, ops: list[Op]) -> None:
    """Replaying the same inputs gives identical events (event_uid aside)."""
    first, _ = run(config, ops)
    second, _ = run(config, ops)
    assert without_uid(flat(first)) == without_uid(flat(second))


@PROPERTY_SETTINGS
@given(config=configs(), ops=OP_LISTS, data=st.data())
def test_snapshot_and_restore_anywhere_changes_nothing(
    config: SessionConfig, ops: list[Op], data: st.DataObject
) -> None:
    """Snapshot, JSON, restore at any point: later events equal those of a straight run."""
    split = data.draw(st.integers(min_value=0, max_value=len(ops)))
    straight, _ = run(config, ops)
    times = times_of(ops)
    before = new_detector(config)
    for op, now in zip(ops[:split], times[:split], strict=True):
        apply(before, op, now)
    text = json.dumps(before.snapshot(), allow_nan=False)
    after = SessionDetector.restore(
        json.loads(text),
        device_id="dev-1",
        machine_name="Mill",
        config=config,
        uid_factory=counting_uids(),
    )
    assert after.snapshot() == before.snapshot()
    resumed = [apply(after, op, now) for op, now in zip(ops[split:], times[split:], strict=True)]
    assert without_uid(flat(resumed)) == without_uid(flat(straight[split:]))


@PROPERTY_SETTINGS
@given(config=configs(), ops=OP_LISTS, data=st.data())
def test_extra_ticks_change_nothing(
    config: SessionConfig, ops: list[Op], data: st.DataObject
) -> None:
    """tick() at arbitrary times between inputs gives the same events as not ticking."""
    plain = [op for op in ops if op.kind != "tick"]
    expected, _ = run(config, plain)
    detector = new_detector(config)
    got: list[Event] = []
    previous = T0
    for op, now in zip(plain, times_of(plain), strict=True):
        fractions = data.draw(st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=3))
        for fraction in sorted(fractions):
            got += detector.tick(min(previous + fraction * (now - previous), now))
        got += apply(detector, op, now)
        previous = now
    final = data.draw(st.floats(min_value=0.0, max_value=500.0))
    got += detector.tick(previous + final)
    expected_events = flat(expected) + new_tail(config, plain, previous + final)
    assert without_uid(got) == without_uid(expected_events)


def new_tail(config: SessionConfig, ops: list[Op], until: float) -> list[Event]:
    """The events a straight run of ``ops`` gives from a final tick at ``until``."""
    _, detector = run(config, ops)
    return detector.tick(until)


def test_property_helpers_time_the_ops() -> None:
    """times_of accumulates gaps from T0 (a sanity check of the harness itself)."""
    ops = [Op("tick", 1.0), Op("tick", 2.5)]
    assert times_of(ops) == [T0 + 1.0, T0 + 3.5]
