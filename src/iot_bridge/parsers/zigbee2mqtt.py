"""zigbee2mqtt: ``<base>/<friendly_name>`` JSON device state.

``power`` in W, ``energy`` in kWh (converted to Wh); either may be missing or
``null`` because fields update independently. Availability:
``<base>/<friendly_name>/availability`` with ``online``/``offline`` or
``{"state": "online"|"offline"}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from iot_bridge.domain.readings import Reading
from iot_bridge.errors import ConfigIssue
from iot_bridge.parsers._base import SIGN_OF_LIFE
from iot_bridge.parsers._topics import topic_issue
from iot_bridge.parsers._values import ParsesAvailability, energy_value, json_object, power_value

# Last levels zigbee2mqtt uses for other purposes than a device's state.
_NOT_STATE: Final = frozenset({"availability", "set", "get", "#"})


@dataclass(frozen=True, slots=True)
class Zigbee2MqttParser(ParsesAvailability):
    """A device's JSON state: ``power`` (W) and ``energy`` (kWh)."""

    mqtt_topic: str
    data_topics: tuple[str, ...]
    availability_topic: str | None
    parser_type: str = field(default="zigbee2mqtt", init=False)

    def parse(self, topic: str, payload: bytes) -> Reading:
        """A state without ``power`` and ``energy`` (a button, a link update) is a sign of life."""
        state = json_object(payload)
        power_w = power_value(state.get("power"), "power")
        energy_wh = energy_value(state.get("energy"), "energy", 1000.0)
        if power_w is None and energy_wh is None:
            return SIGN_OF_LIFE
        return Reading(power_w, energy_wh)


def build_zigbee2mqtt(
    mqtt_topic: str, levels: list[str], options: Mapping[str, Any], issues: list[ConfigIssue]
) -> Zigbee2MqttParser | None:
    """The ``zigbee2mqtt`` parser for ``mqtt_topic``, or None after adding issues."""
    # A friendly name may itself contain '/', so the topic is <base>/<name...>.
    if len(levels) < 2 or not levels[-1] or levels[-1] in _NOT_STATE or levels[1] == "bridge":
        issues.append(topic_issue(mqtt_topic, "<base>/<friendly_name> (the device state topic)"))
        return None
    return Zigbee2MqttParser(
        mqtt_topic=mqtt_topic,
        data_topics=(mqtt_topic,),
        availability_topic=f"{mqtt_topic}/availability",
    )
