"""The seed's end-to-end scenarios: Odoo's model hooks push config, sessions flow back.

Each test runs the real ``iot-bridge run`` process against a real mosquitto
and the Odoo stand-in; ``OdooModule`` plays the Odoo module's ``mqtt.device``
hooks (create / write / unlink push the whole device list to ``POST /config``,
plus the "Push Config to Bridge" button). The last three run the device
simulator (``iot-bridge simulate``) sped up, as the seed's ``online_test`` and
``offline_test``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from iot_bridge.config.parse import parse_config
from iot_bridge.config.sources import persist_config
from tests.e2e.conftest import power
from tests.support.bridge_process import BridgeProcess, free_port, wait_until
from tests.support.mosquitto import MosquittoBroker, publish, publish_many
from tests.support.odoo_module import (
    BrokerRecord,
    OdooModule,
    PushFailedError,
    PushRefusedError,
)
from tests.support.odoo_standin import OdooStandin

TOKEN = "seed-push-token-0123456789"
CLIENT_ID = "bridge-seed-e2e"


@dataclass
class OdooSide:
    """A broker, the Odoo stand-in (events in), the bridge and the Odoo module (config out)."""

    broker: MosquittoBroker
    odoo: OdooStandin
    bridge: BridgeProcess
    module: OdooModule

    def reading(self, device_id: str, watts: float, energy_wh: float | None = None) -> None:
        """One Shelly ``status/pm1:0`` message from the device."""
        publish(self.broker, f"{device_id}/status/pm1:0", power(watts, energy_wh))

    def events(self, device_id: str) -> list[dict[str, Any]]:
        """The bridge's events of one device, oldest first."""
        return [e for e in self.bridge.events() if e["device_id"] == device_id]

    def types(self, device_id: str) -> list[str]:
        """Event types of one device, oldest first."""
        return [e["event_type"] for e in self.events(device_id)]

    def delivered(self, device_id: str, count: int) -> list[dict[str, Any]]:
        """Wait until Odoo holds ``count`` events of the device; returns them in arrival order."""
        return list(
            wait_until(
                lambda: (found := self.odoo.events_for(device_id)) and len(found) >= count and found
            )
        )


@pytest.fixture
def odoo_side(
    mosquitto_factory: Callable[..., MosquittoBroker],
    odoo_standin: OdooStandin,
    bridge_factory: Callable[..., BridgeProcess],
) -> Iterator[OdooSide]:
    """A bridge started with no config (the environment's broker and Odoo, a token)."""
    broker = mosquitto_factory()
    env = {
        "MQTT_BROKER": broker.host,
        "MQTT_PORT": str(broker.port),
        "MQTT_CLIENT_ID": CLIENT_ID,
        "ODOO_BASE_URL": odoo_standin.url,
    }
    bridge = bridge_factory(env=env, token=TOKEN).start()
    wait_until(lambda: bridge.health()["mqtt"]["connected"])
    record = BrokerRecord(host=broker.host, port=broker.port, client_id=CLIENT_ID)
    with OdooModule(bridge_url=bridge.url, token=TOKEN, broker=record) as module:
        yield OdooSide(broker, odoo_standin, bridge, module)


def machine(device_id: str, **fields: Any) -> dict[str, Any]:
    """``mqtt.device`` vals for a Shelly on ``<device_id>/status/pm1:0``, with fast timings."""
    return {
        "name": f"Machine {device_id}",
        "device_id": device_id,
        "mqtt_topic": f"{device_id}/status/pm1:0",
        "parser_type": "shelly_pm",
        "standby_threshold_w": 5.0,
        "working_threshold_w": 50.0,
        "start_debounce_s": 0.3,
        "stop_debounce_s": 0.5,
        "message_timeout_s": 60.0,
        **fields,
    }


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


# -- the five seed scenarios ----------------------------------------------------------


