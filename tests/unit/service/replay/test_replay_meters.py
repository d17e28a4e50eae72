"""Each meter of CONTRACT §4a starts, runs and stops a session with the right power and energy."""

from __future__ import annotations

from collections import defaultdict

import pytest

from iot_bridge.config.parse import parse_config
from iot_bridge.domain.events import Event, EventType
from iot_bridge.service.replay.trace import replay
from tests.support import meter_traces
from tests.support.meter_traces import METERS, START_S, STOP_S, T0


@pytest.fixture(scope="module")
def events_by_device() -> dict[str, list[Event]]:
    """The replay of every meter's trace, events grouped by device."""
    grouped: dict[str, list[Event]] = defaultdict(list)
    config = parse_config(meter_traces.config_document())
    replay(meter_traces.trace_lines(), config, lambda event: grouped[event.device_id].append(event))
    return grouped


@pytest.mark.parametrize("device_id", list(METERS))
def test_meter_session_has_the_machines_power_and_energy(
    events_by_device: dict[str, list[Event]], device_id: str
) -> None:
    """One session from the power rise to the first low reading: summed power, import energy."""
    _, _, power_w, energy_wh = METERS[device_id]
    events = events_by_device[device_id]
    types = [event.event_type for event in events]
    assert types == [
        EventType.DEVICE_ONLINE,
        EventType.SESSION_STARTED,
        EventType.SESSION_HEARTBEAT,
        EventType.SESSION_HEARTBEAT,
        EventType.SESSION_STOPPED,
    ]
    started, first_beat, _, stopped = events[1:]
    assert started.data["power_w"] == power_w
    assert started.timestamp == T0 + START_S + 3.0
    # The heartbeat at 300 s into the session: the counters said so at the last report.
    assert first_beat.data["power_w"] == power_w
    assert 0 < first_beat.data["session_energy_wh"] <= energy_wh / 2
    assert stopped.data["reason"] == "power_off"
    assert stopped.data["duration_s"] == STOP_S - START_S
    assert stopped.data["avg_power_w"] == power_w
    assert stopped.data["peak_power_w"] == power_w
    assert stopped.data["energy_wh"] == pytest.approx(energy_wh, abs=0.06)


def test_committed_samples_are_the_generators_output() -> None:
    """samples/traces/three-phase.* are what `python3 -m tests.support.meter_traces` writes."""
    trace = meter_traces.SAMPLE_TRACE.read_text(encoding="utf-8")
    assert trace == "\n".join(meter_traces.trace_lines()) + "\n"
    assert meter_traces.SAMPLE_CONFIG.read_text(encoding="utf-8") == (
        meter_traces.sample_config_text()
    )
