"""The SQLite file under the store: schema, connections, one transaction at a time.

One file, ``<data-dir>/bridge.db``, in WAL mode. One writer connection and
one reader connection, each behind its own lock, both usable from any
thread: in WAL mode readers never wait for the writer, so the HTTP API can
read while a commit is being fsynced. ``write`` is THE transaction every
part of the store writes in; ``query`` the one way to read. WAL checkpoints
run on a third connection, on a thread of their own (``checkpoint.py``), so
that no commit waits for one.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from iot_bridge.adapters.store.checkpoint import Checkpointer
from iot_bridge.adapters.store.datadir import lock_dir, prepare_dir
from iot_bridge.errors import StoreError
from iot_bridge.fsutil import fsync_dir
from iot_bridge.logs import get_logger
from iot_bridge.service.ports import FLAG_AFTER_ATTEMPTS

log = get_logger(__name__)

DB_FILENAME = "bridge.db"
SCHEMA_VERSION = 1

# What a durable write (the group commit) uses; benchmarks/store.py compares it with "NORMAL".
COMMIT_SYNCHRONOUS = "FULL"

# The checkpoints run on their own thread (``checkpoint.py``); the writer checkpoints
# itself only as a backstop, when the WAL has grown to this many pages (40 MiB).
WRITER_AUTOCHECKPOINT_PAGES = 10_000

Row = tuple[Any, ...]


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS events (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    event_uid       TEXT NOT NULL UNIQUE,
    device_id       TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error      TEXT,
    created_at      REAL NOT NULL,
    delivered_at    REAL
);
CREATE INDEX IF NOT EXISTS events_pending_by_device
    ON events (device_id, seq) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS events_dead ON events (seq) WHERE status = 'dead';
CREATE INDEX IF NOT EXISTS events_flagged
    ON events (attempts) WHERE status = 'pending' AND attempts >= {FLAG_AFTER_ATTEMPTS};
CREATE INDEX IF NOT EXISTS events_delivered_at
    ON events (delivered_at) WHERE status = 'delivered';
CREATE TABLE IF NOT EXISTS snapshots (
    device_id  TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS committed_batches (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprints BLOB NOT NULL
);
"""


class Database:
    """The store's SQLite database. Open with ``Database.open(data_dir)``."""

    def __init__(
        self,
        db_path: Path,
        writer: sqlite3.Connection,
        reader: sqlite3.Connection,
        *,
        lock_fd: int | None = None,
    ) -> None:
        """Use ``Database.open``; this takes already prepared connections."""
        self._lock_fd = lock_fd
        self.path = db_path
        self._writer = writer
        self._reader = reader
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._closed = False
        self._checkpointer = Checkpointer(db_path, _connect)
        self._changes = writer.total_changes

    @classmethod
    def open(cls, data_dir: Path) -> Database:
        """Open (or create) the database in ``data_dir``, creating the dir if missing.

        Raises ``StoreError`` naming the path when the dir cannot be created or
        written, or the database is corrupt, not SQLite, or from a newer version.
        """
        data_dir = Path(data_dir)
        prepare_dir(data_dir)
        lock_fd = lock_dir(data_dir)
        db_path = data_dir / DB_FILENAME
        created = not db_path.exists()
        writer: sqlite3.Connection | None = None
        reader: sqlite3.Connection | None = None
        try:
            writer = _connect(db_path)
            mode = writer.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"database {db_path} cannot use WAL mode (got {mode})")
            writer.execute("PRAGMA synchronous = FULL")
            writer.execute("PRAGMA journal_size_limit = 67108864")
            writer.execute(f"PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT_PAGES}")
            version = writer.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"database {db_path} was written by a newer iot-bridge "
                    f"(schema {version}, this one knows {SCHEMA_VERSION})"
                )
            writer.executescript(
                f"BEGIN; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            )
            writer.execute("PRAGMA synchronous = NORMAL")
            reader = _connect(db_path)
            reader.execute("PRAGMA query_only = ON")
            reader.execute("SELECT COUNT(*) FROM snapshots").fetchone()
        except sqlite3.Error as err:
            for conn in (reader, writer):
                if conn is not None:
                    conn.close()
            os.close(lock_fd)
            raise StoreError(_open_error_message(db_path, err)) from err
        except StoreError:
            for conn in (reader, writer):
                if conn is not None:
                    conn.close()
            os.close(lock_fd)
            raise
        if created:
            fsync_dir(data_dir)
        log.info("store_opened", path=str(db_path), created=created)
        return cls(db_path, writer, reader, lock_fd=lock_fd)

    @property
    def checkpoints(self) -> int:
        """WAL checkpoints completed by the checkpoint thread since the store opened."""
        return self._checkpointer.checkpoints

    def close(self) -> None:
        """Close both connections; further calls raise ``StoreError``."""
        self._checkpointer.close()
        with self._write_lock, self._read_lock:
            if self._closed:
                return
            self._closed = True
            self._reader.close()
            self._writer.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the data-dir lock
                self._lock_fd = None

    @contextmanager
    def write(self, what: str, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``durable`` fsyncs the WAL on commit."""
        with self._write_lock:
            if self._closed:
                raise StoreError(f"store {self.path} is closed")
            conn = self._writer
            try:
                if durable:
                    conn.execute(f"PRAGMA synchronous = {COMMIT_SYNCHRONOUS}")
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:  # SQLite rolls back by itself on FULL/IOERR
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                changes, self._changes = conn.total_changes - self._changes, conn.total_changes
                self._checkpointer.changed(changes)
            except sqlite3.Error as err:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StoreError(f"{what} failed on {self.path}: {_describe(err)}") from err
            finally:
                if durable:
                    conn.execute("PRAGMA synchronous = NORMAL")

    def query(self, what: str, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._read_lock:
            if self._closed:
                raise StoreError(f"store {self.path} is closed")
            try:
                return self._reader.execute(sql, params).fetchall()
            except sqlite3.Error as err:
                raise StoreError(f"{what} failed on {self.path}: {_describe(err)}") from err


def _describe(err: sqlite3.Error) -> str:
    name = getattr(err, "sqlite_errorname", "") or type(err).__name__
    return f"{err} ({name})"


def _connect(db_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


def _open_error_message(db_path: Path, err: sqlite3.Error) -> str:
    name = getattr(err, "sqlite_errorname", "")
    if name in {"SQLITE_NOTADB", "SQLITE_CORRUPT"}:
        return (
            f"database {db_path} is corrupt or not an iot-bridge database ({err}); "
            "move it aside to start with an empty store"
        )
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM")):
        return f"database {db_path} cannot be opened for writing ({err})"
    return f"database {db_path} cannot be opened: {_describe(err)}"