def test_device_created_in_odoo_is_subscribed_and_its_sessions_reach_odoo(
    odoo_side: OdooSide,
) -> None:
    """Create → whole list pushed → bridge subscribes; a session's events reach Odoo in order."""
    side = odoo_side
    assert side.bridge.health()["devices"] == 0
    assert side.bridge.health()["last_config_update"] is None
    reply = side.module.create(machine("mill"))
    assert reply.ok and reply.devices_sent == ("mill",)
    assert reply.body is not None and reply.body["devices_configured"] == 1
    health = side.bridge.health()
    assert health["devices"] == 1 and health["subscriptions"] == 2
    assert health["last_config_update"] == reply.body["timestamp"]
    wait_until(lambda: side.bridge.health()["mqtt"]["connected"])
    shown = side.bridge.device("mill")
    assert shown["machine_name"] == "Machine mill" and shown["state"] == "idle"

    side.reading("mill", 200.0, 10.0)
    wait_until(lambda: "session_started" in side.types("mill"))
    # A second device: the hook sends the whole list, the running session is untouched.
    second = side.module.create(machine("laser"))
    assert second.devices_sent == ("mill", "laser") and second.body is not None
    assert second.body["devices_configured"] == 2
    assert side.bridge.health()["subscriptions"] == 4
    side.reading("mill", 0.0, 12.0)
    wait_until(lambda: "session_stopped" in side.types("mill"))

    delivered = side.delivered("mill", 3)
    assert [e["event_type"] for e in delivered] == [
        "device_online",
        "session_started",
        "session_stopped",
    ]
    started, stopped = delivered[1], delivered[2]
    assert started["machine_name"] == "Machine mill" and started["data"]["state"] == "working"
    assert stopped["session_id"] == started["session_id"] is not None
    assert stopped["data"]["reason"] == "power_off" and stopped["data"]["energy_wh"] == 2.0
    assert side.odoo.events_for("laser") == []
    wait_until(lambda: all(e["status"] == "delivered" for e in side.bridge.events()))


def test_threshold_updated_in_odoo_applies_without_resetting_the_session(
    odoo_side: OdooSide,
) -> None:
    """Write working_threshold_w → pushed; the running session goes on, new readings use it."""
    side = odoo_side
    side.module.create(machine("mill"))
    side.reading("mill", 100.0)
    wait_until(lambda: side.bridge.device("mill")["state"] == "working")
    session_id = side.bridge.device("mill")["session_id"]
    before = side.types("mill")

    assert side.module.write("mill", {"notes": "oiled"}) is None  # not a bridge field: no push
    assert len(side.module.replies) == 1
    reply = side.module.write("mill", {"working_threshold_w": 150.0})
    assert reply is not None and reply.ok and len(side.module.replies) == 2
    assert side.types("mill") == before  # the push itself emits nothing
    assert (
        side.bridge.device("mill")["state"] == "working"
    )  # thresholds apply from the next reading
    assert side.bridge.device("mill")["session_id"] == session_id
    pushed = side.bridge.get("/config").json()["devices"][0]["session_config"]
    assert pushed["working_threshold_w"] == 150.0

    side.reading("mill", 100.0)
    wait_until(lambda: side.bridge.device("mill")["state"] == "standby")
    assert side.bridge.device("mill")["session_id"] == session_id
    side.reading("mill", 0.0)
    wait_until(lambda: "session_stopped" in side.types("mill"))
    side.reading("mill", 100.0)
    wait_until(lambda: side.types("mill").count("session_started") == 2)

    events = side.events("mill")
    assert [e["event_type"] for e in events] == [
        "device_online",
        "session_started",
        "session_stopped",
        "session_started",
    ]
    assert events[1]["session_id"] == events[2]["session_id"] == session_id
    assert events[1]["data"]["state"] == "working"
    assert events[3]["data"]["state"] == "standby"  # 100 W is below the new 150 W
    assert events[3]["session_id"] != session_id
    # Standby time after the update: the stopped session counts it as standby, not working.
    assert events[2]["data"]["standby_s"] > 0
    side.delivered("mill", 4)


def test_manual_push_without_changes_changes_nothing(odoo_side: OdooSide) -> None:
    """The button re-sends the same list: 200, no reconnect, no event, the session goes on."""
    side = odoo_side
    side.module.create(machine("mill"))
    side.reading("mill", 100.0)
    wait_until(lambda: side.bridge.device("mill")["session_id"])
    device_before = side.bridge.device("mill")
    uids_before = [e["event_uid"] for e in side.bridge.events()]
    connects_before = len(side.bridge.log_events("mqtt_connected"))
    update_before = side.bridge.health()["last_config_update"]

    reply = side.module.push()
    assert reply.ok and reply.trigger == "button" and reply.body is not None
    assert reply.body["status"] == "success"
    assert reply.body["devices_configured"] == 1 and reply.body["mqtt_reconnected"] is False
    assert [e["event_uid"] for e in side.bridge.events()] == uids_before
    assert side.bridge.device("mill") == device_before
    health = side.bridge.health()
    assert health["subscriptions"] == 2 and health["mqtt"]["connected"]
    assert health["last_config_update"] >= update_before
    assert len(side.bridge.log_events("mqtt_connected")) == connects_before
    applied = side.bridge.log_events("config_applied")[-1]
    assert applied["removed_sessions"] == 0 and applied["mqtt_reconnected"] is False

    # The button with a wrong token (and an empty list): refused, nothing changes.
    stranger = OdooModule(bridge_url=side.bridge.url, token="wrong-token")
    with stranger, pytest.raises(PushFailedError, match="HTTP 401"):
        stranger.push()
    assert [d["device_id"] for d in side.bridge.get("/devices").json()] == ["mill"]
    assert [e["event_uid"] for e in side.bridge.events()] == uids_before
    assert side.bridge.health()["last_config_update"] == health["last_config_update"]


