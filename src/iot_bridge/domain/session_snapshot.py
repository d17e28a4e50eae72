"""Detector snapshots: their shape (one ``TypedDict`` per part), strict reading, old versions.

A snapshot is the JSON-ready state of one ``SessionDetector``: the device's
fields at the top with its ``presence``, and while a session runs (or
starts), ``session`` with one object per part of ``session_parts.py``
(``debounce``, ``totals`` with its ``checkpoint``, ``heartbeat``). Each part
writes and reads its own object with typed code; ``SnapshotReader`` reads a
field strictly, and every bad field is a ValueError naming its path.
``upgraded`` brings versions 1 to 3 (the flat layout of earlier bridges) to
the current shape.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import Any, TypedDict, TypeVar

__all__ = [
    "SNAPSHOT_VERSION",
    "DebounceSnapshot",
    "DetectorSnapshot",
    "HeartbeatSnapshot",
    "PresenceSnapshot",
    "SessionSnapshot",
    "SnapshotReader",
    "TotalsCheckpointSnapshot",
    "TotalsSnapshot",
    "upgraded",
]

_E = TypeVar("_E", bound=enum.Enum)


class SnapshotReader:
    """Typed getters over one mapping of a snapshot; ``path`` names it in errors."""

    __slots__ = ("_data", "_path")

    def __init__(self, data: Any, path: str) -> None:
        """Wrap ``data``; ValueError if it is not a mapping with string keys."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{path}: expected an object, got {type(data).__name__}")
        self._data: Mapping[str, Any] = data
        self._path = path

    def _get(self, key: str) -> Any:
        try:
            return self._data[key]
        except KeyError:
            raise ValueError(f"{self._path}.{key}: missing") from None

    def _fail(self, key: str, expected: str, value: Any) -> ValueError:
        return ValueError(f"{self._path}.{key}: expected {expected}, got {value!r}")

    def check(self, condition: bool, message: str) -> None:
        """Raise ValueError with ``message`` unless ``condition`` holds."""
        if not condition:
            raise ValueError(f"{self._path}: {message}")

    def number(self, key: str) -> float:
        """A finite int or float (never a bool), as float."""
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(key, "a number", value)
        result = float(value)
        if not math.isfinite(result):
            raise self._fail(key, "a finite number", value)
        return result

    def optional_number(self, key: str) -> float | None:
        """A finite number or None."""
        return None if self._get(key) is None else self.number(key)

    def integer(self, key: str) -> int:
        """An int (never a bool)."""
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, "an integer", value)
        return value

    def boolean(self, key: str) -> bool:
        """A bool."""
        value = self._get(key)
        if not isinstance(value, bool):
            raise self._fail(key, "true or false", value)
        return value

    def optional_bool(self, key: str) -> bool | None:
        """A bool or None."""
        return None if self._get(key) is None else self.boolean(key)

    def string(self, key: str) -> str:
        """A str."""
        value = self._get(key)
        if not isinstance(value, str):
            raise self._fail(key, "a string", value)
        return value

    def optional_string(self, key: str) -> str | None:
        """A str or None."""
        return None if self._get(key) is None else self.string(key)

    def choice(self, key: str, enum_type: type[_E]) -> _E:
        """One of the values of ``enum_type``."""
        value = self._get(key)
        for member in enum_type:
            if member.value == value:
                return member
        raise self._fail(key, f"one of {[m.value for m in enum_type]}", value)

    def mapping(self, key: str) -> SnapshotReader:
        """A nested object, as a reader."""
        return SnapshotReader(self._get(key), f"{self._path}.{key}")

    def optional_mapping(self, key: str) -> SnapshotReader | None:
        """A nested object (as a reader) or None."""
        value = self._get(key)
        return None if value is None else SnapshotReader(value, f"{self._path}.{key}")


# ------------------------------------------------------------ the current shape

SNAPSHOT_VERSION = 4

# Times: a timer's due time is null when no timer runs (+infinity in the
# detector); the detector's clock is null before its first call (-infinity).


class TotalsCheckpointSnapshot(TypedDict):
    """``SessionTotals.checkpoint``: the totals at the first low reading of a stop."""

    working_s: float
    power_integral_ws: float
    peak_power_w: float
    energy_wh: float | None


class TotalsSnapshot(TypedDict):
    """``SessionTotals``."""

    segment_started_at: float
    segment_working: bool
    working_s: float
    power_integral_ws: float
    peak_power_w: float
    energy_wh: float | None
    checkpoint: TotalsCheckpointSnapshot | None  # set exactly while stopping


class HeartbeatSnapshot(TypedDict):
    """``HeartbeatSchedule`` (its interval is the device's ``heartbeat_interval_s``)."""

    due: float | None
    base: float
    number: int
    last_at: float
    last_working_s: float
    last_power_integral_ws: float


class DebounceSnapshot(TypedDict):
    """``Debounce``, while one runs (starting or stopping)."""

    due: float
    first_low_at: float
    state_before_stop: str


class SessionSnapshot(TypedDict):
    """The session (or the start) in progress."""

    session_id: str | None  # None while starting
    started_at: float
    debounce: DebounceSnapshot | None  # set exactly while starting or stopping
    totals: TotalsSnapshot
    heartbeat: HeartbeatSnapshot


class PresenceSnapshot(TypedDict):
    """``DevicePresence``."""

    online: bool | None
    announced_online: bool
    last_seen: float | None
    silence_due: float | None  # set exactly while announced online


