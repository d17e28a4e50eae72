"""EventStore on real SQLite files: group commit, outbox queries, marks, pruning, bad dirs."""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from iot_bridge.adapters.store import DB_FILENAME, EventStore, StoredEvent
from iot_bridge.domain.events import Event, EventType
from iot_bridge.errors import StoreError

T0 = 1_770_000_000.0
DAY = 86400.0


def make_event(device_id: str = "plug-1", n: int = 0) -> Event:
    """A device_online event with a fresh uid; ``n`` lands in the data for telling apart."""
    return Event(
        event_uid=str(uuid.uuid4()),
        event_type=EventType.DEVICE_ONLINE,
        device_id=device_id,
        machine_name=f"Machine {device_id}",
        session_id=None,
        timestamp=T0 + n,
        data={"last_seen": "2026-02-12T19:40:18.123456+00:00", "n": n},
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    """An open store in a fresh data dir."""
    opened = EventStore.open(tmp_path / "data")
    yield opened
    opened.close()


def uids(events: list[StoredEvent]) -> list[str]:
    """The event_uids, in list order."""
    return [event.event_uid for event in events]


# -- opening -------------------------------------------------------------------------


def test_open_creates_missing_dir_in_wal_mode(tmp_path: Path) -> None:
    """A missing (nested) data dir is created and the database uses WAL."""
    data_dir = tmp_path / "a" / "b" / "data"
    store = EventStore.open(data_dir)
    store.close()
    assert (data_dir / DB_FILENAME).is_file()
    with sqlite3.connect(data_dir / DB_FILENAME) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_data_dir_under_a_regular_file_fails_naming_the_path(tmp_path: Path) -> None:
    """A data dir that cannot be created is a clear StoreError naming the path."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(StoreError, match=r"data dir .*not-a-dir/data cannot be created"):
        EventStore.open(blocker / "data")


def test_data_dir_that_is_a_file_fails(tmp_path: Path) -> None:
    """A data dir path naming a regular file is refused with its path."""
    target = tmp_path / "data"
    target.write_text("x")
    with pytest.raises(StoreError, match=r"data dir .*data"):
        EventStore.open(target)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only dirs anyway")
def test_read_only_data_dir_fails_naming_the_path(tmp_path: Path) -> None:
    """A data dir without write permission is a clear StoreError naming the path."""
    data_dir = tmp_path / "ro"
    data_dir.mkdir()
    data_dir.chmod(0o500)
    try:
        with pytest.raises(StoreError, match=r"data dir .*ro is not writable"):
            EventStore.open(data_dir)
    finally:
        data_dir.chmod(0o700)


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux sysfs")
def test_existing_dir_that_refuses_files_fails_even_for_root() -> None:
    """A data dir that exists but takes no new files (sysfs, even for root) fails fast."""
    with pytest.raises(StoreError, match=r"data dir /sys/kernel is not writable"):
        EventStore.open(Path("/sys/kernel"))


def test_corrupt_database_fails_clearly(tmp_path: Path) -> None:
    """A database file that is not SQLite is a StoreError naming it, and is left untouched."""
    tmp_path.joinpath(DB_FILENAME).write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=rf"database .*{DB_FILENAME} is corrupt"):
        EventStore.open(tmp_path)
    assert tmp_path.joinpath(DB_FILENAME).read_bytes().startswith(b"this is not")


def test_truncated_database_fails_clearly(tmp_path: Path) -> None:
    """A database cut short (a disk problem) is reported as corrupt at open, naming it."""
    store = EventStore.open(tmp_path)
    store.commit([make_event("a", n) for n in range(300)], {"a": {"v": 1}}, now=T0)
    store.close()
    with (tmp_path / DB_FILENAME).open("r+b") as db_file:
        db_file.truncate(8192)
    with pytest.raises(StoreError, match=rf"database .*{DB_FILENAME} is corrupt"):
        EventStore.open(tmp_path)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database written by a newer bridge is refused rather than misread."""
    EventStore.open(tmp_path).close()
    with sqlite3.connect(tmp_path / DB_FILENAME) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer iot-bridge"):
        EventStore.open(tmp_path)


def test_non_positive_retention_is_refused(tmp_path: Path) -> None:
    """Retention must be positive; nothing is created otherwise."""
    with pytest.raises(StoreError, match="retention"):
        EventStore.open(tmp_path / "data", retention_s=0)
    assert not (tmp_path / "data").exists()


def test_closed_store_raises(tmp_path: Path) -> None:
    """Using a closed store is a StoreError, not a crash in sqlite3."""
    store = EventStore.open(tmp_path)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.commit([make_event()], now=T0)
    with pytest.raises(StoreError, match="closed"):
        store.recent_events()


# -- commit --------------------------------------------------------------------------


def test_commit_stores_pending_events_newest_first(store: EventStore) -> None:
    """Committed events are pending, due at once, payload = to_dict(), newest first."""
    events = [make_event("a", 1), make_event("b", 2), make_event("a", 3)]
    store.commit(events, now=T0)
    recent = store.recent_events()
    assert uids(recent) == [e.event_uid for e in reversed(events)]
    first = recent[-1]
    assert first.payload == events[0].to_dict()
    assert first.status == "pending"
    assert first.event_type == "device_online"
    # Due at once whatever the delivery clock says (a wall clock stepped back included).
    assert (first.attempts, first.next_attempt_at, first.created_at) == (0, 0.0, T0)
    assert first.last_error is None
    assert first.delivered_at is None
    assert not first.flagged
    assert uids(store.recent_events(limit=1)) == [events[2].event_uid]


def test_commit_survives_reopen(tmp_path: Path) -> None:
    """Events and snapshots are on disk after commit returns (a new process sees them)."""
    store = EventStore.open(tmp_path)
    events = [make_event("a", n) for n in range(5)]
    store.commit(events, {"a": {"state": "working", "session_id": "s1"}}, now=T0)
    store.close()
    again = EventStore.open(tmp_path)
    try:
        assert uids(again.recent_events()) == [e.event_uid for e in reversed(events)]
        assert again.load_snapshots() == {"a": {"state": "working", "session_id": "s1"}}
    finally:
        again.close()


def test_snapshots_upsert_and_delete(store: EventStore) -> None:
    """Snapshots are replaced per device and None deletes one; snapshots alone commit too."""
    store.commit([], {"a": {"v": 1}, "b": {"v": 1}}, now=T0)
    store.commit([], {"a": {"v": 2}, "b": None, "c": {"nested": {"x": [1, 2]}}}, now=T0)
    assert store.load_snapshots() == {"a": {"v": 2}, "c": {"nested": {"x": [1, 2]}}}


def test_commit_is_all_or_nothing(store: EventStore) -> None:
    """A batch with an unserialisable snapshot is refused whole: no event, no snapshot."""
    store.commit([], {"a": {"v": 1}}, now=T0)
    with pytest.raises(StoreError, match="JSON"):
        store.commit([make_event("a")], {"a": {"v": 2}, "b": {"bad": object()}}, now=T0)
    assert store.recent_events() == []
    assert store.load_snapshots() == {"a": {"v": 1}}


def test_commit_refuses_unserialisable_event_data(store: EventStore) -> None:
    """An event whose data is not JSON is refused and nothing of the batch is written."""
    bad = make_event("a")
    bad.data["when"] = {1, 2}
    with pytest.raises(StoreError, match="JSON"):
        store.commit([make_event("a"), bad], now=T0)
    assert store.recent_events() == []


def test_commit_is_idempotent_per_event_uid(store: EventStore) -> None:
    """Committing an already stored event_uid again stores it once."""
    event = make_event("a")
    store.commit([event], now=T0)
    store.commit([event, make_event("a")], now=T0 + 1)
    assert len(store.recent_events()) == 2


def test_concurrent_commits_and_reads(store: EventStore) -> None:
    """Commits from several threads while another thread reads lose nothing."""
    errors: list[BaseException] = []

    def writer(device: str) -> None:
        try:
            for n in range(20):
                store.commit([make_event(device, n)], {device: {"n": n}}, now=T0 + n)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    def reader() -> None:
        try:
            for _ in range(50):
                store.recent_events(10)
                store.outbox_stats(T0)
                store.next_deliverable(T0 + 100, 8)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(f"d{i}",)) for i in range(4)]
    threads.append(threading.Thread(target=reader))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert store.outbox_stats(T0).pending == 80
    assert store.load_snapshots() == {f"d{i}": {"n": 19} for i in range(4)}


