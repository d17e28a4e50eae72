"""Every Home Assistant discovery config a real bridge publishes, collected for ``scripts/ha-test``.

Runs ``iot-bridge run`` as an operator does, against a mosquitto of its own:

1. unsharded, with Odoo (the stand-in) configured: a device of every parser
   family, ids with ``.`` and ``:`` next to their ``_`` look-alikes, readings
   with energy counters for all but one, and one meter gone offline;
2. one shard of two in local-only mode (no Odoo entity), under other prefixes.

After each run it reads what the broker holds retained under the run's
discovery prefix and state prefix, and writes both to a JSON file:
``{"runs": [{"name", "discovery_prefix", "discovery": {topic: payload},
"retained": {topic: payload}}]}``. ``tests/support/ha_validate.py`` checks it
with Home Assistant's own code.

    python3 -m tests.support.ha_payloads OUT.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.support.bridge_process import BridgeProcess, wait_until
from tests.support.mosquitto import MosquittoBroker, publish_many
from tests.support.mqtt_watch import retained
from tests.support.odoo_standin import OdooStandin

SESSION = {"start_debounce_s": 0.2, "stop_debounce_s": 0.2, "message_timeout_s": 600.0}

# device_id, parser_type, mqtt_topic, parser_options, readings (topic, payload) with energy
DEVICES: list[tuple[str, str, str, dict[str, Any], list[tuple[str, str]]]] = [
    (
        "press.1",
        "shelly_pm",
        "press-dot/status/pm1:0",
        {},
        [("press-dot/status/pm1:0", '{"id":0,"apower":80.5,"aenergy":{"total":1200.5}}')],
    ),
    (
        "press_1",  # its messages carry no counter: no energy sensor
        "shelly_pm",
        "press-underscore/status/pm1:0",
        {},
        [("press-underscore/status/pm1:0", '{"id":0,"apower":12.0}')],
    ),
    (
        "cell:7",
        "shelly_pm",
        "shellypro3em-cell/status/em:0",
        {},
        [
            ("shellypro3em-cell/status/em:0", '{"id":0,"total_act_power":2300.0}'),
            ("shellypro3em-cell/status/emdata:0", '{"id":0,"total_act":987654.3}'),
        ],
    ),
    (
        "lathe",
        "shelly_rpc",
        "lathe-rpc/events/rpc",
        {"component": "switch:0"},
        [
            (
                "lathe-rpc/events/rpc",
                '{"src":"lathe","method":"NotifyStatus","params":{"ts":1,'
                '"switch:0":{"id":0,"apower":150.0,"aenergy":{"total":20.0}}}}',
            )
        ],
    ),
    (
        "saw",
        "shelly_gen1",
        "shellies/saw/relay/0/power",
        {},
        [("shellies/saw/relay/0/power", "90"), ("shellies/saw/relay/0/energy", "600")],
    ),
    (
        "drill",
        "tasmota",
        "tele/drill/SENSOR",
        {},
        [("tele/drill/SENSOR", '{"ENERGY":{"Total":1.5,"Power":60}}')],
    ),
    (
        "fan",
        "zigbee2mqtt",
        "zigbee2mqtt/fan",
        {},
        [("zigbee2mqtt/fan", '{"power":40,"energy":2.5}')],
    ),
    (
        "oven",
        "generic_json",
        "plant/oven",
        {"power_path": "p", "energy_path": "e", "energy_unit": "wh"},
        [("plant/oven", '{"p":3000,"e":42}')],
    ),
]
WITHOUT_ENERGY = {"press_1"}
OFFLINE = ("press-dot/online", "false")  # press.1's meter says it is gone


def _document(
    broker: MosquittoBroker, *, state_out: dict[str, Any], odoo_url: str | None
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "mqtt": {"broker": broker.host, "port": broker.port, "client_id": "ha-payloads"},
        "state_out": {"enabled": True, **state_out},
        "devices": [
            {
                "device_id": device_id,
                "machine_name": f"Machine {device_id}",
                "mqtt_topic": topic,
                "parser_type": parser_type,
                "parser_options": options,
                "session_config": SESSION,
            }
            for device_id, parser_type, topic, options, _ in DEVICES
        ],
    }
    if odoo_url is not None:
        document["odoo"] = {"base_url": odoo_url}
    return document


def _states_settled(held: dict[str, bytes], topic_prefix: str, device_ids: Sequence[str]) -> bool:
    """Every machine's state retained with its counter, press.1's meter offline, the status."""
    if not [topic for topic in held if topic.endswith("/status")]:
        return False
    for device_id in device_ids:
        payload = held.get(f"{topic_prefix}/{device_id}/state")
        if not payload:
            return False
        state = json.loads(payload)
        if (state["energy_wh_total"] is None) != (device_id in WITHOUT_ENERGY):
            return False
        if device_id == "press.1" and state["online"] is not False:
            return False
    return True


def _energy_configs(held: dict[str, bytes]) -> int:
    return sum(1 for topic, payload in held.items() if topic.endswith("/energy/config") and payload)


def _run(
    work: Path,
    broker: MosquittoBroker,
    *,
    name: str,
    state_out: dict[str, str],
    odoo_url: str | None,
    env: dict[str, str],
    devices_in_run: Sequence[str],
) -> dict[str, Any]:
    config_file = work / f"{name}.yaml"
    document = _document(broker, state_out=state_out, odoo_url=odoo_url)
    config_file.write_text(yaml.safe_dump(document))
    bridge = BridgeProcess(data_dir=work / name, config_file=config_file, env=env)
    bridge.start()
    try:
        wait_until(lambda: bridge.health()["mqtt"]["connected"])
        readings = [reading for *_, device_readings in DEVICES for reading in device_readings]
        publish_many(broker, readings)
        publish_many(broker, [OFFLINE])
        prefix, topic_prefix = state_out["discovery_prefix"], state_out["topic_prefix"]
        expected = len([d for d in devices_in_run if d not in WITHOUT_ENERGY])
        wait_until(lambda: _energy_configs(retained(broker, f"{prefix}/#")) == expected)
        wait_until(
            lambda: _states_settled(
                retained(broker, f"{topic_prefix}/#"), topic_prefix, devices_in_run
            )
        )
        discovery = retained(broker, f"{prefix}/#")
        states = retained(broker, f"{topic_prefix}/#")
    finally:
        code = bridge.stop()
    if code != 0:
        raise SystemExit(f"the bridge of run {name!r} exited with {code}:\n{bridge.log()[-4000:]}")
    return {
        "name": name,
        "discovery_prefix": prefix,
        "discovery": {topic: payload.decode() for topic, payload in discovery.items()},
        "retained": {topic: payload.decode() for topic, payload in states.items()},
    }


def collect(work: Path) -> dict[str, Any]:
    """Both runs (see the module docstring); ``work`` holds their broker and data dirs."""
    from iot_bridge.config.shard import Shard

    runs = []
    broker = MosquittoBroker(work / "broker").start()
    odoo = OdooStandin().start()
    try:
        runs.append(
            _run(
                work,
                broker,
                name="whole",
                state_out={"topic_prefix": "iot-bridge", "discovery_prefix": "homeassistant"},
                odoo_url=odoo.url,
                env={},
                devices_in_run=[d for d, *_ in DEVICES],
            )
        )
        shard = Shard(1, 2)
        runs.append(
            _run(
                work,
                broker,
                name="shard-1-of-2",
                state_out={"topic_prefix": "plant/b", "discovery_prefix": "ha-b"},
                odoo_url=None,
                env={"BRIDGE_SHARD": str(shard)},
                devices_in_run=[d for d, *_ in DEVICES if shard.takes(d)],
            )
        )
    finally:
        odoo.stop()
        broker.stop()
    return {"runs": runs}


def main(argv: Sequence[str] | None = None) -> int:
    """Collect into the file named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="where to write the JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ha-payloads-") as tmp:
        found = collect(Path(tmp))
    args.out.write_text(json.dumps(found, indent=1, sort_keys=True))
    total = sum(len(run["discovery"]) for run in found["runs"])
    print(f"ha_payloads: {total} discovery configs from {len(found['runs'])} bridge runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
