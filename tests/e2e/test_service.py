"""``iot-bridge run`` as operators run it: real mosquitto, the Odoo stand-in, the process."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.conftest import config, device, flicker_kill_restart, power, write_config
from tests.support.bridge_process import BridgeProcess, wait_until
from tests.support.mosquitto import MosquittoBroker, publish
from tests.support.odoo_standin import OdooStandin


def _mill_bridge(
    broker: MosquittoBroker, bridge_factory: Any, tmp_path: Path, **kwargs: Any
) -> BridgeProcess:
    """A started bridge with one shelly_pm device "mill" on ``broker``, connected to it."""
    cfg = write_config(tmp_path / "c.yaml", config(broker, device("mill")))
    bridge: BridgeProcess = bridge_factory(config_file=cfg, **kwargs).start()
    wait_until(lambda: bridge.health()["mqtt"]["connected"])
    return bridge


def _odoo_env(odoo: OdooStandin) -> dict[str, str]:
    return {
        "ODOO_BASE_URL": odoo.url,
        "ODOO_DATABASE": odoo.database or "",
        "ODOO_API_KEY": odoo.api_key or "",
    }


def test_a_session_flows_from_mqtt_to_odoo_in_order(
    mosquitto_factory, odoo_standin: OdooStandin, bridge_factory, tmp_path: Path
) -> None:
    """Readings on the device topic become online/started/stopped events delivered to Odoo in order."""
    broker: MosquittoBroker = mosquitto_factory()
    bridge = _mill_bridge(broker, bridge_factory, tmp_path, env=_odoo_env(odoo_standin))
    publish(broker, "mill/status/pm1:0", power(200.0, 10.0))
    wait_until(lambda: "session_started" in bridge.event_types())
    publish(broker, "mill/status/pm1:0", power(0.0, 12.0))
    wait_until(lambda: "session_stopped" in bridge.event_types())
    delivered = odoo_standin.wait_for_events(3, timeout_s=20)
    assert [e["event_type"] for e in delivered] == [
        "device_online",
        "session_started",
        "session_stopped",
    ]
    stopped = delivered[2]
    assert stopped["data"]["reason"] == "power_off"
    assert stopped["data"]["energy_wh"] == 2.0
    assert stopped["session_id"] == delivered[1]["session_id"]
    wait_until(lambda: all(e["status"] == "delivered" for e in bridge.events()))
    health = bridge.health()
    assert health["status"] == "ok" and health["devices"] == 1
    metrics = bridge.get("/metrics").text
    assert 'iot_bridge_messages_received_total{parser="shelly_pm"} 2.0' in metrics
    assert 'iot_bridge_events_emitted_total{type="session_started"} 1.0' in metrics
    assert "iot_bridge_mqtt_connected 1.0" in metrics
    assert bridge.stop() == 0


def test_broker_down_at_start_then_up(mosquitto_factory, bridge_factory, tmp_path: Path) -> None:
    """The bridge serves HTTP (degraded) while the broker is unreachable and connects when it appears."""
    broker: MosquittoBroker = mosquitto_factory(start=False)
    cfg = write_config(tmp_path / "c.yaml", config(broker, device("mill")))
    bridge = bridge_factory(config_file=cfg).start()
    health = bridge.health()
    assert health["status"] == "degraded" and health["mqtt"]["connected"] is False
    assert health["mqtt"]["last_error"]
    broker.start()
    wait_until(lambda: bridge.health()["mqtt"]["connected"], timeout_s=40)
    publish(broker, "mill/status/pm1:0", power(100.0))
    wait_until(lambda: "session_started" in bridge.event_types())


def test_messages_sent_while_the_bridge_is_down_are_processed_after(
    mosquitto_factory, bridge_factory, tmp_path: Path
) -> None:
    """Persistent session: QoS 1 messages published while the bridge was stopped arrive when it returns."""
    broker = mosquitto_factory()
    bridge = _mill_bridge(broker, bridge_factory, tmp_path)
    assert bridge.stop() == 0
    publish(broker, "mill/status/pm1:0", power(300.0))
    bridge.start()
    wait_until(lambda: bridge.device("mill")["power_w"] == 300.0)
    wait_until(lambda: "session_started" in bridge.event_types())


def test_broker_restart_mid_stream(mosquitto_factory, bridge_factory, tmp_path: Path) -> None:
    """After a broker restart the bridge reconnects, resubscribes and goes on with the same session."""
    broker = mosquitto_factory()
    bridge = _mill_bridge(broker, bridge_factory, tmp_path)
    publish(broker, "mill/status/pm1:0", power(100.0))
    wait_until(lambda: bridge.device("mill")["state"] == "working")
    session_id = bridge.device("mill")["session_id"]
    broker.restart()
    wait_until(lambda: bridge.health()["mqtt"]["connected"], timeout_s=40)
    publish(broker, "mill/status/pm1:0", power(20.0))
    wait_until(lambda: bridge.device("mill")["state"] == "standby")
    assert bridge.device("mill")["session_id"] == session_id
    assert bridge.event_types("mill").count("session_started") == 1


def test_wrong_broker_password_keeps_serving_degraded(
    mosquitto_factory, bridge_factory, tmp_path: Path
) -> None:
    """A wrong password is reported in /health; the bridge keeps serving and accepts a corrected push."""
    broker = mosquitto_factory(users={"bridge": "s3cret-pass"})
    cfg = write_config(
        tmp_path / "c.yaml",
        config(broker, device("mill"), username="bridge", password="wrong-pass"),
    )
    bridge = bridge_factory(config_file=cfg).start()
    wait_until(lambda: bridge.health()["mqtt"]["last_error"])
    health = bridge.health()
    assert health["status"] == "degraded"
    assert "wrong-pass" not in bridge.log() and "s3cret" not in bridge.log()
    fixed = config(broker, device("mill"), username="bridge", password="s3cret-pass")
    reply = bridge.post("/config", json=fixed)
    assert reply.status_code == 200 and reply.json()["mqtt_reconnected"] is True
    wait_until(lambda: bridge.health()["mqtt"]["connected"], timeout_s=40)
    assert "s3cret-pass" not in bridge.log()


def test_switch_brokers_by_config_push_including_auth_and_tls(
    mosquitto_factory, bridge_factory, tmp_path: Path
) -> None:
    """POST /config moves the bridge from a plain broker to one with a password and TLS, no restart."""
    plain = mosquitto_factory()
    secure = mosquitto_factory(users={"bridge": "pw-123456"}, tls=True)
    cfg = write_config(tmp_path / "c.yaml", config(plain, device("mill")))
    bridge = bridge_factory(config_file=cfg, token="tok").start()
    wait_until(lambda: bridge.health()["mqtt"]["connected"])
    pid = bridge.process.pid  # type: ignore[union-attr]
    push = config(
        secure,
        device("mill"),
        username="bridge",
        password="pw-123456",
        use_tls=True,
        ca_file=secure.ca_file,
    )
    reply = bridge.post("/config", json=push)
    assert reply.status_code == 200, reply.text
    assert reply.json()["mqtt_reconnected"] is True
    wait_until(lambda: bridge.health()["mqtt"]["connected"], timeout_s=40)
    assert bridge.health()["mqtt"]["broker"] == f"127.0.0.1:{secure.port}"
    publish(secure, "mill/status/pm1:0", power(100.0))
    wait_until(lambda: "session_started" in bridge.event_types())
    back = bridge.post("/config", json=config(plain, device("mill")))
    assert back.json()["mqtt_reconnected"] is True
    wait_until(lambda: bridge.health()["mqtt"]["broker"] == f"127.0.0.1:{plain.port}")
    wait_until(lambda: bridge.health()["mqtt"]["connected"], timeout_s=40)
    assert bridge.process.pid == pid  # type: ignore[union-attr]


def test_subscription_diff_and_device_removed(
    mosquitto_factory, bridge_factory, tmp_path: Path
) -> None:
    """A push that removes a device ends its session (device_removed) and stops listening to it."""
    broker = mosquitto_factory()
    cfg = write_config(tmp_path / "c.yaml", config(broker, device("mill"), device("laser")))
    bridge = bridge_factory(config_file=cfg).start()
    wait_until(lambda: bridge.health()["mqtt"]["connected"])
    assert bridge.health()["subscriptions"] == 4
    publish(broker, "mill/status/pm1:0", power(100.0))
    wait_until(lambda: bridge.device("mill")["session_id"])
    reply = bridge.post("/config", json=config(broker, device("laser"), device("drill")))
    assert reply.status_code == 200 and reply.json()["devices_configured"] == 2
    assert reply.json()["mqtt_reconnected"] is False
    stops = [e for e in bridge.events() if e["event_type"] == "session_stopped"]
    assert len(stops) == 1 and stops[0]["data"]["reason"] == "device_removed"
    assert stops[0]["device_id"] == "mill"
    publish(broker, "drill/status/pm1:0", power(100.0))
    wait_until(lambda: bridge.device("drill")["state"] in ("starting", "working"))
    publish(broker, "mill/status/pm1:0", power(100.0))
    publish(broker, "drill/status/pm1:0", power(101.0))
    wait_until(lambda: bridge.device("drill")["power_w"] == 101.0)
    assert not any(
        e["device_id"] == "mill" and e["event_type"] == "session_started"
        for e in bridge.events()[2:]
    )
    assert [d["device_id"] for d in bridge.get("/devices").json()] == ["laser", "drill"]


def test_pushed_config_survives_restart_and_corrupt_file_is_moved_aside(
    mosquitto_factory, bridge_factory, tmp_path: Path
) -> None:
    """The persisted config (0600) wins over --config; a corrupt one is moved aside and --config used."""
    broker = mosquitto_factory()
    cfg = write_config(tmp_path / "c.yaml", config(broker, device("mill")))
    bridge = bridge_factory(config_file=cfg, token="tok").start()
    pushed = config(broker, device("laser"), device("drill"), password="very-secret")
    assert bridge.post("/config", json=pushed).status_code == 200
    persisted = bridge.data_dir / "config-active.yaml"
    assert persisted.stat().st_mode & 0o777 == 0o600
    assert bridge.stop() == 0
    bridge.start()
    assert [d["device_id"] for d in bridge.get("/devices").json()] == ["laser", "drill"]
    assert bridge.health()["last_config_update"]
    shown = bridge.get("/config").json()
    assert shown["mqtt"]["password"] == "***"
    assert bridge.stop() == 0
    persisted.write_bytes(b"\x00\xff garbage: [")
    bridge.start()
    assert [d["device_id"] for d in bridge.get("/devices").json()] == ["mill"]
    moved = list(bridge.data_dir.glob("config-active.yaml.bad-*"))
    assert len(moved) == 1 and moved[0].read_bytes() == b"\x00\xff garbage: ["
    assert bridge.log_events("config_persisted_invalid")


def test_sigusr1_logs_every_task_and_keeps_running(
    mosquitto_factory, bridge_factory, tmp_path: Path
) -> None:
    """SIGUSR1 logs task_dump (each task with where it waits); the bridge keeps serving."""
    broker = mosquitto_factory()
    bridge = _mill_bridge(broker, bridge_factory, tmp_path)
    assert bridge.process is not None
    bridge.process.send_signal(signal.SIGUSR1)
    dump = wait_until(lambda: bridge.log_events("task_dump"))[0]
    tasks = {task["name"]: task for task in dump["tasks"]}
    assert {"pipeline", "delivery", "mqtt", "http"} <= tasks.keys()
    assert any("pipeline.py" in frame for frame in tasks["pipeline"]["stack"])
    assert bridge.health()["status"]
    assert bridge.stop() == 0


def test_kill_9_mid_session_resumes_the_same_session(
    mosquitto_factory, odoo_standin: OdooStandin, bridge_factory, tmp_path: Path
) -> None:
    """After kill -9 the running session continues under its session_id: no second start, one stop."""
    broker = mosquitto_factory()
    bridge = _mill_bridge(broker, bridge_factory, tmp_path, env=_odoo_env(odoo_standin))
    publish(broker, "mill/status/pm1:0", power(100.0, 1.0))
    wait_until(lambda: "session_started" in bridge.event_types())  # committed, not only in memory
    session_id = bridge.device("mill")["session_id"]
    bridge.kill()
    bridge.start()
    assert bridge.device("mill")["session_id"] == session_id
    assert bridge.device("mill")["state"] == "working"
    wait_until(lambda: bridge.health()["mqtt"]["connected"])
    publish(broker, "mill/status/pm1:0", power(0.0, 3.0))
    wait_until(lambda: "session_stopped" in bridge.event_types())
    events = odoo_standin.wait_for_events(4, timeout_s=20)
    kinds = [e["event_type"] for e in events]
    assert kinds.count("session_started") == 1 and kinds.count("session_stopped") == 1
    stopped = next(e for e in events if e["event_type"] == "session_stopped")
    assert stopped["session_id"] == session_id
    assert stopped["data"]["energy_wh"] == 2.0


def test_kill_9_right_after_a_message_loses_no_event(
    mosquitto_factory, bridge_factory, tmp_path: Path
) -> None:
    """A message whose effects were not committed is redelivered after kill -9; its event exists once."""
    broker = mosquitto_factory()
    cfg = write_config(
        tmp_path / "c.yaml",
        config(broker, device("mill", start_debounce_s=0.0, stop_debounce_s=0.0)),
    )
    bridge = bridge_factory(config_file=cfg).start()
    wait_until(lambda: bridge.health()["mqtt"]["connected"])
    flicker_kill_restart(bridge, lambda topic, payload: publish(broker, topic, payload))


def test_config_file_given_on_the_command_line_is_validated(bridge_factory, tmp_path: Path) -> None:
    """An invalid --config file stops startup with exit 2 and every error with its path."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"devices": [{"device_id": "x y"}], "mqttt": {}}))
    bridge = bridge_factory(config_file=bad)
    bridge.start(wait=False)
    assert bridge.process.wait(timeout=30) == 2  # type: ignore[union-attr]
    output = bridge.log()
    assert "devices.0.device_id" in output and "mqttt" in output
    assert "Traceback" not in output


