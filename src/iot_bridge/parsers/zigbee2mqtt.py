"""zigbee2mqtt: ``<base>/<friendly_name>`` JSON device state.

``power`` in W, ``energy`` in kWh (converted to Wh); either may be missing,
``null`` or ``65535`` (zigbee2mqtt's "not available") because fields update
independently. ``power_paths``/``energy_paths`` sum several fields instead (a
meter whose ``power`` is phase A only). Availability:
``<base>/<friendly_name>/availability`` with ``online``/``offline`` or
``{"state": "online"|"offline"}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from iot_bridge.domain.readings import Reading
from iot_bridge.errors import ConfigIssue
from iot_bridge.parsers._base import ZIGBEE2MQTT
from iot_bridge.parsers._values import (
    ParserFields,
    energy_value,
    json_object,
    power_value,
    reading,
)
from iot_bridge.parsers.generic_json import JsonPath, PathSum, PathSumParser, compile_paths
from iot_bridge.topics import topic_issue

# Last levels zigbee2mqtt uses for other purposes than a device's state.
_NOT_STATE: Final = frozenset({"availability", "set", "get", "#"})
# zigbee2mqtt's "not available" marker (an unsigned 16-bit all-ones).
NOT_AVAILABLE: Final = 65535


def _present(value: Any) -> Any:
    return None if type(value) is int and value == NOT_AVAILABLE else value


@dataclass(frozen=True, slots=True)
class Zigbee2MqttParser(ParserFields):
    """A device's JSON state: ``power`` (W) and ``energy`` (kWh)."""

    channels: None = None
    parser_type: str = field(default=ZIGBEE2MQTT, init=False)

    def parse(self, topic: str, payload: bytes) -> Reading:
        """A state without ``power`` and ``energy`` (a button, a link update) is a sign of life."""
        state = json_object(payload)
        power_w = power_value(_present(state.get("power")), "power")
        energy_wh = energy_value(_present(state.get("energy")), "energy", 1000.0)
        return reading(power_w, energy_wh)


def build_zigbee2mqtt(
    mqtt_topic: str, levels: list[str], options: Mapping[str, Any], issues: list[ConfigIssue]
) -> Zigbee2MqttParser | PathSumParser | None:
    """The ``zigbee2mqtt`` parser for ``mqtt_topic``, or None after adding issues."""
    before = len(issues)
    power_paths = compile_paths(options, "power_paths", issues)
    energy_paths = compile_paths(options, "energy_paths", issues)
    # A friendly name may itself contain '/', so the topic is <base>/<name...>.
    if len(levels) < 2 or not levels[-1] or levels[-1] in _NOT_STATE or levels[1] == "bridge":
        issues.append(topic_issue(mqtt_topic, "<base>/<friendly_name> (the device state topic)"))
    if len(issues) > before:
        return None
    availability = f"{mqtt_topic}/availability"
    if power_paths is None and energy_paths is None:
        return Zigbee2MqttParser(mqtt_topic, (mqtt_topic,), availability)
    paths = PathSum(
        power_paths=power_paths or (JsonPath("power", (("power", None),)),),
        energy_paths=energy_paths or (JsonPath("energy", (("energy", None),)),),
        energy_to_wh=1000.0,
        absent=NOT_AVAILABLE,
    )
    return PathSumParser(
        mqtt_topic=mqtt_topic,
        data_topics=(mqtt_topic,),
        availability_topic=availability,
        paths=paths,
        channels=paths.new_state(),
        parser_type=ZIGBEE2MQTT,
        objects_only=True,
    )
