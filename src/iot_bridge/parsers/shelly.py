"""Shelly Gen2/Gen3/Gen4: ``status/<component>`` topics and ``events/rpc`` notifications.

Units: ``apower`` (``act_power`` on em1) in W, ``aenergy.total`` in Wh.
Availability: ``<prefix>/online`` with ``true``/``false``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from iot_bridge.domain.readings import Reading
from iot_bridge.errors import ConfigIssue, PayloadError
from iot_bridge.parsers._base import INVALID_ENERGY, NOT_AN_OBJECT, SIGN_OF_LIFE
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

COMPONENT_PATTERN: Final = re.compile(r"(pm1|switch|em1):(\d{1,3})")
# em1 (energy meter channel) reports active power as act_power; its energy
# counter lives in a separate em1data component, so em1 readings carry none.
_POWER_KEY: Final = {"pm1": "apower", "switch": "apower", "em1": "act_power"}
DEFAULT_RPC_COMPONENTS: Final = ("pm1:0", "switch:0", "em1:0")


@dataclass(frozen=True, slots=True)
class _Component:
    """One metering component and the precomputed labels of its fields."""

    name: str
    power_key: str
    power_where: str
    aenergy_where: str
    energy_where: str


def _component(name: str, where_prefix: str) -> _Component:
    power_key = _POWER_KEY[name.partition(":")[0]]
    return _Component(
        name=name,
        power_key=power_key,
        power_where=f"{where_prefix}{power_key}",
        aenergy_where=f"{where_prefix}aenergy",
        energy_where=f"{where_prefix}aenergy.total",
    )


def _status_reading(status: dict[str, Any], component: _Component) -> Reading:
    # The hot path of the bridge: a float in range is taken as is, anything
    # else (int, null, junk) goes through the full check, which may raise.
    power_w = status.get(component.power_key)
    if type(power_w) is not float or not 0.0 <= power_w <= MAX_POWER_W:
        power_w = power_value(power_w, component.power_where)
    aenergy = status.get("aenergy")
    if type(aenergy) is dict:
        energy_wh = aenergy.get("total")
        if type(energy_wh) is not float or not 0.0 <= energy_wh <= MAX_ENERGY:
            energy_wh = energy_value(energy_wh, component.energy_where, 1.0)
    elif aenergy is None:
        energy_wh = None
    else:
        raise PayloadError(
            INVALID_ENERGY, f"{component.aenergy_where} is {describe(aenergy)}, not an object"
        )
    if power_w is None and energy_wh is None:
        return SIGN_OF_LIFE
    return Reading(power_w, energy_wh)


@dataclass(frozen=True, slots=True)
class ShellyPmParser(ParsesAvailability):
    """``<prefix>/status/pm1:N|switch:N|em1:N``: the component's full status."""

    mqtt_topic: str
    data_topics: tuple[str, ...]
    availability_topic: str | None
    component: _Component
    parser_type: str = field(default="shelly_pm", init=False)

    def parse(self, topic: str, payload: bytes) -> Reading:
        """Power from ``apower``/``act_power``, energy from ``aenergy.total``."""
        return _status_reading(json_object(payload), self.component)


@dataclass(frozen=True, slots=True)
class ShellyRpcParser(ParsesAvailability):
    """``<prefix>/events/rpc``: ``NotifyStatus`` deltas and ``NotifyFullStatus``."""

    mqtt_topic: str
    data_topics: tuple[str, ...]
    availability_topic: str | None
    components: tuple[_Component, ...]
    parser_type: str = field(default="shelly_rpc", init=False)

    def parse(self, topic: str, payload: bytes) -> Reading:
        """Read the first configured component that carries power, else its energy.

        Other methods (``NotifyEvent``), other components and messages without
        ``params`` are signs of life.
        """
        message = json_object(payload)
        method = message.get("method")
        # A tuple, not a set: a hostile method may be an unhashable list.
        if method not in ("NotifyStatus", "NotifyFullStatus"):
            return SIGN_OF_LIFE
        params = message.get("params")
        if type(params) is not dict:
            if params is None:
                return SIGN_OF_LIFE
            raise PayloadError(NOT_AN_OBJECT, f"params is {describe(params)}, not an object")
        without_power: tuple[dict[str, Any], _Component] | None = None
        for component in self.components:
            status = params.get(component.name)
            if status is None:
                continue
            if type(status) is not dict:
                raise PayloadError(
                    NOT_AN_OBJECT,
                    f"params[{component.name!r}] is {describe(status)}, not an object",
                )
            if status.get(component.power_key) is not None:
                return _status_reading(status, component)
            if without_power is None:
                without_power = (status, component)
        if without_power is None:
            return SIGN_OF_LIFE
        return _status_reading(*without_power)


def _prefix(levels: list[str], tail: tuple[str, ...]) -> str | None:
    """The levels before ``tail`` joined, or None when the topic does not end so."""
    count = len(tail)
    if len(levels) <= count or tuple(levels[-count:]) != tail:
        return None
    prefix = "/".join(levels[:-count])
    return prefix or None


def build_shelly_pm(
    mqtt_topic: str, levels: list[str], options: Mapping[str, Any], issues: list[ConfigIssue]
) -> ShellyPmParser | None:
    """The ``shelly_pm`` parser for ``mqtt_topic``, or None after adding issues."""
    name = levels[-1]
    prefix = _prefix(levels, ("status", name))
    if prefix is None or COMPONENT_PATTERN.fullmatch(name) is None:
        issues.append(
            topic_issue(
                mqtt_topic,
                "<prefix>/status/pm1:N, <prefix>/status/switch:N or <prefix>/status/em1:N",
            )
        )
        return None
    return ShellyPmParser(
        mqtt_topic=mqtt_topic,
        data_topics=(mqtt_topic,),
        availability_topic=f"{prefix}/online",
        component=_component(name, ""),
    )


def build_shelly_rpc(
    mqtt_topic: str, levels: list[str], options: Mapping[str, Any], issues: list[ConfigIssue]
) -> ShellyRpcParser | None:
    """The ``shelly_rpc`` parser for ``mqtt_topic``, or None after adding issues."""
    prefix = _prefix(levels, ("events", "rpc"))
    if prefix is None:
        issues.append(topic_issue(mqtt_topic, "<prefix>/events/rpc"))
    names: tuple[str, ...] = DEFAULT_RPC_COMPONENTS
    if "component" in options:
        chosen = options["component"]
        if not isinstance(chosen, str) or COMPONENT_PATTERN.fullmatch(chosen) is None:
            issues.append(
                ConfigIssue(
                    "parser_options.component",
                    f"{chosen!r} is not a metering component: expected pm1:N, switch:N or em1:N",
                )
            )
            return None
        names = (chosen,)
    if prefix is None:
        return None
    return ShellyRpcParser(
        mqtt_topic=mqtt_topic,
        data_topics=(mqtt_topic,),
        availability_topic=f"{prefix}/online",
        components=tuple(_component(name, f"params[{name!r}].") for name in names),
    )
