"""The store on a real small filesystem: a full disk is a ``DiskFullError`` that heals, every
other failure a ``StoreError``; the WAL stays small; the data dir is measured."""

from __future__ import annotations

import shutil
import sqlite3
import time
import uuid
from pathlib import Path

import pytest

from iot_bridge.adapters.store import EventStore
from iot_bridge.adapters.store.database import (
    WAL_SIZE_LIMIT_BYTES,
    WRITER_AUTOCHECKPOINT_PAGES,
    Database,
)
from iot_bridge.adapters.store.datadir import no_space_left
from iot_bridge.domain.events import Event, EventType
from iot_bridge.errors import DiskFullError, StoreError
from tests.support.small_fs import SmallFilesystem

T0 = 1_770_000_000.0
DEADLINE_S = 10.0
SNAPSHOT = {"machine_name": "Mill", "detector": {"state": "working", "pad": [1.5] * 40}}


def _events(count: int, at: float = T0) -> list[Event]:
    return [
        Event(
            event_uid=str(uuid.uuid4()),
            event_type=EventType.SESSION_HEARTBEAT,
            device_id=f"mill-{i % 10}",
            machine_name="Mill",
            session_id=str(uuid.uuid4()),
            timestamp=at + i,
            data={"state": "working", "power_w": 512.5, "pad": "x" * 300},
        )
        for i in range(count)
    ]


def _count(store: EventStore) -> int:
    return len(store.recent_events(1_000_000))


def _commit_until_full(store: EventStore, limit: int = 5000) -> list[Event]:
    """Commit small batches until one fails for lack of space; the batch that failed."""
    for n in range(limit):
        batch = _events(5, T0 + n * 10)
        try:
            store.commit(batch, {"mill-0": SNAPSHOT}, now=T0 + n, batch=[n << 32 | 7])
        except DiskFullError:
            return batch
    raise AssertionError(f"{limit} commits fit on a full disk")


def test_a_commit_on_a_full_disk_writes_nothing_and_succeeds_once_space_is_freed(
    small_fs,
) -> None:
    """SQLITE_FULL is a DiskFullError; the failed commit left nothing; the same commit works later."""
    card: SmallFilesystem = small_fs(size_mb=8)
    store = EventStore.open(card.path / "data")
    try:
        store.commit(_events(20), {"mill-0": SNAPSHOT}, now=T0)
        card.fill()
        failed = _commit_until_full(store)
        stored = _count(store)
        with pytest.raises(DiskFullError, match="disk holding the data dir is full"):
            store.commit(failed, {"mill-0": SNAPSHOT}, now=T0)  # still full: still nothing
        assert _count(store) == stored
        assert not {e.event_uid for e in failed} & {e.event_uid for e in store.recent_events(100)}
        card.free()
        store.commit(failed, {"mill-0": SNAPSHOT}, now=T0)
        store.commit(failed, {"mill-0": SNAPSHOT}, now=T0)  # repeated: skipped, not doubled
        assert _count(store) == stored + len(failed)
    finally:
        store.close()


def test_opening_on_a_full_disk_is_a_disk_full_error(small_fs) -> None:
    """A bridge started on a full disk may wait for space: the open says DiskFullError."""
    card: SmallFilesystem = small_fs(size_mb=4)
    EventStore.open(card.path / "data").close()
    card.fill()
    with pytest.raises(DiskFullError, match="full disk"):
        EventStore.open(card.path / "data")
    card.free()
    EventStore.open(card.path / "data").close()


def test_a_read_only_data_dir_is_not_a_full_disk(small_fs) -> None:
    """EROFS cannot heal by waiting: a plain StoreError naming the dir, not a DiskFullError."""
    card: SmallFilesystem = small_fs(size_mb=4, read_only=True)
    with pytest.raises(StoreError, match="not writable: Read-only file system") as raised:
        EventStore.open(card.path)
    assert not isinstance(raised.value, DiskFullError)
    assert no_space_left(card.path) is False


def test_a_full_disk_is_told_from_other_write_errors(small_fs, tmp_path: Path) -> None:
    """After an unexplained write error, only a filesystem out of room counts as full."""
    card: SmallFilesystem = small_fs(size_mb=4)
    assert no_space_left(card.path) is False
    card.fill()
    assert no_space_left(card.path) is True
    card.free()
    assert no_space_left(card.path) is False
    assert no_space_left(tmp_path / "vanished") is False


