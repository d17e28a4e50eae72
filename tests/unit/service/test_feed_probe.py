"""The feed batches built from a commit's detector snapshots (until the pipeline builds them)."""

from __future__ import annotations

from typing import Any

from iot_bridge.service.feed_probe import FeedProbe


def _snapshot(state: str, *, last_seen: float | None, power_w: float | None) -> dict[str, Any]:
    session = None if state in ("idle", "starting") else {"session_id": "sid"}
    detector = {"state": state, "last_seen": last_seen, "power_w": power_w, "session": session}
    return {"machine_name": "M", "detector": detector}


def test_a_device_heard_in_the_batch_gives_a_reading_and_its_state_change() -> None:
    """last_seen == the batch time is a reading; a new state is a change from the last one."""
    probe = FeedProbe()
    batch = probe.batch({"cnc": _snapshot("working", last_seen=5.0, power_w=120.0)}, [], 5.0)
    assert batch is not None
    assert [(r.device_id, r.ts, r.power_w) for r in batch.readings] == [("cnc", 5.0, 120.0)]
    assert [(c.previous, c.state, c.session_id) for c in batch.changes] == [
        ("idle", "working", "sid")
    ]
    again = probe.batch({"cnc": _snapshot("working", last_seen=5.0, power_w=120.0)}, [], 7.0)
    assert again is not None
    assert again.readings == [] and again.changes == []  # a timer wake-up, nothing new


def test_without_listeners_no_batch_is_built_but_states_are_followed() -> None:
    """build=False returns None; a later batch does not report an old change again."""
    probe = FeedProbe()
    assert (
        probe.batch({"cnc": _snapshot("working", last_seen=1.0, power_w=9.0)}, [], 1.0, build=False)
        is None
    )
    later = probe.batch({"cnc": _snapshot("working", last_seen=2.0, power_w=9.0)}, [], 2.0)
    assert later is not None and later.changes == []


def test_a_removed_device_is_forgotten() -> None:
    """A None snapshot (device removed) gives nothing and resets the device's known state."""
    probe = FeedProbe()
    probe.batch({"cnc": _snapshot("working", last_seen=1.0, power_w=9.0)}, [], 1.0)
    removed = probe.batch({"cnc": None}, [], 2.0)
    assert removed is not None and removed.changes == []
    back = probe.batch({"cnc": _snapshot("working", last_seen=3.0, power_w=9.0)}, [], 3.0)
    assert back is not None
    assert [(c.previous, c.state) for c in back.changes] == [("idle", "working")]
