"""The outbox: the events table, its delivery queries and marks, retention.

SQL text is built only from module constants and "?" placeholders (hence the
S608 exemptions); every value is a bound parameter.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

import orjson

from iot_bridge.adapters.store.database import Database, Row
from iot_bridge.domain.events import Event
from iot_bridge.errors import StoreError
from iot_bridge.logs import get_logger
from iot_bridge.service.ports import FLAG_AFTER_ATTEMPTS, OutboxItem, OutboxStats, StoredEvent

log = get_logger(__name__)

PRUNE_CHUNK = 10_000
# What an event costs in bridge.db beyond its payload text: the row's other columns,
# its entries in the indexes (event_uid unique, delivered_at or pending) and the room
# pages keep free. Measured (benchmarks/disk.py): 180-260 bytes pending, 260-370 once
# delivered (the update moves it from one partial index to the other).
EVENT_ROW_OVERHEAD_BYTES = 300
# Events whose payload length is averaged to estimate the bytes of many (a sample:
# never a scan of a large table).
SIZE_SAMPLE_EVENTS = 256

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


def event_rows(events: Sequence[Event], now: float) -> list[tuple[Any, ...]]:
    """The rows ``insert_events`` writes; ``StoreError`` when a value is not JSON."""
    try:
        return [
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
    except (TypeError, ValueError) as err:
        raise StoreError(f"commit refused, a value is not JSON-serialisable: {err}") from err


def insert_events(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """New events, pending; an ``event_uid`` already stored is skipped."""
    if rows:
        conn.executemany(_INSERT_EVENT, rows)


def _payload(row: Row) -> dict[str, Any]:
    try:
        payload: dict[str, Any] = orjson.loads(row[4])
    except orjson.JSONDecodeError:
        # A damaged row must not stop delivery: Odoo refuses this (it goes dead, visible).
        return {"event_uid": row[1], "device_id": row[2], "event_type": row[3], "unreadable": True}
    return payload


def _to_stored(row: Row) -> StoredEvent:
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


def _prefixed(alias: str) -> str:
    return ", ".join(f"{alias}.{column.strip()}" for column in _COLUMNS.split(","))


class OutboxQueries:
    """The outbox's reads and delivery writes on ``_db`` (mixed into ``EventStore``)."""

    _db: Database
    retention_s: float

    # -- reading -------------------------------------------------------------------

    def get(self, seq: int) -> StoredEvent | None:
        """One event by its sequence number, or None."""
        rows = self._db.query(
            "get",
            f"SELECT {_COLUMNS} FROM events WHERE seq = ?",  # noqa: S608
            (seq,),
        )
        return _to_stored(rows[0]) if rows else None

    def recent_events(self, limit: int = 100) -> list[StoredEvent]:
        """The most recent events (any status), newest first."""
        rows = self._db.query(
            "recent_events",
            f"SELECT {_COLUMNS} FROM events ORDER BY seq DESC LIMIT ?",  # noqa: S608
            (max(0, int(limit)),),
        )
        return [_to_stored(row) for row in rows]

    def outbox_stats(self, now: float) -> OutboxStats:
        """Pending, dead and flagged counts and the age of the oldest pending event."""
        # Literal 10 (not a parameter) so SQLite uses the partial index events_flagged;
        # a device's oldest pending event is its head (created_at grows with seq).
        rows = self._db.query(
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
        rows = self._db.query(
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
        rows = self._db.query(
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
        rows = self._db.query(
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
        rows = self._db.query(
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
        for device_id in device_ids:
            chunk: list[OutboxItem] = []
            for row in self._db.query("pending_chunks", sql, (device_id, limit)):
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
        return chunks

    def make_due(self, seqs: Collection[int], now: float) -> None:
        """Make these pending events due at ``now`` (Odoo is back: no reason to wait)."""
        if not seqs:
            return
        with self._db.write("make_due") as conn:
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
        with self._db.write("mark_delivered") as conn:
            conn.executemany(
                "UPDATE events SET status = 'delivered', delivered_at = ?, last_error = NULL"
                " WHERE seq = ? AND status = 'pending'",
                [(now, seq) for seq in seqs],
            )

    def mark_retry(self, seq: int, now: float, next_attempt_at: float, error: str) -> None:
        """A transient failure: count it and try again at ``next_attempt_at``."""
        del now  # kept for symmetry with the other marks; the error time is not stored
        with self._db.write("mark_retry") as conn:
            conn.execute(
                "UPDATE events SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
                " WHERE seq = ? AND status = 'pending'",
                (next_attempt_at, error, seq),
            )

    def mark_dead(self, seq: int, now: float, error: str) -> None:
        """A permanent failure: the event is kept, but no longer sent or blocking."""
        with self._db.write("mark_dead") as conn:
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
        with self._db.write("retry_dead") as conn:
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
        with self._db.write("retry_now") as conn:
            cursor = conn.execute(
                "UPDATE events SET next_attempt_at = ?"
                " WHERE status = 'pending' AND next_attempt_at > ?",
                (now, now),
            )
            return cursor.rowcount

    def prune(
        self, now: float, retention_s: float | None = None, *, chunk: int | None = None
    ) -> int:
        """Delete delivered events older than the retention; dead ones are kept.

        ``retention_s`` defaults to the store's (``retention_s``, 30 days).
        Deletes in chunks of ``chunk`` events (``PRUNE_CHUNK``), each its own
        transaction, so a large prune never holds the write lock (and the group
        commits behind it) for long, nor swells the WAL with one huge transaction.
        """
        keep_s = self.retention_s if retention_s is None else retention_s
        size = chunk or PRUNE_CHUNK
        count = 0
        while True:
            with self._db.write("prune") as conn:
                deleted = conn.execute(
                    "DELETE FROM events WHERE seq IN (SELECT seq FROM events"
                    " WHERE status = 'delivered' AND delivered_at < ? LIMIT ?)",
                    (now - keep_s, size),
                ).rowcount
            count += deleted
            if deleted < size:
                break
        return count

    def prune_oldest_delivered(self, bytes_to_free: int, *, chunk: int | None = None) -> int:
        """Delete the oldest delivered events, about ``bytes_to_free`` of them; how many.

        Oldest by the time they were delivered. Pending and dead events are never
        touched. How many make that many bytes is estimated from a sample of the
        delivered events' sizes; the caller measures again afterwards. ``chunk``
        events (``PRUNE_CHUNK``) per transaction.
        """
        if bytes_to_free <= 0:
            return 0
        average = self._average_event_bytes("status = 'delivered'", "delivered_at")
        if average is None:
            return 0  # nothing delivered is left
        wanted = -(-bytes_to_free // average)  # rounded up
        count = 0
        while count < wanted:
            size = min(chunk or PRUNE_CHUNK, wanted - count)
            with self._db.write("prune_oldest_delivered") as conn:
                deleted = conn.execute(
                    "DELETE FROM events WHERE seq IN (SELECT seq FROM events"
                    " WHERE status = 'delivered' ORDER BY delivered_at LIMIT ?)",
                    (size,),
                ).rowcount
            count += deleted
            if deleted < size:
                break
        return count

    def kept_events_bytes(self) -> int:
        """About how many bytes the pending and dead events take (never pruned).

        Their counts (the partial indexes) times the average size of a sample
        of each, payload and row overhead (``EVENT_ROW_OVERHEAD_BYTES``).
        """
        total = 0
        # Each reads its partial index (events_pending_by_device, events_dead).
        for where, order in (("status = 'pending'", None), ("status = 'dead'", "seq")):
            count = self._db.query(
                "kept_events_bytes",
                f"SELECT COUNT(*) FROM events WHERE {where}",  # noqa: S608
            )[0][0]
            if count:
                total += int(count) * (self._average_event_bytes(where, order) or 0)
        return total

    def _average_event_bytes(self, where: str, order: str | None) -> int | None:
        """The average bytes of a sample of the events matching ``where``; None: there are none."""
        order_by = f" ORDER BY {order}" if order else ""
        average = self._db.query(
            "average_event_bytes",
            f"SELECT AVG(length(payload)) FROM (SELECT payload FROM events"  # noqa: S608
            f" WHERE {where}{order_by} LIMIT {SIZE_SAMPLE_EVENTS})",
        )[0][0]
        if average is None:
            return None
        return int(average) + EVENT_ROW_OVERHEAD_BYTES
