"""Home Assistant discovery ids and payloads: one-to-one in the device id, stable for old ids."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iot_bridge.config.model import DeviceConfig, StateOutSection
from iot_bridge.config.parse import parse_config
from iot_bridge.config.shard import Shard
from iot_bridge.service.views.ha_discovery import (
    bridge_discovery,
    bridge_node_id,
    legacy_node_id,
    machine_discovery,
    meter_family,
    node_id,
)

DEVICE_IDS = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)
SAFE_IDS = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
# Home Assistant's discovery topic matcher allows only these in node and object ids.
HA_ID = re.compile(r"[a-zA-Z0-9_-]+")
SECTION = StateOutSection(enabled=True)


def _device(
    device_id: str, topic: str = "x/status/pm1:0", parser: str = "shelly_pm", **options: Any
) -> DeviceConfig:
    config = parse_config(
        {
            "devices": [
                {
                    "device_id": device_id,
                    "machine_name": f"Machine {device_id}",
                    "mqtt_topic": topic,
                    "parser_type": parser,
                    "parser_options": options,
                }
            ]
        }
    )
    return config.devices[0]


@given(SAFE_IDS)
def test_an_id_of_letters_digits_dash_and_underscore_keeps_its_node_id(device_id: str) -> None:
    """Existing installations keep their entities: the node id is what it always was."""
    assert node_id(device_id) == f"iot_bridge_{device_id}" == legacy_node_id(device_id)


@given(DEVICE_IDS, DEVICE_IDS)
def test_two_different_device_ids_never_share_a_node_id(first: str, second: str) -> None:
    """The mapping is one-to-one over every id the config accepts."""
    if first != second:
        assert node_id(first) != node_id(second)


@given(DEVICE_IDS)
def test_node_ids_are_valid_discovery_topic_levels_and_not_the_bridge(device_id: str) -> None:
    """Only [A-Za-z0-9_-]; never the bridge's own node id, sharded or not."""
    node = node_id(device_id)
    assert HA_ID.fullmatch(node)
    assert node not in {
        bridge_node_id(None),
        bridge_node_id(Shard(1, 2)),
        bridge_node_id(Shard(2, 2)),
    }


@given(DEVICE_IDS, DEVICE_IDS)
def test_unique_ids_never_collide_across_machines(first: str, second: str) -> None:
    """Every entity's unique_id is distinct across two machines (and from the bridge's)."""
    ids_first = _unique_ids(machine_discovery(SECTION, _device(first), with_energy=True))
    ids_second = _unique_ids(machine_discovery(SECTION, _device(second), with_energy=True))
    bridge = _unique_ids(bridge_discovery(SECTION))
    assert not ids_first & bridge
    if first != second:
        assert not ids_first & ids_second


def _unique_ids(messages: dict[str, bytes]) -> set[str]:
    return {json.loads(payload)["unique_id"] for payload in messages.values()}


def test_press_dot_1_and_press_underscore_1() -> None:
    """The case found in real use: two machines, two node ids."""
    assert node_id("press_1") == "iot_bridge_press_1"
    assert node_id("press.1") == "iot_bridge-press_2e1"
    assert node_id("a:b_c") == "iot_bridge-a_3ab_5fc"


@pytest.mark.parametrize(
    ("topic", "parser", "options", "family"),
    [
        ("s/status/pm1:0", "shelly_pm", {}, ("Shelly", "Shelly PM (Gen2+)")),
        ("s/status/em:0", "shelly_pm", {}, ("Shelly", "Shelly three-phase EM (Gen2+)")),
        (
            "s/events/rpc",
            "shelly_rpc",
            {"component": "switch:0"},
            ("Shelly", "Shelly switch with power metering (Gen2+)"),
        ),
        ("s/events/rpc", "shelly_rpc", {}, ("Shelly", "Shelly power meter (Gen2+)")),
        ("shellies/x/emeter/0/power", "shelly_gen1", {}, ("Shelly", "Shelly EM / 3EM (Gen1)")),
        ("shellies/x/relay/0/power", "shelly_gen1", {}, ("Shelly", "Shelly Gen1 power meter")),
        ("tele/plug/SENSOR", "tasmota", {}, ("Tasmota", "Tasmota energy monitor")),
        ("zigbee2mqtt/plug", "zigbee2mqtt", {}, (None, "Zigbee power meter (Zigbee2MQTT)")),
        ("any/json", "generic_json", {"power_path": "p"}, (None, "MQTT JSON power meter")),
    ],
)
def test_the_model_names_the_meter_family(
    topic: str, parser: str, options: dict[str, Any], family: tuple[str | None, str]
) -> None:
    """What the device page shows as maker and model comes from the parser and its component."""
    found = meter_family(_device("m", topic, parser, **options))
    assert (found.manufacturer, found.model) == family


def test_object_ids_hold_no_underscore() -> None:
    """unique_id = node + '_' + object stays one-to-one only while objects have no '_'."""
    topics = [
        *machine_discovery(SECTION, _device("m"), with_energy=True),
        *bridge_discovery(SECTION, shard=Shard(1, 3)),
    ]
    for topic in topics:
        object_id = topic.split("/")[-2]
        assert "_" not in object_id and HA_ID.fullmatch(object_id)
