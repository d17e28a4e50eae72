"""Shelly Gen2/Gen3/Gen4: ``status/<component>`` topics and ``events/rpc`` notifications.

Metering components and where their figures are (W and Wh):

- ``pm1:N``, ``switch:N``: power ``apower``, energy ``aenergy.total``;
- ``em1:N`` (a Pro EM / Pro 3EM channel, monophase profile): power
  ``act_power``, energy in the sibling ``em1data:N`` ``total_act_energy``;
- ``em:N`` (a Pro 3EM, triphase profile): power ``total_act_power`` (the sum
  of the phases), energy in the sibling ``emdata:N`` ``total_act``.

Returned energy (``ret_aenergy``, ``*_ret_*``) is never read. With
``parser_options.channels`` the listed ``switch``/``em1`` channels are one
device, summed (``_channels``). Availability: ``<prefix>/online``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from iot_bridge.domain.readings import Reading
from iot_bridge.errors import ConfigIssue, PayloadError
from iot_bridge.parsers._base import (
    INVALID_ENERGY,
    NOT_AN_OBJECT,
    SHELLY_PM,
    SHELLY_RPC,
    SIGN_OF_LIFE,
    UNKNOWN_TOPIC,
)
from iot_bridge.parsers._channels import ChannelState
from iot_bridge.parsers._options import channel_list, no_channels
from iot_bridge.parsers._values import (
    MAX_ENERGY,
    MAX_POWER_W,
    ParserFields,
    describe,
    energy_value,
    json_object,
    power_value,
    reading,
)
from iot_bridge.topics import topic_issue

COMPONENT_PATTERN: Final = re.compile(r"(pm1|switch|em1|em):(\d{1,3})")
# kind -> (power key, energy component kind, its counter key); None: energy in aenergy.total
_FIELDS: Final[dict[str, tuple[str, str | None, str]]] = {
    "pm1": ("apower", None, ""),
    "switch": ("apower", None, ""),
    "em1": ("act_power", "em1data", "total_act_energy"),
    "em": ("total_act_power", "emdata", "total_act"),
}
# Kinds whose channels may be listed in parser_options.channels.
_CHANNEL_KINDS: Final = ("switch", "em1")
DEFAULT_RPC_COMPONENTS: Final = ("pm1:0", "switch:0", "em1:0")
_COMPONENTS_TEXT: Final = "pm1:N, switch:N, em1:N or em:N"


@dataclass(frozen=True, slots=True)
class _Component:
    """One metering component and the precomputed labels of its fields."""

    name: str
    power_key: str
    power_where: str
    aenergy_where: str
    energy_where: str
    data_name: str | None  # the sibling component holding the counter (em1data:N, emdata:N)
    data_key: str
    data_where: str


@functools.lru_cache(maxsize=1024)
def _component(name: str, where_prefix: str) -> _Component:
    # Cached: 10,000 plugs on ``pm1:0`` share one (immutable) component and its labels.
    kind, _, index = name.partition(":")
    power_key, data_kind, data_key = _FIELDS[kind]
    data_name = f"{data_kind}:{index}" if data_kind else None
    data_prefix = f"params[{data_name!r}]." if where_prefix else ""
    return _Component(
        name=name,
        power_key=power_key,
        power_where=f"{where_prefix}{power_key}",
        aenergy_where=f"{where_prefix}aenergy",
        energy_where=f"{where_prefix}aenergy.total",
        data_name=data_name,
        data_key=data_key,
        data_where=f"{data_prefix}{data_key}",
    )


def _aenergy_total(status: dict[str, Any], component: _Component) -> float | None:
    aenergy = status.get("aenergy")
    if type(aenergy) is dict:
        energy_wh = aenergy.get("total")
        if type(energy_wh) is not float or not 0.0 <= energy_wh <= MAX_ENERGY:
            energy_wh = energy_value(energy_wh, component.energy_where, 1.0)
        return energy_wh
    if aenergy is None:
        return None
    raise PayloadError(
        INVALID_ENERGY, f"{component.aenergy_where} is {describe(aenergy)}, not an object"
    )


def _status_reading(status: dict[str, Any], component: _Component) -> Reading:
    # The hot path of the bridge, inlined: a float in range is taken as is,
    # anything else (int, null, negative, junk) goes through the full check,
    # which may raise.
    power_w = status.get(component.power_key)
    plain = type(power_w) is float and 0.0 <= power_w <= MAX_POWER_W
    if not plain:
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
    if plain:
        return Reading(power_w, energy_wh)
    return reading(power_w, energy_wh)


def _data_counter(data: Any, component: _Component) -> float | None:
    """The import counter of an ``em1data:N``/``emdata:N`` status (Wh), or None."""
    if type(data) is not dict:
        raise PayloadError(
            NOT_AN_OBJECT, f"{component.data_name} is {describe(data)}, not an object"
        )
    return energy_value(data.get(component.data_key), component.data_where, 1.0)


def _data_reading(payload: bytes, component: _Component) -> Reading:
    energy_wh = _data_counter(json_object(payload), component)
    return SIGN_OF_LIFE if energy_wh is None else Reading(None, energy_wh)


def _last_level(topic: str) -> str:
    return topic.rpartition("/")[2]


@dataclass(frozen=True, slots=True)
class ShellyPmParser(ParserFields):
    """``<prefix>/status/pm1:N|switch:N``: the component's full status, energy included."""

    component: _Component
    channels: None = None
    parser_type: str = field(default=SHELLY_PM, init=False)

    def parse(self, topic: str, payload: bytes) -> Reading:
        """Power from ``apower``, energy from ``aenergy.total``."""
        return _status_reading(json_object(payload), self.component)