def test_device_deleted_in_odoo_is_unsubscribed_and_its_session_ends(
    odoo_side: OdooSide,
) -> None:
    """Unlink → pushed without it: topics unsubscribed, running session stopped (device_removed)."""
    side = odoo_side
    side.module.create(machine("mill"))
    side.module.create(machine("laser"))
    side.reading("mill", 100.0, 5.0)
    wait_until(lambda: side.bridge.device("mill")["session_id"])
    session_id = side.bridge.device("mill")["session_id"]

    reply = side.module.unlink("mill")
    assert reply.ok and reply.devices_sent == ("laser",) and reply.body is not None
    assert reply.body["devices_configured"] == 1
    assert [d["device_id"] for d in side.bridge.get("/devices").json()] == ["laser"]
    assert side.bridge.health()["subscriptions"] == 2
    stopped = side.events("mill")[-1]
    assert stopped["event_type"] == "session_stopped"
    assert stopped["session_id"] == session_id
    assert stopped["data"]["reason"] == "device_removed"

    # Readings and availability on mill's topics change nothing; laser's reading is the barrier.
    kinds_before = side.types("mill")
    publish_many(
        side.broker,
        [
            ("mill/status/pm1:0", power(0.0, 6.0)),
            ("mill/status/pm1:0", power(120.0, 7.0)),
            ("mill/online", "false"),
            ("laser/status/pm1:0", power(7.0)),
        ],
    )
    wait_until(lambda: side.bridge.device("laser")["power_w"] == 7.0)
    assert side.types("mill") == kinds_before
    assert "mill" not in [d["device_id"] for d in side.bridge.get("/devices").json()]

    delivered = side.delivered("mill", 3)
    assert [e["event_type"] for e in delivered] == [
        "device_online",
        "session_started",
        "session_stopped",
    ]
    assert delivered[2]["data"]["reason"] == "device_removed"
    assert delivered[2]["session_id"] == session_id


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_bridge_restart_restores_pushed_config_and_the_running_session(
    odoo_side: OdooSide, how: str
) -> None:
    """After SIGTERM or kill -9 the pushed config comes from the data dir; the session goes on."""
    side = odoo_side
    reply = side.module.create(machine("mill"))
    assert reply.body is not None
    side.reading("mill", 100.0, 1.0)
    wait_until(lambda: "session_started" in side.types("mill"))  # committed, not only in memory
    session_id = side.bridge.device("mill")["session_id"]

    if how == "sigterm":
        assert side.bridge.stop() == 0
    else:
        side.bridge.kill()
    side.bridge.start()
    assert side.bridge.log_events("bridge_started")[-1]["config_source"] == "persisted"
    health = side.bridge.health()
    assert health["devices"] == 1 and health["subscriptions"] == 2
    assert health["last_config_update"] is not None
    assert abs(_ts(health["last_config_update"]) - _ts(reply.body["timestamp"])) < 5.0
    restored = side.bridge.device("mill")
    assert restored["session_id"] == session_id and restored["state"] == "working"
    assert restored["machine_name"] == "Machine mill"
    assert len(side.module.replies) == 1  # nothing was pushed again

    wait_until(lambda: side.bridge.health()["mqtt"]["connected"])
    side.reading("mill", 80.0, 2.0)
    wait_until(lambda: side.bridge.device("mill")["power_w"] == 80.0)
    assert side.bridge.device("mill")["session_id"] == session_id
    side.reading("mill", 0.0, 3.0)
    wait_until(lambda: "session_stopped" in side.types("mill"))

    kinds = side.types("mill")
    assert kinds.count("session_started") == 1 and kinds.count("session_stopped") == 1
    stopped = side.events("mill")[-1]
    assert stopped["event_type"] == "session_stopped" and stopped["session_id"] == session_id
    assert stopped["data"]["reason"] == "power_off" and stopped["data"]["energy_wh"] == 2.0
    delivered = side.delivered("mill", len(kinds))
    assert [e["event_type"] for e in delivered] == kinds
    assert {e["session_id"] for e in delivered if e["session_id"]} == {session_id}


