"""Retention and the disk budget on real SQLite, with a fake clock (``service/housekeeping.py``)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from iot_bridge.adapters.store import EventStore
from iot_bridge.config.sources import StoreLimits
from iot_bridge.domain.events import Event, EventType
from iot_bridge.errors import StoreError
from iot_bridge.service.housekeeping import (
    KEPT_WARNING_SHARE,
    PRUNE_AT_SHARE,
    PRUNE_TO_SHARE,
    RETENTION_INTERVAL_S,
    Housekeeping,
    events_between_checks,
)
from iot_bridge.service.views.metrics import Metrics
from tests.unit.service.fakes import FakeClock

T0 = 1_770_000_000.0
DAY = 86400.0
MB = 1024 * 1024


class Rig:
    """A store in ``tmp_path`` and its housekeeping, on a fake clock, with settable limits."""

    def __init__(self, tmp_path: Path, limits: StoreLimits) -> None:
        self.store = EventStore.open(tmp_path / "data")
        self.clock = FakeClock(T0)
        self.limits = limits
        self.fatal: list[BaseException] = []
        self.metrics = Metrics()
        self.housekeeping = Housekeeping(
            outbox=self.store,
            limits=lambda: self.limits,
            now=self.clock.now,
            clock=self.clock,
            metrics=self.metrics,
            on_fatal=self.fatal.append,
        )

    def add(self, count: int, *, at: float, status: str = "delivered", pad: int = 400) -> list[int]:
        """``count`` events created at ``at``; delivered (or dead) at ``at`` too, or pending."""
        events = [
            Event(
                event_uid=str(uuid.uuid4()),
                event_type=EventType.SESSION_HEARTBEAT,
                device_id=f"mill-{i % 20}",
                machine_name="Mill",
                session_id=str(uuid.uuid4()),
                timestamp=at,
                data={"state": "working", "power_w": 512.5, "pad": "x" * pad},
            )
            for i in range(count)
        ]
        for start in range(0, count, 2000):
            self.store.commit(events[start : start + 2000], None, now=at)
        uids = {event.event_uid for event in events}
        seqs = [e.seq for e in self.store.recent_events(count + 10) if e.event_uid in uids]
        if status == "delivered":
            self.store.mark_delivered_many(seqs, at)
        elif status == "dead":
            for seq in seqs:
                self.store.mark_dead(seq, at, "ValidationError")
        return sorted(seqs)

    def statuses(self) -> dict[int, str]:
        return {e.seq: e.status for e in self.store.recent_events(10_000_000)}

    def pruned(self, reason: str) -> float:
        return self.metrics.events_pruned.labels(reason=reason).value


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    made = Rig(tmp_path, StoreLimits(retention_days=7.0))
    yield made  # type: ignore[misc]
    made.store.close()


async def test_delivered_events_past_the_retention_go_once_an_hour(rig: Rig) -> None:
    """Delivered events older than retention_days go; pending, dead and recent ones stay."""
    old = rig.add(5, at=T0)
    recent = rig.add(5, at=T0 + 3 * DAY)
    pending = rig.add(3, at=T0, status="pending")
    dead = rig.add(2, at=T0, status="dead")
    rig.clock.time = T0 + 8 * DAY
    await rig.housekeeping.check()
    statuses = rig.statuses()
    assert not set(old) & set(statuses)
    assert set(recent + pending + dead) == set(statuses)
    assert rig.pruned("retention") == 5
    rig.clock.time += 2 * DAY  # "recent" is now 9 days old, but the hour is not over
    await rig.housekeeping.check()
    assert set(recent) <= set(rig.statuses())
    rig.clock.time += RETENTION_INTERVAL_S
    await rig.housekeeping.check()
    assert set(rig.statuses()) == set(pending + dead)
    assert rig.pruned("retention") == 10


async def test_a_shorter_retention_pushed_applies_at_the_next_pass(rig: Rig) -> None:
    """The limits are read at each pass: a config push's retention_days takes effect."""
    kept = rig.add(4, at=T0)
    rig.clock.time = T0 + 2 * DAY
    await rig.housekeeping.check()
    assert set(kept) == set(rig.statuses())
    rig.limits = StoreLimits(retention_days=1.0)
    rig.clock.time += RETENTION_INTERVAL_S
    await rig.housekeeping.check()
    assert rig.statuses() == {}


