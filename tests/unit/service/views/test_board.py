"""The board's read model and the stream throttle, on a fake directory and a fake clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import date
from types import SimpleNamespace

from iot_bridge.domain.events import Event, EventType, iso_utc
from iot_bridge.domain.session_config import SessionConfig
from iot_bridge.service.feed import FeedBatch, ReadingAccepted, StateChanged
from iot_bridge.service.views.board import (
    MAX_POINTS_PER_DEVICE,
    MIN_POINTS_PER_DEVICE,
    TOTAL_POINTS,
    Board,
    MachineStatus,
    StreamThrottle,
    points_per_device,
    stored_session_events,
)


class FakeDirectory:
    """Devices by id; tests edit ``statuses`` to change the config or the live state."""

    def __init__(self, *device_ids: str) -> None:
        self.statuses = {d: _status(d) for d in device_ids}

    def device_ids(self) -> Sequence[str]:
        return list(self.statuses)

    def status(self, device_id: str) -> MachineStatus | None:
        return self.statuses.get(device_id)


def _status(device_id: str, state: str = "idle") -> MachineStatus:
    return MachineStatus(
        device_id=device_id,
        machine_name=f"Machine {device_id}",
        state=state,
        online=True,
        last_seen=None,
        power_w=None,
        session_id=None,
        session_started_at=None,
        session_config=SessionConfig(),
    )


def _day(ts: float) -> date:
    return date.fromordinal(1 + int(ts // 86_400))  # a day every 86,400 s from 0: no time zone


def _change(device_id: str, ts: float, previous: str, state: str) -> FeedBatch:
    return FeedBatch(ts=ts, changes=(StateChanged(device_id, ts, previous, state, None),))


def _ended(device_id: str, ts: float, working_s: float, standby_s: float) -> Event:
    return Event(
        event_uid=f"u{ts}",
        event_type=EventType.SESSION_STOPPED,
        device_id=device_id,
        machine_name=f"Machine {device_id}",
        session_id="s",
        timestamp=ts,
        data={
            "started_at": iso_utc(ts - working_s - standby_s),
            "ended_at": iso_utc(ts),
            "duration_s": working_s + standby_s,
            "working_s": working_s,
            "standby_s": standby_s,
            "energy_wh": 1.5,
            "reason": "power_off",
        },
    )


def _machine(board: Board, now: float, device_id: str = "cnc") -> dict:
    return next(m for m in board.snapshot(now)["machines"] if m["device_id"] == device_id)


def test_readings_are_kept_for_the_window_only() -> None:
    """Readings older than the window are dropped; the newest stay, oldest first."""
    board = Board(FakeDirectory("cnc"), window_s=100.0, day_of=_day)
    board.start(0.0)
    for ts in range(0, 300, 10):
        board.apply(FeedBatch(ts=ts, readings=(ReadingAccepted("cnc", float(ts), float(ts)),)))
    kept = board.readings("cnc", 290.0)
    assert [ts for ts, _ in kept] == [float(t) for t in range(190, 300, 10)]


def test_readings_are_bounded_in_count_however_fast_a_device_reports() -> None:
    """A device reporting many times a second keeps at most MAX_POINTS_PER_DEVICE readings."""
    board = Board(FakeDirectory("cnc"), day_of=_day)
    board.start(0.0)
    for i in range(MAX_POINTS_PER_DEVICE + 500):
        ts = i / 100
        board.apply(FeedBatch(ts=ts, readings=(ReadingAccepted("cnc", ts, 1.0),)))
    assert len(board.readings("cnc", 100.0)) == MAX_POINTS_PER_DEVICE


def test_many_devices_share_a_total_budget_of_readings() -> None:
    """With thousands of devices each keeps fewer readings, never under the minimum."""
    assert points_per_device(1) == MAX_POINTS_PER_DEVICE
    assert points_per_device(1000) == TOTAL_POINTS // 1000
    assert points_per_device(10_000) == MIN_POINTS_PER_DEVICE
    board = Board(FakeDirectory(*(f"d{i}" for i in range(1000))), day_of=_day)
    board.start(0.0)
    for i in range(3000):
        board.apply(FeedBatch(ts=float(i), readings=(ReadingAccepted("d0", float(i), 1.0),)))
    kept = board.readings("d0", 3000.0)
    assert len(kept) == TOTAL_POINTS // 1000
    assert kept[-1] == (2999.0, 1.0)


def test_bands_follow_state_changes_and_keep_the_one_current_at_the_window_start() -> None:
    """Bands are (since, state); pruning keeps the band that colours the chart's left edge."""
    board = Board(FakeDirectory("cnc"), window_s=100.0, day_of=_day)
    board.start(0.0)
    board.apply(_change("cnc", 10.0, "idle", "starting"))
    board.apply(_change("cnc", 13.0, "starting", "working"))
    board.apply(_change("cnc", 150.0, "working", "stopping"))
    bands = _machine(board, 200.0)["bands"]
    assert bands == [[100.0, "working"], [150.0, "stopping"]]


