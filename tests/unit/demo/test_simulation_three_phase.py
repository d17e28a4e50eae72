"""The simulated Pro 3EM on a three-phase lathe: what it publishes, read by the real parser."""

from __future__ import annotations

import pytest

from iot_bridge.demo.simulation import (
    ENERGY_DATA_PERIOD_S,
    REPORT_PERIOD_S,
    ShellyPro3EmSimulation,
    build_scenario,
    sibling_topic,
)
from iot_bridge.domain.readings import Reading
from iot_bridge.parsers import make_parser

TOPIC = "shellypro3em-sim001/status/em:0"


def _run(seconds: int) -> list[tuple[str, Reading, float]]:
    """(topic, reading, the simulation's energy then) of every report, one sample a second."""
    simulation = ShellyPro3EmSimulation(build_scenario("full_session"), start_ts=1_764_000_000.0)
    parser = make_parser("shelly_pm", TOPIC)
    seen = []
    for second in range(seconds):
        for report in simulation.reports(float(second)):
            topic = sibling_topic(TOPIC, report.sibling)
            assert topic in parser.data_topics
            seen.append((topic, parser.parse(topic, report.payload), simulation.energy_wh))
    return seen


def test_em0_reports_power_and_emdata0_the_counter_once_a_minute() -> None:
    """status/em:0 carries total_act_power; status/emdata:0 comes once a simulated minute."""
    seen = _run(155)
    data = [reading for topic, reading, _ in seen if topic.endswith("/emdata:0")]
    powers = [reading for topic, reading, _ in seen if topic.endswith("/em:0")]
    assert len(data) == 155 // int(ENERGY_DATA_PERIOD_S) + 1
    assert all(reading.power_w is None and reading.energy_wh is not None for reading in data)
    assert all(reading.energy_wh is None and reading.power_w is not None for reading in powers)
    assert max(reading.power_w or 0.0 for reading in powers) > 1500.0  # a lathe, not a lamp
    assert len(powers) >= 155 // int(REPORT_PERIOD_S)


def test_the_counter_is_the_integral_of_the_three_phases() -> None:
    """Each emdata:0 total_act is what the phases drew so far (Wh), never going back."""
    seen = _run(155)
    counters = [(reading.energy_wh, energy) for topic, reading, energy in seen if "emdata" in topic]
    assert [c for c, _ in counters] == sorted(c for c, _ in counters)
    for reported, integrated in counters:
        assert reported == pytest.approx(integrated, abs=0.02)
    assert counters[-1][0] > 10.0


def test_reports_are_in_order_and_time_never_runs_back() -> None:
    """Energy data is published before the power of the same moment; time cannot go back."""
    simulation = ShellyPro3EmSimulation(build_scenario("working"), start_ts=0.0)
    first = simulation.reports(0.0)
    assert [report.sibling for report in first] == ["emdata:0", None]
    with pytest.raises(ValueError, match="backwards"):
        simulation.reports(-1.0)
