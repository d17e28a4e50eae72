"""MqttClient against a real MQTT 3.1.1-only broker (amqtt): the fallback and what it keeps."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from iot_bridge.net.mqtt import Backoff, MqttClient, MqttSettings
from tests.integration.test_mqtt_client import receive, running
from tests.support.amqtt_broker import AmqttBroker, RefusingProxy, publish_v311
from tests.support.mosquitto import MosquittoBroker, publish_many

AmqttFactory = Callable[[], AmqttBroker]
ProxyFactory = Callable[..., RefusingProxy]


def make_client(host: str, port: int, client_id: str, subscriptions: list[str]) -> MqttClient:
    """A client with fast reconnects and a short CONNACK wait (amqtt never answers MQTT 5)."""
    return MqttClient(
        MqttSettings(host=host, port=port, client_id=client_id, username=AmqttBroker.username),
        subscriptions=subscriptions,
        backoff=Backoff(initial_s=0.02, max_s=0.2),
        connect_timeout_s=2.0,
        request_timeout_s=5.0,
    )


async def apublish(host: str, port: int, *messages: tuple[str, str]) -> None:
    """Publish with an independent 3.1.1 publisher, from a thread."""
    await asyncio.to_thread(publish_v311, host, port, list(messages))


def unique(prefix: str) -> str:
    """A client id / topic prefix of this test alone."""
    return f"{prefix}-{secrets.token_hex(3)}"


def fallbacks(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The mqtt_protocol_fallback records among captured logs."""
    return [entry for entry in logs if entry["event"] == "mqtt_protocol_fallback"]


async def test_a_broker_that_never_answers_mqtt5_gets_3_1_1_once(
    amqtt_factory: AmqttFactory,
) -> None:
    """amqtt leaves an MQTT 5 CONNECT unanswered: the client falls back to 3.1.1, logged once, and works."""
    broker = amqtt_factory()
    prefix = unique("v311")
    client = make_client(broker.host, broker.port, unique("bridge"), [f"{prefix}/#"])
    with capture_logs() as logs:
        async with running(client):
            assert client.protocol == "3.1.1"
            await apublish(broker.host, broker.port, (f"{prefix}/a", "one"))
            [message] = await receive(client, 1)
            assert (message.topic, message.payload, message.qos) == (f"{prefix}/a", b"one", 1)
            assert client.ack([message]) == 1
            await client.publish(f"{prefix}/out", b"state", qos=1)  # PUBACK in 3.1.1
            [echo] = await receive(client, 1)
            assert echo.payload == b"state"
    [fallback] = fallbacks(logs)
    assert fallback["from_protocol"] == "5" and fallback["to_protocol"] == "3.1.1"
    assert fallback["log_level"] == "warning"
    connected = [entry for entry in logs if entry["event"] == "mqtt_connected"]
    assert [entry["protocol"] for entry in connected] == ["3.1.1"]


async def test_a_3_1_1_connack_refusal_falls_back_at_once_and_reconnects_stay_3_1_1(
    amqtt_factory: AmqttFactory, refusing_proxy_factory: ProxyFactory
) -> None:
    """CONNACK 0x01 in 3.1.1 framing (mosquitto 1.x style): one refusal, then 3.1.1 on every reconnect."""
    broker = amqtt_factory()
    proxy = refusing_proxy_factory(broker)
    prefix = unique("refuse")
    client = make_client(proxy.host, proxy.port, unique("bridge"), [f"{prefix}/#"])
    with capture_logs() as logs:
        async with running(client):
            assert client.protocol == "3.1.1"
            assert proxy.refused == 1
            broker.stop()
            broker.start()  # same port; sessions are gone, the client must resubscribe
            for _ in range(200):
                if not client.connected:
                    break
                await asyncio.sleep(0.05)
            assert await client.wait_connected(15), client.last_error
            await apublish(broker.host, broker.port, (f"{prefix}/a", "after restart"))
            [message] = await receive(client, 1)
            assert message.payload == b"after restart"
    assert proxy.refused == 1
    assert len(fallbacks(logs)) == 1
    assert "unsupported protocol version" in fallbacks(logs)[0]["reason"]