def test_today_counts_the_running_session_live_and_stopping_as_the_state_before() -> None:
    """Working and standby time of a running session grow with the clock; a dip counts as before."""
    board = Board(FakeDirectory("cnc"), day_of=_day)
    board.start(0.0)
    board.apply(_change("cnc", 10.0, "idle", "starting"))
    board.apply(_change("cnc", 12.0, "starting", "standby"))
    board.apply(_change("cnc", 20.0, "standby", "working"))
    board.apply(_change("cnc", 50.0, "working", "stopping"))
    assert _machine(board, 60.0)["today"] == {"working_s": 40.0, "standby_s": 8.0}


def test_an_ended_session_counts_its_events_figures_and_a_new_day_starts_from_zero() -> None:
    """The stop event's working/standby replace the live count; the next day starts empty."""
    board = Board(FakeDirectory("cnc"), day_of=_day)
    board.start(0.0)
    board.apply(_change("cnc", 10.0, "idle", "starting"))
    board.apply(_change("cnc", 12.0, "starting", "working"))
    board.apply(
        FeedBatch(
            ts=100.0,
            changes=(StateChanged("cnc", 100.0, "stopping", "idle", None),),
            events=(_ended("cnc", 100.0, working_s=70.0, standby_s=20.0),),
        )
    )
    assert _machine(board, 200.0)["today"] == {"working_s": 70.0, "standby_s": 20.0}
    assert _machine(board, 86_400.0 + 5)["today"] == {"working_s": 0.0, "standby_s": 0.0}


def test_recent_sessions_are_newest_first_and_seeded_from_the_store() -> None:
    """Completed sessions from stored events come first, then live ones, newest first."""
    stored = [
        SimpleNamespace(payload=_ended("cnc", 50.0, 10.0, 0.0).to_dict()),
        SimpleNamespace(payload={"event_type": "session_stopped", "broken": True}),
        SimpleNamespace(payload=_ended("cnc", 20.0, 5.0, 0.0).to_dict()),
    ]
    board = Board(FakeDirectory("cnc"), day_of=_day)
    board.start(60.0, stored_session_events(stored))
    board.apply(FeedBatch(ts=90.0, events=(_ended("cnc", 90.0, 1.0, 2.0),)))
    durations = [s["duration_s"] for s in board.snapshot(100.0)["sessions"]]
    assert durations == [3.0, 10.0, 5.0]


def test_a_device_removed_from_the_config_leaves_the_board() -> None:
    """The snapshot lists the configured devices only, and forgets a removed one."""
    directory = FakeDirectory("cnc", "laser")
    board = Board(directory, day_of=_day)
    board.start(0.0)
    del directory.statuses["laser"]
    assert [m["device_id"] for m in board.snapshot(1.0)["machines"]] == ["cnc"]
    assert board.readings("laser", 1.0) == []


def test_a_card_carries_the_thresholds_and_the_running_session() -> None:
    """The snapshot has the thresholds to draw and the session start to count from."""
    directory = FakeDirectory("cnc")
    directory.statuses["cnc"] = replace(
        directory.statuses["cnc"],
        state="working",
        session_id="sid",
        session_started_at=5.0,
        session_config=SessionConfig(standby_threshold_w=7.0, working_threshold_w=70.0),
    )
    board = Board(directory, day_of=_day)
    board.start(0.0)
    machine = _machine(board, 10.0)
    assert machine["thresholds"] == {"standby_threshold_w": 7.0, "working_threshold_w": 70.0}
    assert (machine["state"], machine["session_id"], machine["session_started_at"]) == (
        "working",
        "sid",
        5.0,
    )


def _readings(ts: float, *device_ids: str) -> FeedBatch:
    return FeedBatch(ts=ts, readings=tuple(ReadingAccepted(d, ts, ts) for d in device_ids))


def test_the_stream_sends_at_most_one_reading_per_machine_per_interval() -> None:
    """A hundred readings in one interval become the latest one per machine."""
    throttle = StreamThrottle(interval_s=0.25)
    for i in range(100):
        throttle.add(_readings(10.0 + i / 1000, "cnc", "laser"))
    assert throttle.due(10.1)
    updates = throttle.flush(10.1)
    assert [(name, data["device_id"], data["ts"]) for name, data in updates] == [
        ("reading", "cnc", 10.099),
        ("reading", "laser", 10.099),
    ]
    throttle.add(_readings(10.2, "cnc"))
    assert not throttle.due(10.2)  # the interval since the last flush is not over
    assert throttle.next_flush_at() == 10.35
    assert throttle.due(10.35)


def test_the_stream_keeps_every_state_change_in_order() -> None:
    """State changes are never coalesced: each one reaches the page, before the readings."""
    throttle = StreamThrottle(interval_s=0.25)
    throttle.add(_change("cnc", 1.0, "idle", "starting"))
    throttle.add(_readings(1.0, "cnc"))
    throttle.add(_change("cnc", 1.1, "starting", "idle"))
    names = [(name, data.get("state")) for name, data in throttle.flush(1.2)]
    assert names == [("state", "starting"), ("state", "idle"), ("reading", None)]
    assert not throttle.pending
    assert throttle.next_flush_at() is None
