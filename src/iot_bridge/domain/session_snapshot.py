"""Detector snapshots: the one list of persisted fields, and their strict reading.

Every bad field is a ValueError naming it.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

__all__ = [
    "BEFORE_STOP_KEYS",
    "DEVICE_FIELDS",
    "SESSION_FIELDS",
    "SNAPSHOT_VERSION",
    "STOPPING_FIELDS",
    "SnapshotReader",
    "compile_writer",
    "read_fields",
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

    def optional_mapping(self, key: str) -> SnapshotReader | None:
        """A nested object (as a reader) or None."""
        value = self._get(key)
        return None if value is None else SnapshotReader(value, f"{self._path}.{key}")


# ------------------------------------------------------------ the detector's fields
#
# One list says what a snapshot holds: (key in the snapshot, detector attribute,
# kind). ``write_fields`` and ``read_fields`` walk it, so a field added to the
# detector is persisted and restored by adding one line here.

SNAPSHOT_VERSION = 3

#   number / optional_number / integer / boolean / optional_bool / optional_string,
#   due: a time or +infinity (no timer) stored as null,
#   past: a time or -infinity (never) stored as null,
#   state: a DetectorState stored as its value.
SnapshotField = tuple[str, str, str]

DEVICE_FIELDS: tuple[SnapshotField, ...] = (
    ("online", "_online", "optional_bool"),
    ("announced_online", "_announced_online", "boolean"),
    ("clock", "_clock", "past"),
    ("last_seen", "_last_seen", "optional_number"),
    ("power_w", "_power_w", "optional_number"),
    ("energy_counter_wh", "_energy_counter_wh", "optional_number"),
    ("energy_total_wh", "_energy_total_wh", "optional_number"),
    ("silence_due", "_silence_due", "due"),
    ("heartbeat_interval_s", "_heartbeat_interval_s", "number"),
)
SESSION_FIELDS: tuple[SnapshotField, ...] = (
    ("session_id", "_session_id", "optional_string"),
    ("started_at", "_started_at", "number"),
    ("debounce_due", "_debounce_due", "due"),
    ("segment_started_at", "_segment_started_at", "number"),
    ("segment_working", "_segment_working", "boolean"),
    ("working_s", "_working_s", "number"),
    ("power_integral_ws", "_power_integral_ws", "number"),
    ("peak_power_w", "_peak_power_w", "number"),
    ("energy_wh", "_session_energy_wh", "optional_number"),
    ("heartbeat_due", "_heartbeat_due", "due"),
    ("heartbeat_base", "_heartbeat_base", "number"),
    ("heartbeat_number", "_heartbeat_number", "integer"),
    ("last_heartbeat_at", "_last_heartbeat_at", "number"),
    ("last_heartbeat_working_s", "_last_heartbeat_working_s", "number"),
    ("last_heartbeat_power_integral_ws", "_last_heartbeat_power_integral_ws", "number"),
)
STOPPING_FIELDS: tuple[SnapshotField, ...] = (
    ("first_low_at", "_first_low_at", "number"),
    ("state_before_stop", "_state_before_stop", "state"),
)
# The aggregates as they were at the first low reading (rolled back if the session stops).
BEFORE_STOP_KEYS: tuple[str, ...] = ("working_s", "power_integral_ws", "peak_power_w", "energy_wh")

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


_VALUE_CODE = {
    "due": "(None if o.{0} == _INF else o.{0})",
    "past": "(None if o.{0} == _NEG_INF else o.{0})",
    "state": "o.{0}._value_",  # the plain attribute: ``.value`` is a slow descriptor
}


def compile_writer(
    fields: tuple[SnapshotField, ...], leading: str = ""
) -> Callable[[Any], dict[str, Any]]:
    """A function returning the fields' dict (``leading``: more items first), compiled once.

    Snapshots are taken of every touched device in every batch, so this is a
    plain dict display (as ``dataclasses`` generates its methods), not a loop
    of ``getattr`` calls a few times slower.
    """
    items = ", ".join(
        [leading] * bool(leading)
        + [
            f"{key!r}: " + _VALUE_CODE.get(kind, "o.{0}").format(attribute)
            for key, attribute, kind in fields
        ]
    )
    namespace = {"_INF": math.inf, "_NEG_INF": -math.inf}
    return eval(f"lambda o: {{{items}}}", namespace)  # type: ignore[no-any-return]  # noqa: S307


def read_fields(owner: object, fields: tuple[SnapshotField, ...], reader: SnapshotReader) -> None:
    """Set the listed attributes of ``owner`` from ``reader``; ValueError names a bad field."""
    for key, attribute, kind in fields:
        value: Any
        if kind == "due":
            due = reader.optional_number(key)
            value = math.inf if due is None else due
        elif kind == "past":
            past = reader.optional_number(key)
            value = -math.inf if past is None else past
        elif kind == "state":
            value = reader.choice(key, type(getattr(owner, attribute)))
        else:
            value = getattr(reader, kind)(key)
        setattr(owner, attribute, value)


def upgraded(data: Any) -> Any:
    """A snapshot in the current version's keys; ValueError for an unknown version.

    Version 2 had no ``energy_total_wh``: the total starts at 0 where a counter
    was known (it counts from the upgrade on), else when the first one arrives.
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
