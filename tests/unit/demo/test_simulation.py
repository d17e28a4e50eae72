"""The simulated Shelly PM Gen3: scenario power shapes, energy, report cadence, payloads."""

from __future__ import annotations

import itertools
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iot_bridge.demo.simulation import (
    REPORT_PERIOD_S,
    SCENARIOS,
    Level,
    Phase,
    Report,
    Scenario,
    ShellyPmSimulation,
    availability_topic,
    build_scenario,
    looping,
    power_w,
    significant_change,
)
from iot_bridge.parsers import make_parser

START_TS = 1_700_000_000.0
TOPIC = "shellypmminig3-sim001/status/pm1:0"
PM_MINI_GEN3_KEYS = {"id", "voltage", "current", "apower", "freq", "aenergy", "ret_aenergy"}


def run(scenario: Scenario, step_s: float = 1.0, until_s: float | None = None) -> list[Report]:
    """Sample a scenario every ``step_s`` until it ends (or ``until_s``) and collect reports."""
    simulation = ShellyPmSimulation(scenario, start_ts=START_TS)
    end = scenario.total_s if until_s is None else until_s
    assert end is not None
    reports = []
    steps = math.ceil(end / step_s)
    for index in range(steps + 1):
        report = simulation.sample(min(index * step_s, end))
        if report is not None:
            reports.append(report)
    return reports


def levels_in_order(reports: list[Report]) -> list[Level]:
    """The distinct levels the reports went through, consecutive repeats collapsed."""
    order: list[Level] = []
    for report in reports:
        if not order or order[-1] is not report.level:
            order.append(report.level)
    return order


def test_full_session_goes_idle_standby_working_standby_idle() -> None:
    """full_session is one complete session: idle, standby, working, run-down, idle."""
    reports = run(build_scenario("full_session"))
    assert levels_in_order(reports) == [
        Level.IDLE,
        Level.STANDBY,
        Level.WORKING,
        Level.STANDBY,
        Level.IDLE,
    ]
    assert reports[-1].power_w == 0.0
    assert reports[-1].t_s == pytest.approx(155.0)


def test_full_session_idle_tail_outlasts_the_default_stop_debounce() -> None:
    """After the machine stops, reports continue long enough for a 15 s stop debounce."""
    reports = run(build_scenario("full_session"))
    last_powered = max(r.t_s for r in reports if r.power_w > 0)
    assert reports[-1].t_s - last_powered >= 30.0


def test_standby_power_stays_between_the_seed_range_and_the_default_working_threshold() -> None:
    """standby reports 20-100 W (seed) and stays under the default 50 W working threshold."""
    reports = run(build_scenario("standby", duration_s=300))
    assert all(20.0 <= r.power_w < 50.0 for r in reports)


def test_working_power_stays_above_100_w() -> None:
    """working reports more than 100 W throughout."""
    reports = run(build_scenario("working", duration_s=300))
    assert all(r.power_w > 100.0 for r in reports)


def test_online_test_reports_at_least_every_period_with_idle_power() -> None:
    """online_test keeps reporting (no gap over the period) at idle power for --duration."""
    reports = run(build_scenario("online_test", duration_s=120))
    times = [r.t_s for r in reports]
    assert times[0] == 0.0
    assert times[-1] == pytest.approx(120.0)
    assert max(b - a for a, b in itertools.pairwise(times)) <= REPORT_PERIOD_S
    assert all(r.power_w == 0.0 for r in reports)


def test_offline_test_has_a_silent_gap_of_the_offline_duration() -> None:
    """offline_test publishes, goes silent for --offline-duration, then publishes again."""
    reports = run(build_scenario("offline_test", offline_duration_s=45))
    times = [r.t_s for r in reports]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) >= 45.0
    assert sorted(gaps)[-2] <= REPORT_PERIOD_S
    assert times[-1] == pytest.approx(30 + 45 + 30)


def test_offline_test_with_duration_centres_the_gap() -> None:
    """With --duration, the silence sits in the middle and the total is the duration."""
    scenario = build_scenario("offline_test", duration_s=100, offline_duration_s=40)
    assert scenario.total_s == 100
    assert [p.publishing for p in scenario.phases] == [True, False, True]
    assert scenario.phases[0].duration_s == scenario.phases[2].duration_s == 30


def test_energy_counter_never_decreases_and_integrates_power() -> None:
    """aenergy.total rises monotonically and equals the integral of the sampled power."""
    scenario = build_scenario("working", duration_s=3600)
    simulation = ShellyPmSimulation(scenario, start_ts=START_TS)
    expected_wh = 0.0
    previous_w = None
    last_energy = 0.0
    for second in range(3601):
        simulation.sample(float(second))
        if previous_w is not None:
            expected_wh += previous_w / 3600.0
        previous_w = power_w(Level.WORKING, float(second))
        assert simulation.energy_wh >= last_energy
        last_energy = simulation.energy_wh
    assert simulation.energy_wh == pytest.approx(expected_wh)
    assert 150.0 < simulation.energy_wh < 370.0


@given(steps=st.lists(st.floats(min_value=0.0, max_value=30.0), min_size=1, max_size=60))
def test_energy_is_monotonic_for_any_sampling(steps: list[float]) -> None:
    """Whatever the sampling intervals, the reported energy never goes down."""
    simulation = ShellyPmSimulation(looping("full_session"), start_ts=START_TS)
    t_s = 0.0
    last = -1.0
    for step in steps:
        t_s += step
        report = simulation.sample(t_s)
        if report is not None:
            total = json.loads(report.payload)["aenergy"]["total"]
            assert total >= last
            last = total


