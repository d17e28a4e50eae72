"""Shelly Gen1: plain-number topics under ``shellies/<id>/``.

Power on ``relay/N/power`` or ``emeter/N/power`` (W, negative on export: read
as 0 W); the energy counter on the sibling ``relay/N/energy`` (watt-minutes)
or ``emeter/N/total`` (Wh). ``emeter/N/energy`` (watt-minutes since the last
report, not a lifetime counter) and ``emeter/N/total_returned`` (export) are
never read. With ``parser_options.channels`` (a 3EM's three phases, an EM's
two channels) the listed channels are one device, summed. Availability:
``shellies/<id>/online`` with ``true``/``false`` (or ``1``/``0``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from iot_bridge.domain.readings import Reading
from iot_bridge.errors import ConfigIssue, PayloadError
from iot_bridge.parsers._base import INVALID_ENERGY, INVALID_POWER, SHELLY_GEN1, UNKNOWN_TOPIC
from iot_bridge.parsers._channels import ChannelState
from iot_bridge.parsers._options import channel_list
from iot_bridge.parsers._values import MAX_ENERGY, MAX_POWER_W, ParserFields, plain_number
from iot_bridge.topics import topic_issue

# kind -> (energy topic's last level, divisor to Wh)
_ENERGY_TOPIC: Final = {"relay": ("energy", 60.0), "emeter": ("total", 1.0)}


def _power(payload: bytes) -> Reading:
    power_w = plain_number(payload, -MAX_POWER_W, MAX_POWER_W, INVALID_POWER, "power")
    if power_w < 0.0:
        return Reading(0.0, None, True)
    return Reading(power_w, None)


@dataclass(frozen=True, slots=True)
class ShellyGen1Parser(ParserFields):
    """``<prefix>/relay/N/power`` or ``<prefix>/emeter/N/power`` and their energy sibling."""

    power_suffix: str
    energy_suffix: str
    energy_divisor: float
    channels: None = None
    parser_type: str = field(default=SHELLY_GEN1, init=False)

    def parse(self, topic: str, payload: bytes) -> Reading:
        """The power topic gives ``Reading(power, None)``, the energy topic ``Reading(None, Wh)``.

        Payloads are plain decimal text; ``nan``, ``inf``, JSON strings and
        booleans are refused.
        """
        if topic.endswith(self.power_suffix):
            return _power(payload)
        if topic.endswith(self.energy_suffix):
            energy = plain_number(payload, 0.0, MAX_ENERGY, INVALID_ENERGY, self.energy_suffix[1:])
            return Reading(None, energy / self.energy_divisor)
        raise PayloadError(UNKNOWN_TOPIC, f"{topic!r} is not a data topic of {self.mqtt_topic!r}")


@dataclass(frozen=True, slots=True)
class ShellyGen1ChannelsParser(ParserFields):
    """The listed ``relay/N`` or ``emeter/N`` channels of one device: power and counter each."""

    # "<kind>/<N>/power" or "<kind>/<N>/<energy level>" -> (slot, whether it is the counter)
    by_suffix: Mapping[str, tuple[int, bool]]
    energy_divisor: float
    channels: ChannelState
    parser_type: str = field(default=SHELLY_GEN1, init=False)

    def parse(self, topic: str, payload: bytes) -> Reading:
        """Update the channel the topic names; the reading is the sum over the channels."""
        levels = topic.rsplit("/", 3)
        entry = self.by_suffix.get("/".join(levels[1:])) if len(levels) == 4 else None
        if entry is None:
            raise PayloadError(
                UNKNOWN_TOPIC, f"{topic!r} is not a data topic of {self.mqtt_topic!r}"
            )
        slot, is_counter = entry
        if is_counter:
            counter = plain_number(payload, 0.0, MAX_ENERGY, INVALID_ENERGY, levels[-1])
            return self.channels.update((), ((slot, counter / self.energy_divisor),))
        power_w = plain_number(payload, -MAX_POWER_W, MAX_POWER_W, INVALID_POWER, "power")
        return self.channels.update(((slot, power_w),), ())


def build_shelly_gen1(
    mqtt_topic: str, levels: list[str], options: Mapping[str, Any], issues: list[ConfigIssue]
) -> ShellyGen1Parser | ShellyGen1ChannelsParser | None:
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
    availability = f"{prefix}/online"
    channels = channel_list(
        options, issues, first=int(channel), topic_names=f"{kind}/{channel} in mqtt_topic"
    )
    if channels is None:
        if "channels" in options:
            return None
        energy_topic = f"{prefix}/{kind}/{channel}/{energy_level}"
        return ShellyGen1Parser(
            mqtt_topic=mqtt_topic,
            data_topics=(mqtt_topic, energy_topic),
            availability_topic=availability,
            power_suffix=f"/{kind}/{channel}/power",
            energy_suffix=f"/{kind}/{channel}/{energy_level}",
            energy_divisor=divisor,
        )
    by_suffix: dict[str, tuple[int, bool]] = {}
    topics: list[str] = []
    for slot, number in enumerate(channels):
        by_suffix[f"{kind}/{number}/power"] = (slot, False)
        by_suffix[f"{kind}/{number}/{energy_level}"] = (slot, True)
        topics += [f"{prefix}/{kind}/{number}/power", f"{prefix}/{kind}/{number}/{energy_level}"]
    return ShellyGen1ChannelsParser(
        mqtt_topic=mqtt_topic,
        data_topics=tuple(topics),
        availability_topic=availability,
        by_suffix=by_suffix,
        energy_divisor=divisor,
        channels=ChannelState([f"{kind}/{number}" for number in channels]),
    )
