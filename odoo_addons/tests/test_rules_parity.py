"""The addon's copy of the bridge's device rules agrees with the bridge itself.

``open_workshop_mqtt/bridge/rules.py`` restates, without Odoo, the checks
the bridge runs on ``POST /config`` (so that Odoo refuses a machine on save
instead of the bridge refusing the push). Each case here goes through both:
the bridge's ``parse_config`` and the addon's ``device_problems``; they must
accept the same devices and name the same fields. Runs in the bridge's venv
(pytest), as part of ``scripts/check``; no Odoo needed.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from iot_bridge.config.parse import parse_config
from iot_bridge.errors import ConfigError

_RULES = Path(__file__).parents[1] / "open_workshop_mqtt" / "bridge" / "rules.py"


def _load_rules() -> Any:
    spec = importlib.util.spec_from_file_location("open_workshop_mqtt_rules", _RULES)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


rules = _load_rules()

SESSION = {
    "standby_threshold_w": 5.0,
    "working_threshold_w": 50.0,
    "start_debounce_s": 3.0,
    "stop_debounce_s": 15.0,
    "message_timeout_s": 20.0,
    "heartbeat_interval_s": 300.0,
}


def device(**changes: Any) -> dict[str, Any]:
    """A valid shelly_pm device with ``changes`` applied (session_config keys too)."""
    session = {key: changes.pop(key) for key in list(changes) if key in SESSION}
    base: dict[str, Any] = {
        "device_id": "cnc-1",
        "machine_name": "CNC Mill",
        "mqtt_topic": "shelly-1/status/pm1:0",
        "parser_type": "shelly_pm",
        "session_config": {**SESSION, **session},
    }
    base.update(changes)
    return base


CASES = [
    device(),
    device(device_id="bad id"),
    device(device_id="x" * 65),
    device(machine_name="Lathe\nold"),
    device(machine_name="   "),
    device(mqtt_topic=" shelly-1/status/pm1:0"),
    device(mqtt_topic="shelly-1/#/pm1:0"),
    device(mqtt_topic="shelly-1+/status/pm1:0"),
    device(mqtt_topic="$share/g/shelly-1/status/pm1:0"),
    device(mqtt_topic="shelly-1/events/rpc"),
    device(mqtt_topic="shellypro3em-1/status/em1:0", parser_options={"channels": [0, 1, 2]}),
    device(mqtt_topic="shellypro3em-1/status/em1:1", parser_options={"channels": [0, 1]}),
    device(mqtt_topic="shellypro4pm-1/status/switch:0", parser_options={"channels": [0, 0]}),
    device(parser_options={"channels": [0, 1]}),
    device(mqtt_topic="shellypro3em-1/status/em:0", parser_options={"channels": [0]}),
    device(parser_options={"component": "pm1:0"}),
    device(parser_type="shelly_rpc", mqtt_topic="plus1pm-1/events/rpc"),
    device(
        parser_type="shelly_rpc",
        mqtt_topic="pro4pm-1/events/rpc",
        parser_options={"component": "switch:0", "channels": [0, 1]},
    ),
    device(
        parser_type="shelly_rpc",
        mqtt_topic="pro4pm-1/events/rpc",
        parser_options={"component": "switch:1", "channels": [0, 1]},
    ),
    device(parser_type="shelly_rpc", mqtt_topic="x/events/rpc", parser_options={"component": "a"}),
    device(parser_type="shelly_rpc", mqtt_topic="x/status/pm1:0"),
    device(parser_type="shelly_gen1", mqtt_topic="shellies/s1/relay/0/power"),
    device(
        parser_type="shelly_gen1",
        mqtt_topic="shellies/em3/emeter/0/power",
        parser_options={"channels": [0, 1, 2]},
    ),
    device(parser_type="shelly_gen1", mqtt_topic="shellies/s1/relay/a/power"),
    device(parser_type="shelly_gen1", mqtt_topic="relay/0/power"),
    device(parser_type="tasmota", mqtt_topic="tele/plug/SENSOR", parser_options={"channel": 1}),
    device(parser_type="tasmota", mqtt_topic="tele/plug/SENSOR", parser_options={"channel": 256}),
    device(
        parser_type="tasmota",
        mqtt_topic="tele/plug/SENSOR",
        parser_options={"channel": 0, "channels": [0]},
    ),
    device(parser_type="tasmota", mqtt_topic="tele/plug/STATE"),
    device(parser_type="tasmota", mqtt_topic="SENSOR"),
    device(parser_type="zigbee2mqtt", mqtt_topic="zigbee2mqtt/Lathe Plug"),
    device(parser_type="zigbee2mqtt", mqtt_topic="zigbee2mqtt/bridge/state"),
    device(parser_type="zigbee2mqtt", mqtt_topic="zigbee2mqtt/plug/availability"),
    device(
        parser_type="zigbee2mqtt",
        mqtt_topic="zigbee2mqtt/plug",
        parser_options={"power_paths": ["power", "power"]},
    ),
    device(parser_type="zigbee2mqtt", mqtt_topic="z/plug", parser_options={"power_paths": []}),
    device(parser_type="generic_json", mqtt_topic="meters/x"),
    device(parser_type="generic_json", mqtt_topic="m/x", parser_options={"power_path": "a.b"}),
    device(parser_type="generic_json", mqtt_topic="m/x", parser_options={"power_path": "a..b"}),
    device(
        parser_type="generic_json",
        mqtt_topic="m/x",
        parser_options={"power_path": "a", "power_paths": ["b"]},
    ),
    device(
        parser_type="generic_json",
        mqtt_topic="m/x",
        parser_options={"power_path": "a", "energy_unit": "kwh"},
    ),
    device(
        parser_type="generic_json",
        mqtt_topic="m/x",
        parser_options={"power_path": "a", "energy_path": "e", "energy_unit": "mwh"},
    ),
    device(parser_type="nope"),
    device(standby_threshold_w=0.0),
    device(standby_threshold_w=60.0),
    device(working_threshold_w=100_001.0),
    device(start_debounce_s=-1.0),
    device(stop_debounce_s=3600.0),
    device(message_timeout_s=0.5),
    device(heartbeat_interval_s=9.0),
    device(heartbeat_interval_s=86_400.0),
]


def _field(path: str) -> str:
    """The field a path names, at the depth the addon reports (``parser_options`` keys)."""
    parts = path.split(".")
    if parts[0] == "parser_options" and len(parts) > 1:
        return ".".join(parts[:2])
    return ".".join(parts[:2]) if parts[0] == "session_config" else parts[0]


def bridge_fields(case: dict[str, Any]) -> set[str]:
    try:
        parse_config({"devices": [case]})
    except ConfigError as err:
        return {_field(issue.path.removeprefix("devices.0.")) for issue in err.issues}
    return set()


@pytest.mark.parametrize("case", CASES, ids=[str(index) for index in range(len(CASES))])
def test_the_addon_and_the_bridge_refuse_the_same_fields(case: dict[str, Any]) -> None:
    """Each device is accepted by both or refused by both, for the same fields."""
    addon = {_field(path) for path, _message in rules.device_problems(case)}
    assert addon == bridge_fields(case)


def test_every_case_kind_is_covered() -> None:
    """The table holds accepted devices and refused ones of every parser type."""
    refused = [case for case in CASES if bridge_fields(case)]
    assert 0 < len(refused) < len(CASES)
    assert {case["parser_type"] for case in CASES} >= set(rules.PARSER_OPTIONS)


def test_broker_rules_agree() -> None:
    """The broker checks refuse what the bridge's mqtt section refuses."""
    good = {
        "broker": "mosquitto",
        "port": 1883,
        "username": "",
        "password": "",
        "client_id": "iot_bridge",
        "keepalive": 60,
        "use_tls": False,
        "tls_insecure": False,
    }
    cases = [
        good,
        {**good, "broker": "mqtt://x"},
        {**good, "broker": "a b"},
        {**good, "port": 0},
        {**good, "port": 70_000},
        {**good, "client_id": "iot bridge"},
        {**good, "keepalive": 4},
        {**good, "ca_file": "/etc/ca.pem"},
    ]
    for section in cases:
        try:
            parse_config({"mqtt": section, "devices": []})
        except ConfigError as err:
            bridge = {issue.path.removeprefix("mqtt.") for issue in err.issues}
        else:
            bridge = set()
        addon = {path for path, _message in rules.broker_problems(section)}
        assert addon == bridge, section