def test_readers_do_not_wait_for_a_writer(store: EventStore) -> None:
    """While another connection holds the write lock, reads still answer (WAL)."""
    store.commit([make_event("a")], now=T0)
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("UPDATE events SET attempts = 5")
        assert len(store.recent_events()) == 1
        assert store.outbox_stats(T0).pending == 1
    finally:
        other.execute("ROLLBACK")
        other.close()


# -- the outbox ----------------------------------------------------------------------


def test_next_deliverable_gives_each_devices_oldest_pending(store: EventStore) -> None:
    """One event per device: its oldest pending; later ones wait; exclusions and limit apply."""
    a = [make_event("a", n) for n in range(3)]
    b = [make_event("b", n) for n in range(2)]
    store.commit([a[0], b[0], a[1], b[1], a[2]], now=T0)
    heads = store.next_deliverable(T0, 10)
    assert sorted(uids(heads)) == sorted([a[0].event_uid, b[0].event_uid])
    assert uids(store.next_deliverable(T0, 10, exclude_devices={"a"})) == [b[0].event_uid]
    assert len(store.next_deliverable(T0, 1)) == 1
    assert store.next_deliverable(T0, 0) == []
    store.mark_delivered(heads[0].seq, T0)
    store.mark_delivered(heads[1].seq, T0)
    assert sorted(uids(store.next_deliverable(T0, 10))) == sorted([a[1].event_uid, b[1].event_uid])


