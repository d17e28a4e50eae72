"""A broker's protocol remembered in the data dir: 3.1.1 at once next time, MQTT 5 when upgraded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from iot_bridge.net.mqtt import Backoff, MqttClient, MqttSettings
from iot_bridge.net.mqtt.protocol_memory import FileProtocolMemory
from tests.integration.test_mqtt_client import receive, running
from tests.integration.test_mqtt_v311 import apublish, fallbacks, unique
from tests.support.amqtt_broker import AmqttBroker
from tests.support.mosquitto import MosquittoBroker, publish_many

AmqttFactory = Callable[[], AmqttBroker]


def _client(
    host: str,
    port: int,
    client_id: str,
    subscriptions: list[str],
    memory: FileProtocolMemory,
    *,
    connect_timeout_s: float,
    username: str | None = None,
) -> MqttClient:
    return MqttClient(
        MqttSettings(host=host, port=port, client_id=client_id, username=username),
        subscriptions=subscriptions,
        backoff=Backoff(initial_s=0.02, max_s=0.2),
        connect_timeout_s=connect_timeout_s,
        request_timeout_s=5.0,
        protocol_memory=memory,
    )


def _events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


async def test_the_next_start_asks_a_remembered_3_1_1_broker_in_3_1_1_at_once(
    amqtt_factory: AmqttFactory, tmp_path: Path
) -> None:
    """amqtt never answers MQTT 5: the first client waits it out once; the next connects at once."""
    broker = amqtt_factory()
    memory = FileProtocolMemory(tmp_path)
    client_id, prefix = unique("bridge"), unique("mem")
    first = _client(
        broker.host,
        broker.port,
        client_id,
        [f"{prefix}/#"],
        memory,
        connect_timeout_s=2.0,
        username=AmqttBroker.username,
    )
    with capture_logs() as logs:
        async with running(first):
            assert first.protocol == "3.1.1"
    assert len(fallbacks(logs)) == 1
    assert FileProtocolMemory(tmp_path).recall(broker.address) == "3.1.1"

    # A connect timeout far longer than the test may take: MQTT 5 first would sit it out.
    second = _client(
        broker.host,
        broker.port,
        client_id,
        [f"{prefix}/#"],
        FileProtocolMemory(tmp_path),
        connect_timeout_s=600.0,
        username=AmqttBroker.username,
    )
    with capture_logs() as logs:
        async with running(second):
            assert second.protocol == "3.1.1"
            await apublish(broker.host, broker.port, (f"{prefix}/a", "one"))
            [message] = await receive(second, 1)
            assert message.payload == b"one"
    assert fallbacks(logs) == []
    assert _events(logs, "mqtt_connection_failed") == []
    assert [entry["protocol"] for entry in _events(logs, "mqtt_connected")] == ["3.1.1"]


async def test_a_remembered_broker_that_speaks_mqtt5_now_gets_mqtt5(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """Upgraded since: 3.1.1 first, the probe finds MQTT 5, the client reconnects in it."""
    memory = FileProtocolMemory(tmp_path)
    memory.remember(f"{mosquitto.host}:{mosquitto.port}", "3.1.1")  # as an old broker left it
    prefix = unique("upgrade")
    client = _client(
        mosquitto.host,
        mosquitto.port,
        unique("bridge"),
        [f"{prefix}/#"],
        memory,
        connect_timeout_s=10.0,
    )
    with capture_logs() as logs:
        async with running(client):
            await _until(lambda: client.protocol == "5" and client.connected)
            publish_many(mosquitto, [(f"{prefix}/a", "after")])
            [message] = await receive(client, 1)
            assert message.payload == b"after"
    assert [entry["protocol"] for entry in _events(logs, "mqtt_connected")] == ["3.1.1", "5"]
    assert len(_events(logs, "mqtt_protocol_upgrade")) == 1
    assert FileProtocolMemory(tmp_path).recall(f"{mosquitto.host}:{mosquitto.port}") is None


async def test_a_remembered_broker_still_on_3_1_1_stays_on_it(
    amqtt_factory: AmqttFactory, tmp_path: Path
) -> None:
    """The probe finds no MQTT 5: the 3.1.1 connection is never interrupted, the record stays."""
    broker = amqtt_factory()
    memory = FileProtocolMemory(tmp_path)
    memory.remember(broker.address, "3.1.1")
    prefix = unique("stay")
    client = _client(
        broker.host,
        broker.port,
        unique("bridge"),
        [f"{prefix}/#"],
        memory,
        connect_timeout_s=1.0,
        username=AmqttBroker.username,
    )
    with capture_logs() as logs:
        async with running(client):
            await _until(lambda: bool(_events(logs, "mqtt_protocol_probe")))
            await apublish(broker.host, broker.port, (f"{prefix}/a", "one"))
            [message] = await receive(client, 1)
            assert message.payload == b"one"
            assert client.protocol == "3.1.1"
    assert [entry["protocol"] for entry in _events(logs, "mqtt_connected")] == ["3.1.1"]
    assert [e["reason"] for e in _events(logs, "mqtt_disconnected")] == ["closed by the bridge"]
    assert FileProtocolMemory(tmp_path).recall(broker.address) == "3.1.1"


async def _until(predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Poll a condition of the running client with a deadline."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
