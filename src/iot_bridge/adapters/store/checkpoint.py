"""WAL checkpoints on a thread of their own, never inside a commit.

SQLite's automatic checkpoint runs in the connection that commits, right after
the commit that takes the WAL past 1,000 pages: that commit then also copies
the WAL into the database file and fsyncs it (5-45 ms measured here), and
every event of the batch waits for it. Here the writer's automatic checkpoint
is off (``PRAGMA wal_autocheckpoint = 0``); after every ``CHANGES_PER_CHECKPOINT``
rows changed, ``Checkpointer.changed`` wakes a thread that runs a ``PASSIVE``
checkpoint on its own connection. A passive checkpoint waits for no one:
commits go on appending to the WAL while it copies, readers keep their
snapshot, and what it could not copy the next one does.

The thread starts at the first checkpoint and sleeps on an event between two:
a bridge that writes nothing has none, and one that trickles a row now and
then wakes it once per ``CHANGES_PER_CHECKPOINT`` rows.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from iot_bridge.logs import get_logger

log = get_logger(__name__)

# About as many rows as fill 1,000 WAL pages with snapshot updates (SQLite's
# default automatic checkpoint): measured 16,000 messages per 1,000 pages.
CHANGES_PER_CHECKPOINT = 10_000
# A trickle's commits (3-4 pages each): a checkpoint per ~1.3 MB of WAL. Each copies
# only the few distinct pages those commits touched, on this thread.
COMMITS_PER_CHECKPOINT = 100


class Checkpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` on ``db_path`` when enough has changed."""

    def __init__(
        self,
        db_path: Path,
        connect: Callable[[Path], sqlite3.Connection],
        *,
        changes_per_checkpoint: int = CHANGES_PER_CHECKPOINT,
        commits_per_checkpoint: int = COMMITS_PER_CHECKPOINT,
    ) -> None:
        self._db_path = db_path
        self._connect = connect
        self._every = changes_per_checkpoint
        self._every_commits = commits_per_checkpoint
        self._pending = 0
        self._commits = 0
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closing = False
        self.checkpoints = 0  # completed, for tests and the curious

    def changed(self, rows: int) -> None:
        """Count one commit that changed ``rows``; wake the thread once enough have."""
        self._pending += rows
        self._commits += 1
        if self._pending < self._every and self._commits < self._every_commits:
            return
        self._pending = 0
        self._commits = 0
        with self._lock:
            if self._closing:
                return
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="wal-checkpoint", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def close(self) -> None:
        """Stop the thread after the checkpoint it may be running."""
        with self._lock:
            self._closing = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join()

    def _work(self) -> None:
        try:
            conn = self._connect(self._db_path)
        except sqlite3.Error as err:  # the writer's own checkpoint on close still runs
            log.error("wal_checkpoint_failed", path=str(self._db_path), error=str(err))
            return
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._closing:
                    return
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as err:  # the next one retries; the WAL only grows
                    log.warning("wal_checkpoint_failed", path=str(self._db_path), error=str(err))
                    continue
                self.checkpoints += 1
        finally:
            conn.close()