@dataclass(frozen=True, slots=True)
class ShellyMeterParser(ParserFields):
    """``<prefix>/status/em1:N|em:N`` and the sibling ``em1data:N|emdata:N`` with the counter."""

    component: _Component
    channels: None = None
    parser_type: str = field(default=SHELLY_PM, init=False)

    def parse(self, topic: str, payload: bytes) -> Reading:
        """Power from ``act_power``/``total_act_power``; energy from the data sibling."""
        component = self.component
        name = _last_level(topic)
        if name == component.name:
            return _status_reading(json_object(payload), component)
        if name == component.data_name:
            return _data_reading(payload, component)
        raise PayloadError(UNKNOWN_TOPIC, f"{topic!r} is not a data topic of {self.mqtt_topic!r}")


@dataclass(frozen=True, slots=True)
class ShellyPmChannelsParser(ParserFields):
    """Several ``<prefix>/status/switch:N`` or ``em1:N`` channels driving one machine."""

    # last topic level -> (slot, component, whether it is the energy data sibling)
    by_name: Mapping[str, tuple[int, _Component, bool]]
    channels: ChannelState
    parser_type: str = field(default=SHELLY_PM, init=False)

    def parse(self, topic: str, payload: bytes) -> Reading:
        """Update the channel the topic names; the reading is the sum over the channels."""
        entry = self.by_name.get(_last_level(topic))
        if entry is None:
            raise PayloadError(
                UNKNOWN_TOPIC, f"{topic!r} is not a data topic of {self.mqtt_topic!r}"
            )
        slot, component, is_data = entry
        message = json_object(payload)
        if is_data:
            counter = _data_counter(message, component)
            return self.channels.update((), () if counter is None else ((slot, counter),))
        power_w = power_value(message.get(component.power_key), component.power_where)
        counter = _aenergy_total(message, component)
        return self.channels.update(
            () if power_w is None else ((slot, power_w),),
            () if counter is None else ((slot, counter),),
        )


def _rpc_params(payload: bytes) -> dict[str, Any] | None:
    """The ``params`` of a status notification, or None for anything else (a sign of life)."""
    message = json_object(payload)
    method = message.get("method")
    # A tuple, not a set: a hostile method may be an unhashable list.
    if method not in ("NotifyStatus", "NotifyFullStatus"):
        return None
    params = message.get("params")
    if type(params) is not dict:
        if params is None:
            return None
        raise PayloadError(NOT_AN_OBJECT, f"params is {describe(params)}, not an object")
    return params


