"""Home Assistant MQTT discovery: the retained configs that make machines appear there.

Pure: names, topics and payloads, no I/O (``state_out.py`` publishes them).
What Home Assistant's MQTT integration requires, in our words:

- A config lives at ``<discovery_prefix>/<component>/<node_id>/<object_id>/config``;
  node and object ids may only hold ``[A-Za-z0-9_-]`` (any other topic is
  ignored with a warning). An empty retained message removes the entity.
- ``unique_id`` keeps an entity (and its history) across restarts and renames;
  ``device.identifiers`` group entities into one device. Two machines must
  never share either.
- ``availability`` is a list of topics; with ``availability_mode: all`` an
  entity is available only while every entry says so. An entry may read a
  JSON topic through a ``value_template`` rendering ``online``/``offline``.
- Each platform validates its config against its discovery schema, which
  drops unknown keys silently: ``scripts/ha-test`` checks every payload
  here with Home Assistant's own code, so a misspelt key cannot hide.

Ids. A device id made only of ``[A-Za-z0-9_-]`` keeps the node id it always
had, ``iot_bridge_<device_id>``, so no existing installation loses its
entities. A device id with ``.`` or ``:`` (allowed by the config) used to be
squeezed into the same form with ``_``, so ``press.1`` and ``press_1``
collided; it is now ``iot_bridge-<escaped>``: ``_``, ``.`` and ``:`` written
as ``_5f``, ``_2e`` and ``_3a``. Nothing else starts with ``iot_bridge-``
followed by an escape, so the mapping is one-to-one, and unique ids add
``_<object>`` with objects that hold no ``_``. The bridge itself is the
device ``iot_bridge-bridge`` (``iot_bridge-bridge-shard<i>`` per shard).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from iot_bridge import __version__
from iot_bridge.config.model import DeviceConfig, StateOutSection
from iot_bridge.config.shard import Shard
from iot_bridge.domain.session import DetectorState

NODE_PREFIX: Final = "iot_bridge"
ORIGIN: Final[Mapping[str, str]] = {"name": "iot-bridge", "sw_version": __version__}
MACHINE_STATES: Final = tuple(state.value for state in DetectorState)
MQTT_PROTOCOLS: Final = ("5", "3.1.1")
ONLINE: Final = "online"
OFFLINE: Final = "offline"

_SAFE_ID: Final = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPED: Final = {"_": "_5f", ".": "_2e", ":": "_3a"}
_LEGACY_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_-]")
# The configs earlier versions published per machine: cleared where a node id moved.
_LEGACY_OBJECTS: Final = (("sensor", "state"), ("sensor", "power"), ("binary_sensor", "running"))


def node_id(device_id: str) -> str:
    """The discovery node id, unique id stem and device identifier of a machine."""
    if _SAFE_ID.fullmatch(device_id):
        return f"{NODE_PREFIX}_{device_id}"
    return f"{NODE_PREFIX}-" + "".join(_ESCAPED.get(char, char) for char in device_id)


def legacy_node_id(device_id: str) -> str:
    """The node id versions before this one gave ``device_id`` (``.``/``:`` as ``_``)."""
    return f"{NODE_PREFIX}_" + _LEGACY_UNSAFE.sub("_", device_id)


def bridge_node_id(shard: Shard | None) -> str:
    """The node id and device identifier of the bridge (one per shard)."""
    base = f"{NODE_PREFIX}-bridge"
    return base if shard is None else f"{base}-shard{shard.index}"


def _bridge_level(section: StateOutSection, shard: Shard | None) -> str:
    base = f"{section.topic_prefix}/bridge"
    return base if shard is None else f"{base}/shard{shard.index}"


def availability_topic(section: StateOutSection, shard: Shard | None = None) -> str:
    """The bridge's own availability (``online``; ``offline`` is its will).

    Each shard has its own: one instance's will must not turn another's
    machines unavailable.
    """
    return f"{_bridge_level(section, shard)}/availability"


def bridge_status_topic(section: StateOutSection, shard: Shard | None = None) -> str:
    """The bridge's diagnostics (JSON, retained): outbox, Odoo, MQTT protocol."""
    return f"{_bridge_level(section, shard)}/status"


