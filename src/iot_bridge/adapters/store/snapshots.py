"""The detector snapshots: one row per device, written in the commit that changed it."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

import orjson

from iot_bridge.adapters.store.database import Database
from iot_bridge.errors import StoreError

_UPSERT_SNAPSHOT = (
    "INSERT INTO snapshots (device_id, state, updated_at) VALUES (?, ?, ?)"
    " ON CONFLICT (device_id) DO UPDATE SET state = excluded.state,"
    " updated_at = excluded.updated_at"
)

SnapshotRow = tuple[str, str | None]


def snapshot_rows(snapshots: Mapping[str, Mapping[str, Any] | None] | None) -> list[SnapshotRow]:
    """(device_id, JSON or None to delete); ``StoreError`` when a value is not JSON."""
    try:
        return [
            (device_id, None if state is None else orjson.dumps(dict(state)).decode())
            for device_id, state in (snapshots or {}).items()
        ]
    except (TypeError, ValueError) as err:
        raise StoreError(f"commit refused, a value is not JSON-serialisable: {err}") from err


def write_snapshots(conn: sqlite3.Connection, rows: list[SnapshotRow], now: float) -> None:
    """Upsert or delete each device's snapshot, inside the caller's transaction."""
    upserts = [(d, s, now) for d, s in rows if s is not None]
    deletes = [(d,) for d, s in rows if s is None]
    if upserts:
        conn.executemany(_UPSERT_SNAPSHOT, upserts)
    if deletes:
        conn.executemany("DELETE FROM snapshots WHERE device_id = ?", deletes)


def load_snapshots(db: Database) -> dict[str, dict[str, Any]]:
    """Every stored detector snapshot, by device_id."""
    rows = db.query("load_snapshots", "SELECT device_id, state FROM snapshots")
    snapshots: dict[str, dict[str, Any]] = {}
    for device_id, state in rows:
        try:
            snapshots[device_id] = orjson.loads(state)
        except orjson.JSONDecodeError:
            # The ingestor reports it as unusable and the device starts fresh.
            snapshots[device_id] = {"unreadable": True}
    return snapshots
