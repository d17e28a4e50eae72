"""The detector's parts: each one's own snapshot is what the detector's snapshot holds of it."""

from __future__ import annotations

import json

import pytest

from iot_bridge.domain.session import DetectorState, SessionDetector
from iot_bridge.domain.session_parts import SessionTotals
from iot_bridge.domain.session_snapshot import SnapshotReader

from .test_session_snapshot import scenarios


def _parts(detector: SessionDetector) -> dict[str, object]:
    # The parts are the detector's own; the test reads them to compare the two writings.
    return {
        "presence": detector._presence,
        "totals": detector._totals,
        "heartbeats": detector._heartbeats,
        "debounce": detector._debounce,
    }


@pytest.mark.parametrize("name", list(scenarios()))
def test_the_detector_writes_each_parts_own_snapshot(name: str) -> None:
    """detector.snapshot() holds, field for field, what each part's snapshot() gives."""
    detector = scenarios()[name].detector
    written = detector.snapshot()
    parts = _parts(detector)
    presence = parts["presence"].snapshot()
    assert {key: written[key] for key in presence} == presence
    session = written["session"]
    if detector.state is DetectorState.IDLE:
        assert session is None
        return
    assert session is not None
    totals: SessionTotals = parts["totals"]
    for fragment in (
        totals.snapshot(),
        parts["heartbeats"].snapshot(),
        parts["debounce"].snapshot(),
    ):
        assert {key: session[key] for key in fragment} == fragment
    stopping = session["stopping"]
    assert (stopping is None) == (totals.checkpoint is None)
    if stopping is not None and totals.checkpoint is not None:
        own = {**parts["debounce"].stop_snapshot(), **totals.checkpoint.snapshot()}
        assert stopping == own
    # Every field of the snapshot belongs to the detector or to one part.
    assert json.loads(json.dumps(written)) == written


@pytest.mark.parametrize("name", list(scenarios()))
def test_each_part_reads_back_its_own_snapshot(name: str) -> None:
    """A part restored from its own snapshot writes the same snapshot again."""
    detector = scenarios()[name].detector
    totals: SessionTotals = _parts(detector)["totals"]
    checkpoint = totals.checkpoint
    restored = SessionTotals.restore(
        SnapshotReader(totals.snapshot(), "totals"),
        None if checkpoint is None else SnapshotReader(checkpoint.snapshot(), "checkpoint"),
    )
    assert restored.snapshot() == totals.snapshot()
    assert restored.checkpoint == checkpoint
