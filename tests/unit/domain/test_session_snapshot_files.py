"""Snapshots written by earlier versions (fixture files) restore and continue exactly as then."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from iot_bridge.domain.readings import Reading
from iot_bridge.domain.session import SessionDetector
from iot_bridge.domain.session_config import SessionConfig
from iot_bridge.domain.session_snapshot import SNAPSHOT_VERSION, upgraded

from .session_sim import T0

FIXTURES = Path(__file__).parents[2] / "fixtures" / "snapshots" / "detector_snapshots.json"
CASES: dict[str, Any] = json.loads(FIXTURES.read_text(encoding="utf-8"))
VERSIONS = ("1", "2", "3")


def _restore(case: dict[str, Any], version: str) -> SessionDetector:
    return SessionDetector.restore(
        case["snapshots"][version],
        device_id="dev-1",
        machine_name="Mill",
        config=SessionConfig(**case["config"]),
    )


def _drive(detector: SessionDetector) -> list[list[Any]]:
    events = []
    events += detector.on_reading(T0 + 16, Reading(60.0, 11.0))
    events += detector.tick(T0 + 40)
    events += detector.on_reading(T0 + 41, Reading(0.0, 12.0))
    events += detector.on_availability(T0 + 42, True)
    events += detector.tick(T0 + 2000)
    # Through JSON, as the fixture was written.
    return json.loads(
        json.dumps([[str(e.event_type), e.session_id, e.timestamp, e.data] for e in events])
    )


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_an_old_snapshot_restores_to_the_same_state(name: str, version: str) -> None:
    """A stored snapshot of each format version restores to the detector it gave then."""
    case = CASES[name]
    restored = _restore(case, version)
    # What the detector of then wrote after restoring, in today's shape.
    expected = upgraded(case["restored"][version])
    assert json.loads(json.dumps(restored.snapshot())) == expected


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_an_old_snapshot_continues_with_the_same_events(name: str, version: str) -> None:
    """After restoring a stored snapshot, the same inputs give the events they gave then."""
    case = CASES[name]
    assert _drive(_restore(case, version)) == case["continuation"][version]


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_version_3_snapshot_is_written_back_in_the_current_shape(name: str) -> None:
    """A version 3 snapshot restores and is written back value for value, nested by part."""
    case = CASES[name]
    written = json.loads(json.dumps(_restore(case, "3").snapshot()))
    assert written["version"] == SNAPSHOT_VERSION
    assert written == upgraded(case["snapshots"]["3"])
    flat = case["snapshots"]["3"]
    top = {k: v for k, v in written.items() if k not in ("version", "session", "presence")}
    assert {**top, **written["presence"]} == {
        k: v for k, v in flat.items() if k not in ("version", "session")
    }
    session, old = written["session"], flat["session"]
    if old is None:
        assert session is None
        return
    assert session["totals"]["working_s"] == old["working_s"]
    assert session["totals"]["energy_wh"] == old["energy_wh"]
    assert session["heartbeat"]["number"] == old["heartbeat_number"]
    debounce = session["debounce"]
    assert (debounce is None) == (old["debounce_due"] is None)
    if debounce is not None:
        assert debounce["due"] == old["debounce_due"]
    stopping = old["stopping"]
    checkpoint = session["totals"]["checkpoint"]
    assert (checkpoint is None) == (stopping is None)
    if stopping is not None:
        assert debounce is not None
        assert debounce["first_low_at"] == stopping["first_low_at"]
        assert debounce["state_before_stop"] == stopping["state_before_stop"]
        assert checkpoint == {
            key: stopping[key]
            for key in ("working_s", "power_integral_ws", "peak_power_w", "energy_wh")
        }
