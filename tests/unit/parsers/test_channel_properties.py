"""Invariants of multi-channel devices (CONTRACT §4a), for any order of messages."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iot_bridge.domain.events import EventType
from iot_bridge.domain.session import SessionDetector
from iot_bridge.parsers import make_parser
from tests.unit.domain.session_sim import CONFIG

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PREFIX = "shellies/shellyem3-ABC/emeter"
CHANNELS = [0, 1, 2]
POWERS = st.floats(min_value=-5000, max_value=50_000, allow_nan=False).map(lambda w: round(w, 2))


def _rpc(channel: int, watts: float) -> bytes:
    return b'{"method":"NotifyStatus","params":{"em1:%d":{"act_power":%r}}}' % (channel, watts)


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(CHANNELS), POWERS), min_size=1, max_size=40))
def test_power_is_the_sum_of_each_channels_latest_value(messages: list[tuple[int, float]]) -> None:
    """Any interleaving of per-channel messages: power = sum of each channel's latest (≥ 0) value."""
    gen1 = make_parser("shelly_gen1", f"{PREFIX}/0/power", {"channels": CHANNELS})
    rpc = make_parser("shelly_rpc", "pro3em/events/rpc", {"channels": CHANNELS})
    latest: dict[int, float] = {}
    for channel, watts in messages:
        latest[channel] = max(watts, 0.0)
        expected = math.fsum(latest.values())
        by_topic = gen1.parse(f"{PREFIX}/{channel}/power", repr(watts).encode())
        by_delta = rpc.parse("pro3em/events/rpc", _rpc(channel, watts))
        for reading in (by_topic, by_delta):
            assert reading.power_w == pytest.approx(expected, abs=1e-9)
            assert reading.negative_power is (watts < 0)


# A counter's next value: a step forward, or a restart from zero to a smaller value.
COUNTER_MOVES = st.tuples(
    st.sampled_from(CHANNELS),
    st.booleans(),
    st.floats(min_value=0, max_value=5000, allow_nan=False).map(lambda wh: round(wh, 3)),
)


@SETTINGS
@given(
    start=st.lists(
        st.floats(min_value=0, max_value=1e6, allow_nan=False).map(lambda wh: round(wh, 2)),
        min_size=3,
        max_size=3,
    ),
    moves=st.lists(COUNTER_MOVES, max_size=40),
)
def test_session_energy_is_the_sum_of_the_forward_steps(
    start: list[float], moves: list[tuple[int, bool, float]]
) -> None:
    """Any counter sequence with resets: the session's energy is the sum of the forward steps.

    A step is the increase of a channel's counter, or its new value after it
    went backwards (restarted from zero); never negative, nothing lost.
    """
    config = dataclasses.replace(
        CONFIG,
        start_debounce_s=1.0,
        stop_debounce_s=1.0,
        message_timeout_s=10_000.0,
        heartbeat_interval_s=0.0,
    )
    parser = make_parser("shelly_gen1", f"{PREFIX}/0/power", {"channels": CHANNELS})
    detector = SessionDetector(device_id="lathe", machine_name="Lathe", config=config)
    now = 1000.0
    counters = list(start)
    for channel, value in enumerate(counters):  # every channel's baseline, before the session
        detector.on_reading(now, parser.parse(f"{PREFIX}/{channel}/total", repr(value).encode()))
    events = detector.on_reading(now, parser.parse(f"{PREFIX}/0/power", b"800.0"))
    expected = 0.0
    for channel, forward, amount in moves:
        now += 1.0
        previous = counters[channel]
        value = previous + amount if forward else round(previous * amount / 5000, 3)
        expected += value - previous if value >= previous else value
        counters[channel] = value
        reading = parser.parse(f"{PREFIX}/{channel}/total", repr(value).encode())
        events += detector.on_reading(now, reading)
    events += detector.on_reading(now + 2.0, parser.parse(f"{PREFIX}/0/power", b"0.0"))
    events += detector.tick(now + 10.0)
    stopped = [event for event in events if event.event_type is EventType.SESSION_STOPPED]
    assert len(stopped) == 1
    energy = stopped[0].data["energy_wh"]
    if not moves:
        assert energy is None  # no counter arrived during the session
        return
    assert energy >= 0.0
    assert energy == pytest.approx(expected, abs=2e-3)
