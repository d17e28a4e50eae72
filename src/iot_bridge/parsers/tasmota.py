"""Tasmota: ``tele/<topic>/SENSOR`` and ``stat/<topic>/STATUS8|STATUS10`` replies.

``ENERGY.Power`` in W and ``ENERGY.Total`` in kWh (converted to Wh). Multi-channel
meters send arrays: ``channel`` picks one (0-based), otherwise they are summed.
Availability: ``tele/<topic>/LWT`` with ``Online``/``Offline`` (with a custom
FullTopic, the data topic with its last level replaced by ``LWT``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from iot_bridge.domain.readings import Reading
from iot_bridge.errors import ConfigIssue, PayloadError
from iot_bridge.parsers._base import (
    INVALID_ENERGY,
    INVALID_POWER,
    NOT_AN_OBJECT,
    SIGN_OF_LIFE,
    UNKNOWN_TOPIC,
)
from iot_bridge.parsers._topics import topic_issue
from iot_bridge.parsers._values import (
    MAX_ENERGY,
    MAX_POWER_W,
    ParsesAvailability,
    describe,
    energy_value,
    json_object,
    power_value,
)

CHANNEL_PATH: Final = "parser_options.channel"
MAX_CHANNEL: Final = 31
_POWER: Final = "ENERGY.Power"
_TOTAL: Final = "ENERGY.Total"


@dataclass(frozen=True, slots=True)
class TasmotaParser(ParsesAvailability):
    """``ENERGY`` of SENSOR telemetry, or ``StatusSNS.ENERGY`` of STATUS8/STATUS10 replies."""

    mqtt_topic: str
    data_topics: tuple[str, ...]
    availability_topic: str | None
    channel: int | None
    parses_status: bool
    parser_type: str = field(default="tasmota", init=False)

    def parse(self, topic: str, payload: bytes) -> Reading:
        """A SENSOR/STATUS message without ``ENERGY`` (another sensor) is a sign of life."""
        if topic.endswith("/SENSOR"):
            energy = json_object(payload).get("ENERGY")
        elif self.parses_status and (topic.endswith("/STATUS10") or topic.endswith("/STATUS8")):
            status = json_object(payload).get("StatusSNS")
            if status is None:
                return SIGN_OF_LIFE
            if type(status) is not dict:
                raise PayloadError(NOT_AN_OBJECT, f"StatusSNS is {describe(status)}, not an object")
            energy = status.get("ENERGY")
        else:
            raise PayloadError(
                UNKNOWN_TOPIC, f"{topic!r} is not a data topic of {self.mqtt_topic!r}"
            )
        if energy is None:
            return SIGN_OF_LIFE
        if type(energy) is not dict:
            raise PayloadError(NOT_AN_OBJECT, f"ENERGY is {describe(energy)}, not an object")
        return self._energy_reading(energy)

    def _energy_reading(self, energy: dict[str, Any]) -> Reading:
        power = energy.get("Power")
        channel = self.channel
        if type(power) is list:
            power_w: float | None = self._from_array(power, _POWER, INVALID_POWER, 1.0)
        else:
            power_w = power_value(power, _POWER)
            if power_w is not None and channel:
                raise PayloadError(
                    INVALID_POWER, f"channel {channel} is configured but {_POWER} is one value"
                )
        total = energy.get("Total")
        if type(total) is list:
            energy_wh: float | None = self._from_array(total, _TOTAL, INVALID_ENERGY, 1000.0)
        elif channel is None or (channel == 0 and type(power) is not list):
            energy_wh = energy_value(total, _TOTAL, 1000.0)
        else:
            # One Total beside per-channel Power is the whole device's counter, not the channel's.
            energy_wh = None
        if power_w is None and energy_wh is None:
            return SIGN_OF_LIFE
        return Reading(power_w, energy_wh)

    def _from_array(self, values: list[Any], where: str, reason: str, scale: float) -> float:
        """The configured channel's value, or the sum of all channels."""
        check = power_value if reason == INVALID_POWER else _energy_kwh
        maximum = MAX_POWER_W if reason == INVALID_POWER else MAX_ENERGY
        if self.channel is not None:
            if self.channel >= len(values):
                raise PayloadError(
                    reason, f"{where} has {len(values)} channels, channel {self.channel} is missing"
                )
            values = values[self.channel : self.channel + 1]
        if not values:
            raise PayloadError(reason, f"{where} is an empty array")
        result = 0.0
        for index, value in enumerate(values):
            number = check(value, where)
            if number is None:
                raise PayloadError(reason, f"{where}[{index}] is null")
            result += number
        result *= scale
        if result > maximum:
            raise PayloadError(reason, f"{where} adds up to more than {maximum:g}")
        return result


def _energy_kwh(value: Any, where: str) -> float | None:
    return energy_value(value, where, 1.0)


def build_tasmota(
    mqtt_topic: str, levels: list[str], options: Mapping[str, Any], issues: list[ConfigIssue]
) -> TasmotaParser | None:
    """The ``tasmota`` parser for ``mqtt_topic``, or None after adding issues."""
    channel = options.get("channel")
    channel_ok = channel is None or (
        type(channel) is int and 0 <= channel <= MAX_CHANNEL  # type() refuses booleans
    )
    if not channel_ok:
        issues.append(
            ConfigIssue(CHANNEL_PATH, f"{channel!r} is not a channel index from 0 to {MAX_CHANNEL}")
        )
    if len(levels) < 2 or levels[-1] != "SENSOR":
        issues.append(
            topic_issue(mqtt_topic, "tele/<topic>/SENSOR or a custom FullTopic ending in SENSOR")
        )
        return None
    if not channel_ok:
        return None
    default_layout = len(levels) == 3 and levels[0] == "tele"
    data_topics: tuple[str, ...] = (mqtt_topic,)
    if default_layout:
        device = levels[1]
        data_topics = (mqtt_topic, f"stat/{device}/STATUS8", f"stat/{device}/STATUS10")
    return TasmotaParser(
        mqtt_topic=mqtt_topic,
        data_topics=data_topics,
        availability_topic="/".join([*levels[:-1], "LWT"]),
        channel=channel,
        parses_status=default_layout,
    )
