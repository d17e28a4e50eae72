"""Events the detector emits, shaped as CONTRACT section 6."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


class EventType(enum.StrEnum):
    """The six event types Odoo receives."""

    SESSION_STARTED = "session_started"
    SESSION_HEARTBEAT = "session_heartbeat"
    SESSION_STOPPED = "session_stopped"
    SESSION_TIMEOUT = "session_timeout"
    DEVICE_ONLINE = "device_online"
    DEVICE_OFFLINE = "device_offline"


def iso_utc(ts: float) -> str:
    """Format unix seconds as UTC ISO-8601 with offset and microseconds."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class Event:
    """One event for Odoo. ``timestamp`` is unix seconds; ``data`` is JSON-ready."""

    event_uid: str
    event_type: EventType
    device_id: str
    machine_name: str
    session_id: str | None
    timestamp: float
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The EVENT object of CONTRACT section 6."""
        return {
            "event_uid": self.event_uid,
            "event_type": str(self.event_type),
            "device_id": self.device_id,
            "machine_name": self.machine_name,
            "session_id": self.session_id,
            "timestamp": iso_utc(self.timestamp),
            "data": self.data,
        }


class EncodedEvent(Mapping[str, Any]):
    """An EVENT object as the JSON text it is stored as, decoded only when read.

    Delivery hands these to the sender, which puts ``json`` into the request
    body as it is: an event is encoded once, when it is committed.
    """

    __slots__ = ("_decoded", "event_uid", "json")

    def __init__(self, event_uid: str, json_text: bytes) -> None:
        """``json_text`` is ``Event.to_dict()`` encoded as JSON (UTF-8)."""
        self.event_uid = event_uid
        self.json = json_text
        self._decoded: dict[str, Any] | None = None

    def _fields(self) -> dict[str, Any]:
        if self._decoded is None:
            decoded = json.loads(self.json)
            self._decoded = decoded if isinstance(decoded, dict) else {}
        return self._decoded

    def __getitem__(self, key: str) -> Any:
        return self._fields()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields())

    def __len__(self) -> int:
        return len(self._fields())
