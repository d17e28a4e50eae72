"""``iot-bridge run`` on an MQTT 3.1.1-only broker: fallback, persistent session, kill -9."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.conftest import config, device, flicker_kill_restart, power, write_config
from tests.support.amqtt_broker import AmqttBroker, RefusingProxy, publish_v311
from tests.support.bridge_process import BridgeProcess, wait_until
from tests.support.mosquitto import MosquittoBroker, publish

TOPIC = "mill/status/pm1:0"


def _bridge_on(broker: Any, bridge_factory: Any, tmp_path: Path, **mqtt: Any) -> BridgeProcess:
    """A started bridge with the one device "mill" on ``broker``, connected (in 3.1.1)."""
    cfg = write_config(tmp_path / "c.yaml", config(broker, device("mill"), **mqtt))
    bridge: BridgeProcess = bridge_factory(config_file=cfg).start()
    # amqtt leaves the MQTT 5 CONNECT unanswered: the fallback waits the 10 s connect timeout.
    wait_until(lambda: bridge.health()["mqtt"]["connected"], timeout_s=40)
    return bridge


def test_a_3_1_1_broker_gets_a_3_1_1_session_shown_in_health_that_survives_a_restart(
    amqtt_factory, bridge_factory, tmp_path: Path
) -> None:
    """amqtt: fallback logged once, /health says 3.1.1, a session runs and resumes after a restart.

    The restart asks in 3.1.1 at once (the data dir remembers the broker): no
    second fallback, no 10 s wait for an MQTT 5 answer that never comes.
    """
    broker: AmqttBroker = amqtt_factory()
    bridge = _bridge_on(broker, bridge_factory, tmp_path, username=AmqttBroker.username)
    health = bridge.health()
    assert health["mqtt"]["protocol"] == "3.1.1" and health["status"] == "ok"
    [fallback] = bridge.log_events("mqtt_protocol_fallback")
    assert fallback["to_protocol"] == "3.1.1"
    publish_v311(broker.host, broker.port, [(TOPIC, power(120.0, 1.0))])
    wait_until(lambda: bridge.device("mill")["state"] == "working")
    session_id = bridge.device("mill")["session_id"]
    assert bridge.stop() == 0
    bridge.start()
    wait_until(lambda: bridge.health()["mqtt"]["connected"], timeout_s=40)
    [_, connected] = bridge.log_events("mqtt_connected")
    assert connected["protocol"] == "3.1.1" and connected["session_present"] is True
    assert len(bridge.log_events("mqtt_protocol_fallback")) == 1  # the first start's only
    assert bridge.log_events("mqtt_connection_failed") == []
    publish_v311(broker.host, broker.port, [(TOPIC, power(0.0, 4.0))])
    wait_until(lambda: "session_stopped" in bridge.event_types("mill"))
    stopped = [e for e in bridge.events() if e["event_type"] == "session_stopped"]
    assert [e["session_id"] for e in stopped] == [session_id]
    assert stopped[0]["data"]["energy_wh"] == 3.0
    assert bridge.event_types("mill").count("session_started") == 1
    assert bridge.health()["mqtt"]["protocol"] == "3.1.1"


def test_messages_sent_while_the_bridge_is_down_arrive_over_3_1_1(
    mosquitto_factory, refusing_proxy_factory, bridge_factory, tmp_path: Path
) -> None:
    """Persistent 3.1.1 session (clean session 0): readings published while the bridge was stopped are processed.

    On mosquitto behind a proxy refusing MQTT 5: amqtt marks the messages it
    queued for an offline session as retained (against MQTT-3.3.1-9), and the
    bridge ignores retained data messages as the broker's stale copies.
    """
    broker: MosquittoBroker = mosquitto_factory()
    proxy: RefusingProxy = refusing_proxy_factory(broker)
    bridge = _bridge_on(proxy, bridge_factory, tmp_path)
    assert bridge.health()["mqtt"]["protocol"] == "3.1.1"
    publish(broker, TOPIC, power(120.0, 1.0))
    wait_until(lambda: bridge.device("mill")["state"] == "working")
    session_id = bridge.device("mill")["session_id"]
    assert bridge.stop() == 0
    publish(broker, TOPIC, power(0.0, 4.0))
    bridge.start()
    wait_until(lambda: "session_stopped" in bridge.event_types("mill"))
    stopped = [e for e in bridge.events() if e["event_type"] == "session_stopped"]
    assert [e["session_id"] for e in stopped] == [session_id]
    assert stopped[0]["data"]["energy_wh"] == 3.0
    assert proxy.refused == 2  # once per process: the fallback is per broker and run


def test_kill_9_on_a_3_1_1_broker_loses_no_event(
    mosquitto_factory, refusing_proxy_factory, bridge_factory, tmp_path: Path
) -> None:
    """mosquitto behind a proxy refusing MQTT 5 (CONNACK 0x01): uncommitted messages come again after kill -9."""
    broker: MosquittoBroker = mosquitto_factory()
    proxy: RefusingProxy = refusing_proxy_factory(broker)
    cfg = write_config(
        tmp_path / "c.yaml",
        config(proxy, device("mill", start_debounce_s=0.0, stop_debounce_s=0.0)),
    )
    bridge = bridge_factory(config_file=cfg).start()
    wait_until(lambda: bridge.health()["mqtt"]["connected"])
    assert bridge.health()["mqtt"]["protocol"] == "3.1.1"
    assert proxy.refused == 1
    flicker_kill_restart(bridge, lambda topic, payload: publish(broker, topic, payload))
    assert bridge.health()["mqtt"]["protocol"] == "3.1.1"