def test_a_head_in_backoff_blocks_its_device_only(store: EventStore) -> None:
    """A device whose oldest event waits for a retry sends nothing; others go on."""
    a0, a1, b0 = make_event("a", 0), make_event("a", 1), make_event("b", 0)
    store.commit([a0, a1, b0], now=T0)
    head = store.next_deliverable(T0, 10, exclude_devices={"b"})[0]
    store.mark_retry(head.seq, T0, T0 + 30, "HTTP 503")
    assert uids(store.next_deliverable(T0 + 29, 10)) == [b0.event_uid]
    assert store.next_attempt_time(exclude_devices={"b"}) == T0 + 30
    assert store.next_attempt_time() == 0.0  # b's new head is due at once
    due = store.next_deliverable(T0 + 30, 10, exclude_devices={"b"})
    assert uids(due) == [a0.event_uid]
    assert due[0].attempts == 1
    assert due[0].last_error == "HTTP 503"


def test_most_overdue_device_comes_first(store: EventStore) -> None:
    """With fewer slots than due devices, the longest-waiting head is served first."""
    a, b = make_event("a"), make_event("b")
    store.commit([a, b], now=T0)
    heads = {e.device_id: e for e in store.next_deliverable(T0, 10)}
    store.mark_retry(heads["a"].seq, T0, T0 + 5, "HTTP 503")
    store.mark_retry(heads["b"].seq, T0, T0 + 2, "HTTP 503")
    assert uids(store.next_deliverable(T0 + 10, 1)) == [b.event_uid]


def test_new_events_go_in_commit_order(store: EventStore) -> None:
    """Heads never tried are due at once and served oldest commit first."""
    a, b = make_event("a"), make_event("b")
    store.commit([a], now=T0)
    store.commit([b], now=T0 + 5)
    assert uids(store.next_deliverable(T0 - 3600, 1)) == [a.event_uid]


