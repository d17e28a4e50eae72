"""Events the detector emits, shaped as CONTRACT section 6."""

from __future__ import annotations

import enum
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
