"""Machine state out on MQTT against a real mosquitto and the ``iot-bridge run`` process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.conftest import config, device, power, write_config
from tests.support.bridge_process import BridgeProcess, wait_until
from tests.support.mosquitto import MosquittoBroker, publish
from tests.support.mqtt_watch import retained

DISCOVERY = (
    "homeassistant/sensor/iot_bridge_{d}/state/config",
    "homeassistant/sensor/iot_bridge_{d}/power/config",
    "homeassistant/binary_sensor/iot_bridge_{d}/running/config",
)
AVAILABILITY = "iot-bridge/bridge/availability"


def _document(broker: MosquittoBroker, *device_ids: str) -> dict[str, Any]:
    document = config(broker, *(device(d) for d in device_ids))
    document["state_out"] = {"enabled": True}
    return document


def _bridge(broker: MosquittoBroker, bridge_factory: Any, tmp_path: Path) -> BridgeProcess:
    cfg = write_config(tmp_path / "c.yaml", _document(broker, "mill", "lathe"))
    bridge: BridgeProcess = bridge_factory(config_file=cfg, token="t0ken").start()
    wait_until(lambda: bridge.health()["mqtt"]["connected"])
    return bridge


def _state(broker: MosquittoBroker, device_id: str) -> dict[str, Any] | None:
    payload = retained(broker, f"iot-bridge/{device_id}/state").get(f"iot-bridge/{device_id}/state")
    return json.loads(payload) if payload else None


def test_states_availability_and_discovery_are_retained(
    mosquitto_factory, bridge_factory, tmp_path: Path
) -> None:
    """Each machine's state, the bridge's availability and HA discovery wait retained on the broker."""
    broker: MosquittoBroker = mosquitto_factory()
    _bridge(broker, bridge_factory, tmp_path)
    wait_until(lambda: retained(broker, AVAILABILITY).get(AVAILABILITY) == b"online")
    held = retained(broker, "homeassistant/#")
    for device_id in ("mill", "lathe"):
        for topic in DISCOVERY:
            entity = json.loads(held[topic.format(d=device_id)])
            assert entity["state_topic"] == f"iot-bridge/{device_id}/state"
            assert entity["availability_topic"] == AVAILABILITY
    publish(broker, "mill/status/pm1:0", power(200.0, 10.0))
    state = wait_until(lambda: (s := _state(broker, "mill")) and s["state"] == "working" and s)
    assert set(state) == {
        "device_id", "machine_name", "state", "online", "power_w",
        "session_id", "session_started_at", "updated_at",
    }  # fmt: skip
    assert (state["power_w"], state["online"], state["machine_name"]) == (
        200.0,
        True,
        "Machine mill",
    )
    assert state["session_id"] and state["session_started_at"]
    publish(broker, "mill/status/pm1:0", power(0.0, 11.0))
    wait_until(lambda: (s := _state(broker, "mill")) and s["state"] == "idle")


def test_a_removed_device_has_its_retained_topics_cleared(
    mosquitto_factory, bridge_factory, tmp_path: Path
) -> None:
    """A config push without a device empties its state and its discovery configs."""
    broker: MosquittoBroker = mosquitto_factory()
    bridge = _bridge(broker, bridge_factory, tmp_path)
    wait_until(lambda: "iot-bridge/lathe/state" in retained(broker, "iot-bridge/#"))
    reply = bridge.post("/config", json=_document(broker, "mill"))
    assert reply.status_code == 200, reply.text
    wait_until(lambda: "iot-bridge/lathe/state" not in retained(broker, "iot-bridge/#"))
    held = retained(broker, "#")
    assert not [topic for topic in held if "lathe" in topic]
    assert "iot-bridge/mill/state" in held
    assert held["homeassistant/sensor/iot_bridge_mill/power/config"]


def test_the_will_says_offline_when_the_bridge_dies_and_online_again_after(
    mosquitto_factory, bridge_factory, tmp_path: Path
) -> None:
    """kill -9: the broker publishes the will (offline, retained); a restart says online."""
    broker: MosquittoBroker = mosquitto_factory()
    bridge = _bridge(broker, bridge_factory, tmp_path)
    wait_until(lambda: retained(broker, AVAILABILITY).get(AVAILABILITY) == b"online")
    bridge.kill()
    wait_until(lambda: retained(broker, AVAILABILITY).get(AVAILABILITY) == b"offline")
    bridge.start()
    wait_until(lambda: retained(broker, AVAILABILITY).get(AVAILABILITY) == b"online")
    assert bridge.stop() == 0
    wait_until(lambda: retained(broker, AVAILABILITY).get(AVAILABILITY) == b"offline")


def test_without_state_out_the_bridge_publishes_nothing(
    mosquitto_factory, bridge_factory, tmp_path: Path
) -> None:
    """The section absent: no state, availability or discovery topic appears."""
    broker: MosquittoBroker = mosquitto_factory()
    cfg = write_config(tmp_path / "c.yaml", config(broker, device("mill")))
    bridge: BridgeProcess = bridge_factory(config_file=cfg).start()
    wait_until(lambda: bridge.health()["mqtt"]["connected"])
    publish(broker, "mill/status/pm1:0", power(200.0, 10.0))
    wait_until(lambda: "session_started" in bridge.event_types())
    assert retained(broker, "#") == {}
