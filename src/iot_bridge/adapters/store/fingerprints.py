"""The redelivery fingerprints of the last committed batches (see service/ingest/redelivery.py)."""

from __future__ import annotations

import sqlite3
from array import array
from collections.abc import Sequence

from iot_bridge.adapters.store.database import Database
from iot_bridge.service.ports import KEPT_BATCHES


def write_batch(conn: sqlite3.Connection, batch: Sequence[int]) -> None:
    """Keep this batch's fingerprints and the last ``KEPT_BATCHES`` in all."""
    conn.execute(
        "INSERT INTO committed_batches (fingerprints) VALUES (?)",
        (array("Q", batch).tobytes(),),
    )
    conn.execute(
        "DELETE FROM committed_batches WHERE seq <= (SELECT MAX(seq) FROM committed_batches) - ?",
        (KEPT_BATCHES,),
    )


def load_batches(db: Database) -> list[list[int]]:
    """The message fingerprints of the last committed batches, oldest first."""
    rows = db.query(
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
