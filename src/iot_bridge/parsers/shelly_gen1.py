"""Shelly Gen1: plain-number topics under ``shellies/<id>/``.

Power on ``relay/N/power`` or ``emeter/N/power`` (W); the energy counter on
the sibling ``relay/N/energy`` (watt-minutes) or ``emeter/N/total`` (Wh).
Availability: ``shellies/<id>/online`` with ``true``/``false`` (or ``1``/``0``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from iot_bridge.domain.readings import Reading
from iot_bridge.errors import ConfigIssue, PayloadError
from iot_bridge.parsers._base import INVALID_ENERGY, INVALID_POWER, UNKNOWN_TOPIC
from iot_bridge.parsers._topics import topic_issue
from iot_bridge.parsers._values import MAX_ENERGY, MAX_POWER_W, ParsesAvailability, plain_number

# kind -> (energy topic's last level, divisor to Wh)
_ENERGY_TOPIC: Final = {"relay": ("energy", 60.0), "emeter": ("total", 1.0)}


@dataclass(frozen=True, slots=True)
class ShellyGen1Parser(ParsesAvailability):
    """``<prefix>/relay/N/power`` or ``<prefix>/emeter/N/power`` and their energy sibling."""

    mqtt_topic: str
    data_topics: tuple[str, ...]
    availability_topic: str | None
    power_suffix: str
    energy_suffix: str
    energy_divisor: float
    parser_type: str = field(default="shelly_gen1", init=False)

    def parse(self, topic: str, payload: bytes) -> Reading:
        """The power topic gives ``Reading(power, None)``, the energy topic ``Reading(None, Wh)``.

        Payloads are plain decimal text; ``nan``, ``inf``, JSON strings and
        booleans are refused.
        """
        if topic.endswith(self.power_suffix):
            return Reading(plain_number(payload, MAX_POWER_W, INVALID_POWER, "power"), None)
        if topic.endswith(self.energy_suffix):
            energy = plain_number(payload, MAX_ENERGY, INVALID_ENERGY, self.energy_suffix[1:])
            return Reading(None, energy / self.energy_divisor)
        raise PayloadError(UNKNOWN_TOPIC, f"{topic!r} is not a data topic of {self.mqtt_topic!r}")


def build_shelly_gen1(
    mqtt_topic: str, levels: list[str], options: Mapping[str, Any], issues: list[ConfigIssue]
) -> ShellyGen1Parser | None:
    """The ``shelly_gen1`` parser for ``mqtt_topic``, or None after adding issues."""
    fits = (
        len(levels) >= 4
        and levels[-1] == "power"
        and levels[-3] in _ENERGY_TOPIC
        and levels[-2].isascii()
        and levels[-2].isdigit()
        and "/".join(levels[:-3]) != ""
    )
    if not fits:
        issues.append(
            topic_issue(mqtt_topic, "shellies/<id>/relay/N/power or shellies/<id>/emeter/N/power")
        )
        return None
    prefix = "/".join(levels[:-3])
    kind, channel = levels[-3], levels[-2]
    energy_level, divisor = _ENERGY_TOPIC[kind]
    energy_topic = f"{prefix}/{kind}/{channel}/{energy_level}"
    return ShellyGen1Parser(
        mqtt_topic=mqtt_topic,
        data_topics=(mqtt_topic, energy_topic),
        availability_topic=f"{prefix}/online",
        power_suffix=f"/{kind}/{channel}/power",
        energy_suffix=f"/{kind}/{channel}/{energy_level}",
        energy_divisor=divisor,
    )
