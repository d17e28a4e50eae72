"""``make_parser``: validate a device's parser config once and build its parser."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from iot_bridge.errors import ConfigError, ConfigIssue
from iot_bridge.parsers._base import (
    GENERIC_JSON,
    PARSER_TYPES,
    SHELLY_GEN1,
    SHELLY_PM,
    SHELLY_RPC,
    TASMOTA,
    ZIGBEE2MQTT,
    DeviceParser,
)
from iot_bridge.parsers.generic_json import build_generic_json
from iot_bridge.parsers.shelly import build_shelly_pm, build_shelly_rpc
from iot_bridge.parsers.shelly_gen1 import build_shelly_gen1
from iot_bridge.parsers.tasmota import build_tasmota
from iot_bridge.parsers.zigbee2mqtt import build_zigbee2mqtt
from iot_bridge.topics import config_filter_levels

_Builder = Callable[[str, list[str], Mapping[str, Any], list[ConfigIssue]], DeviceParser | None]

# parser_type -> (builder, the parser_options keys it accepts)
_FAMILIES: Final[dict[str, tuple[_Builder, frozenset[str]]]] = {
    SHELLY_PM: (build_shelly_pm, frozenset({"channels"})),
    SHELLY_RPC: (build_shelly_rpc, frozenset({"component", "channels"})),
    SHELLY_GEN1: (build_shelly_gen1, frozenset({"channels"})),
    TASMOTA: (build_tasmota, frozenset({"channel", "channels"})),
    ZIGBEE2MQTT: (build_zigbee2mqtt, frozenset({"power_paths", "energy_paths"})),
    GENERIC_JSON: (
        build_generic_json,
        frozenset({"power_path", "power_paths", "energy_path", "energy_paths", "energy_unit"}),
    ),
}
assert tuple(_FAMILIES) == PARSER_TYPES, "one builder for each parser type, in order"


def make_parser(
    parser_type: str, mqtt_topic: str, options: Mapping[str, Any] | None = None
) -> DeviceParser:
    """Build the parser of one device from its ``parser_type``, ``mqtt_topic`` and options.

    An option set to ``None`` counts as absent. Raises ``ConfigError`` listing
    every problem, each with its path relative to the device object
    (``parser_type``, ``mqtt_topic``, ``parser_options.<key>``); nothing is
    built then.
    """
    family = _FAMILIES.get(parser_type) if isinstance(parser_type, str) else None
    if family is None:
        raise ConfigError(
            [
                ConfigIssue(
                    "parser_type",
                    f"{parser_type!r} is not one of {', '.join(PARSER_TYPES)}",
                )
            ],
            source="device",
        )
    build, allowed = family
    issues: list[ConfigIssue] = []
    if options is None:
        options = {}
    elif not isinstance(options, Mapping):
        issues.append(ConfigIssue("parser_options", "must be a mapping"))
        options = {}
    # A null option is an absent one, so a config model may dump every option key.
    options = {key: value for key, value in options.items() if value is not None}
    for key in options:
        if key not in allowed:
            accepted = ", ".join(sorted(allowed)) or "none"
            issues.append(
                ConfigIssue(
                    f"parser_options.{key}",
                    f"is not an option of {parser_type} (accepted: {accepted})",
                )
            )
    known = {key: value for key, value in options.items() if key in allowed}
    levels = config_filter_levels(mqtt_topic, issues)
    parser = None if levels is None else build(mqtt_topic, levels, known, issues)
    if issues or parser is None:
        raise ConfigError(issues or [ConfigIssue("mqtt_topic", "cannot be used")], source="device")
    return parser
