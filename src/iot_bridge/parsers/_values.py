"""Value checks shared by every parser: JSON, power, energy, availability.

These run for every message, so they are plain functions on built-in types:
no validation library, no allocation beyond what the result needs.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from typing import Any, Final

import orjson

from iot_bridge.domain.readings import Reading
from iot_bridge.errors import PayloadError
from iot_bridge.parsers._base import (
    EMPTY_PAYLOAD,
    INVALID_AVAILABILITY,
    INVALID_ENERGY,
    INVALID_JSON,
    INVALID_POWER,
    INVALID_UTF8,
    NOT_AN_OBJECT,
    SIGN_OF_LIFE,
)

# No smart plug draws a gigawatt: a bigger value is a broken payload.
MAX_POWER_W: Final = 1e9
# Energy counters may be large, but must be finite.
MAX_ENERGY: Final = sys.float_info.max

_INF: Final = math.inf
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError

# A plain-text number as Shelly Gen1 publishes it ("0.0", "81010", "2.55"):
# decimal digits only, so "nan", "inf", "1_000", "0x10" and "true" are refused.
_PLAIN_NUMBER = re.compile(rb"[ \t\r\n]*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?[ \t\r\n]*")

_AVAILABILITY_WORDS: Final[dict[bytes, bool]] = {
    b"true": True,
    b"false": False,
    b"1": True,
    b"0": False,
    b"online": True,
    b"offline": False,
}


def describe(value: object) -> str:
    """Name a JSON value's kind for an error detail ("a string", "an object")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


def load_json(payload: bytes) -> Any:
    """Decode a JSON payload; ``PayloadError`` says why it cannot be decoded.

    orjson refuses invalid UTF-8, ``NaN``/``Infinity`` literals and numbers
    that overflow a double (``1e999``), so every number it returns is finite.
    """
    try:
        return _loads(payload)
    except _JSONDecodeError as err:
        raise undecodable(payload, str(err)) from err


def undecodable(payload: bytes, json_message: str) -> PayloadError:
    """The error for a payload orjson refused, classified (slow path only)."""
    if not payload.strip():
        return PayloadError(EMPTY_PAYLOAD, "the payload is empty")
    try:
        bytes(payload).decode("utf-8")
    except UnicodeDecodeError as err:
        return PayloadError(INVALID_UTF8, f"byte {err.start} is not valid UTF-8")
    if "infinity" in json_message:
        return PayloadError(INVALID_JSON, "a number overflows to infinity")
    return PayloadError(INVALID_JSON, json_message)


def json_object(payload: bytes) -> dict[str, Any]:
    """Decode a payload that must be a JSON object."""
    try:
        message = _loads(payload)
    except _JSONDecodeError as err:
        raise undecodable(payload, str(err)) from err
    if type(message) is dict:
        return message
    raise PayloadError(NOT_AN_OBJECT, f"the payload is {describe(message)}, not an object")


def power_value(value: Any, where: str) -> float | None:
    """A power in W: ``None`` stays ``None``, else a number in [-1e9, 1e9].

    The sign is kept: ``reading`` (or the channel sum) reads a negative power as 0 W.
    """
    if value is None:
        return None
    kind = type(value)
    if kind is float or kind is int:  # `type is` on purpose: a bool is not a number here
        # One chained comparison refuses NaN, infinities and absurd values.
        if -MAX_POWER_W <= value <= MAX_POWER_W:
            return float(value)
        raise PayloadError(INVALID_POWER, f"{where} = {value!r} is not between -1e9 and 1e9 W")
    raise PayloadError(INVALID_POWER, f"{where} is {describe(value)}, not a number")


def reading(power_w: float | None, energy_wh: float | None) -> Reading:
    """One message's reading: a negative power is 0 W (flagged); nothing at all, a sign of life."""
    if power_w is None:
        return SIGN_OF_LIFE if energy_wh is None else Reading(None, energy_wh)
    if power_w < 0.0:
        return Reading(0.0, energy_wh, True)
    return Reading(power_w, energy_wh)


def energy_value(value: Any, where: str, to_wh: float) -> float | None:
    """An energy counter converted to Wh: ``None`` stays ``None``, else finite and >= 0."""
    if value is None:
        return None
    kind = type(value)
    if kind is float or kind is int:
        energy_wh = float(value) * to_wh
        if 0 <= energy_wh < _INF:
            return energy_wh
        raise PayloadError(INVALID_ENERGY, f"{where} = {value!r} is not a finite number >= 0")
    raise PayloadError(INVALID_ENERGY, f"{where} is {describe(value)}, not a number")


def plain_number(payload: bytes, minimum: float, maximum: float, reason: str, where: str) -> float:
    """A number in [minimum, maximum] sent as plain text (Shelly Gen1 topics)."""
    # Fast path: the usual "12.34" is also a JSON number, and orjson reads it quickly.
    try:
        value = _loads(payload)
    except _JSONDecodeError:
        value = None
    if (type(value) is float or type(value) is int) and minimum <= value <= maximum:
        return float(value)
    # Slow path: the strict decimal grammar ("+5.", "007") decides, and explains a refusal.
    if _PLAIN_NUMBER.fullmatch(payload) is None:
        raise _plain_error(payload, reason, where)
    number = float(payload)
    if minimum <= number <= maximum:
        return number
    raise PayloadError(
        reason, f"{where} = {payload[:40]!r} is not between {minimum:g} and {maximum:g}"
    )


def _plain_error(payload: bytes, reason: str, where: str) -> PayloadError:
    if not payload.strip():
        return PayloadError(EMPTY_PAYLOAD, "the payload is empty")
    try:
        bytes(payload).decode("utf-8")
    except UnicodeDecodeError as err:
        return PayloadError(INVALID_UTF8, f"byte {err.start} is not valid UTF-8")
    return PayloadError(reason, f"{where} = {payload[:40]!r} is not a plain decimal number")


def availability(payload: bytes) -> bool:
    """Online (``True``) or offline, from any family's availability payload.

    Accepted (case-insensitive, surrounding whitespace ignored): ``true``/``false``
    (Shelly), ``1``/``0`` (Shelly Gen1), ``Online``/``Offline`` (Tasmota),
    ``online``/``offline`` and ``{"state": "online"|"offline"}`` (zigbee2mqtt).
    """
    state = _AVAILABILITY_WORDS.get(payload.strip().lower())
    if state is not None:
        return state
    try:
        message = _loads(payload)
    except _JSONDecodeError as err:
        error = undecodable(payload, str(err))
        if error.reason == INVALID_JSON:
            raise _availability_error(payload) from err
        raise error from err
    if type(message) is dict:
        message = message.get("state")
    if type(message) is str:
        state = _AVAILABILITY_WORDS.get(message.strip().lower().encode())
        if state is not None:
            return state
    raise _availability_error(payload)


def _availability_error(payload: bytes) -> PayloadError:
    return PayloadError(
        INVALID_AVAILABILITY,
        f"{payload[:60]!r} is none of true/false, 1/0, online/offline, "
        '{"state": "online"|"offline"}',
    )


class ParsesAvailability:
    """Mixin: the availability payloads every family understands."""

    __slots__ = ()

    def parse_availability(self, payload: bytes) -> bool:
        """Online (``True``) or offline; ``PayloadError`` for anything else."""
        return availability(payload)


@dataclass(frozen=True, slots=True)
class ParserFields(ParsesAvailability):
    """The topics every parser has (``DeviceParser``); families add their own fields."""

    mqtt_topic: str
    data_topics: tuple[str, ...]
    availability_topic: str | None