def test_dead_events_do_not_block_and_retry_dead_revives_them(store: EventStore) -> None:
    """A dead event lets its device's later events go; retry_dead makes it the head again."""
    a0, a1, a2 = (make_event("a", n) for n in range(3))
    store.commit([a0, a1, a2], now=T0)
    head = store.next_deliverable(T0, 10)[0]
    store.mark_dead(head.seq, T0, "ValidationError: no such machine")
    assert uids(store.next_deliverable(T0, 10)) == [a1.event_uid]
    dead = store.get(head.seq)
    assert dead is not None
    assert (dead.status, dead.attempts, dead.last_error) == (
        "dead",
        1,
        "ValidationError: no such machine",
    )
    stats = store.outbox_stats(T0)
    assert (stats.pending, stats.dead) == (2, 1)
    assert store.retry_dead(T0 + 60) == 1
    revived = store.next_deliverable(T0 + 60, 10)
    assert uids(revived) == [a0.event_uid]
    assert (revived[0].status, revived[0].attempts) == ("pending", 0)
    assert store.retry_dead(T0 + 60) == 0


def test_marks_do_not_touch_finished_events(store: EventStore) -> None:
    """Marking a delivered or dead event again changes nothing (no resurrection)."""
    a, b = make_event("a"), make_event("b")
    store.commit([a, b], now=T0)
    ea, eb = sorted(store.next_deliverable(T0, 10), key=lambda e: e.device_id)
    store.mark_delivered(ea.seq, T0 + 1)
    store.mark_dead(eb.seq, T0 + 1, "UserError")
    store.mark_retry(ea.seq, T0 + 2, T0 + 3, "late failure")
    store.mark_delivered(eb.seq, T0 + 2)
    after_a, after_b = store.get(ea.seq), store.get(eb.seq)
    assert after_a is not None
    assert after_b is not None
    assert (after_a.status, after_a.delivered_at, after_a.attempts) == ("delivered", T0 + 1, 0)
    assert (after_b.status, after_b.delivered_at) == ("dead", None)
    assert store.get(999_999) is None


def test_flagged_after_ten_failures_and_stats(store: EventStore) -> None:
    """Ten failed tries flag an event (still pending); stats count it and the oldest age."""
    a, b = make_event("a"), make_event("b")
    store.commit([a], now=T0)
    store.commit([b], now=T0 + 100)
    head = store.next_deliverable(T0, 10)[0]
    for attempt in range(10):
        assert store.outbox_stats(T0 + 200).flagged == 0, attempt
        store.mark_retry(head.seq, T0, T0, f"fail {attempt}")
    flagged = store.get(head.seq)
    assert flagged is not None
    assert flagged.flagged
    assert flagged.status == "pending"
    stats = store.outbox_stats(T0 + 200)
    assert (stats.pending, stats.dead, stats.flagged) == (2, 0, 1)
    assert stats.oldest_pending_age_s == 200.0
    empty = EventStore.open(store.path.parent / "other")
    try:
        assert empty.outbox_stats(T0).oldest_pending_age_s is None
        assert empty.next_attempt_time() is None
        assert empty.next_deliverable(T0, 8) == []
    finally:
        empty.close()


def test_retry_now_makes_backoff_due(store: EventStore) -> None:
    """retry_now pulls every pending event in backoff forward to now."""
    store.commit([make_event("a")], now=T0)
    head = store.next_deliverable(T0, 1)[0]
    store.mark_retry(head.seq, T0, T0 + 300, "HTTP 401")
    assert store.retry_now(T0 + 1) == 1
    assert store.next_attempt_time() == T0 + 1


def test_prune_removes_only_old_delivered_events(tmp_path: Path) -> None:
    """Delivered events older than the retention go; newer, pending and dead ones stay."""
    store = EventStore.open(tmp_path, retention_s=7 * DAY)
    try:
        old, recent, dead, pending = (make_event(d) for d in ("old", "recent", "dead", "pend"))
        store.commit([old, recent, dead, pending], now=T0)
        heads = {e.device_id: e for e in store.next_deliverable(T0, 10)}
        store.mark_delivered(heads["old"].seq, T0)
        store.mark_delivered(heads["recent"].seq, T0 + 6 * DAY)
        store.mark_dead(heads["dead"].seq, T0, "ValidationError")
        assert store.prune(T0 + 7 * DAY + 1) == 1
        assert sorted(e.device_id for e in store.recent_events()) == ["dead", "pend", "recent"]
        assert store.prune(T0 + 365 * DAY) == 1
        assert sorted(e.device_id for e in store.recent_events()) == ["dead", "pend"]
    finally:
        store.close()