def state_topic(section: StateOutSection, device_id: str) -> str:
    """Where a device's state is retained."""
    return f"{section.topic_prefix}/{device_id}/state"


def legacy_discovery_topics(section: StateOutSection, device_id: str) -> list[str]:
    """Where earlier versions put ``device_id``'s configs, if its node id has moved since."""
    old = legacy_node_id(device_id)
    if old == node_id(device_id):
        return []
    prefix = section.discovery_prefix
    return [f"{prefix}/{component}/{old}/{name}/config" for component, name in _LEGACY_OBJECTS]


@dataclass(frozen=True, slots=True)
class MeterFamily:
    """What Home Assistant's device page shows as the maker and model of a machine's meter."""

    manufacturer: str | None
    model: str


_SHELLY_COMPONENTS: Final = {
    "pm1": "Shelly PM (Gen2+)",
    "switch": "Shelly switch with power metering (Gen2+)",
    "em1": "Shelly EM channels (Gen2+)",
    "em": "Shelly three-phase EM (Gen2+)",
}
_FAMILIES: Final = {
    "shelly_gen1": MeterFamily("Shelly", "Shelly Gen1 power meter"),
    "tasmota": MeterFamily("Tasmota", "Tasmota energy monitor"),
    "zigbee2mqtt": MeterFamily(None, "Zigbee power meter (Zigbee2MQTT)"),
    "generic_json": MeterFamily(None, "MQTT JSON power meter"),
}


def meter_family(device: DeviceConfig) -> MeterFamily:
    """The meter family of a device, from its parser and the component it reads."""
    parser_type = device.parser_type
    if parser_type in ("shelly_pm", "shelly_rpc"):
        if parser_type == "shelly_pm":
            component = device.mqtt_topic.rsplit("/", 1)[-1]
        else:
            component = device.parser_options.component or ""
        model = _SHELLY_COMPONENTS.get(component.split(":", 1)[0], "Shelly power meter (Gen2+)")
        return MeterFamily("Shelly", model)
    if parser_type == "shelly_gen1" and "/emeter/" in device.mqtt_topic:
        return MeterFamily("Shelly", "Shelly EM / 3EM (Gen1)")
    return _FAMILIES.get(parser_type, MeterFamily(None, "power meter"))


def _availability_entries(section: StateOutSection, shard: Shard | None) -> list[dict[str, Any]]:
    return [{"topic": availability_topic(section, shard)}]


def _json(config: Mapping[str, Any]) -> bytes:
    return orjson.dumps(config)


_MEASURED_ONLINE: Final = "{{ 'online' if value_json.online else 'offline' }}"
_ATTRIBUTES: Final = (
    "{{ {'session_id': value_json.session_id,"
    " 'session_started_at': value_json.session_started_at} | tojson }}"
)
_ENERGY_KWH: Final = (
    "{% if value_json.energy_wh_total is number %}"
    "{{ (value_json.energy_wh_total / 1000) | round(6) }}"
    "{% else %}None{% endif %}"
)