class DetectorSnapshot(TypedDict):
    """One detector; ``session`` is None exactly when ``state`` is idle."""

    version: int
    device_id: str
    state: str
    clock: float | None
    power_w: float | None
    energy_counter_wh: float | None
    energy_total_wh: float | None
    heartbeat_interval_s: float
    presence: PresenceSnapshot
    session: SessionSnapshot | None


# ------------------------------------------------------------ earlier versions

# Version 1 spelled some session keys in abbreviations (version 2 spelled them out).
_V1_SESSION_KEYS = {
    "state_due": "debounce_due",
    "seg_t": "segment_started_at",
    "seg_working": "segment_working",
    "integral_ws": "power_integral_ws",
    "peak_w": "peak_power_w",
    "hb_due": "heartbeat_due",
    "hb_base": "heartbeat_base",
    "hb_k": "heartbeat_number",
    "hb_prev_t": "last_heartbeat_at",
    "hb_prev_working_s": "last_heartbeat_working_s",
    "hb_prev_integral_ws": "last_heartbeat_power_integral_ws",
}
_V1_STOPPING_KEYS = {
    "low_at": "first_low_at",
    "prev_state": "state_before_stop",
    "integral_ws": "power_integral_ws",
    "peak_w": "peak_power_w",
}

# Versions 1 to 3 kept the session flat: (part, its key) of each session key.
_V3_SESSION_KEYS = {
    "session_id": (None, "session_id"),
    "started_at": (None, "started_at"),
    "debounce_due": ("debounce", "due"),
    "segment_started_at": ("totals", "segment_started_at"),
    "segment_working": ("totals", "segment_working"),
    "working_s": ("totals", "working_s"),
    "power_integral_ws": ("totals", "power_integral_ws"),
    "peak_power_w": ("totals", "peak_power_w"),
    "energy_wh": ("totals", "energy_wh"),
    "heartbeat_due": ("heartbeat", "due"),
    "heartbeat_base": ("heartbeat", "base"),
    "heartbeat_number": ("heartbeat", "number"),
    "last_heartbeat_at": ("heartbeat", "last_at"),
    "last_heartbeat_working_s": ("heartbeat", "last_working_s"),
    "last_heartbeat_power_integral_ws": ("heartbeat", "last_power_integral_ws"),
}
# ... and the device's presence at the top.
_V3_PRESENCE_KEYS = ("online", "announced_online", "last_seen", "silence_due")
# ... and the stop debounce in ``stopping`` (null when not stopping).
_V3_STOPPING_KEYS = {
    "first_low_at": ("debounce", "first_low_at"),
    "state_before_stop": ("debounce", "state_before_stop"),
    "working_s": ("checkpoint", "working_s"),
    "power_integral_ws": ("checkpoint", "power_integral_ws"),
    "peak_power_w": ("checkpoint", "peak_power_w"),
    "energy_wh": ("checkpoint", "energy_wh"),
}


def _renamed(data: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    return {names.get(key, key): value for key, value in data.items()}


def _nested_session(session: Mapping[str, Any]) -> dict[str, Any]:
    """A version 1-3 session in the current shape; a missing key stays missing."""
    nested: dict[str, Any] = {}
    parts: dict[str, dict[str, Any]] = {"debounce": {}, "totals": {}, "heartbeat": {}}
    for key, value in session.items():
        part, name = _V3_SESSION_KEYS.get(key, (None, key))
        (nested if part is None else parts[part])[name] = value
    if "stopping" in session:
        stopping = session["stopping"]
        reader = SnapshotReader(session, "snapshot.session")
        checkpoint: dict[str, Any] | None = None
        if reader.optional_mapping("stopping") is None:
            parts["debounce"].update(first_low_at=0.0, state_before_stop="idle")
        else:
            checkpoint = {}
            for key, value in stopping.items():
                part, name = _V3_STOPPING_KEYS.get(key, (None, key))
                if part == "checkpoint":
                    checkpoint[name] = value
                elif part is not None:
                    parts[part][name] = value
        parts["totals"]["checkpoint"] = checkpoint
    nested.pop("stopping", None)
    nested.update(parts)
    if parts["debounce"].get("due", 0.0) is None:
        nested["debounce"] = None  # no debounce ran
    return nested


def upgraded(data: Any) -> Any:
    """A snapshot in the current version's shape; ValueError for an unknown version.

    Version 1 abbreviated some keys; version 2 had no ``energy_total_wh`` (the
    total starts at 0 where a counter was known: it counts from the upgrade
    on; else when the first one arrives); versions 1 to 3 kept the session
    flat, with the stop debounce's figures in ``session.stopping``, and the
    presence fields at the top. A key missing in the old snapshot stays
    missing, so that reading names it.
    """
    version = SnapshotReader(data, "snapshot").integer("version")
    if version == SNAPSHOT_VERSION:
        return data
    if version not in (1, 2, 3):
        raise ValueError("snapshot: unsupported version")
    upgraded_data = dict(data)
    if version < 3 and "energy_total_wh" not in upgraded_data:
        upgraded_data["energy_total_wh"] = (
            None if upgraded_data.get("energy_counter_wh") is None else 0.0
        )
    upgraded_data["presence"] = {
        key: upgraded_data.pop(key) for key in _V3_PRESENCE_KEYS if key in upgraded_data
    }
    session = data.get("session")
    if isinstance(session, Mapping):
        if version == 1:
            session = _renamed(session, _V1_SESSION_KEYS)
            stopping = session.get("stopping")
            if isinstance(stopping, Mapping):
                session["stopping"] = _renamed(stopping, _V1_STOPPING_KEYS)
        upgraded_data["session"] = _nested_session(session)
    upgraded_data["version"] = SNAPSHOT_VERSION
    return upgraded_data