async def test_messages_published_while_the_client_was_away_arrive_when_it_returns(
    amqtt_factory: AmqttFactory,
) -> None:
    """Persistent 3.1.1 session (clean session 0): QoS 1 messages queued while away come on return.

    (amqtt flags such queued messages as retained, against MQTT-3.3.1-9; the
    client passes the flag on as received. The bridge e2e test of this uses
    mosquitto behind RefusingProxy for that reason.)
    """
    broker = amqtt_factory()
    prefix, client_id = unique("away"), unique("bridge")
    async with running(make_client(broker.host, broker.port, client_id, [f"{prefix}/#"])):
        pass
    await apublish(broker.host, broker.port, (f"{prefix}/1", "a"), (f"{prefix}/2", "b"))
    with capture_logs() as logs:
        async with running(make_client(broker.host, broker.port, client_id, [])) as client:
            messages = await receive(client, 2)
            assert [m.payload for m in messages] == [b"a", b"b"]
            assert all(m.qos == 1 for m in messages)
            client.ack(messages)
    [connected] = [entry for entry in logs if entry["event"] == "mqtt_connected"]
    assert connected["session_present"] is True


async def test_an_unacked_message_comes_again_after_reconnect_and_an_acked_one_does_not(
    mosquitto: MosquittoBroker, refusing_proxy_factory: ProxyFactory
) -> None:
    """Ack after commit holds in 3.1.1: only ack() releases a message; the rest is redelivered (DUP).

    mosquitto behind a proxy that refuses MQTT 5: a 3.1.1-only broker with full QoS 1
    semantics (amqtt forgets unacknowledged messages, so it cannot show this).
    """
    proxy = refusing_proxy_factory(mosquitto)
    prefix, client_id = unique("ack"), unique("bridge")

    def client() -> MqttClient:
        return make_client(proxy.host, proxy.port, client_id, [f"{prefix}/#"])

    async with running(client()) as first:
        assert first.protocol == "3.1.1"
        await asyncio.to_thread(
            publish_many, mosquitto, [(f"{prefix}/acked", "1"), (f"{prefix}/kept", "2")]
        )
        acked, kept = await receive(first, 2)
        assert first.ack([acked]) == 1
    async with running(client()) as second:
        [again] = await receive(second, 1)
        assert (again.topic, again.payload, again.duplicate) == (kept.topic, kept.payload, True)
        assert second.ack([again]) == 1
    async with running(client()) as third:
        await asyncio.to_thread(publish_many, mosquitto, [(f"{prefix}/last", "3")])
        [last] = await receive(third, 1)
        assert last.payload == b"3"  # nothing acknowledged came back before it
        third.ack([last])


async def test_subscription_changes_while_connected_in_3_1_1(amqtt_factory: AmqttFactory) -> None:
    """SUBSCRIBE/UNSUBSCRIBE in 3.1.1 framing: the added filter hears, the removed one falls silent."""
    broker = amqtt_factory()
    old, new = unique("old"), unique("new")
    async with running(make_client(broker.host, broker.port, unique("b"), [f"{old}/#"])) as client:
        await client.set_subscriptions([f"{new}/#"])
        await apublish(broker.host, broker.port, (f"{old}/x", "gone"), (f"{new}/x", "here"))
        [message] = await receive(client, 1)
        assert message.payload == b"here"


@pytest.mark.parametrize(
    ("refusal", "reason"),
    [
        ("connack_v311", "unsupported protocol version"),
        ("connack_v5", "unsupported protocol version"),
        ("close", "connection closed by the broker"),
    ],
)
async def test_every_way_of_refusing_mqtt5_gets_a_3_1_1_session_with_mosquitto_semantics(
    mosquitto: MosquittoBroker, refusing_proxy_factory: ProxyFactory, refusal: str, reason: str
) -> None:
    """A 3.1.1 CONNACK 0x01, an MQTT 5 CONNACK 0x84, or a plain close: one fallback, then 3.1.1 works."""
    proxy = refusing_proxy_factory(mosquitto, refusal)
    prefix = unique("way")
    client = make_client(proxy.host, proxy.port, unique("bridge"), [f"{prefix}/#"])
    with capture_logs() as logs:
        async with running(client):
            assert client.protocol == "3.1.1"
            await asyncio.to_thread(publish_many, mosquitto, [(f"{prefix}/a", "x")])
            [message] = await receive(client, 1)
            assert client.ack([message]) == 1
    assert proxy.refused == 1
    [fallback] = fallbacks(logs)
    assert reason in fallback["reason"]


async def test_an_mqtt5_broker_is_still_spoken_to_in_mqtt5(mosquitto: MosquittoBroker) -> None:
    """mosquitto 2 accepts MQTT 5: no fallback, protocol "5"."""
    client = make_client(mosquitto.host, mosquitto.port, unique("bridge"), ["x/#"])
    with capture_logs() as logs:
        async with running(client):
            assert client.protocol == "5"
    assert fallbacks(logs) == []