def machine_discovery(
    section: StateOutSection,
    device: DeviceConfig,
    *,
    shard: Shard | None = None,
    with_energy: bool = False,
) -> dict[str, bytes]:
    """A machine's discovery configs (topic -> retained payload).

    State, power, running and (``with_energy``: the meter reports a counter)
    energy are available while the bridge AND the meter are online, so an
    offline meter's last power never reads as current. The connectivity
    sensor follows the bridge only: it is what says the meter is offline.
    """
    device_id = device.device_id
    node = node_id(device_id)
    prefix = section.discovery_prefix
    topic = state_topic(section, device_id)
    family = meter_family(device)
    device_info: dict[str, Any] = {
        "identifiers": [node],
        "name": device.machine_name,
        "model": family.model,
        "model_id": device.parser_type,
        "via_device": bridge_node_id(shard),
    }
    if family.manufacturer is not None:
        device_info["manufacturer"] = family.manufacturer
    bridge_only = _availability_entries(section, shard)
    measured = {
        "availability": [
            *bridge_only,
            {"topic": topic, "value_template": _MEASURED_ONLINE},
        ],
        "availability_mode": "all",
    }
    entities: dict[tuple[str, str], dict[str, Any]] = {
        ("sensor", "state"): {
            "name": "State",
            "device_class": "enum",
            "options": list(MACHINE_STATES),
            "value_template": "{{ value_json.state }}",
            "json_attributes_topic": topic,
            "json_attributes_template": _ATTRIBUTES,
            "icon": "mdi:state-machine",
            **measured,
        },
        ("sensor", "power"): {
            "name": "Power",
            "device_class": "power",
            "state_class": "measurement",
            "unit_of_measurement": "W",
            "value_template": "{{ value_json.power_w }}",
            **measured,
        },
        ("binary_sensor", "running"): {
            "name": "Running",
            "device_class": "running",
            "value_template": "{{ 'ON' if value_json.session_id else 'OFF' }}",
            **measured,
        },
        ("binary_sensor", "connectivity"): {
            "name": "Meter",
            "device_class": "connectivity",
            "entity_category": "diagnostic",
            "value_template": "{{ 'ON' if value_json.online else 'OFF' }}",
            "availability": bridge_only,
        },
    }
    if with_energy:
        entities["sensor", "energy"] = {
            "name": "Energy",
            "device_class": "energy",
            "state_class": "total_increasing",
            "unit_of_measurement": "kWh",
            "suggested_display_precision": 2,
            "value_template": _ENERGY_KWH,
            **measured,
        }
    return {
        f"{prefix}/{component}/{node}/{name}/config": _json(
            {
                **config,
                "unique_id": f"{node}_{name}",
                "state_topic": topic,
                "device": device_info,
                "origin": ORIGIN,
            }
        )
        for (component, name), config in entities.items()
    }


def bridge_discovery(
    section: StateOutSection, *, shard: Shard | None = None, odoo_configured: bool = True
) -> dict[str, bytes]:
    """The bridge's own device: outbox, Odoo (when one is configured) and MQTT protocol."""
    node = bridge_node_id(shard)
    prefix = section.discovery_prefix
    name = "iot-bridge" if shard is None else f"iot-bridge (shard {shard})"
    device_info = {
        "identifiers": [node],
        "name": name,
        "manufacturer": "iot-bridge",
        "model": "iot-bridge",
        "sw_version": __version__,
    }
    entities: dict[tuple[str, str], dict[str, Any]] = {
        ("sensor", "outbox"): {
            "name": "Outbox pending",
            "state_class": "measurement",
            "unit_of_measurement": "events",
            "icon": "mdi:tray-full",
            "value_template": "{{ value_json.outbox_pending }}",
        },
        ("sensor", "mqtt"): {
            "name": "MQTT protocol",
            "device_class": "enum",
            "options": list(MQTT_PROTOCOLS),
            "icon": "mdi:lan-connect",
            "value_template": "{{ value_json.mqtt_protocol }}",
        },
    }
    if odoo_configured:
        entities["binary_sensor", "odoo"] = {
            "name": "Odoo",
            "device_class": "connectivity",
            "value_template": "{{ 'ON' if value_json.odoo_reachable else 'OFF' }}",
        }
    status = bridge_status_topic(section, shard)
    return {
        f"{prefix}/{component}/{node}/{object_id}/config": _json(
            {
                **config,
                "unique_id": f"{node}_{object_id}",
                "entity_category": "diagnostic",
                "state_topic": status,
                "availability": _availability_entries(section, shard),
                "device": device_info,
                "origin": ORIGIN,
            }
        )
        for (component, object_id), config in entities.items()
    }
