"""Snapshots written by earlier versions (fixture files) restore and continue exactly as then."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from iot_bridge.domain.readings import Reading
from iot_bridge.domain.session import SessionDetector
from iot_bridge.domain.session_config import SessionConfig

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
    assert json.loads(json.dumps(restored.snapshot())) == case["restored"][version]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_an_old_snapshot_continues_with_the_same_events(name: str, version: str) -> None:
    """After restoring a stored snapshot, the same inputs give the events they gave then."""
    case = CASES[name]
    assert _drive(_restore(case, version)) == case["continuation"][version]


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_current_format_is_written_unchanged(name: str) -> None:
    """A version 3 snapshot restores and is written back key for key, value for value."""
    case = CASES[name]
    assert json.loads(json.dumps(_restore(case, "3").snapshot())) == case["snapshots"]["3"]