def test_time_running_backwards_is_refused() -> None:
    """Sampling an earlier time than the last one is a programming error."""
    simulation = ShellyPmSimulation(build_scenario("working"), start_ts=START_TS)
    simulation.sample(10.0)
    with pytest.raises(ValueError, match="backwards"):
        simulation.sample(9.0)


def test_reports_on_a_five_percent_change_but_not_on_noise() -> None:
    """The Shelly rule: report on >= 5 % change, never on sub-watt noise near 0 W."""
    assert significant_change(100.0, 105.0)
    assert not significant_change(100.0, 104.0)
    assert significant_change(0.0, 30.0)
    assert not significant_change(0.0, 0.3)


def test_payload_has_the_pm_mini_gen3_shape() -> None:
    """Every payload carries the PM Mini Gen3 status/pm1:0 keys with consistent units."""
    reports = run(build_scenario("full_session"))
    for report in reports:
        status = json.loads(report.payload)
        assert set(status) == PM_MINI_GEN3_KEYS
        assert status["id"] == 0
        assert status["apower"] == report.power_w
        assert status["current"] == pytest.approx(status["apower"] / status["voltage"], abs=1e-3)
        assert len(status["aenergy"]["by_minute"]) == 3
        assert status["aenergy"]["minute_ts"] % 60 == 0
        assert status["aenergy"]["minute_ts"] <= START_TS + report.t_s
        assert set(status["ret_aenergy"]) == {"total", "by_minute", "minute_ts"}


def test_by_minute_holds_the_last_complete_minutes_in_mwh() -> None:
    """by_minute[0] is the energy of the last complete simulated minute, in mWh."""
    scenario = build_scenario("working", duration_s=600)
    simulation = ShellyPmSimulation(scenario, start_ts=0.0)
    marks = {}
    report = None
    for second in range(200):
        sampled = simulation.sample(float(second))
        if second % 60 == 0:
            marks[second] = simulation.energy_wh
        if second > 180 and sampled is not None:
            report = sampled
            break
    assert report is not None
    by_minute = json.loads(report.payload)["aenergy"]["by_minute"]
    assert by_minute[0] == pytest.approx((marks[180] - marks[120]) * 1000, abs=1e-3)
    assert by_minute[1] == pytest.approx((marks[120] - marks[60]) * 1000, abs=1e-3)
    assert by_minute[2] == pytest.approx((marks[60] - marks[0]) * 1000, abs=1e-3)


def test_payloads_parse_with_the_shelly_pm_parser() -> None:
    """The bridge's own shelly_pm parser reads power and energy back from every payload."""
    parser = make_parser("shelly_pm", TOPIC)
    for report in run(build_scenario("full_session")):
        reading = parser.parse(TOPIC, report.payload)
        assert reading.power_w == report.power_w
        assert reading.energy_wh == pytest.approx(report.energy_wh, abs=1e-3)


def test_availability_topic_matches_the_parser() -> None:
    """The simulator announces itself on the topic the shelly_pm parser watches."""
    parser = make_parser("shelly_pm", TOPIC)
    assert availability_topic(TOPIC) == parser.availability_topic == "shellypmminig3-sim001/online"
    assert availability_topic("plant/hall1/status/switch:0") == "plant/hall1/online"
    assert availability_topic("plant/meter") == "plant/online"
    assert availability_topic("meter") == "meter/online"


def test_looping_scenarios_never_end_and_keep_starting_sessions() -> None:
    """The demo's looping variants repeat forever with idle gaps between sessions."""
    for name in ("full_session", "working", "standby"):
        scenario = looping(name, lead_idle_s=5)
        assert not scenario.finished(1e9)
        reports = run(scenario, until_s=3 * scenario.cycle_s)
        powered_runs = sum(1 for a, b in itertools.pairwise(reports) if a.power_w == 0 < b.power_w)
        assert powered_runs == 3


def test_every_scenario_name_builds() -> None:
    """Each of the CLI's scenario names builds a finite scenario."""
    for name in SCENARIOS:
        scenario = build_scenario(name)
        assert scenario.total_s is not None
        assert scenario.total_s > 0


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("dance", {}, "unknown scenario 'dance'"),
        ("working", {"duration_s": 0.0}, "--duration must be"),
        ("working", {"duration_s": -5.0}, "--duration must be"),
        ("working", {"duration_s": math.nan}, "--duration must be"),
        ("working", {"duration_s": math.inf}, "--duration must be"),
        ("offline_test", {"offline_duration_s": 0.0}, "--offline-duration must be"),
        ("offline_test", {"duration_s": 50.0, "offline_duration_s": 60.0}, "longer than"),
    ],
)
def test_bad_scenario_arguments_are_refused(
    name: str, kwargs: dict[str, float], message: str
) -> None:
    """Unknown names and impossible durations raise ValueError with one sentence."""
    with pytest.raises(ValueError, match=message):
        build_scenario(name, **kwargs)


def test_scenario_needs_positive_phases() -> None:
    """A scenario without phases, or with an empty phase, cannot be built."""
    with pytest.raises(ValueError, match="positive duration"):
        Scenario("x", (), None)
    with pytest.raises(ValueError, match="positive duration"):
        Scenario("x", (Phase(Level.IDLE, 0.0),), None)
    with pytest.raises(ValueError, match="no looping variant"):
        looping("offline_test")
