"""Any JSON topic: power and energy found at configured dotted paths.

``power_path`` (required) and ``energy_path`` (optional) are dotted paths such
as ``ENERGY.Power`` or ``meters.0.power``: a segment reads an object's key, or
an array's index when it is a decimal number. ``energy_unit`` is ``wh``
(default) or ``kwh``. A missing path or a ``null`` is a sign of life.
There is no availability topic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from iot_bridge.domain.readings import Reading
from iot_bridge.errors import ConfigIssue, PayloadError
from iot_bridge.parsers._base import INVALID_ENERGY, INVALID_POWER, NOT_AN_OBJECT, SIGN_OF_LIFE
from iot_bridge.parsers._values import (
    ParsesAvailability,
    describe,
    energy_value,
    load_json,
    power_value,
)

_ENERGY_UNITS: Final = {"wh": 1.0, "kwh": 1000.0}
_MAX_PATH_CHARS: Final = 256
_MAX_PATH_SEGMENTS: Final = 32


@dataclass(frozen=True, slots=True)
class JsonPath:
    """A dotted path compiled once: per segment, the key and (if numeric) the index."""

    text: str
    steps: tuple[tuple[str, int | None], ...]

    def find(self, root: Any, reason: str) -> Any:
        """The value at this path, or None when any step is missing or null."""
        value = root
        for position, (key, index) in enumerate(self.steps):
            kind = type(value)
            if kind is dict:
                value = value.get(key)
            elif kind is list and index is not None:
                value = value[index] if index < len(value) else None
            else:
                walked = ".".join(step for step, _ in self.steps[:position]) or "the payload"
                raise PayloadError(
                    reason, f"{self.text}: {walked} is {describe(value)}, cannot read {key!r}"
                )
            if value is None:
                return None
        return value


def compile_path(text: object, path: str, issues: list[ConfigIssue]) -> JsonPath | None:
    """Compile a dotted path option, or add an issue at ``path`` and return None."""
    if not isinstance(text, str) or not text:
        issues.append(ConfigIssue(path, "must be a non-empty dotted path such as ENERGY.Power"))
        return None
    segments = text.split(".")
    if len(text) > _MAX_PATH_CHARS or len(segments) > _MAX_PATH_SEGMENTS:
        issues.append(
            ConfigIssue(
                path,
                f"is longer than {_MAX_PATH_CHARS} characters or {_MAX_PATH_SEGMENTS} segments",
            )
        )
        return None
    if "" in segments:
        issues.append(ConfigIssue(path, f"{text!r} has an empty segment"))
        return None
    steps = tuple(
        (segment, int(segment) if segment.isascii() and segment.isdigit() else None)
        for segment in segments
    )
    return JsonPath(text=text, steps=steps)


@dataclass(frozen=True, slots=True)
class GenericJsonParser(ParsesAvailability):
    """Power (W) and energy (Wh or kWh) at configured paths of a JSON payload."""

    mqtt_topic: str
    data_topics: tuple[str, ...]
    power_path: JsonPath
    energy_path: JsonPath | None
    energy_to_wh: float
    availability_topic: str | None = None
    parser_type: str = field(default="generic_json", init=False)

    def parse(self, topic: str, payload: bytes) -> Reading:
        """The payload must be a JSON object or array; the paths are read from it."""
        root = load_json(payload)
        if type(root) is not dict and type(root) is not list:
            raise PayloadError(NOT_AN_OBJECT, f"the payload is {describe(root)}, not an object")
        power_w = power_value(self.power_path.find(root, INVALID_POWER), self.power_path.text)
        energy_wh = None
        if self.energy_path is not None:
            energy_wh = energy_value(
                self.energy_path.find(root, INVALID_ENERGY),
                self.energy_path.text,
                self.energy_to_wh,
            )
        if power_w is None and energy_wh is None:
            return SIGN_OF_LIFE
        return Reading(power_w, energy_wh)


def build_generic_json(
    mqtt_topic: str, levels: list[str], options: Mapping[str, Any], issues: list[ConfigIssue]
) -> GenericJsonParser | None:
    """The ``generic_json`` parser for ``mqtt_topic``, or None after adding issues."""
    before = len(issues)
    if "power_path" not in options:
        issues.append(ConfigIssue("parser_options.power_path", "is required for generic_json"))
        power_path = None
    else:
        power_path = compile_path(options["power_path"], "parser_options.power_path", issues)
    energy_path = None
    if "energy_path" in options:
        energy_path = compile_path(options["energy_path"], "parser_options.energy_path", issues)
    unit = options.get("energy_unit", "wh")
    energy_to_wh = _ENERGY_UNITS.get(unit.lower()) if isinstance(unit, str) else None
    if energy_to_wh is None:
        issues.append(ConfigIssue("parser_options.energy_unit", f"{unit!r} is not 'wh' or 'kwh'"))
    elif "energy_unit" in options and "energy_path" not in options:
        issues.append(ConfigIssue("parser_options.energy_unit", "needs parser_options.energy_path"))
    if len(issues) > before or power_path is None or energy_to_wh is None:
        return None
    return GenericJsonParser(
        mqtt_topic=mqtt_topic,
        data_topics=(mqtt_topic,),
        power_path=power_path,
        energy_path=energy_path,
        energy_to_wh=energy_to_wh,
    )
