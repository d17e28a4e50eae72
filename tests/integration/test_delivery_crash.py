"""kill -9 at random moments while events are committed and delivered: nothing is lost."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from iot_bridge.adapters.store import EventStore
from tests.support.delivery_crash_child import event_uid
from tests.support.odoo_standin import OdooStandin

CHILD = Path(__file__).resolve().parents[1] / "support" / "delivery_crash_child.py"
DEVICES = 8
# Enough work that the five kills land while delivery runs (about a quarter is delivered
# before the last run; with 150, a stand-in that accepts 8 connections at once at full
# speed delivered all of it first, and the kills tested nothing).
PER_DEVICE = 500
KILLS = 5


def start_child(data_dir: Path, url: str) -> subprocess.Popen[str]:
    """Start the committing/delivering process and wait (with a deadline) until it is ready."""
    child = subprocess.Popen(
        [
            sys.executable,
            str(CHILD),
            "--data-dir",
            str(data_dir),
            "--url",
            url,
            "--devices",
            str(DEVICES),
            "--per-device",
            str(PER_DEVICE),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()  # the child prints "ready" within a second or so
    if line.strip() != "ready":
        child.kill()
        _, err = child.communicate(timeout=10)
        raise AssertionError(f"child did not start: {line!r} {err}")
    return child


def test_kill_9_at_random_moments_loses_nothing(tmp_path: Path, odoo_standin: OdooStandin) -> None:
    """After 5 SIGKILLs and a final run, every event reached Odoo once or more, in device order."""
    data_dir = tmp_path / "data"
    rng = random.Random()
    for _ in range(KILLS):
        child = start_child(data_dir, odoo_standin.url)
        time.sleep(rng.uniform(0.05, 0.5))  # a random kill point, not a timing assertion
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=10)
        assert child.returncode == -signal.SIGKILL
    received_before_last_run = len(odoo_standin.events)
    assert received_before_last_run < DEVICES * PER_DEVICE, "kills came too late to matter"

    child = start_child(data_dir, odoo_standin.url)
    out, err = child.communicate(timeout=90)
    assert child.returncode == 0, err
    assert out.strip() == "done"

    expected = {event_uid(f"dev-{d}", n) for d in range(DEVICES) for n in range(PER_DEVICE)}
    assert set(odoo_standin.event_uids) == expected
    assert len(odoo_standin.event_uids) == len(expected)
    assert {event["event_uid"] for event in odoo_standin.duplicates} <= expected
    assert odoo_standin.invalid == []
    for d in range(DEVICES):
        arrival = [event["data"]["n"] for event in odoo_standin.events_for(f"dev-{d}")]
        assert arrival == list(range(PER_DEVICE)), f"dev-{d} out of order"

    store = EventStore.open(data_dir)
    try:
        events = store.recent_events(limit=10 * len(expected))
        assert len(events) == len(expected)
        assert {event.status for event in events} == {"delivered"}
        assert store.load_snapshots() == {
            f"dev-{d}": {"last_n": PER_DEVICE - 1} for d in range(DEVICES)
        }
    finally:
        store.close()