def test_poll_gives_due_heads_and_when_to_look_again(store: EventStore) -> None:
    """poll = due heads now, plus the earliest retry among the devices left waiting."""
    a, b, c = make_event("a"), make_event("b"), make_event("c")
    store.commit([a, b, c], now=T0)
    heads = {e.device_id: e for e in store.next_deliverable(T0, 10)}
    store.mark_retry(heads["b"].seq, T0, T0 + 20, "HTTP 503")
    store.mark_retry(heads["c"].seq, T0, T0 + 10, "HTTP 503")
    due, later = store.poll(T0, 10)
    assert uids(due) == [a.event_uid]
    assert later == T0 + 10
    assert store.poll(T0, 10, exclude_devices={"a", "c"}) == ([], T0 + 20)
    assert store.poll(T0 + 15, 10, exclude_devices={"a"})[1] == T0 + 20


def test_pending_for_device_stops_at_the_first_event_not_due(store: EventStore) -> None:
    """A device's chunk is its pending events in order, cut before one waiting for a retry."""
    events = [make_event("a", n) for n in range(5)]
    store.commit(events, now=T0)
    store.commit([make_event("b")], now=T0)
    chunk = store.pending_for_device("a", T0, 3)
    assert uids(chunk) == [e.event_uid for e in events[:3]]
    store.mark_delivered_many([chunk[0].seq, chunk[1].seq], T0 + 1)
    assert uids(store.pending_for_device("a", T0, 10)) == [e.event_uid for e in events[2:]]
    store.mark_retry(chunk[2].seq, T0, T0 + 60, "HTTP 503")
    assert store.pending_for_device("a", T0 + 1, 10) == []
    assert len(store.pending_for_device("a", T0 + 60, 10)) == 3
    assert store.pending_for_device("nobody", T0, 10) == []
    store.mark_delivered_many([], T0)
    delivered = [e for e in store.recent_events() if e.status == "delivered"]
    assert [e.delivered_at for e in delivered] == [T0 + 1, T0 + 1]


def test_one_process_per_data_dir(tmp_path: Path) -> None:
    """A second store on the same data dir is refused (two outboxes would double-send); close frees it."""
    first = EventStore.open(tmp_path)
    with pytest.raises(StoreError, match="in use by another iot-bridge process"):
        EventStore.open(tmp_path)
    first.close()
    EventStore.open(tmp_path).close()


def test_a_damaged_payload_row_does_not_stop_reading(tmp_path: Path) -> None:
    """An event row whose JSON is damaged is still listed (marked unreadable), never an exception."""
    import sqlite3

    store = EventStore.open(tmp_path)
    event = make_event("a")
    store.commit([event], now=T0)
    store.close()
    with sqlite3.connect(tmp_path / "bridge.db") as conn:
        conn.execute("UPDATE events SET payload = '{broken'")
    store = EventStore.open(tmp_path)
    [stored] = store.recent_events()
    assert stored.payload["unreadable"] is True
    assert stored.payload["event_uid"] == event.event_uid
    store.close()


def test_commits_keep_the_fingerprints_of_the_last_two_batches(tmp_path: Path) -> None:
    """Each commit records its messages' fingerprints in the same transaction; two batches are kept."""
    store = EventStore.open(tmp_path)
    for n in range(4):
        store.commit([], {"a": {"n": n}}, now=T0 + n, batch=[n << 32 | 100 + n, 2**64 - 1])
    store.close()
    store = EventStore.open(tmp_path)
    assert store.load_committed_batches() == [
        [2 << 32 | 102, 2**64 - 1],
        [3 << 32 | 103, 2**64 - 1],
    ]
    store.close()
