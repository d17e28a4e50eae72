"""Two ``iot-bridge run`` instances with BRIDGE_SHARD=1/2 and 2/2 on one mosquitto and one Odoo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from iot_bridge.config.shard import shard_of
from tests.e2e.conftest import config, device, power, write_config
from tests.support.bridge_process import BridgeProcess, wait_until
from tests.support.mosquitto import MosquittoBroker, publish_many
from tests.support.odoo_standin import OdooStandin

DEVICE_IDS = ["mill", "lathe", "press", "drill", "saw", "router", "welder"]


def _start_shards(
    broker: MosquittoBroker, odoo: OdooStandin, bridge_factory: Any, tmp_path: Path
) -> tuple[dict[str, Any], list[BridgeProcess]]:
    """The same config file for both; each instance with its own shard and data dir."""
    document = config(broker, *(device(d) for d in DEVICE_IDS))
    cfg = write_config(tmp_path / "c.yaml", document)
    env = {"ODOO_BASE_URL": odoo.url}
    bridges = [
        bridge_factory(f"shard{i}", config_file=cfg, env={**env, "BRIDGE_SHARD": f"{i}/2"})
        for i in (1, 2)
    ]
    for bridge in bridges:
        bridge.start()
    for bridge in bridges:
        wait_until(lambda b=bridge: b.health()["mqtt"]["connected"])
    return document, bridges


def _owned(index: int) -> set[str]:
    return {d for d in DEVICE_IDS if shard_of(d, 2) == index}


def _readings(watts: float, energy_wh: float) -> list[tuple[str, str]]:
    return [(f"{d}/status/pm1:0", power(watts, energy_wh)) for d in DEVICE_IDS]


def test_each_device_is_run_by_exactly_one_instance_and_kill_9_loses_nothing(
    mosquitto_factory, odoo_standin: OdooStandin, bridge_factory, tmp_path: Path
) -> None:
    """Every device's events come from one instance only; a killed instance resumes its sessions."""
    assert _owned(1) and _owned(2)  # the stable hash splits these ids between both
    broker: MosquittoBroker = mosquitto_factory()
    _, (first, second) = _start_shards(broker, odoo_standin, bridge_factory, tmp_path)
    for index, bridge in ((1, first), (2, second)):
        health = bridge.health()
        assert health["shard"] == f"{index}/2"
        assert health["devices"] == len(_owned(index))
        assert {d["device_id"] for d in bridge.get("/devices").json()} == _owned(index)
        [connected] = bridge.log_events("mqtt_connected")
        assert connected["client_id"] == f"bridge-e2e-shard{index}"

    publish_many(broker, _readings(150.0, 10.0))
    for index, bridge in ((1, first), (2, second)):
        wait_until(
            lambda b=bridge, i=index: (
                {e["device_id"] for e in b.events() if e["event_type"] == "session_started"}
                == _owned(i)
            )
        )
    sessions = {d: second.device(d)["session_id"] for d in _owned(2)}

    second.kill()  # its devices' next readings wait in its persistent session
    publish_many(broker, _readings(0.0, 12.0))
    wait_until(lambda: first.event_types().count("session_stopped") == len(_owned(1)))
    second.start()
    wait_until(lambda: second.event_types().count("session_stopped") == len(_owned(2)))

    for index, bridge in ((1, first), (2, second)):
        assert {e["device_id"] for e in bridge.events()} == _owned(index)
    for device_id in _owned(2):
        stops = [e for e in second.events() if e["event_type"] == "session_stopped"]
        [stop] = [e for e in stops if e["device_id"] == device_id]
        assert stop["session_id"] == sessions[device_id]
        assert stop["data"]["energy_wh"] == 2.0
    emitted = {e["event_uid"]: e for bridge in (first, second) for e in bridge.events()}
    wait_until(lambda: {e["event_uid"] for e in odoo_standin.events} == set(emitted))
    for device_id in DEVICE_IDS:
        owner = first if device_id in _owned(1) else second
        delivered = [e["event_uid"] for e in odoo_standin.events_for(device_id)]
        assert delivered == [e["event_uid"] for e in owner.events() if e["device_id"] == device_id]
        kinds = [e["event_type"] for e in odoo_standin.events_for(device_id)]
        assert kinds.count("session_started") == 1 and kinds.count("session_stopped") == 1
        assert kinds[0] == "device_online" and kinds[-1] == "session_stopped"


def test_every_instance_takes_the_whole_pushed_config_and_keeps_only_its_shard(
    mosquitto_factory, odoo_standin: OdooStandin, bridge_factory, tmp_path: Path
) -> None:
    """POST /config of one document to both: each persists all of it and reports the devices it took."""
    broker: MosquittoBroker = mosquitto_factory()
    document, bridges = _start_shards(broker, odoo_standin, bridge_factory, tmp_path)
    pushed = {**document, "devices": [*document["devices"], device("grinder")]}
    everyone = {*DEVICE_IDS, "grinder"}
    for index, bridge in enumerate(bridges, start=1):
        taken = {d for d in everyone if shard_of(d, 2) == index}
        reply = bridge.post("/config", json=pushed)
        assert reply.status_code == 200, reply.text
        assert reply.json()["devices_configured"] == len(taken)
        assert {d["device_id"] for d in bridge.get("/config").json()["devices"]} == everyone
        assert bridge.health()["devices"] == len(taken)
        assert {d["device_id"] for d in bridge.get("/devices").json()} == taken
    for bridge in bridges:  # the whole config was persisted: a restart keeps it
        assert bridge.stop() == 0
        bridge.start()
        assert {d["device_id"] for d in bridge.get("/config").json()["devices"]} == everyone


