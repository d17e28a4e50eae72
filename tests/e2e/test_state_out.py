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
    "homeassistant/binary_sensor/iot_bridge_{d}/connectivity/config",
)
AVAILABILITY = "iot-bridge/bridge/availability"
# The one availability template the bridge publishes; scripts/ha-test renders it with
# Home Assistant's own engine, these tests read it as Home Assistant does.
METER_ONLINE = "{{ 'online' if value_json.online else 'offline' }}"


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
            assert entity["availability"][0] == {"topic": AVAILABILITY}
    publish(broker, "mill/status/pm1:0", power(200.0, 10.0))
    state = wait_until(lambda: (s := _state(broker, "mill")) and s["state"] == "working" and s)
    assert set(state) == {
        "device_id", "machine_name", "state", "online", "power_w",
        "session_id", "session_started_at", "updated_at", "energy_wh_total",
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


def _ha_available(entity: dict[str, Any], held: dict[str, bytes]) -> bool:
    """Whether Home Assistant shows ``entity`` available, from what the broker holds."""
    verdicts = []
    for entry in entity["availability"]:
        payload = held.get(entry["topic"])
        if not payload:
            verdicts.append(False)  # nothing heard yet: Home Assistant waits, unavailable
            continue
        if "value_template" in entry:
            assert entry["value_template"] == METER_ONLINE
            said = "online" if json.loads(payload)["online"] else "offline"
        else:
            said = payload.decode()
        verdicts.append(said == entry.get("payload_available", "online"))
    assert entity.get("availability_mode", "all" if len(verdicts) == 1 else None) == "all"
    return all(verdicts)


def _entities(broker: MosquittoBroker, node: str) -> dict[str, dict[str, Any]]:
    """A machine's discovery configs by object id."""
    held = retained(broker, f"homeassistant/+/{node}/+/config")
    return {topic.split("/")[-2]: json.loads(payload) for topic, payload in held.items() if payload}


def test_an_offline_meter_turns_its_measurements_unavailable_and_says_so(
    mosquitto_factory, bridge_factory, tmp_path: Path
) -> None:
    """Meter offline: power, energy, state, running unavailable (no stale power); connectivity off."""
    broker: MosquittoBroker = mosquitto_factory()
    bridge = _bridge(broker, bridge_factory, tmp_path)
    publish(broker, "mill/status/pm1:0", power(444.9, 1000.0))
    wait_until(lambda: "energy" in _entities(broker, "iot_bridge_mill"))
    entities = _entities(broker, "iot_bridge_mill")
    assert set(entities) == {"state", "power", "running", "connectivity", "energy"}
    held = retained(broker, "#")
    assert all(_ha_available(entity, held) for entity in entities.values())

    publish(broker, "mill/online", "false")  # the Shelly's own availability topic
    wait_until(lambda: (s := _state(broker, "mill")) and s["online"] is False)
    held = retained(broker, "#")
    state = json.loads(held["iot-bridge/mill/state"])
    assert state["power_w"] == 444.9  # still the last value known, for the record...
    for name in ("state", "power", "running", "energy"):  # ...but never shown as current
        assert not _ha_available(entities[name], held), name
    assert _ha_available(entities["connectivity"], held)
    assert state["online"] is False  # the connectivity sensor reads OFF

    publish(broker, "mill/status/pm1:0", power(0.0, 1001.0))  # back
    wait_until(lambda: (s := _state(broker, "mill")) and s["online"] is True)
    held = retained(broker, "#")
    assert all(_ha_available(entity, held) for entity in entities.values())
    bridge.kill()  # the bridge's will: everything unavailable, connectivity included
    wait_until(lambda: retained(broker, AVAILABILITY).get(AVAILABILITY) == b"offline")
    held = retained(broker, "#")
    assert not any(_ha_available(entity, held) for entity in entities.values())


def test_press_dot_1_and_press_underscore_1_stay_two_machines_and_removal_keeps_the_other(
    mosquitto_factory, bridge_factory, tmp_path: Path
) -> None:
    """Two ids that used to collide: two devices; removing press.1 leaves press_1's discovery."""
    broker: MosquittoBroker = mosquitto_factory()
    document = config(broker, device("press.1", prefix="pressdot"), device("press_1"))
    document["state_out"] = {"enabled": True}
    cfg = write_config(tmp_path / "c.yaml", document)
    bridge: BridgeProcess = bridge_factory(config_file=cfg, token="t0ken").start()
    wait_until(lambda: len(_entities(broker, "iot_bridge-press_2e1")) == 4)
    wait_until(lambda: len(_entities(broker, "iot_bridge_press_1")) == 4)
    dot, underscore = (
        _entities(broker, "iot_bridge-press_2e1"),
        _entities(broker, "iot_bridge_press_1"),
    )
    assert {e["device"]["name"] for e in dot.values()} == {"Machine press.1"}
    assert {e["device"]["name"] for e in underscore.values()} == {"Machine press_1"}
    assert not {e["unique_id"] for e in dot.values()} & {
        e["unique_id"] for e in underscore.values()
    }
    assert {e["state_topic"] for e in dot.values()} == {"iot-bridge/press.1/state"}

    document["devices"] = [d for d in document["devices"] if d["device_id"] == "press_1"]
    reply = bridge.post("/config", json=document)
    assert reply.status_code == 200, reply.text
    wait_until(lambda: not _entities(broker, "iot_bridge-press_2e1"))
    assert "iot-bridge/press.1/state" not in retained(broker, "iot-bridge/#")
    assert _entities(broker, "iot_bridge_press_1") == underscore
    assert _state(broker, "press_1") is not None


def test_the_bridge_is_a_device_with_its_diagnostics(
    mosquitto_factory, odoo_standin, bridge_factory, tmp_path: Path
) -> None:
    """Outbox, Odoo and MQTT protocol on the bridge's own device; each machine hangs from it."""
    broker: MosquittoBroker = mosquitto_factory()
    document = _document(broker, "mill")
    document["odoo"] = {"base_url": odoo_standin.url}
    bridge: BridgeProcess = bridge_factory(
        config_file=write_config(tmp_path / "c.yaml", document)
    ).start()
    wait_until(lambda: bridge.health()["mqtt"]["connected"])
    wait_until(lambda: len(_entities(broker, "iot_bridge-bridge")) == 3)
    bridge_entities = _entities(broker, "iot_bridge-bridge")
    assert set(bridge_entities) == {"outbox", "odoo", "mqtt"}
    assert all(e["entity_category"] == "diagnostic" for e in bridge_entities.values())
    machine = _entities(broker, "iot_bridge_mill")["power"]
    assert machine["device"]["via_device"] == "iot_bridge-bridge"
    assert machine["origin"]["name"] == "iot-bridge"
    status = json.loads(retained(broker, "iot-bridge/bridge/status")["iot-bridge/bridge/status"])
    assert (status["mqtt_protocol"], status["odoo_configured"], status["odoo_reachable"]) == (
        "5",
        True,
        True,
    )
    assert status["outbox_pending"] == 0
