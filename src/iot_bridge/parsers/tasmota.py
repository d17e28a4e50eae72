"""Tasmota: ``tele/<topic>/SENSOR`` and ``stat/<topic>/STATUS8|STATUS10`` replies.

``ENERGY.Power`` in W and ``ENERGY.Total`` in kWh (converted to Wh); ``Today``,
``Yesterday``, ``Period``, ``TotalTariff`` and ``ExportActive`` are never read.
Multi-channel and three-phase meters send arrays (one value a channel or
phase): ``channel`` picks one (0-based), ``channels`` a subset, otherwise all
are summed, each channel's counter with its own reset handling
(``_channels``). A negative power (of a channel) is 0 W. Availability:
``tele/<topic>/LWT`` with ``Online``/``Offline`` (with a custom FullTopic, the
data topic with its last level replaced by ``LWT``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from iot_bridge.domain.readings import Reading
from iot_bridge.errors import ConfigIssue, PayloadError
from iot_bridge.parsers._base import (
    INVALID_ENERGY,
    INVALID_POWER,
    NOT_AN_OBJECT,
    SIGN_OF_LIFE,
    TASMOTA,
    UNKNOWN_TOPIC,
)
from iot_bridge.parsers._channels import ChannelState
from iot_bridge.parsers._options import CHANNELS_PATH, channel_list
from iot_bridge.parsers._values import (
    MAX_POWER_W,
    ParserFields,
    describe,
    energy_value,
    json_object,
    power_value,
    reading,
)
from iot_bridge.topics import topic_issue

CHANNEL_PATH: Final = "parser_options.channel"
MAX_CHANNEL: Final = 31
_POWER: Final = "ENERGY.Power"
_TOTAL: Final = "ENERGY.Total"


@dataclass(frozen=True, slots=True)
class TasmotaParser(ParserFields):
    """``ENERGY`` of SENSOR telemetry, or ``StatusSNS.ENERGY`` of STATUS8/STATUS10 replies."""

    selected: tuple[int, ...] | None  # the channels read from arrays; None: all
    parses_status: bool
    channels: ChannelState  # used by array messages only
    parser_type: str = field(default=TASMOTA, init=False)

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
        power = energy.get("Power")
        total = energy.get("Total")
        if type(power) is list or type(total) is list:
            return self._channel_reading(power, total)
        return self._single_reading(power, total)

    def _single_reading(self, power: Any, total: Any) -> Reading:
        power_w = power_value(power, _POWER)
        if power_w is not None and self.selected not in (None, (0,)):
            raise PayloadError(
                INVALID_POWER,
                f"channels {list(self.selected or ())} are configured but {_POWER} is one value",
            )
        # A device-wide Total is not a selected channel's counter (channel 0 of one is).
        if self.selected not in (None, (0,)):
            return reading(power_w, None)
        return reading(power_w, energy_value(total, _TOTAL, 1000.0))

    def _channel_reading(self, power: Any, total: Any) -> Reading:
        """Arrays: each selected channel updates its slot; the reading is their sum."""
        if self.selected is None:
            self._follow_layout(power, total)
        scalar_power: float | None = None
        powers: list[tuple[int, float]] = []
        if type(power) is list:
            powers = self._values(power, _POWER, INVALID_POWER, power_value)
            if sum(value for _, value in powers) > MAX_POWER_W:
                raise PayloadError(INVALID_POWER, f"{_POWER} adds up to more than 1e9 W")
        else:
            scalar_power = power_value(power, _POWER)
        counters: list[tuple[int, float]] = []
        if type(total) is list:
            counters = self._values(total, _TOTAL, INVALID_ENERGY, _energy_wh)
        elif self.selected is None:
            # One Total beside per-channel Power is the whole device's counter.
            scalar_total = energy_value(total, _TOTAL, 1000.0)
            result = self.channels.update(powers, ())
            if scalar_total is None:
                return result
            return Reading(result.power_w, scalar_total, result.negative_power)
        # else: a device-wide Total is not the selected channels' counter: not read.
        result = self.channels.update(powers, counters)
        if type(power) is list:
            return result
        return reading(scalar_power, result.energy_wh)

    def _values(
        self,
        values: list[Any],
        where: str,
        reason: str,
        check: Callable[[Any, str], float | None],
    ) -> list[tuple[int, float]]:
        """(slot, value) of the selected channels present in an array (null: absent)."""
        if not values:
            raise PayloadError(reason, f"{where} is an empty array")
        selected = self.selected
        indexes: Sequence[int] = range(len(values)) if selected is None else selected
        found: list[tuple[int, float]] = []
        for slot, index in enumerate(indexes):
            if index >= len(values):
                raise PayloadError(
                    reason, f"{where} has {len(values)} channels, channel {index} is missing"
                )
            number = check(values[index], f"{where}[{index}]")
            if number is not None:
                found.append((slot, number))
        return found

    def _follow_layout(self, power: Any, total: Any) -> None:
        """Without a selection, the channels are those the arrays have (the counter continues)."""
        channels = self.channels
        power_names = _names(power, channels.layout)
        counter_names = _names(total, channels.counter_layout)
        if power_names != channels.layout or counter_names != channels.counter_layout:
            channels.relayout(power_names, counter_names)


def _names(values: Any, current: tuple[str, ...]) -> tuple[str, ...]:
    if type(values) is not list:
        return current
    if len(values) == len(current):
        return current
    return tuple(str(index) for index in range(len(values)))


def _energy_wh(value: Any, where: str) -> float | None:
    return energy_value(value, where, 1000.0)


def build_tasmota(
    mqtt_topic: str, levels: list[str], options: Mapping[str, Any], issues: list[ConfigIssue]
) -> TasmotaParser | None:
    """The ``tasmota`` parser for ``mqtt_topic``, or None after adding issues."""
    before = len(issues)
    channel = options.get("channel")
    if channel is not None and not (type(channel) is int and 0 <= channel <= MAX_CHANNEL):
        issues.append(
            ConfigIssue(CHANNEL_PATH, f"{channel!r} is not a channel index from 0 to {MAX_CHANNEL}")
        )
    selected = channel_list(options, issues, maximum=MAX_CHANNEL)
    if channel is not None and "channels" in options:
        issues.append(
            ConfigIssue(CHANNELS_PATH, "cannot be used with parser_options.channel: set one")
        )
    if len(levels) < 2 or levels[-1] != "SENSOR":
        issues.append(
            topic_issue(mqtt_topic, "tele/<topic>/SENSOR or a custom FullTopic ending in SENSOR")
        )
    if len(issues) > before:
        return None
    if type(channel) is int:
        selected = (channel,)
    default_layout = len(levels) == 3 and levels[0] == "tele"
    data_topics: tuple[str, ...] = (mqtt_topic,)
    if default_layout:
        device = levels[1]
        data_topics = (mqtt_topic, f"stat/{device}/STATUS8", f"stat/{device}/STATUS10")
    return TasmotaParser(
        mqtt_topic=mqtt_topic,
        data_topics=data_topics,
        availability_topic="/".join([*levels[:-1], "LWT"]),
        selected=selected,
        parses_status=default_layout,
        channels=ChannelState([] if selected is None else [str(index) for index in selected]),
    )
