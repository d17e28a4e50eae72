"""Any JSON topic: power and energy found at configured dotted paths.

``power_path`` (or ``power_paths``, summed; one of them is required) and
``energy_path`` (or ``energy_paths``, summed; optional) are dotted paths such
as ``ENERGY.Power`` or ``meters.0.power``: a segment reads an object's key, or
an array's index when it is a decimal number. ``energy_unit`` is ``wh``
(default) or ``kwh``. A missing path or a ``null`` is a sign of life; with
several paths, a path missing from a message keeps its last value
(``_channels``). There is no availability topic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from iot_bridge.domain.readings import Reading
from iot_bridge.errors import ConfigIssue, PayloadError
from iot_bridge.parsers._base import GENERIC_JSON, INVALID_ENERGY, INVALID_POWER, NOT_AN_OBJECT
from iot_bridge.parsers._channels import ChannelState
from iot_bridge.parsers._options import list_option
from iot_bridge.parsers._values import (
    ParserFields,
    describe,
    energy_value,
    json_object,
    load_json,
    power_value,
    reading,
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


def compile_paths(
    options: Mapping[str, Any], key: str, issues: list[ConfigIssue]
) -> tuple[JsonPath, ...] | None:
    """``parser_options.<key>`` (a list of distinct dotted paths) compiled, or None.

    None when the option is absent or after adding issues.
    """
    texts = list_option(options, key, issues, "dotted paths")
    if texts is None:
        return None
    path = f"parser_options.{key}"
    before = len(issues)
    compiled: list[JsonPath] = []
    for position, text in enumerate(texts):
        if text in texts[:position]:
            issues.append(ConfigIssue(f"{path}.{position}", f"{text!r} is listed twice"))
            continue
        found = compile_path(text, f"{path}.{position}", issues)
        if found is not None:
            compiled.append(found)
    return tuple(compiled) if len(issues) == before else None


@dataclass(frozen=True, slots=True)
class PathSum:
    """Several power paths and/or energy paths of one device, each summed over its paths.

    ``absent`` is a value that means "not available" (zigbee2mqtt's 65535), or None.
    """

    power_paths: tuple[JsonPath, ...]
    energy_paths: tuple[JsonPath, ...]
    energy_to_wh: float
    absent: int | None

    def new_state(self) -> ChannelState:
        """A fresh per-path state for one device."""
        return ChannelState(
            [path.text for path in self.power_paths], [path.text for path in self.energy_paths]
        )

    def read(self, root: Any, channels: ChannelState) -> Reading:
        """Update each path the message carries; the reading is the sums."""
        absent = self.absent
        powers: list[tuple[int, float]] = []
        for slot, path in enumerate(self.power_paths):
            value = path.find(root, INVALID_POWER)
            if absent is None or type(value) is not int or value != absent:
                number = power_value(value, path.text)
                if number is not None:
                    powers.append((slot, number))
        counters: list[tuple[int, float]] = []
        for slot, path in enumerate(self.energy_paths):
            value = path.find(root, INVALID_ENERGY)
            if absent is None or type(value) is not int or value != absent:
                number = energy_value(value, path.text, self.energy_to_wh)
                if number is not None:
                    counters.append((slot, number))
        return channels.update(powers, counters)


def _root(payload: bytes) -> Any:
    root = load_json(payload)
    if type(root) is not dict and type(root) is not list:
        raise PayloadError(NOT_AN_OBJECT, f"the payload is {describe(root)}, not an object")
    return root


@dataclass(frozen=True, slots=True)
class GenericJsonParser(ParserFields):
    """Power (W) and energy (Wh or kWh) at configured paths of a JSON payload."""

    power_path: JsonPath
    energy_path: JsonPath | None
    energy_to_wh: float
    channels: None = None
    parser_type: str = field(default=GENERIC_JSON, init=False)

    def parse(self, topic: str, payload: bytes) -> Reading:
        """The payload must be a JSON object or array; the paths are read from it."""
        root = _root(payload)
        power_w = power_value(self.power_path.find(root, INVALID_POWER), self.power_path.text)
        energy_wh = None
        if self.energy_path is not None:
            energy_wh = energy_value(
                self.energy_path.find(root, INVALID_ENERGY),
                self.energy_path.text,
                self.energy_to_wh,
            )
        return reading(power_w, energy_wh)


@dataclass(frozen=True, slots=True)
class PathSumParser(ParserFields):
    """``power_paths``/``energy_paths`` of ``generic_json`` and ``zigbee2mqtt``: sums of values.

    ``objects_only``: the payload must be a JSON object (zigbee2mqtt's state),
    else an object or an array.
    """

    paths: PathSum
    channels: ChannelState
    parser_type: str
    objects_only: bool

    def parse(self, topic: str, payload: bytes) -> Reading:
        """Each path the payload carries updates its value; the reading is the sums."""
        root = json_object(payload) if self.objects_only else _root(payload)
        return self.paths.read(root, self.channels)


def build_generic_json(
    mqtt_topic: str, levels: list[str], options: Mapping[str, Any], issues: list[ConfigIssue]
) -> GenericJsonParser | PathSumParser | None:
    """The ``generic_json`` parser for ``mqtt_topic``, or None after adding issues."""
    before = len(issues)
    power_path = power_paths = energy_path = energy_paths = None
    if "power_path" in options and "power_paths" in options:
        issues.append(ConfigIssue("parser_options.power_paths", "set power_path or power_paths"))
    elif "power_paths" in options:
        power_paths = compile_paths(options, "power_paths", issues)
    elif "power_path" in options:
        power_path = compile_path(options["power_path"], "parser_options.power_path", issues)
    else:
        issues.append(ConfigIssue("parser_options.power_path", "is required for generic_json"))
    if "energy_path" in options and "energy_paths" in options:
        issues.append(ConfigIssue("parser_options.energy_paths", "set energy_path or energy_paths"))
    elif "energy_paths" in options:
        energy_paths = compile_paths(options, "energy_paths", issues)
    elif "energy_path" in options:
        energy_path = compile_path(options["energy_path"], "parser_options.energy_path", issues)
    has_energy = "energy_path" in options or "energy_paths" in options
    unit = options.get("energy_unit", "wh")
    energy_to_wh = _ENERGY_UNITS.get(unit.lower()) if isinstance(unit, str) else None
    if energy_to_wh is None:
        issues.append(ConfigIssue("parser_options.energy_unit", f"{unit!r} is not 'wh' or 'kwh'"))
    elif "energy_unit" in options and not has_energy:
        issues.append(ConfigIssue("parser_options.energy_unit", "needs parser_options.energy_path"))
    if len(issues) > before or energy_to_wh is None:
        return None
    if power_paths is None and energy_paths is None:
        if power_path is None:
            return None
        return GenericJsonParser(
            mqtt_topic=mqtt_topic,
            data_topics=(mqtt_topic,),
            availability_topic=None,
            power_path=power_path,
            energy_path=energy_path,
            energy_to_wh=energy_to_wh,
        )
    paths = PathSum(
        power_paths=power_paths or ((power_path,) if power_path else ()),
        energy_paths=energy_paths or ((energy_path,) if energy_path else ()),
        energy_to_wh=energy_to_wh,
        absent=None,
    )
    return PathSumParser(
        mqtt_topic=mqtt_topic,
        data_topics=(mqtt_topic,),
        availability_topic=None,
        paths=paths,
        channels=paths.new_state(),
        parser_type=GENERIC_JSON,
        objects_only=False,
    )