def test_a_crash_between_persisting_a_removal_and_committing_it_still_ends_the_session(
    odoo_side: OdooSide,
) -> None:
    """kill -9 after an unlink's push was persisted but not committed: the session still ends."""
    side = odoo_side
    side.module.create(machine("mill"))
    side.module.create(machine("laser"))
    side.reading("mill", 100.0, 1.0)
    wait_until(lambda: "session_started" in side.types("mill"))  # committed, not only in memory
    session_id = side.bridge.device("mill")["session_id"]
    side.bridge.kill()
    # The data dir as apply_config leaves it when killed right after persist_config():
    # the new document (without mill) is on disk, mill's running session too.
    document = side.module.document()
    document["devices"] = [d for d in document["devices"] if d["device_id"] != "mill"]
    persist_config(side.bridge.data_dir, parse_config(document))
    side.bridge.start()
    assert [d["device_id"] for d in side.bridge.get("/devices").json()] == ["laser"]
    stopped = [e for e in side.events("mill") if e["event_type"] == "session_stopped"]
    assert len(stopped) == 1 and stopped[0]["session_id"] == session_id
    assert stopped[0]["data"]["reason"] == "device_removed"


# -- the Odoo module's hooks with a refusing or absent bridge --------------------------


def test_a_push_the_bridge_refuses_rolls_the_odoo_change_back(odoo_side: OdooSide) -> None:
    """A 422 names the record and rolls the create/write back; the bridge keeps its config."""
    side = odoo_side
    side.module.create(machine("mill"))
    config_before = side.bridge.get("/config").json()
    with pytest.raises(PushRefusedError, match=r"Machine laser: devices\.1\.session_config"):
        side.module.create(machine("laser", standby_threshold_w=60.0, working_threshold_w=10.0))
    assert [r["device_id"] for r in side.module.records] == ["mill"]
    with pytest.raises(PushRefusedError, match="message_timeout_s"):
        side.module.write("mill", {"message_timeout_s": 0.0})
    assert side.module.record("mill")["message_timeout_s"] == 60.0
    assert [r.status_code for r in side.module.replies] == [200, 422, 422]
    assert side.bridge.get("/config").json() == config_before


def test_odoo_module_rejects_bad_vals_and_survives_an_unreachable_bridge() -> None:
    """Bad vals raise before any push; a hook keeps its change when the bridge is down."""
    with OdooModule(bridge_url=f"http://127.0.0.1:{free_port()}", timeout_s=2.0) as module:
        with pytest.raises(ValueError, match="no field"):
            module.create({**machine("mill"), "colour": "red"})
        with pytest.raises(ValueError, match="required field"):
            module.create({"name": "Mill", "device_id": "mill"})
        assert module.records == [] and module.replies == []
        reply = module.create(machine("mill"))
        assert reply.status_code is None and reply.error and "unreachable" in reply.error
        assert [r["device_id"] for r in module.records] == ["mill"]
        with pytest.raises(ValueError, match="exists already"):
            module.create(machine("mill"))
        with pytest.raises(KeyError):
            module.write("nope", {"name": "x"})
        with pytest.raises(KeyError):
            module.unlink("nope")
        with pytest.raises(PushFailedError, match="unreachable"):
            module.push()
        assert len(module.replies) == 2


# -- the simulator's online_test / offline_test ------------------------------------------


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Starts ``iot-bridge simulate`` processes; kills leftovers at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(broker: MosquittoBroker, device_id: str, *args: str) -> subprocess.Popen[bytes]:
        command = [
            sys.executable, "-m", "iot_bridge", "simulate",
            "--broker", broker.host, "--port", str(broker.port), "--no-tls",
            "--device-id", device_id, *args,
        ]  # fmt: skip
        with (tmp_path / f"simulator-{device_id}.log").open("ab") as output:
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_simulator_online_test_keeps_the_device_online_until_its_clean_end(
    odoo_side: OdooSide, simulator: Callable[..., subprocess.Popen[bytes]]
) -> None:
    """online_test: device_online, online for longer than the timeout, device_offline at its end."""
    side = odoo_side
    timeout_s = 2.0
    side.module.create(machine("sim-online", message_timeout_s=timeout_s))
    # 100 simulated s at speed 20: 5 s of idle reports every 0.5 s.
    process = simulator(
        side.broker, "sim-online", "--scenario", "online_test", "--duration", "100", "--speed", "20"
    )
    wait_until(lambda: side.types("sim-online"))
    assert side.bridge.device("sim-online")["online"] is True
    assert process.wait(timeout=30) == 0
    wait_until(lambda: "device_offline" in side.types("sim-online"))

    events = side.events("sim-online")
    assert [e["event_type"] for e in events] == ["device_online", "device_offline"]
    online, offline = events
    # Online for the whole run, i.e. for more than one message_timeout_s ...
    assert _ts(offline["timestamp"]) - _ts(online["timestamp"]) > 1.5 * timeout_s
    # ... and offline because the simulator said so at its end, not by the silence timer.
    assert _ts(offline["timestamp"]) - _ts(offline["data"]["last_seen"]) < timeout_s / 2
    assert side.bridge.device("sim-online")["online"] is False
    delivered = side.delivered("sim-online", 2)
    assert [e["event_type"] for e in delivered] == ["device_online", "device_offline"]


