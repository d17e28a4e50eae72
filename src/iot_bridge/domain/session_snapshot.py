"""Detector snapshots: their shape (a ``TypedDict`` per part), strict reading, old versions.

A snapshot is the JSON-ready state of one ``SessionDetector``. Each part of
``session_parts.py`` writes its own fields (``PresenceSnapshot``,
``TotalsSnapshot``, ``HeartbeatSnapshot``, ``DebounceSnapshot``...) and reads
them back with typed code; the detector puts them together: the device's
fields and its presence at the top, and while a session runs (or starts),
``session`` with the totals, the heartbeat schedule and the debounce, and
``session.stopping`` with the stop debounce and the totals' checkpoint while
stopping. The parts' fields sit side by side rather than nested, so that a
snapshot stays two small objects (three while stopping), as cheap to build
and to keep as the format was before the detector had parts.

``SnapshotReader`` reads a field strictly: every bad field is a ValueError
naming its path. ``upgraded`` reads versions 1 and 2 as the current one.
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
    "StopDebounceSnapshot",
    "StoppingSnapshot",
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

SNAPSHOT_VERSION = 3

# Times: a timer's due time is null when no timer runs (+infinity in the
# detector); the detector's clock is null before its first call (-infinity).


class PresenceSnapshot(TypedDict):
    """``DevicePresence``."""

    online: bool | None
    announced_online: bool
    last_seen: float | None
    silence_due: float | None  # set exactly while announced online


class TotalsSnapshot(TypedDict):
    """``SessionTotals`` (its checkpoint is in ``stopping``)."""

    segment_started_at: float
    segment_working: bool
    working_s: float
    power_integral_ws: float
    peak_power_w: float
    energy_wh: float | None


class HeartbeatSnapshot(TypedDict):
    """``HeartbeatSchedule`` (its interval is the device's ``heartbeat_interval_s``)."""

    heartbeat_due: float | None
    heartbeat_base: float
    heartbeat_number: int
    last_heartbeat_at: float
    last_heartbeat_working_s: float
    last_heartbeat_power_integral_ws: float


class DebounceSnapshot(TypedDict):
    """``Debounce``: when the start or stop debounce ends (null: none runs)."""

    debounce_due: float | None


class StopDebounceSnapshot(TypedDict):
    """``Debounce`` while stopping: the first low reading and the state before it."""

    first_low_at: float
    state_before_stop: str


class TotalsCheckpointSnapshot(TypedDict):
    """``TotalsCheckpoint``: the totals at the first low reading of a stop."""

    working_s: float
    power_integral_ws: float
    peak_power_w: float
    energy_wh: float | None


class StoppingSnapshot(StopDebounceSnapshot, TotalsCheckpointSnapshot):
    """The stop debounce in progress."""


class SessionSnapshot(TotalsSnapshot, HeartbeatSnapshot, DebounceSnapshot):
    """The session (or the start) in progress."""

    session_id: str | None  # None while starting
    started_at: float
    stopping: StoppingSnapshot | None  # set exactly while stopping


class DetectorSnapshot(PresenceSnapshot):
    """One detector; ``session`` is None exactly when ``state`` is idle."""

    version: int
    device_id: str
    state: str
    clock: float | None
    power_w: float | None
    energy_counter_wh: float | None
    energy_total_wh: float | None
    heartbeat_interval_s: float
    session: SessionSnapshot | None


# ------------------------------------------------------------ earlier versions

# Version 1 spelled some keys in abbreviations; they are read under their new names.
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


def upgraded(data: Any) -> Any:
    """A snapshot in the current version's keys; ValueError for an unknown version.

    Version 2 had no ``energy_total_wh``: the total starts at 0 where a counter
    was known (it counts from the upgrade on), else when the first one arrives.
    Version 1 also spelled some session keys in abbreviations.
    """
    version = SnapshotReader(data, "snapshot").integer("version")
    if version == SNAPSHOT_VERSION:
        return data
    if version not in (1, 2):
        raise ValueError("snapshot: unsupported version")
    upgraded_data = dict(data)
    if "energy_total_wh" not in upgraded_data:
        upgraded_data["energy_total_wh"] = (
            None if upgraded_data.get("energy_counter_wh") is None else 0.0
        )
    if version == 2:
        return upgraded_data
    session = data.get("session")
    if isinstance(session, Mapping):
        session = {_V1_SESSION_KEYS.get(key, key): value for key, value in session.items()}
        stopping = session.get("stopping")
        if isinstance(stopping, Mapping):
            session["stopping"] = {
                _V1_STOPPING_KEYS.get(key, key): value for key, value in stopping.items()
            }
        upgraded_data["session"] = session
    return upgraded_data
