"""Events the detector emits, shaped as CONTRACT section 6.

Each event type's ``data`` is a ``TypedDict`` below: the detector builds them
and every reader reads them through these types (``Event.ended_data()`` and
its siblings narrow an event to its type's ``data``), so a key's name is
checked by mypy on both sides.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias, TypedDict, cast


class EventType(enum.StrEnum):
    """The six event types Odoo receives."""

    SESSION_STARTED = "session_started"
    SESSION_HEARTBEAT = "session_heartbeat"
    SESSION_STOPPED = "session_stopped"
    SESSION_TIMEOUT = "session_timeout"
    DEVICE_ONLINE = "device_online"
    DEVICE_OFFLINE = "device_offline"


EndReason: TypeAlias = Literal["power_off", "timeout", "device_removed"]


class SessionStartedData(TypedDict):
    """``data`` of ``session_started``."""

    started_at: str  # ISO-8601: the first reading that crossed the standby threshold
    state: str  # "standby" or "working"
    power_w: float | None


class SessionHeartbeatData(TypedDict):
    """``data`` of ``session_heartbeat``: the interval's and the session's figures."""

    state: str  # "standby", "working" or "stopping"
    power_w: float
    interval_s: float
    interval_avg_power_w: float
    interval_working_s: float
    interval_standby_s: float
    session_duration_s: float
    session_working_s: float
    session_standby_s: float
    session_energy_wh: float | None  # None while the device has reported no counter


class SessionEndedData(TypedDict):
    """``data`` of ``session_stopped`` and ``session_timeout``."""

    started_at: str
    ended_at: str
    duration_s: float
    working_s: float
    standby_s: float
    avg_power_w: float
    peak_power_w: float
    energy_wh: float | None  # None while the device has reported no counter
    reason: EndReason


class DevicePresenceData(TypedDict):
    """``data`` of ``device_online`` and ``device_offline``."""

    last_seen: str | None


EventData: TypeAlias = (
    SessionStartedData | SessionHeartbeatData | SessionEndedData | DevicePresenceData
)

ENDED_TYPES: frozenset[EventType] = frozenset(
    {EventType.SESSION_STOPPED, EventType.SESSION_TIMEOUT}
)
PRESENCE_TYPES: frozenset[EventType] = frozenset(
    {EventType.DEVICE_ONLINE, EventType.DEVICE_OFFLINE}
)


def iso_utc(ts: float) -> str:
    """Format unix seconds as UTC ISO-8601 with offset and microseconds."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class Event:
    """One event for Odoo. ``timestamp`` is unix seconds; ``data`` is JSON-ready.

    ``data`` is the ``TypedDict`` of ``event_type``; the ``*_data()`` methods
    give it under its own type (None for an event of another type).
    """

    event_uid: str
    event_type: EventType
    device_id: str
    machine_name: str
    session_id: str | None
    timestamp: float
    data: EventData

    def started_data(self) -> SessionStartedData | None:
        """``data`` of a ``session_started`` event, else None."""
        if self.event_type is EventType.SESSION_STARTED:
            return cast(SessionStartedData, self.data)
        return None

    def heartbeat_data(self) -> SessionHeartbeatData | None:
        """``data`` of a ``session_heartbeat`` event, else None."""
        if self.event_type is EventType.SESSION_HEARTBEAT:
            return cast(SessionHeartbeatData, self.data)
        return None

    def ended_data(self) -> SessionEndedData | None:
        """``data`` of a ``session_stopped`` or ``session_timeout`` event, else None."""
        if self.event_type in ENDED_TYPES:
            return cast(SessionEndedData, self.data)
        return None

    def presence_data(self) -> DevicePresenceData | None:
        """``data`` of a ``device_online`` or ``device_offline`` event, else None."""
        if self.event_type in PRESENCE_TYPES:
            return cast(DevicePresenceData, self.data)
        return None

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