def test_simulator_offline_test_gap_gives_timeout_offline_then_online(
    odoo_side: OdooSide, simulator: Callable[..., subprocess.Popen[bytes]]
) -> None:
    """offline_test: a gap longer than message_timeout_s → session_timeout, device_offline, online."""
    side = odoo_side
    timeout_s = 2.0
    side.module.create(machine("sim-gap", message_timeout_s=timeout_s))
    # At speed 20: 1.5 s working, 4 s silent, 1.5 s working.
    process = simulator(
        side.broker, "sim-gap", "--scenario", "offline_test",
        "--duration", "140", "--offline-duration", "80", "--speed", "20",
    )  # fmt: skip
    assert process.wait(timeout=30) == 0
    wait_until(lambda: side.types("sim-gap")[-1:] == ["device_offline"])

    events = side.events("sim-gap")
    kinds = [e["event_type"] for e in events]
    assert kinds[:5] == [
        "device_online",
        "session_started",
        "session_timeout",
        "device_offline",
        "device_online",
    ], kinds
    started, timed_out, offline, back = events[1:5]
    assert timed_out["session_id"] == started["session_id"]
    assert timed_out["data"]["reason"] == "timeout"
    assert timed_out["data"]["ended_at"] == offline["data"]["last_seen"]
    # The silence timer fired, exactly message_timeout_s after the last message ...
    silent_s = _ts(offline["timestamp"]) - _ts(offline["data"]["last_seen"])
    assert silent_s == pytest.approx(timeout_s, abs=0.01)
    # ... during the gap: the device came back later, with its next message.
    assert _ts(back["timestamp"]) > _ts(offline["timestamp"])
    # After the gap a new session runs; the clean end (online=false) ends it, then the device.
    assert kinds[5:] == ["session_started", "session_timeout", "device_offline"], kinds
    assert events[6]["session_id"] == events[5]["session_id"] != started["session_id"]
    assert events[7]["data"]["last_seen"] == events[6]["data"]["ended_at"]
    side.delivered("sim-gap", len(kinds))
    assert [e["event_type"] for e in side.odoo.events_for("sim-gap")] == kinds


def test_simulator_killed_leaves_its_will_and_the_device_goes_offline(
    odoo_side: OdooSide, simulator: Callable[..., subprocess.Popen[bytes]]
) -> None:
    """SIGKILL the simulator: the broker publishes its will (online=false) → timeout, offline."""
    side = odoo_side
    timeout_s = 60.0  # far longer than the test: only the will can make it offline
    side.module.create(machine("sim-kill", message_timeout_s=timeout_s))
    process = simulator(
        side.broker, "sim-kill", "--scenario", "working", "--duration", "3600", "--speed", "20"
    )
    wait_until(lambda: "session_started" in side.types("sim-kill"))
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    wait_until(lambda: "device_offline" in side.types("sim-kill"), timeout_s=15)

    events = side.events("sim-kill")
    assert [e["event_type"] for e in events] == [
        "device_online",
        "session_started",
        "session_timeout",
        "device_offline",
    ]
    timed_out, offline = events[2], events[3]
    assert timed_out["session_id"] == events[1]["session_id"]
    assert timed_out["data"]["reason"] == "timeout"
    assert timed_out["data"]["ended_at"] == offline["data"]["last_seen"]
    assert _ts(offline["timestamp"]) - _ts(offline["data"]["last_seen"]) < 15.0
    assert side.bridge.device("sim-kill")["online"] is False
    side.delivered("sim-kill", 4)
