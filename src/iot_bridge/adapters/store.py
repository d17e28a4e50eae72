"""The durable store: the outbox of events and the detector snapshots, in SQLite (WAL).

One file, ``<data-dir>/bridge.db``. ``EventStore.commit`` writes a batch of new
events and the detector snapshots they changed in ONE transaction and returns
only when it is durable; the ingestor acknowledges MQTT messages after that.

Durability: the commit of new events runs with ``synchronous=FULL`` (the WAL
is fsynced, so a committed event survives ``kill -9`` and power loss). The
bookkeeping writes of delivery (``mark_*``, ``retry_dead``, ``prune``) run with
``synchronous=NORMAL``: they survive ``kill -9`` (the WAL write is in the OS
cache) and a power loss can only undo them, which re-sends an event with the
same ``event_uid`` — at-least-once still holds. See benchmarks/RESULTS.md.

Threads: one writer connection and one reader connection, each behind its own
lock, both usable from any thread. In WAL mode readers never wait for the
writer, so the HTTP API can read while a commit is being fsynced.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from array import array
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from iot_bridge.domain.events import Event
from iot_bridge.errors import StoreError
from iot_bridge.fsutil import fsync_dir
from iot_bridge.logs import get_logger

log = get_logger(__name__)

DB_FILENAME = "bridge.db"
SCHEMA_VERSION = 1
FLAG_AFTER_ATTEMPTS = 10
DEFAULT_RETENTION_S = 30 * 86400.0

# What commit() uses; benchmarks/store.py compares it with "NORMAL".
COMMIT_SYNCHRONOUS = "FULL"

STATUS_PENDING = "pending"
STATUS_DELIVERED = "delivered"
STATUS_DEAD = "dead"

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
# How many committed batches' message fingerprints are kept: the last one may be
# committed but not yet acknowledged, the one before it acknowledged but its
# PUBACKs still in a socket buffer when the process died.
KEPT_BATCHES = 2

_COLUMNS = (
    "seq, event_uid, device_id, event_type, payload, status, attempts,"
    " next_attempt_at, last_error, created_at, delivered_at"
)

# The oldest pending event of each device, found by a skip-scan over the partial
# index (one index probe per device) instead of a scan of every pending row:
# an outage of hours may leave 100,000s pending.
_HEADS = """
WITH RECURSIVE devices(device_id) AS (
    SELECT MIN(device_id) FROM events WHERE status = 'pending'
    UNION ALL
    SELECT (SELECT MIN(device_id) FROM events
            WHERE status = 'pending' AND device_id > devices.device_id)
    FROM devices WHERE devices.device_id IS NOT NULL
),
heads(seq) AS (
    SELECT (SELECT MIN(seq) FROM events
            WHERE status = 'pending' AND device_id = devices.device_id)
    FROM devices WHERE devices.device_id IS NOT NULL
)
"""

_INSERT_EVENT = (
    "INSERT INTO events (event_uid, device_id, event_type, payload, status, attempts,"
    " next_attempt_at, created_at) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?)"
    " ON CONFLICT (event_uid) DO NOTHING"
)
_UPSERT_SNAPSHOT = (
    "INSERT INTO snapshots (device_id, state, updated_at) VALUES (?, ?, ?)"
    " ON CONFLICT (device_id) DO UPDATE SET state = excluded.state,"
    " updated_at = excluded.updated_at"
)

_Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event in the outbox with its delivery state.

    ``payload`` is the EVENT object of CONTRACT section 6 (``Event.to_dict()``);
    ``attempts`` counts failed delivery tries.
    """

    seq: int
    event_uid: str
    device_id: str
    event_type: str
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    created_at: float
    delivered_at: float | None

    @property
    def flagged(self) -> bool:
        """True when the event failed 10 or more times and is still being retried."""
        return self.status == STATUS_PENDING and self.attempts >= FLAG_AFTER_ATTEMPTS


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """What delivery needs of one pending event: its EVENT object as stored JSON text."""

    seq: int
    event_uid: str
    device_id: str
    event_type: str
    attempts: int
    payload_json: bytes


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Counts for /health and /metrics."""

    pending: int
    dead: int
    flagged: int
    oldest_pending_age_s: float | None


def _payload(row: _Row) -> dict[str, Any]:
    try:
        payload: dict[str, Any] = orjson.loads(row[4])
    except orjson.JSONDecodeError:
        # A damaged row must not stop delivery: Odoo refuses this (it goes dead, visible).
        return {"event_uid": row[1], "device_id": row[2], "event_type": row[3], "unreadable": True}
    return payload


def _to_stored(row: _Row) -> StoredEvent:
    return StoredEvent(
        seq=row[0],
        event_uid=row[1],
        device_id=row[2],
        event_type=row[3],
        payload=_payload(row),
        status=row[5],
        attempts=row[6],
        next_attempt_at=row[7],
        last_error=row[8],
        created_at=row[9],
        delivered_at=row[10],
    )


def _describe(err: sqlite3.Error) -> str:
    name = getattr(err, "sqlite_errorname", "") or type(err).__name__
    return f"{err} ({name})"


def _prepare_dir(data_dir: Path) -> None:
    """Create the data dir if missing and prove a file can be written in it."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StoreError(f"data dir {data_dir} cannot be created: {err.strerror or err}") from err
    if not data_dir.is_dir():
        raise StoreError(f"data dir {data_dir} is not a directory")
    probe = data_dir / f".write-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as err:
        raise StoreError(f"data dir {data_dir} is not writable: {err.strerror or err}") from err