def test_odoo_outage_loses_nothing_and_order_holds(
    mosquitto_factory, odoo_standin: OdooStandin, bridge_factory, tmp_path: Path
) -> None:
    """Events made while Odoo answers 503 wait as pending and arrive in order once it is back."""
    broker = mosquitto_factory()
    cfg = write_config(tmp_path / "c.yaml", config(broker, device("mill")))
    odoo_standin.set_mode("down")
    bridge = bridge_factory(config_file=cfg, env=_odoo_env(odoo_standin)).start()
    wait_until(lambda: bridge.health()["mqtt"]["connected"])
    publish(broker, "mill/status/pm1:0", power(100.0))
    wait_until(lambda: "session_started" in bridge.event_types())
    publish(broker, "mill/status/pm1:0", power(0.0))
    wait_until(lambda: "session_stopped" in bridge.event_types())
    wait_until(lambda: any(e["delivery"]["last_error"] for e in bridge.events()))
    pending = bridge.events()
    assert {e["status"] for e in pending} == {"pending"}
    health = bridge.health()
    assert health["outbox"]["pending"] == len(pending)
    assert health["status"] == "degraded"
    assert health["odoo"]["available"] is False
    assert health["odoo"]["since"] is not None
    assert "503" in health["odoo"]["last_error"]
    assert "iot_bridge_odoo_up 0.0" in bridge.get("/metrics").text
    odoo_standin.set_mode("ok")
    delivered = odoo_standin.wait_for_events(len(pending), timeout_s=40)
    assert [e["event_uid"] for e in delivered] == [e["event_uid"] for e in pending]
    wait_until(lambda: bridge.health()["outbox"]["pending"] == 0)
    health = bridge.health()
    assert (health["status"], health["odoo"]["available"]) == ("ok", True)
    assert "iot_bridge_odoo_up 1.0" in bridge.get("/metrics").text
    assert len(bridge.log_events("odoo_unavailable")) == 1
    assert len(bridge.log_events("odoo_available")) == 1
    assert bridge.log_events("odoo_send_failed") == []


