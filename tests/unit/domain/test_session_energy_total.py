"""The device's energy total: every counter step, sessions or not, never down, persisted."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from iot_bridge.domain.readings import Reading
from iot_bridge.domain.session import SessionDetector

from .session_sim import CONFIG, Sim


def test_the_total_is_unknown_until_a_counter_arrives_then_starts_at_zero() -> None:
    """Power alone leaves it None; the first counter value is its zero point."""
    sim = Sim()
    sim.read(0, 0.0)
    assert sim.detector.energy_total_wh is None
    sim.read(1, 0.0, 5000.0)
    assert sim.detector.energy_total_wh == 0.0
    sim.read(2, 0.0, 5012.5)
    assert sim.detector.energy_total_wh == 12.5


def test_the_total_counts_inside_and_outside_sessions() -> None:
    """Idle standby draw counts as well as a session's use: it is the meter's whole life."""
    sim = Sim()
    sim.read(0, 1.0, 100.0)  # idle, below the standby threshold
    sim.read(60, 1.0, 101.0)
    sim.start_working(120)
    sim.read(130, 100.0, 121.0)
    sim.read(140, 0.0, 130.0)
    assert sim.detector.energy_total_wh == 30.0


def test_a_meter_reset_never_makes_the_total_go_down() -> None:
    """A counter restarting from zero: its new value is counted as use since the restart."""
    sim = Sim()
    seen = []
    for offset, counter in enumerate([500.0, 510.0, 520.0, 3.0, 8.0, 0.0, 2.0]):
        sim.read(offset, 0.0, counter)
        seen.append(sim.detector.energy_total_wh)
    assert seen == [0.0, 10.0, 20.0, 23.0, 28.0, 28.0, 30.0]


def test_the_total_survives_a_snapshot_and_a_restart() -> None:
    """Persisted with the detector: a restart goes on from the same figure."""
    sim = Sim()
    sim.read(0, 0.0, 1000.0)
    sim.read(1, 0.0, 1040.0)
    data = json.loads(json.dumps(sim.detector.snapshot()))
    assert data["energy_total_wh"] == 40.0
    restored = SessionDetector.restore(data, device_id="dev-1", machine_name="Mill", config=CONFIG)
    restored.resume_after_restart(1_700_000_100.0)
    assert restored.energy_total_wh == 40.0
    restored.on_reading(1_700_000_101.0, Reading(0.0, 1045.0))
    assert restored.energy_total_wh == 45.0


def test_a_version_2_snapshot_starts_the_total_where_a_counter_was_known() -> None:
    """Snapshots from before the total: 0 with a known counter (counts from the upgrade on)."""
    sim = Sim()
    sim.read(0, 0.0, 1000.0)
    data = sim.detector.snapshot()
    old = {key: value for key, value in data.items() if key != "energy_total_wh"}
    old["version"] = 2
    restored = SessionDetector.restore(old, device_id="dev-1", machine_name="Mill", config=CONFIG)
    assert restored.energy_total_wh == 0.0
    never = Sim()
    never.read(0, 0.0)
    old = {k: v for k, v in never.detector.snapshot().items() if k != "energy_total_wh"}
    old["version"] = 2
    assert (
        SessionDetector.restore(
            old, device_id="dev-1", machine_name="Mill", config=CONFIG
        ).energy_total_wh
        is None
    )


@given(
    st.lists(
        st.one_of(st.none(), st.floats(min_value=0.0, max_value=1e7, allow_nan=False)),
        max_size=40,
    )
)
def test_the_total_never_goes_down(counters: list[float | None]) -> None:
    """Whatever the counters do (resets, gaps, repeats), the total only grows."""
    sim = Sim()
    last = 0.0
    for offset, counter in enumerate(counters):
        sim.read(offset, 0.0, counter)
        total = sim.detector.energy_total_wh
        if total is not None:
            assert total >= last
            last = total
