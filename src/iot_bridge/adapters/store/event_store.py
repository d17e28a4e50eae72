"""The durable store: the outbox, the detector snapshots and the fingerprints, in SQLite.

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

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from iot_bridge.adapters.store import fingerprints as fingerprint_table
from iot_bridge.adapters.store import snapshots as snapshot_table
from iot_bridge.adapters.store.database import Database
from iot_bridge.adapters.store.outbox import OutboxQueries, event_rows, insert_events
from iot_bridge.domain.events import Event
from iot_bridge.errors import StoreError
from iot_bridge.logs import get_logger
from iot_bridge.service.ports import StoreUsage

log = get_logger(__name__)

DEFAULT_RETENTION_S = 30 * 86400.0


class EventStore(OutboxQueries):
    """The outbox, the detector snapshots and the fingerprints: the ``Outbox`` port.

    Open with ``EventStore.open(data_dir)``. Every method is thread-safe.
    Failures of the database raise ``StoreError``.
    """

    def __init__(self, db: Database, *, retention_s: float) -> None:
        """Use ``EventStore.open``; this takes an open database."""
        self._db = db
        self.path = db.path
        self.retention_s = retention_s

    @classmethod
    def open(cls, data_dir: Path, *, retention_s: float = DEFAULT_RETENTION_S) -> EventStore:
        """Open (or create) the store in ``data_dir``, creating the dir if missing.

        Raises ``StoreError`` naming the path when the dir cannot be created or
        written, or the database is corrupt, not SQLite, or from a newer version.
        """
        if not retention_s > 0:
            raise StoreError(f"retention must be a positive number of seconds, got {retention_s}")
        return cls(Database.open(Path(data_dir)), retention_s=retention_s)

    def close(self) -> None:
        """Close the database; further calls raise ``StoreError``."""
        self._db.close()

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
        new_events = event_rows(events, now)
        new_snapshots = snapshot_table.snapshot_rows(snapshots)
        if not new_events and not new_snapshots and not batch:
            return
        with self._db.write("commit", durable=True) as conn:
            if batch:
                fingerprint_table.write_batch(conn, batch)
            insert_events(conn, new_events)
            snapshot_table.write_snapshots(conn, new_snapshots, now)

    def usage(self) -> StoreUsage:
        """The data dir's size on disk, the free pages inside the database, the disk's room.

        Raises ``StoreError`` when the database file was removed or replaced under us.
        """
        space = self._db.space()
        return StoreUsage(
            data_dir_bytes=space.files_bytes,
            wal_bytes=space.wal_bytes,
            reusable_bytes=space.free_pages_bytes,
            disk_free_bytes=space.disk_free_bytes,
        )

    def limit_wal(self, budget_bytes: int | None) -> None:
        """Let the WAL grow to a sixteenth of ``budget_bytes`` (None: 40 MiB) before the
        writer checkpoints it, and keep no more of its file."""
        self._db.limit_wal(budget_bytes)

    def load_committed_batches(self) -> list[list[int]]:
        """The message fingerprints of the last committed batches, oldest first."""
        return fingerprint_table.load_batches(self._db)

    def load_snapshots(self) -> dict[str, dict[str, Any]]:
        """Every stored detector snapshot, by device_id."""
        return snapshot_table.load_snapshots(self._db)