def test_request_format_json_sends_the_event_alone(
    mosquitto_factory, odoo_standin_factory, bridge_factory, tmp_path: Path
) -> None:
    """With odoo.request_format json a type="http" route gets each EVENT object as the body."""
    broker = mosquitto_factory()
    standin = odoo_standin_factory(request_format="json", api_key="k3y", database="odoo")
    document = config(broker, device("mill"))
    document["odoo"] = {
        "base_url": standin.url,
        "database": "odoo",
        "api_key": "k3y",
        "request_format": "json",
    }
    bridge = bridge_factory(config_file=write_config(tmp_path / "c.yaml", document)).start()
    wait_until(lambda: bridge.health()["mqtt"]["connected"])
    publish(broker, "mill/status/pm1:0", power(100.0))
    events = standin.wait_for_events(2, timeout_s=20)
    assert [e["event_type"] for e in events] == ["device_online", "session_started"]
    assert standin.invalid == []
    wait_until(lambda: bridge.health()["outbox"]["pending"] == 0)


def test_rejected_events_go_dead_and_retry_dead_sends_them(
    mosquitto_factory, odoo_standin: OdooStandin, bridge_factory, tmp_path: Path
) -> None:
    """A JSON-RPC ValidationError makes events dead (health degraded); retry-dead delivers them."""
    broker = mosquitto_factory()
    cfg = write_config(tmp_path / "c.yaml", config(broker, device("mill")))
    odoo_standin.set_mode("validation_error")
    bridge = bridge_factory(config_file=cfg, env=_odoo_env(odoo_standin), token="tok").start()
    wait_until(lambda: bridge.health()["mqtt"]["connected"])
    publish(broker, "mill/status/pm1:0", power(0.0))
    wait_until(lambda: bridge.health()["outbox"]["dead"] == 1)
    health = bridge.health()
    assert health["status"] == "degraded"
    assert bridge.events()[0]["status"] == "dead"
    assert "ValidationError" in bridge.events()[0]["delivery"]["last_error"]
    metrics = bridge.get("/metrics").text
    assert 'iot_bridge_deliveries_total{result="permanent"} 1.0' in metrics
    assert "iot_bridge_outbox_dead 1.0" in metrics
    odoo_standin.set_mode("ok")
    reply = bridge.post("/events/retry-dead")
    assert reply.status_code == 200 and reply.json()["retried"] == 1
    odoo_standin.wait_for_events(1, timeout_s=20)
    wait_until(lambda: bridge.health()["status"] == "ok")
    assert bridge.events()[0]["status"] == "delivered"