def _rpc_status(params: dict[str, Any], name: str) -> dict[str, Any] | None:
    status = params.get(name)
    if status is None or type(status) is dict:
        return status
    raise PayloadError(NOT_AN_OBJECT, f"params[{name!r}] is {describe(status)}, not an object")


def _rpc_values(
    params: dict[str, Any], component: _Component
) -> tuple[bool, float | None, float | None]:
    """(present, power, counter) of one component in a notification's params."""
    status = _rpc_status(params, component.name)
    power_w = (
        None
        if status is None
        else power_value(status.get(component.power_key), component.power_where)
    )
    if component.data_name is None:
        counter = None if status is None else _aenergy_total(status, component)
        return status is not None, power_w, counter
    data = params.get(component.data_name)
    counter = None if data is None else _data_counter(data, component)
    return status is not None or data is not None, power_w, counter


def _rpc_reading(params: dict[str, Any], component: _Component) -> Reading:
    """The reading of one component of a notification (its energy sibling included)."""
    if component.data_name is None:
        status = _rpc_status(params, component.name)
        return SIGN_OF_LIFE if status is None else _status_reading(status, component)
    _, power_w, counter = _rpc_values(params, component)
    return reading(power_w, counter)


@dataclass(frozen=True, slots=True)
class ShellyRpcParser(ParserFields):
    """``<prefix>/events/rpc``: ``NotifyStatus`` deltas and ``NotifyFullStatus``."""

    components: tuple[_Component, ...]
    channels: None = None
    parser_type: str = field(default=SHELLY_RPC, init=False)

    def parse(self, topic: str, payload: bytes) -> Reading:
        """Read the first configured component that carries power, else its energy.

        Other methods (``NotifyEvent``), other components and messages without
        ``params`` are signs of life.
        """
        params = _rpc_params(payload)
        if params is None:
            return SIGN_OF_LIFE
        first_present: _Component | None = None
        for component in self.components:
            status = _rpc_status(params, component.name)
            if status is not None and status.get(component.power_key) is not None:
                return _rpc_reading(params, component)
            if first_present is None and (
                status is not None
                or (component.data_name is not None and component.data_name in params)
            ):
                first_present = component
        if first_present is None:
            return SIGN_OF_LIFE
        return _rpc_reading(params, first_present)


@dataclass(frozen=True, slots=True)
class ShellyRpcChannelsParser(ParserFields):
    """``<prefix>/events/rpc`` of a device whose listed channels drive one machine."""

    # per slot, the components that may carry the channel (switch:N, em1:N)
    slots: tuple[tuple[_Component, ...], ...]
    channels: ChannelState
    parser_type: str = field(default=SHELLY_RPC, init=False)

    def parse(self, topic: str, payload: bytes) -> Reading:
        """Update each listed channel the notification carries; the reading is their sum."""
        params = _rpc_params(payload)
        if params is None:
            return SIGN_OF_LIFE
        powers: list[tuple[int, float]] = []
        counters: list[tuple[int, float]] = []
        for slot, candidates in enumerate(self.slots):
            for component in candidates:
                present, power_w, counter = _rpc_values(params, component)
                if power_w is not None:
                    powers.append((slot, power_w))
                if counter is not None:
                    counters.append((slot, counter))
                if present:
                    break
        return self.channels.update(powers, counters)


def _prefix(levels: list[str], tail: tuple[str, ...]) -> str | None:
    """The levels before ``tail`` joined, or None when the topic does not end so."""
    count = len(tail)
    if len(levels) <= count or tuple(levels[-count:]) != tail:
        return None
    prefix = "/".join(levels[:-count])
    return prefix or None