async def test_over_budget_the_oldest_delivered_events_go_first_never_pending_or_dead(
    rig: Rig,
) -> None:
    """Past 70 % of the budget, delivered events go oldest first down to 60 %; others stay."""
    budget = 16 * MB
    rig.limits = StoreLimits(retention_days=30.0, disk_budget_mb=16)
    pending = rig.add(200, at=T0, status="pending")
    dead = rig.add(50, at=T0, status="dead")
    delivered: list[int] = []
    for hour in range(18):  # about 18 MB of delivered events, the oldest first
        delivered += rig.add(1000, at=T0 + hour * 3600.0)
    before = rig.store.usage()
    assert before.stored_bytes > budget * PRUNE_AT_SHARE
    rig.clock.time = T0 + 20 * 3600.0
    with capture_logs() as logs:
        report = await rig.housekeeping.check()
    assert report.usage is not None
    assert report.usage.stored_bytes <= budget * PRUNE_TO_SHARE
    statuses = rig.statuses()
    assert set(pending + dead) <= set(statuses)
    kept = [seq for seq in delivered if seq in statuses]
    assert kept and kept == delivered[-len(kept) :]  # the newest survive, the oldest went
    assert rig.pruned("disk_budget") == len(delivered) - len(kept)
    assert any(e["event"] == "disk_budget_enforced" for e in logs)
    assert report.warning is None


async def test_the_budget_holds_while_three_times_its_size_is_written(rig: Rig) -> None:
    """Events delivered as fast as they come, three budgets' worth: the data dir stays under it."""
    budget = 16 * MB
    rig.limits = StoreLimits(retention_days=30.0, disk_budget_mb=16)
    await rig.housekeeping.check()  # the first pass, at the start: the WAL's share is set
    step = events_between_checks(budget)
    largest = 0
    for n in range(3 * budget // (step * 1000)):
        rig.add(step, at=T0 + n)
        rig.housekeeping.events_committed(step)
        assert rig.housekeeping._wake.is_set()  # what wakes the task's next pass
        rig.housekeeping._wake.clear()
        await rig.housekeeping.check()
        largest = max(largest, rig.store.usage().data_dir_bytes)
    assert rig.pruned("disk_budget") > 0
    assert largest <= budget


async def test_pending_and_dead_events_over_80_percent_of_the_budget_warn_once(
    rig: Rig,
) -> None:
    """They are never pruned: /health's warning and one log line, cleared once delivered."""
    budget = 16 * MB
    rig.limits = StoreLimits(retention_days=30.0, disk_budget_mb=16)
    seqs = rig.add(12_000, at=T0, status="pending", pad=800)
    with capture_logs() as logs:
        first = await rig.housekeeping.check()
        await rig.housekeeping.check()
    assert first.kept_bytes is not None and first.kept_bytes > budget * KEPT_WARNING_SHARE
    assert first.warning is not None and "pending and dead events" in first.warning
    assert [e["event"] for e in logs].count("disk_budget_warning") == 1
    assert len(rig.statuses()) == len(seqs)  # nothing pending was deleted
    rig.store.mark_delivered_many(seqs, T0 + 60)
    with capture_logs() as logs:
        cleared = await rig.housekeeping.check()
    assert cleared.warning is None
    assert [e["event"] for e in logs].count("disk_budget_warning_cleared") == 1


async def test_without_a_budget_nothing_is_pruned_for_size(rig: Rig) -> None:
    """No disk budget: only the retention deletes; the data dir is still measured."""
    delivered = rig.add(3000, at=T0)
    report = await rig.housekeeping.check()
    assert report.usage is not None and report.usage.data_dir_bytes > 0
    assert report.kept_bytes is None and report.warning is None
    assert set(delivered) == set(rig.statuses())


async def test_a_vanished_data_dir_is_fatal(rig: Rig, tmp_path: Path) -> None:
    """bridge.db removed under the running bridge: the pass raises and stops the bridge."""
    (tmp_path / "data" / "bridge.db").unlink()
    with pytest.raises(StoreError, match="removed or replaced"):
        await rig.housekeeping.check()
    assert len(rig.fatal) == 1


def test_a_budget_brings_the_next_pass_forward_after_enough_events(rig: Rig) -> None:
    """With a budget, committed events wake the pass (a 64th of the budget); without, never."""
    rig.housekeeping.events_committed(10_000)
    assert not rig.housekeeping._wake.is_set()
    rig.limits = StoreLimits(disk_budget_mb=16)
    assert events_between_checks(16 * MB) == 256
    rig.housekeeping.events_committed(255)
    assert not rig.housekeeping._wake.is_set()
    rig.housekeeping.events_committed(1)
    assert rig.housekeeping._wake.is_set()