def test_local_only_mode_keeps_events_and_says_local(
    mosquitto_factory, bridge_factory, tmp_path: Path
) -> None:
    """Without Odoo, events stay in the local store and GET /events marks them 'local'."""
    broker = mosquitto_factory()
    bridge = _mill_bridge(broker, bridge_factory, tmp_path)
    publish(broker, "mill/status/pm1:0", power(0.0))
    wait_until(bridge.events)
    assert {e["status"] for e in bridge.events()} == {"local"}
    assert bridge.health()["status"] == "ok"
    assert bridge.health()["odoo"]["configured"] is False


def test_bad_device_payloads_are_counted_and_change_nothing(
    mosquitto_factory, bridge_factory, tmp_path: Path
) -> None:
    """Malformed payloads are rejected (metrics by reason, rate-limited log) and never stop the bridge."""
    broker = mosquitto_factory()
    bridge = _mill_bridge(broker, bridge_factory, tmp_path)
    for payload in (b"{nope", b"\xff\xfe", b'{"apower": 1e10}', b'{"apower": true}', b"", b"[]"):
        publish(broker, "mill/status/pm1:0", payload)
    publish(broker, "mill/status/pm1:0", b'{"apower": -5}')  # export: a valid 0 W, counted
    publish(broker, "mill/status/pm1:0", power(42.0))
    wait_until(lambda: bridge.device("mill")["power_w"] == 42.0)
    metrics = bridge.get("/metrics").text
    rejected = [
        line
        for line in metrics.splitlines()
        if line.startswith("iot_bridge_messages_rejected_total{")
    ]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in rejected) == 6
    assert 'iot_bridge_negative_power_total{parser="shelly_pm"} 1.0' in metrics.splitlines()
    assert len(bridge.log_events("payload_rejected")) == 1
    assert bridge.health()["status"] == "ok"