def build_shelly_pm(
    mqtt_topic: str, levels: list[str], options: Mapping[str, Any], issues: list[ConfigIssue]
) -> ShellyPmParser | ShellyMeterParser | ShellyPmChannelsParser | None:
    """The ``shelly_pm`` parser for ``mqtt_topic``, or None after adding issues."""
    name = levels[-1]
    prefix = _prefix(levels, ("status", name))
    match = COMPONENT_PATTERN.fullmatch(name)
    if prefix is None or match is None:
        issues.append(topic_issue(mqtt_topic, f"<prefix>/status/<component> ({_COMPONENTS_TEXT})"))
        no_channels(options, issues, "the mqtt_topic is not a Shelly status topic")
        return None
    kind, index = match.group(1), int(match.group(2))
    availability = f"{prefix}/online"
    if kind not in _CHANNEL_KINDS or "channels" not in options:
        no_channels(options, issues, _no_channels_reason(kind))
        component = _component(name, "")
        if component.data_name is None:
            return ShellyPmParser(mqtt_topic, (mqtt_topic,), availability, component)
        data_topic = f"{prefix}/status/{component.data_name}"
        return ShellyMeterParser(mqtt_topic, (mqtt_topic, data_topic), availability, component)
    channels = channel_list(options, issues, first=index, topic_names=f"{name} in mqtt_topic")
    if channels is None:
        return None
    by_name: dict[str, tuple[int, _Component, bool]] = {}
    topics: list[str] = []
    for slot, channel in enumerate(channels):
        component = _component(f"{kind}:{channel}", "")
        by_name[component.name] = (slot, component, False)
        topics.append(f"{prefix}/status/{component.name}")
        if component.data_name is not None:
            by_name[component.data_name] = (slot, component, True)
            topics.append(f"{prefix}/status/{component.data_name}")
    return ShellyPmChannelsParser(
        mqtt_topic=mqtt_topic,
        data_topics=tuple(topics),
        availability_topic=availability,
        by_name=by_name,
        channels=ChannelState([f"{kind}:{channel}" for channel in channels]),
    )


def _no_channels_reason(kind: str) -> str:
    if kind == "em":
        return "em:N is one component for all three phases; total_act_power is already their sum"
    return f"{kind}:N has one channel; channels are listed for switch:N or em1:N"


def build_shelly_rpc(
    mqtt_topic: str, levels: list[str], options: Mapping[str, Any], issues: list[ConfigIssue]
) -> ShellyRpcParser | ShellyRpcChannelsParser | None:
    """The ``shelly_rpc`` parser for ``mqtt_topic``, or None after adding issues."""
    prefix = _prefix(levels, ("events", "rpc"))
    if prefix is None:
        issues.append(topic_issue(mqtt_topic, "<prefix>/events/rpc"))
    names: tuple[str, ...] = DEFAULT_RPC_COMPONENTS
    kinds: tuple[str, ...] = _CHANNEL_KINDS
    first: int | None = None
    if "component" in options:
        chosen = options["component"]
        match = COMPONENT_PATTERN.fullmatch(chosen) if isinstance(chosen, str) else None
        if match is None:
            issues.append(
                ConfigIssue(
                    "parser_options.component",
                    f"{chosen!r} is not a metering component: expected {_COMPONENTS_TEXT}",
                )
            )
            return None
        names = (chosen,)
        kinds = (match.group(1),)
        first = int(match.group(2))
        if kinds[0] not in _CHANNEL_KINDS and "channels" in options:
            no_channels(options, issues, _no_channels_reason(kinds[0]))
            return None
    channels = channel_list(options, issues, first=first, topic_names="parser_options.component")
    if prefix is None or (channels is None and "channels" in options):
        return None
    availability = f"{prefix}/online"
    if channels is None:
        components = tuple(_component(name, f"params[{name!r}].") for name in names)
        return ShellyRpcParser(mqtt_topic, (mqtt_topic,), availability, components)
    slots = tuple(
        tuple(_component(f"{kind}:{channel}", f"params['{kind}:{channel}'].") for kind in kinds)
        for channel in channels
    )
    return ShellyRpcChannelsParser(
        mqtt_topic=mqtt_topic,
        data_topics=(mqtt_topic,),
        availability_topic=availability,
        slots=slots,
        channels=ChannelState(["|".join(kinds) + f":{channel}" for channel in channels]),
    )