def _lock_dir(data_dir: Path) -> int:
    """Hold ``<data-dir>/.lock`` for the life of the store: one process per data dir.

    Two bridges on one outbox would send the same events twice and break the
    per-device order. The lock is released when the store closes or the
    process dies (kill -9 included).
    """
    fd = os.open(data_dir / LOCK_FILENAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        raise StoreError(
            f"data dir {data_dir} is in use by another iot-bridge process"
            " (stop it, or give this one its own --data-dir)"
        ) from err
    return fd


def _connect(db_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


# SQL text below is built only from module constants and "?" placeholders (hence the
# S608 exemptions); every value is a bound parameter.


class EventStore:
    """The outbox and the detector snapshots. Open with ``EventStore.open(data_dir)``.

    Every method is thread-safe. Failures of the database raise ``StoreError``.
    """

    def __init__(
        self,
        db_path: Path,
        writer: sqlite3.Connection,
        reader: sqlite3.Connection,
        *,
        retention_s: float,
        lock_fd: int | None = None,
    ) -> None:
        """Use ``EventStore.open``; this takes already prepared connections."""
        self._lock_fd = lock_fd
        self.path = db_path
        self.retention_s = retention_s
        self._writer = writer
        self._reader = reader
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------

    @classmethod
    def open(cls, data_dir: Path, *, retention_s: float = DEFAULT_RETENTION_S) -> EventStore:
        """Open (or create) the store in ``data_dir``, creating the dir if missing.

        Raises ``StoreError`` naming the path when the dir cannot be created or
        written, or the database is corrupt, not SQLite, or from a newer version.
        """
        if not retention_s > 0:
            raise StoreError(f"retention must be a positive number of seconds, got {retention_s}")
        data_dir = Path(data_dir)
        _prepare_dir(data_dir)
        lock_fd = _lock_dir(data_dir)
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
        return cls(db_path, writer, reader, retention_s=retention_s, lock_fd=lock_fd)

    def close(self) -> None:
        """Close both connections; further calls raise ``StoreError``."""
        with self._write_lock, self._read_lock:
            if self._closed:
                return
            self._closed = True
            self._reader.close()
            self._writer.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the data-dir lock
                self._lock_fd = None

    # -- plumbing ------------------------------------------------------------------

    @contextmanager
    def _write(self, what: str, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
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
            except sqlite3.Error as err:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StoreError(f"{what} failed on {self.path}: {_describe(err)}") from err
            finally:
                if durable:
                    conn.execute("PRAGMA synchronous = NORMAL")

    def _query(self, what: str, sql: str, params: Sequence[Any] = ()) -> list[_Row]:
        with self._read_lock:
            if self._closed:
                raise StoreError(f"store {self.path} is closed")
            try:
                return self._reader.execute(sql, params).fetchall()
            except sqlite3.Error as err:
                raise StoreError(f"{what} failed on {self.path}: {_describe(err)}") from err

    # -- ingest side ---------------------------------------------------------------

    def commit(
        self,
        events: Sequence[Event],
        snapshots: Mapping[str, Mapping[str, Any] | None] | None = None,
        *,
        now: float,
        batch: Sequence[int] | None = None,
    ) -> None:
        """Write new events (pending) and detector snapshots in ONE durable transaction.

        ``batch`` fingerprints the QoS 1 messages whose effects this commit
        holds (unsigned 64-bit ints); the last ``KEPT_BATCHES`` are kept
        so that a restart recognises the broker redelivering them.

        ``snapshots`` maps device_id to its detector snapshot, or ``None`` to
        delete it. Durable (fsynced) when this returns. An event whose
        ``event_uid`` is already stored is skipped, so a commit may be repeated.
        Raises ``StoreError`` and writes nothing when any part cannot be stored.
        """
        try:
            event_rows = [
                (
                    event.event_uid,
                    event.device_id,
                    str(event.event_type),
                    orjson.dumps(event.to_dict()).decode(),
                    0.0,  # due at once, whatever the delivery clock says
                    now,
                )
                for event in events
            ]
            snapshot_rows = [
                (device_id, None if state is None else orjson.dumps(dict(state)).decode())
                for device_id, state in (snapshots or {}).items()
            ]
        except (TypeError, ValueError) as err:
            raise StoreError(f"commit refused, a value is not JSON-serialisable: {err}") from err
        if not event_rows and not snapshot_rows and not batch:
            return
        with self._write("commit", durable=True) as conn:
            if batch:
                conn.execute(
                    "INSERT INTO committed_batches (fingerprints) VALUES (?)",
                    (array("Q", batch).tobytes(),),
                )
                conn.execute(
                    "DELETE FROM committed_batches WHERE seq <= "
                    "(SELECT MAX(seq) FROM committed_batches) - ?",
                    (KEPT_BATCHES,),
                )
            if event_rows:
                conn.executemany(_INSERT_EVENT, event_rows)
            upserts = [(d, s, now) for d, s in snapshot_rows if s is not None]
            deletes = [(d,) for d, s in snapshot_rows if s is None]
            if upserts:
                conn.executemany(_UPSERT_SNAPSHOT, upserts)
            if deletes:
                conn.executemany("DELETE FROM snapshots WHERE device_id = ?", deletes)

    def load_committed_batches(self) -> list[list[int]]:
        """The message fingerprints of the last committed batches, oldest first."""
        rows = self._query(
            "load_committed_batches",
            "SELECT fingerprints FROM committed_batches ORDER BY seq",
        )
        batches: list[list[int]] = []
        for (blob,) in rows:
            fingerprints = array("Q")
            try:
                fingerprints.frombytes(blob)
            except (TypeError, ValueError):
                continue  # unreadable: those messages are processed again, as before
            batches.append(fingerprints.tolist())
        return batches

    def load_snapshots(self) -> dict[str, dict[str, Any]]:
        """Every stored detector snapshot, by device_id."""
        rows = self._query("load_snapshots", "SELECT device_id, state FROM snapshots")
        snapshots: dict[str, dict[str, Any]] = {}
        for device_id, state in rows:
            try:
                snapshots[device_id] = orjson.loads(state)
            except orjson.JSONDecodeError:
                # The ingestor reports it as unusable and the device starts fresh.
                snapshots[device_id] = {"unreadable": True}
        return snapshots

    # -- reading -------------------------------------------------------------------

    def get(self, seq: int) -> StoredEvent | None:
        """One event by its sequence number, or None."""
        rows = self._query(
            "get",
            f"SELECT {_COLUMNS} FROM events WHERE seq = ?",  # noqa: S608
            (seq,),
        )
        return _to_stored(rows[0]) if rows else None

    def recent_events(self, limit: int = 100) -> list[StoredEvent]:
        """The most recent events (any status), newest first."""
        rows = self._query(
            "recent_events",
            f"SELECT {_COLUMNS} FROM events ORDER BY seq DESC LIMIT ?",  # noqa: S608
            (max(0, int(limit)),),
        )
        return [_to_stored(row) for row in rows]

    def outbox_stats(self, now: float) -> OutboxStats:
        """Pending, dead and flagged counts and the age of the oldest pending event."""
        # Literal 10 (not a parameter) so SQLite uses the partial index events_flagged;
        # a device's oldest pending event is its head (created_at grows with seq).
        rows = self._query(
            "outbox_stats",
            f"{_HEADS} SELECT"  # noqa: S608
            " (SELECT COUNT(*) FROM events WHERE status = 'pending'),"
            " (SELECT COUNT(*) FROM events WHERE status = 'dead'),"
            f" (SELECT COUNT(*) FROM events WHERE status = 'pending'"
            f" AND attempts >= {FLAG_AFTER_ATTEMPTS}),"
            " (SELECT MIN(e.created_at) FROM heads JOIN events e ON e.seq = heads.seq)",
        )
        pending, dead, flagged, oldest = rows[0]
        return OutboxStats(
            pending=pending,
            dead=dead,
            flagged=flagged,
            oldest_pending_age_s=None if oldest is None else max(0.0, now - oldest),
        )

    # -- delivery side -------------------------------------------------------------

    def next_deliverable(
        self, now: float, limit: int, exclude_devices: Collection[str] = ()
    ) -> list[StoredEvent]:
        """For each device not excluded, its oldest pending event if it is due by ``now``.

        A device's later events are never returned before its earlier pending
        one; dead events do not block. Most overdue first, at most ``limit``.
        """
        if limit <= 0:
            return []
        excluded = list(exclude_devices)
        marks = ",".join("?" * len(excluded))
        not_excluded = f" AND e.device_id NOT IN ({marks})" if excluded else ""
        rows = self._query(
            "next_deliverable",
            f"{_HEADS} SELECT {_prefixed('e')} FROM heads"  # noqa: S608
            " JOIN events e ON e.seq = heads.seq"
            f" WHERE e.next_attempt_at <= ?{not_excluded}"
            " ORDER BY e.next_attempt_at, e.seq LIMIT ?",
            (now, *excluded, limit),
        )
        return [_to_stored(row) for row in rows]

    def next_attempt_time(self, exclude_devices: Collection[str] = ()) -> float | None:
        """The earliest ``next_attempt_at`` among the devices' oldest pending events."""
        excluded = list(exclude_devices)
        marks = ",".join("?" * len(excluded))
        not_excluded = f" WHERE e.device_id NOT IN ({marks})" if excluded else ""
        rows = self._query(
            "next_attempt_time",
            f"{_HEADS} SELECT MIN(e.next_attempt_at) FROM heads"  # noqa: S608
            f" JOIN events e ON e.seq = heads.seq{not_excluded}",
            excluded,
        )
        value = rows[0][0]
        return None if value is None else float(value)

    def poll(
        self, now: float, limit: int, exclude_devices: Collection[str] = ()
    ) -> tuple[list[StoredEvent], float | None]:
        """``next_deliverable`` and, for the devices it leaves waiting, ``next_attempt_time``.

        One call for the delivery loop: what to send now, and when to look again.
        """
        due = self.next_deliverable(now, limit, exclude_devices)
        later = self.next_attempt_time({*exclude_devices, *(event.device_id for event in due)})
        return due, later

    def pending_for_device(self, device_id: str, now: float, limit: int) -> list[StoredEvent]:
        """A device's oldest pending events in order, up to the first one not yet due."""
        rows = self._query(
            "pending_for_device",
            f"SELECT {_COLUMNS} FROM events"  # noqa: S608
            " WHERE status = 'pending' AND device_id = ? ORDER BY seq LIMIT ?",
            (device_id, max(0, int(limit))),
        )
        result: list[StoredEvent] = []
        for row in rows:
            event = _to_stored(row)
            if event.next_attempt_at > now:
                break
            result.append(event)
        return result

    def due_devices(
        self, now: float, exclude_devices: Collection[str] = ()
    ) -> tuple[list[str], float | None]:
        """Devices whose oldest pending event is due by ``now``, most overdue first,
        and the earliest ``next_attempt_at`` of the other devices' oldest pending events.

        One skip-scan over the pending index (one probe per device), for the
        delivery loop to work through before it looks again.
        """
        rows = self._query(
            "due_devices",
            f"{_HEADS} SELECT e.device_id, e.next_attempt_at FROM heads"  # noqa: S608
            " JOIN events e ON e.seq = heads.seq ORDER BY e.next_attempt_at, e.seq",
        )
        excluded = set(exclude_devices)
        due: list[str] = []
        later: float | None = None
        for device_id, next_attempt_at in rows:
            if device_id in excluded:
                continue
            if next_attempt_at <= now:
                due.append(device_id)
            elif later is None:
                later = float(next_attempt_at)  # rows are ordered: the first is the earliest
        return due, later

    def pending_chunks(
        self, device_ids: Sequence[str], now: float, limit: int
    ) -> list[list[OutboxItem]]:
        """For each device, its oldest pending events in order (at most ``limit``), up to
        the first one not yet due; devices with nothing due are left out.
        """
        sql = (
            "SELECT seq, event_uid, device_id, event_type, attempts, payload, next_attempt_at"
            " FROM events WHERE status = 'pending' AND device_id = ? ORDER BY seq LIMIT ?"
        )
        chunks: list[list[OutboxItem]] = []
        with self._read_lock:
            if self._closed:
                raise StoreError(f"store {self.path} is closed")
            try:
                for device_id in device_ids:
                    chunk: list[OutboxItem] = []
                    for row in self._reader.execute(sql, (device_id, limit)):
                        if row[6] > now:
                            break
                        payload = row[5]
                        chunk.append(
                            OutboxItem(
                                row[0],
                                row[1],
                                row[2],
                                row[3],
                                row[4],
                                payload.encode() if isinstance(payload, str) else bytes(payload),
                            )
                        )
                    if chunk:
                        chunks.append(chunk)
            except sqlite3.Error as err:
                raise StoreError(f"pending_chunks failed on {self.path}: {_describe(err)}") from err
        return chunks

    def make_due(self, seqs: Collection[int], now: float) -> None:
        """Make these pending events due at ``now`` (Odoo is back: no reason to wait)."""
        if not seqs:
            return
        with self._write("make_due") as conn:
            conn.executemany(
                "UPDATE events SET next_attempt_at = ? WHERE seq = ? AND status = 'pending'"
                " AND next_attempt_at > ?",
                [(now, seq, now) for seq in seqs],
            )

    def mark_delivered(self, seq: int, now: float) -> None:
        """Odoo accepted the event."""
        self.mark_delivered_many((seq,), now)

    def mark_delivered_many(self, seqs: Collection[int], now: float) -> None:
        """Odoo accepted these events (one transaction)."""
        if not seqs:
            return
        with self._write("mark_delivered") as conn:
            conn.executemany(
                "UPDATE events SET status = 'delivered', delivered_at = ?, last_error = NULL"
                " WHERE seq = ? AND status = 'pending'",
                [(now, seq) for seq in seqs],
            )

    def mark_retry(self, seq: int, now: float, next_attempt_at: float, error: str) -> None:
        """A transient failure: count it and try again at ``next_attempt_at``."""
        del now  # kept for symmetry with the other marks; the error time is not stored
        with self._write("mark_retry") as conn:
            conn.execute(
                "UPDATE events SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
                " WHERE seq = ? AND status = 'pending'",
                (next_attempt_at, error, seq),
            )

    def mark_dead(self, seq: int, now: float, error: str) -> None:
        """A permanent failure: the event is kept, but no longer sent or blocking."""
        with self._write("mark_dead") as conn:
            conn.execute(
                "UPDATE events SET status = 'dead', attempts = attempts + 1, last_error = ?,"
                " next_attempt_at = ? WHERE seq = ? AND status = 'pending'",
                (error, now, seq),
            )

    def retry_dead(self, now: float) -> int:
        """Put every dead event back into delivery (due now); returns how many.

        A revived event is again its device's oldest pending one, so the
        device's later pending events wait for it (per-device order).
        """
        with self._write("retry_dead") as conn:
            cursor = conn.execute(
                "UPDATE events SET status = 'pending', attempts = 0, next_attempt_at = ?"
                " WHERE status = 'dead'",
                (now,),
            )
            count = cursor.rowcount
        if count:
            log.info("dead_events_revived", count=count)
        return count

    def retry_now(self, now: float) -> int:
        """Make every pending event due now (e.g. Odoo's config was fixed); returns how many."""
        with self._write("retry_now") as conn:
            cursor = conn.execute(
                "UPDATE events SET next_attempt_at = ?"
                " WHERE status = 'pending' AND next_attempt_at > ?",
                (now, now),
            )
            return cursor.rowcount

    def prune(self, now: float) -> int:
        """Delete delivered events older than the retention; dead ones are kept.

        Deletes in chunks, each its own transaction, so a large prune never
        holds the write lock (and the group commits behind it) for long.
        """
        count = 0
        while True:
            with self._write("prune") as conn:
                deleted = conn.execute(
                    "DELETE FROM events WHERE seq IN (SELECT seq FROM events"
                    " WHERE status = 'delivered' AND delivered_at < ? LIMIT ?)",
                    (now - self.retention_s, PRUNE_CHUNK),
                ).rowcount
            count += deleted
            if deleted < PRUNE_CHUNK:
                break
        if count:
            log.info("events_pruned", count=count)
        return count


PRUNE_CHUNK = 10_000
LOCK_FILENAME = ".lock"


def _prefixed(alias: str) -> str:
    return ", ".join(f"{alias}.{column.strip()}" for column in _COLUMNS.split(","))


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
