"""The SQLite file under the store: schema, connections, one transaction at a time.

One file, ``<data-dir>/bridge.db``, in WAL mode. One writer connection and
one reader connection, each behind its own lock, both usable from any
thread: in WAL mode readers never wait for the writer, so the HTTP API can
read while a commit is being fsynced. ``write`` is THE transaction every
part of the store writes in; ``query`` the one way to read. WAL checkpoints
run on a third connection, on a thread of their own (``checkpoint.py``), so
that no commit waits for one.

Errors are translated here: a write that failed for lack of space
(``SQLITE_FULL``, or an I/O error while the filesystem has no room left) is a
``DiskFullError``, which heals when space is freed; every other SQLite error
is a ``StoreError``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iot_bridge.adapters.store.checkpoint import Checkpointer
from iot_bridge.adapters.store.datadir import lock_dir, no_space_left, prepare_dir
from iot_bridge.errors import DiskFullError, StoreError
from iot_bridge.fsutil import fsync_dir
from iot_bridge.logs import get_logger
from iot_bridge.service.ports import FLAG_AFTER_ATTEMPTS, WAL_SHARE_OF_BUDGET

log = get_logger(__name__)

DB_FILENAME = "bridge.db"
SCHEMA_VERSION = 1

# What a durable write (the group commit) uses; benchmarks/store.py compares it with "NORMAL".
COMMIT_SYNCHRONOUS = "FULL"

# The checkpoints run on their own thread (``checkpoint.py``); the writer checkpoints
# itself only as a backstop, when the WAL has grown to this many pages (40 MiB), or to
# a sixteenth of the disk budget when one is set (``limit_wal``).
WRITER_AUTOCHECKPOINT_PAGES = 10_000
# Once checkpointed, the WAL is written from its start again and its file truncated to
# this (``journal_size_limit``): it does not keep the size of its busiest moment.
WAL_SIZE_LIMIT_BYTES = 4 * 1024 * 1024
MIN_WRITER_AUTOCHECKPOINT_PAGES = 256

# SQLite errors that a full filesystem can cause besides SQLITE_FULL (a short write
# reported as an I/O error, the -shm or -wal file that cannot grow or be created).
# A failed fsync is not among them: after it, what the OS cache held is unknown.
_MAYBE_NO_SPACE = frozenset(
    {
        "SQLITE_IOERR",
        "SQLITE_IOERR_WRITE",
        "SQLITE_IOERR_SHMSIZE",
        "SQLITE_IOERR_SHMMAP",
        "SQLITE_IOERR_TRUNCATE",
        "SQLITE_CANTOPEN",
    }
)

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class FileSpace:
    """Where the data dir's bytes are: its files, and the room inside ``bridge.db``.

    ``files_bytes`` is what the files of the data dir hold on disk (allocated
    blocks, one level: the database, its WAL and shared memory, the persisted
    config), ``wal_bytes`` the WAL's share of them; ``free_pages_bytes`` the
    pages of ``bridge.db`` freed by deletes, reused before the file grows;
    ``disk_free_bytes`` what the filesystem has left for us.
    """

    files_bytes: int
    wal_bytes: int
    free_pages_bytes: int
    disk_free_bytes: int


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
        self._identity = _identity(db_path)

    @classmethod
    def open(cls, data_dir: Path) -> Database:
        """Open (or create) the database in ``data_dir``, creating the dir if missing.

        Raises ``StoreError`` naming the path when the dir cannot be created or
        written, or the database is corrupt, not SQLite, or from a newer version.
        """
        data_dir = Path(data_dir)
        prepare_dir(data_dir)  # a full disk: DiskFullError, the caller may wait
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
            writer.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
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
            if _out_of_space(err, data_dir):
                raise DiskFullError(
                    f"database {db_path} cannot be opened: the disk holding it is full"
                    f" ({_describe(err)})"
                ) from err
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
                    _roll_back(conn)  # SQLite may have rolled back by itself on FULL/IOERR
                    raise
                conn.execute("COMMIT")
                changes, self._changes = conn.total_changes - self._changes, conn.total_changes
                if changes:
                    self._checkpointer.changed(changes)
            except sqlite3.Error as err:
                _roll_back(conn)
                raise self._error(what, err) from err
            finally:
                if durable:
                    _quietly(conn, "PRAGMA synchronous = NORMAL")

    def query(self, what: str, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._read_lock:
            if self._closed:
                raise StoreError(f"store {self.path} is closed")
            try:
                return self._reader.execute(sql, params).fetchall()
            except sqlite3.Error as err:
                raise StoreError(f"{what} failed on {self.path}: {_describe(err)}") from err

    def limit_wal(self, budget_bytes: int | None) -> None:
        """Let the WAL take at most a sixteenth of ``budget_bytes`` before the writer
        checkpoints it itself, and keep at most that much of its file once checkpointed
        (``None``: the defaults, 40 MiB and 4 MiB)."""
        pages, keep = WRITER_AUTOCHECKPOINT_PAGES, WAL_SIZE_LIMIT_BYTES
        if budget_bytes is not None:
            page_size = int(self.query("page_size", "PRAGMA page_size")[0][0])
            share = budget_bytes // WAL_SHARE_OF_BUDGET
            pages = max(MIN_WRITER_AUTOCHECKPOINT_PAGES, min(pages, share // page_size))
            keep = min(keep, share)
        with self._write_lock:
            if self._closed:
                raise StoreError(f"store {self.path} is closed")
            try:
                self._writer.execute(f"PRAGMA wal_autocheckpoint = {int(pages)}")
                self._writer.execute(f"PRAGMA journal_size_limit = {int(keep)}")
            except sqlite3.Error as err:
                raise self._error("limit_wal", err) from err

    def space(self) -> FileSpace:
        """The data dir's files, the free pages inside the database, the disk's free room.

        Raises ``StoreError`` when the database file is gone or replaced (the data dir
        was removed or remounted under the running bridge): what it commits from then
        on would not be found by the next start.
        """
        self.check_present()
        rows = self.query(
            "space",
            "SELECT (SELECT page_size FROM pragma_page_size()),"
            " (SELECT freelist_count FROM pragma_freelist_count())",
        )
        page_size, free_pages = rows[0]
        data_dir = self.path.parent
        wal_name = f"{self.path.name}-wal"
        total = wal = 0
        try:
            with os.scandir(data_dir) as entries:
                for entry in entries:
                    try:
                        if not entry.is_file(follow_symlinks=False):
                            continue
                        size = entry.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        continue  # removed while we looked
                    total += size
                    if entry.name == wal_name:
                        wal = size
            fs = os.statvfs(data_dir)
        except OSError as err:
            raise StoreError(f"data dir {data_dir} cannot be read: {err.strerror or err}") from err
        return FileSpace(
            files_bytes=total,
            wal_bytes=wal,
            free_pages_bytes=int(page_size) * int(free_pages),
            disk_free_bytes=fs.f_bavail * fs.f_frsize,
        )

    def check_present(self) -> None:
        """``StoreError`` when ``bridge.db`` is no longer the file this store opened."""
        if _identity(self.path) != self._identity:
            raise StoreError(
                f"database {self.path} was removed or replaced while the bridge ran (the data"
                f" dir {self.path.parent} vanished or was remounted); stopping so that nothing"
                " is written where the next start would not find it"
            )

    def _error(self, what: str, err: sqlite3.Error) -> StoreError:
        if _out_of_space(err, self.path.parent):
            return DiskFullError(
                f"{what} failed on {self.path}: the disk holding the data dir is full"
                f" ({_describe(err)})"
            )
        return StoreError(f"{what} failed on {self.path}: {_describe(err)}")


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


def _roll_back(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        # A rollback writes nothing in WAL mode; should it still fail, the connection
        # rolls back by itself at the next BEGIN (which reports what is wrong then).
        _quietly(conn, "ROLLBACK")


def _quietly(conn: sqlite3.Connection, sql: str) -> None:
    try:
        conn.execute(sql)
    except sqlite3.Error as err:
        log.warning("store_statement_failed", statement=sql, error=_describe(err))


def _out_of_space(err: sqlite3.Error, data_dir: Path) -> bool:
    """Whether ``err`` means the filesystem is full: SQLITE_FULL, or an I/O error
    while writing a file into the data dir fails for lack of space too."""
    name = getattr(err, "sqlite_errorname", "") or ""
    if name == "SQLITE_FULL":
        return True
    return name in _MAYBE_NO_SPACE and no_space_left(data_dir)


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