def test_a_vanished_database_is_an_error_that_does_not_heal(tmp_path: Path) -> None:
    """The data dir removed under the running store: usage() raises a StoreError, not DiskFull."""
    store = EventStore.open(tmp_path / "data")
    try:
        assert store.usage().data_dir_bytes > 0
        shutil.rmtree(tmp_path / "data")
        with pytest.raises(StoreError, match="removed or replaced") as raised:
            store.usage()
        assert not isinstance(raised.value, DiskFullError)
    finally:
        store.close()


def test_usage_counts_the_files_and_the_room_freed_inside(tmp_path: Path) -> None:
    """data_dir_bytes is what the files hold; deleting delivered events frees pages for reuse."""
    store = EventStore.open(tmp_path / "data")
    try:
        events = _events(3000)
        store.commit(events, None, now=T0)
        store.mark_delivered_many([e.seq for e in store.recent_events(3000)], T0 + 1)
        before = store.usage()
        files = sum(p.stat().st_blocks * 512 for p in (tmp_path / "data").iterdir())
        assert before.data_dir_bytes == files
        assert before.wal_bytes == (tmp_path / "data" / "bridge.db-wal").stat().st_blocks * 512
        assert before.disk_free_bytes > 0
        deleted = store.prune_oldest_delivered(1024 * 1024, chunk=500)
        after = store.usage()
        assert 1000 <= deleted < 3000
        assert after.reusable_bytes >= 1024 * 1024 * 0.8
        assert after.stored_bytes < before.stored_bytes
    finally:
        store.close()


def test_the_wal_is_truncated_once_checkpointed(tmp_path: Path) -> None:
    """A trickle's commits checkpoint on the thread; once copied, the WAL shrinks to its limit."""
    db_dir = tmp_path / "data"
    store = EventStore.open(db_dir)
    # A reader holding its snapshot keeps every checkpoint from finishing meanwhile, so
    # the WAL grows for sure (as it does when commits leave checkpoints no quiet moment).
    reader = sqlite3.connect(db_dir / "bridge.db", isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM snapshots").fetchone()
        for n in range(1000):  # one message a commit: ~13 KB of WAL each, 13 MB in all
            store.commit([], {f"mill-{n % 10}": SNAPSHOT}, now=T0 + n, batch=[n << 32 | 1])
        reader.execute("COMMIT")
        wal = db_dir / "bridge.db-wal"
        assert wal.stat().st_size > 2 * WAL_SIZE_LIMIT_BYTES
        deadline = time.monotonic() + DEADLINE_S
        while store._db.checkpoints < 1:  # by commits counted, long before 10,000 rows
            assert time.monotonic() < deadline, "no checkpoint ran"
            time.sleep(0.01)
        while True:  # copy what the thread has not yet, from a connection of our own
            conn = sqlite3.connect(db_dir / "bridge.db")
            try:
                busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            finally:
                conn.close()
            if not busy and frames == copied:
                break
            assert time.monotonic() < deadline, "the WAL was never fully copied"
            time.sleep(0.01)
        store.commit([], {"mill-0": SNAPSHOT}, now=T0 + 2000, batch=[1])
        assert wal.stat().st_size <= WAL_SIZE_LIMIT_BYTES
    finally:
        reader.close()
        store.close()


@pytest.mark.parametrize(
    ("budget_mb", "pages"),
    [
        (None, WRITER_AUTOCHECKPOINT_PAGES),
        (64, 1024),
        (32, 512),
        (16, 256),
        (4096, WRITER_AUTOCHECKPOINT_PAGES),
    ],
)
def test_a_budget_bounds_the_wal_to_a_sixteenth(
    tmp_path: Path, budget_mb: int | None, pages: int
) -> None:
    """With a disk budget, the writer checkpoints at a sixteenth of it (at most 40 MiB)."""
    db = Database.open(tmp_path / "data")
    try:
        db.limit_wal(None if budget_mb is None else budget_mb * 1024 * 1024)
        with db.write("read the pragma") as conn:
            assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == pages
    finally:
        db.close()