def test_push_to_an_unreachable_broker_is_kept_and_retried(
    mosquitto_factory, bridge_factory, tmp_path: Path
) -> None:
    """A pushed broker that is down does not undo the push: persisted, degraded, connects when it appears."""
    first = mosquitto_factory()
    later = mosquitto_factory(start=False)
    cfg = write_config(tmp_path / "c.yaml", config(first, device("mill")))
    bridge = bridge_factory(config_file=cfg).start()
    wait_until(lambda: bridge.health()["mqtt"]["connected"])
    reply = bridge.post("/config", json=config(later, device("mill")))
    assert reply.status_code == 200 and reply.json()["mqtt_reconnected"] is True
    wait_until(lambda: bridge.health()["status"] == "degraded")
    assert bridge.health()["mqtt"]["broker"] == f"127.0.0.1:{later.port}"
    persisted = (bridge.data_dir / "config-active.yaml").read_text()
    assert str(later.port) in persisted
    later.start()
    wait_until(lambda: bridge.health()["mqtt"]["connected"], timeout_s=40)
    assert bridge.health()["status"] == "ok"


def test_unusable_data_dir_fails_fast_with_a_clear_message(bridge_factory, tmp_path: Path) -> None:
    """A data dir that cannot be created is one sentence naming the path, exit 1."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    bridge = bridge_factory(data_dir=blocker / "data", log_path=tmp_path / "bridge.log")
    bridge.start(wait=False)
    assert bridge.process.wait(timeout=30) == 1  # type: ignore[union-attr]
    output = bridge.log()
    assert str(blocker / "data") in output
    assert "Traceback" not in output


def test_text_logs_go_to_log_file(mosquitto_factory, bridge_factory, tmp_path: Path) -> None:
    """LOG_FORMAT=text and LOG_FILE: readable lines in the file, named events, no secrets."""
    broker = mosquitto_factory()
    log_file = tmp_path / "bridge.log"
    cfg = write_config(tmp_path / "c.yaml", config(broker, device("mill")))
    bridge = bridge_factory(
        config_file=cfg,
        env={"LOG_FORMAT": "text", "LOG_FILE": str(log_file), "BRIDGE_API_TOKEN": "tok-secret-1"},
    ).start()
    wait_until(lambda: "mqtt_connected" in log_file.read_text())
    assert bridge.stop() == 0
    text = log_file.read_text()
    assert "bridge_started" in text and "bridge_stopped" in text
    assert not text.lstrip().startswith("{")
    assert "tok-secret-1" not in text


def test_a_config_that_cannot_be_saved_is_503_and_changes_nothing(
    mosquitto_factory, bridge_factory, tmp_path: Path
) -> None:
    """When config-active.yaml cannot be written the push is refused (503 JSON) and nothing changes."""
    broker = mosquitto_factory()
    cfg = write_config(tmp_path / "c.yaml", config(broker, device("mill")))
    bridge = bridge_factory(config_file=cfg).start()
    (bridge.data_dir / "config-active.yaml").mkdir()  # a folder where the file must go
    reply = bridge.post("/config", json=config(broker, device("laser")))
    assert reply.status_code == 503
    assert reply.json()["status"] == "error"
    assert [d["device_id"] for d in bridge.get("/devices").json()] == ["mill"]
    assert "Traceback" not in bridge.log()


def test_a_broker_outage_is_not_device_silence(
    mosquitto_factory, bridge_factory, tmp_path: Path
) -> None:
    """The broker down longer than message_timeout_s: no session_timeout, same session after."""
    broker = mosquitto_factory()
    cfg = write_config(tmp_path / "c.yaml", config(broker, device("mill", message_timeout_s=2.0)))
    bridge = bridge_factory(config_file=cfg).start()
    wait_until(lambda: bridge.health()["mqtt"]["connected"])
    publish(broker, "mill/status/pm1:0", power(100.0))
    wait_until(lambda: "session_started" in bridge.event_types())
    session_id = bridge.device("mill")["session_id"]
    broker.stop()
    wait_until(lambda: not bridge.health()["mqtt"]["connected"])
    time.sleep(4.0)  # a real outage longer than the 2 s timeout (not timing logic under test)
    assert bridge.device("mill")["session_id"] == session_id
    broker.start()
    wait_until(lambda: bridge.health()["mqtt"]["connected"], timeout_s=40)
    publish(broker, "mill/status/pm1:0", power(101.0))
    wait_until(lambda: bridge.device("mill")["power_w"] == 101.0)
    assert bridge.device("mill")["session_id"] == session_id
    kinds = bridge.event_types("mill")
    assert "session_timeout" not in kinds and "device_offline" not in kinds
