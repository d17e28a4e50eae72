# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""One EVENT of CONTRACT section 6, read and checked before anything is stored.

``parse_event`` turns the JSON object the bridge posts into a ``BridgeEvent``
with naive UTC datetimes (as Odoo stores them) or raises ``EventError``
naming the field. Only what can never become acceptable is an error (the
bridge makes such an event dead at once); fields the addon does not read
are not required, and unknown ones are ignored, so a newer bridge that adds
a field is still understood.
"""

import math
from datetime import UTC, datetime

from . import rules

SESSION_TYPES = ("session_started", "session_heartbeat", "session_stopped", "session_timeout")
STATUS_TYPES = ("device_online", "device_offline")
EVENT_TYPES = SESSION_TYPES + STATUS_TYPES
CLOSING_TYPES = ("session_stopped", "session_timeout")
DETECTOR_STATES = ("idle", "starting", "standby", "working", "stopping")
END_REASONS = ("power_off", "timeout", "device_removed")
MAX_UID_CHARS = 128

_TIME, _NUMBER, _DURATION, _STATE, _REASON = "time", "number", "duration", "state", "reason"
# event_type -> data field -> (kind, required); None values count as absent
_DATA = {
    "session_started": {
        "started_at": (_TIME, True),
        "state": (_STATE, False),
        "power_w": (_NUMBER, False),
    },
    "session_heartbeat": {
        "state": (_STATE, False),
        "power_w": (_NUMBER, False),
        "session_duration_s": (_DURATION, True),
        "session_working_s": (_DURATION, True),
        "session_standby_s": (_DURATION, True),
        "session_energy_wh": (_NUMBER, False),
    },
    "session_stopped": {
        "started_at": (_TIME, True),
        "ended_at": (_TIME, True),
        "duration_s": (_DURATION, True),
        "working_s": (_DURATION, True),
        "standby_s": (_DURATION, True),
        "avg_power_w": (_NUMBER, False),
        "peak_power_w": (_NUMBER, False),
        "energy_wh": (_NUMBER, False),
        "reason": (_REASON, False),
    },
    "device_online": {"last_seen": (_TIME, False)},
    "device_offline": {"last_seen": (_TIME, False)},
}
_DATA["session_timeout"] = _DATA["session_stopped"]


class EventError(ValueError):
    """An event that can never be accepted; ``path`` names the field."""

    def __init__(self, path, message):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


class BridgeEvent:
    """A checked event: ``at`` and the times in ``data`` are naive UTC datetimes.

    ``stamp`` is ``at`` with its microseconds as sortable text: Odoo's
    Datetime fields keep whole seconds, and two events of one device may
    fall in the same second.
    """

    __slots__ = (
        "at",
        "data",
        "device_ident",
        "event_type",
        "machine_name",
        "raw",
        "session_uuid",
        "stamp",
        "uid",
    )

    def __init__(self, **values):
        for name in self.__slots__:
            setattr(self, name, values[name])

    @property
    def is_session_event(self):
        """True for the four session_* types."""
        return self.event_type in SESSION_TYPES


def utc_stamp(moment):
    """A naive UTC datetime as sortable text with microseconds."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")


def parse_time(value, path):
    """ISO-8601 text -> naive UTC datetime; text without an offset is taken as UTC."""
    if not isinstance(value, str) or not value:
        raise EventError(path, "must be an ISO-8601 date and time (like 2026-02-12T19:40:18+00:00)")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise EventError(path, f"{value[:64]!r} is not an ISO-8601 date and time") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _number(value, path, lowest=None):
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EventError(path, f"must be a number (got {type(value).__name__})")
    if not math.isfinite(value):
        raise EventError(path, "must be a finite number")
    if lowest is not None and value < lowest:
        raise EventError(path, f"must be at least {lowest:g}")
    return float(value)


def _text(event, key, required, limit=None):
    value = event.get(key)
    if value is None:
        if required:
            raise EventError(key, "is missing")
        return ""
    if not isinstance(value, str):
        raise EventError(key, f"must be a string (got {type(value).__name__})")
    if required and not value:
        raise EventError(key, "must not be empty")
    if limit and len(value) > limit:
        raise EventError(key, f"must be at most {limit} characters")
    return value


def _data_value(kind, value, path):
    if kind == _TIME:
        return parse_time(value, path)
    if kind == _NUMBER:
        return _number(value, path)
    if kind == _DURATION:
        return _number(value, path, lowest=0.0)
    allowed = DETECTOR_STATES if kind == _STATE else END_REASONS
    if value not in allowed:
        raise EventError(path, f"{value!r} is not one of {', '.join(allowed)}")
    return value


def parse_event(event):
    """Check one EVENT object and return it as a ``BridgeEvent``; ``EventError`` if malformed."""
    if not isinstance(event, dict):
        raise EventError("event", "must be a JSON object (params.event)")
    event_type = event.get("event_type")
    if event_type not in EVENT_TYPES:
        raise EventError("event_type", f"{event_type!r} is not one of {', '.join(EVENT_TYPES)}")
    uid = _text(event, "event_uid", True, MAX_UID_CHARS)
    if rules.text_problem(uid):
        raise EventError("event_uid", rules.text_problem(uid))
    device_ident = event.get("device_id")
    problem = rules.identifier_problem(device_ident)
    if problem:
        raise EventError("device_id", problem)
    machine_name = _text(event, "machine_name", False)
    session_uuid = ""
    if event_type in SESSION_TYPES:
        session_uuid = _text(event, "session_id", True, MAX_UID_CHARS)
    at = parse_time(event.get("timestamp"), "timestamp")
    raw_data = event.get("data")
    if not isinstance(raw_data, dict):
        raise EventError("data", "must be a JSON object")
    data = {}
    for key, (kind, required) in _DATA[event_type].items():
        value = raw_data.get(key)
        if value is None:
            if required:
                raise EventError(f"data.{key}", "is missing")
            continue
        data[key] = _data_value(kind, value, f"data.{key}")
    if event_type in CLOSING_TYPES:
        data.setdefault("reason", "timeout" if event_type == "session_timeout" else "power_off")
        if data["ended_at"] < data["started_at"]:
            raise EventError("data.ended_at", "must not be before data.started_at")
    return BridgeEvent(
        uid=uid,
        event_type=event_type,
        device_ident=device_ident,
        machine_name=machine_name,
        session_uuid=session_uuid,
        at=at,
        stamp=utc_stamp(at),
        data=data,
        raw=event,
    )
