"""WAL checkpoints on their own thread (``adapters/store/checkpoint.py``), on real SQLite files."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from iot_bridge.adapters.store.checkpoint import CHANGES_PER_CHECKPOINT, Checkpointer
from iot_bridge.adapters.store.database import WRITER_AUTOCHECKPOINT_PAGES, Database

DEADLINE_S = 10.0


def _checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "wal-checkpoint"]


def _wal_frames(db_path: Path) -> tuple[int, int]:
    """(frames in the WAL, frames already copied), asked of a connection of the test's own."""
    conn = sqlite3.connect(db_path)
    try:
        _, log_frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        conn.close()
    return log_frames, copied


def _write_rows(db: Database, rows: int) -> None:
    with db.write("test rows") as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO snapshots (device_id, state, updated_at) VALUES (?, ?, ?)",
            ((f"d{i}", "{}" * 40, 0.0) for i in range(rows)),
        )


def test_the_writer_checkpoints_only_as_a_backstop(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "data")
    try:
        with db.write("read the pragma") as conn:
            pages = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        assert pages == WRITER_AUTOCHECKPOINT_PAGES
    finally:
        db.close()


def test_a_quiet_store_has_no_checkpoint_thread(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "data")
    try:
        _write_rows(db, CHANGES_PER_CHECKPOINT - 1)
        assert not _checkpoint_threads()
        assert db.checkpoints == 0
    finally:
        db.close()


def test_enough_changed_rows_checkpoint_on_the_thread_and_close_stops_it(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "data")
    try:
        _write_rows(db, CHANGES_PER_CHECKPOINT)
        deadline = time.monotonic() + DEADLINE_S
        while db.checkpoints < 1:
            assert time.monotonic() < deadline, "no checkpoint ran"
            time.sleep(0.01)
        assert _checkpoint_threads()
        log_frames, copied = _wal_frames(db.path)
        assert log_frames == copied  # nothing was written since: all of it is in the db file
    finally:
        db.close()
    assert not _checkpoint_threads()


def test_a_checkpointer_that_cannot_connect_logs_and_ends(tmp_path: Path) -> None:
    def refuse(path: Path) -> sqlite3.Connection:
        raise sqlite3.OperationalError(f"unable to open database file {path}")

    checkpointer = Checkpointer(tmp_path / "missing.db", refuse, changes_per_checkpoint=1)
    checkpointer.changed(1)
    deadline = time.monotonic() + DEADLINE_S
    while _checkpoint_threads():
        assert time.monotonic() < deadline, "the thread did not end"
        time.sleep(0.01)
    assert checkpointer.checkpoints == 0
    checkpointer.close()


def test_changes_after_close_start_nothing(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path / "x.db", sqlite3.connect, changes_per_checkpoint=1)
    checkpointer.close()
    checkpointer.changed(5)
    assert not _checkpoint_threads()