def _spread(old: int, new: int) -> list[str]:
    """One device id for each (owner of 2, owner of 3) pair: stays, moves, goes to the new one."""
    wanted = {(i, j) for i in range(1, old + 1) for j in range(1, new + 1)}
    chosen: dict[tuple[int, int], str] = {}
    for n in range(1000):
        device_id = f"machine-{n}"
        chosen.setdefault((shard_of(device_id, old), shard_of(device_id, new)), device_id)
        if set(chosen) == wanted:
            break
    assert set(chosen) == wanted
    return [chosen[key] for key in sorted(chosen)]


def test_going_from_two_instances_to_three_moves_each_device_once_and_loses_nothing(
    mosquitto_factory, odoo_standin: OdooStandin, bridge_factory, tmp_path: Path
) -> None:
    """2 -> 3 instances: each device in exactly one; a moved session ends (device_removed) in the
    old one and a new one starts in the new one; every event reaches Odoo once, in order."""
    broker: MosquittoBroker = mosquitto_factory()
    device_ids = _spread(2, 3)
    cfg = write_config(tmp_path / "c.yaml", config(broker, *(device(d) for d in device_ids)))
    env = {"ODOO_BASE_URL": odoo_standin.url}

    def instance(index: int, count: int) -> BridgeProcess:
        # Instance i keeps its data dir (and MQTT session) whatever N is, as an operator does.
        bridge: BridgeProcess = bridge_factory(
            f"shard{index}-of-{count}",
            data_dir=tmp_path / f"data{index}",
            config_file=cfg,
            env={**env, "BRIDGE_SHARD": f"{index}/{count}"},
        )
        return bridge.start()

    def readings(watts: float, energy_wh: float) -> list[tuple[str, str]]:
        return [(f"{d}/status/pm1:0", power(watts, energy_wh)) for d in device_ids]

    two = [instance(i, 2) for i in (1, 2)]
    for bridge in two:
        wait_until(lambda b=bridge: b.health()["mqtt"]["connected"])
    publish_many(broker, readings(150.0, 10.0))
    for index, bridge in enumerate(two, start=1):
        owned = {d for d in device_ids if shard_of(d, 2) == index}
        wait_until(
            lambda b=bridge, o=owned: (
                {e["device_id"] for e in b.events() if e["event_type"] == "session_started"} == o
            )
        )
    first_sessions = {d: two[shard_of(d, 2) - 1].device(d)["session_id"] for d in device_ids}
    for bridge in two:
        assert bridge.stop() == 0

    three = [instance(i, 3) for i in (1, 2, 3)]
    for bridge in three:
        wait_until(lambda b=bridge: b.health()["mqtt"]["connected"])
    taken = [{d["device_id"] for d in bridge.get("/devices").json()} for bridge in three]
    assert sorted(d for owned in taken for d in owned) == sorted(device_ids)  # once each
    for index, owned in enumerate(taken, start=1):
        assert owned == {d for d in device_ids if shard_of(d, 3) == index}
    moved = {d for d in device_ids if shard_of(d, 2) != shard_of(d, 3)}
    stayed = set(device_ids) - moved
    assert moved and stayed
    removed = []
    for device_id in moved:  # ended at start-up by the instance that had it, from its snapshot
        old = three[shard_of(device_id, 2) - 1]
        [ended] = [
            e
            for e in old.events()
            if e["event_type"] == "session_stopped" and e["device_id"] == device_id
        ]
        assert ended["session_id"] == first_sessions[device_id]
        assert ended["data"]["reason"] == "device_removed"
        removed.append(ended["event_uid"])
    for device_id in stayed:  # resumed where it was
        owner = three[shard_of(device_id, 3) - 1]
        assert owner.device(device_id)["session_id"] == first_sessions[device_id]

    # The old instances' stops reach Odoo before the new sessions exist: one order to check.
    wait_until(lambda: set(removed) <= set(odoo_standin.event_uids))
    publish_many(broker, readings(150.0, 12.0))
    for device_id in moved:
        owner = three[shard_of(device_id, 3) - 1]
        wait_until(lambda b=owner, d=device_id: b.device(d)["session_id"] is not None)
        assert owner.device(device_id)["session_id"] != first_sessions[device_id]
    publish_many(broker, readings(0.0, 13.0))
    for index, bridge in enumerate(three, start=1):
        owned = taken[index - 1]
        wait_until(lambda b=bridge, o=owned: all(b.device(d)["session_id"] is None for d in o))

    emitted = {e["event_uid"]: e for bridge in three for e in bridge.events()}
    wait_until(lambda: {e["event_uid"] for e in odoo_standin.events} == set(emitted))
    assert odoo_standin.duplicates == []
    for device_id in device_ids:
        kinds = [
            (e["event_type"], e["data"].get("reason"))
            for e in odoo_standin.events_for(device_id)
            if e["event_type"] in ("session_started", "session_stopped")
        ]
        if device_id in moved:
            assert kinds == [
                ("session_started", None),
                ("session_stopped", "device_removed"),
                ("session_started", None),
                ("session_stopped", "power_off"),
            ], device_id
        else:
            assert kinds == [("session_started", None), ("session_stopped", "power_off")]
            [stop] = [
                e
                for e in odoo_standin.events_for(device_id)
                if e["event_type"] == "session_stopped"
            ]
            assert stop["session_id"] == first_sessions[device_id]
            assert stop["data"]["energy_wh"] == 3.0
