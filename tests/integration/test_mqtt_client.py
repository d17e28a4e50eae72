"""MqttClient against real mosquitto brokers on free ports of 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import signal
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from iot_bridge.net.mqtt import (
    Backoff,
    InboundMessage,
    MqttClient,
    MqttError,
    MqttSettings,
    WillMessage,
)
from iot_bridge.net.mqtt._subscriptions import SUBSCRIBE_BATCH
from tests.support.mosquitto import BrokerFactory, MosquittoBroker, publish, publish_many

_ids = itertools.count(1)


def fast_backoff() -> Backoff:
    """Reconnect within tens of milliseconds so tests stay short."""
    return Backoff(initial_s=0.02, max_s=0.2)


def unique(prefix: str) -> str:
    """A client id / topic prefix no other test uses (the module broker is shared)."""
    return f"{prefix}-{next(_ids)}-{secrets.token_hex(3)}"


def make_client(
    broker: MosquittoBroker, client_id: str, subscriptions: list[str], **settings: Any
) -> MqttClient:
    """A client for ``broker`` with fast reconnects."""
    options = {**broker.client_settings_kwargs(), **settings}
    return MqttClient(
        MqttSettings(client_id=client_id, **options),
        subscriptions=subscriptions,
        backoff=fast_backoff(),
        connect_timeout_s=5.0,
        request_timeout_s=5.0,
    )


@contextlib.asynccontextmanager
async def running(client: MqttClient, *, connect: bool = True) -> AsyncIterator[MqttClient]:
    """Run ``client`` in a task; close it and wait for ``run()`` on exit."""
    task = asyncio.create_task(client.run())
    try:
        if connect:
            assert await client.wait_connected(10), client.last_error
        yield client
    finally:
        await client.close()
        await asyncio.wait_for(task, 10)


async def receive(client: MqttClient, count: int, timeout_s: float = 10.0) -> list[InboundMessage]:
    """Exactly ``count`` messages (fails if they do not come in time or more come)."""
    messages: list[InboundMessage] = []
    async with asyncio.timeout(timeout_s):
        while len(messages) < count:
            messages += await client.receive_batch(count - len(messages))
    return messages


async def apublish(broker: MosquittoBroker, topic: str, payload: bytes, **kwargs: Any) -> None:
    """Publish from a thread so the event loop keeps reading meanwhile."""
    await asyncio.to_thread(publish, broker, topic, payload, **kwargs)


async def next_is_marker(client: MqttClient, broker: MosquittoBroker, topic: str) -> None:
    """Publish a marker and check it is the next message: nothing else was pending."""
    marker = secrets.token_bytes(8)
    await apublish(broker, topic, marker, qos=1)
    [message] = await receive(client, 1)
    assert (message.topic, message.payload) == (topic, marker)
    client.ack([message])


async def processed_by_broker(client: MqttClient) -> None:
    """Round trip: once our PUBLISH is acknowledged, the broker has read our earlier PUBACKs."""
    await client.publish("sync/barrier", b"", qos=1)


async def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``condition`` with a deadline."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - polling outside state with a deadline
            await asyncio.sleep(0.01)


# --- connect, subscribe, receive -----------------------------------------------------


async def test_receives_qos0_and_qos1_messages_with_their_fields(
    mosquitto: MosquittoBroker,
) -> None:
    """Messages arrive in order with topic, payload bytes, QoS and an ack token only for QoS 1."""
    base = unique("dev")
    client = make_client(mosquitto, unique("bridge"), [f"{base}/#"])
    async with running(client):
        assert client.connected
        assert client.last_error is None
        await apublish(mosquitto, f"{base}/a", b'{"apower": 1.5}', qos=1)
        await apublish(mosquitto, f"{base}/b", b"\x00\xffraw", qos=0)
        first, second = await receive(client, 2)
        assert (first.topic, first.payload, first.qos, first.retain) == (
            f"{base}/a",
            b'{"apower": 1.5}',
            1,
            False,
        )
        assert first.ack_token is not None
        assert not first.duplicate
        assert (second.topic, second.payload, second.qos, second.ack_token) == (
            f"{base}/b",
            b"\x00\xffraw",
            0,
            None,
        )
        assert client.ack([first, second]) == 1
        assert client.ack([first]) == 0  # already acknowledged: never twice


async def test_receive_batch_returns_what_is_there_without_waiting_for_more(
    mosquitto: MosquittoBroker,
) -> None:
    """A batch holds at most max_messages and does not wait to fill up."""
    base = unique("dev")
    client = make_client(mosquitto, unique("bridge"), [f"{base}/#"])
    async with running(client):
        await asyncio.to_thread(
            publish_many, mosquitto, [(f"{base}/t", str(i)) for i in range(5)], qos=0
        )
        await wait_until(lambda: client.queued == 5)
        batch = await client.receive_batch(3)
        assert [m.payload for m in batch] == [b"0", b"1", b"2"]
        rest = await asyncio.wait_for(client.receive_batch(1000), 5)
        assert [m.payload for m in rest] == [b"3", b"4"]


async def test_many_messages_arrive_in_order_through_a_small_queue(
    mosquitto: MosquittoBroker,
) -> None:
    """With max_queue far below the flood, reading pauses and resumes; nothing is lost."""
    base = unique("dev")
    client = MqttClient(
        MqttSettings(**mosquitto.client_settings_kwargs(), client_id=unique("bridge")),
        subscriptions=[f"{base}/#"],
        max_queue=10,
        backoff=fast_backoff(),
    )
    async with running(client):
        payloads = [f'{{"n": {i}}}'.encode() for i in range(2000)]
        publisher = asyncio.create_task(
            asyncio.to_thread(publish_many, mosquitto, [(f"{base}/t", p) for p in payloads], qos=1)
        )
        received: list[InboundMessage] = []
        async with asyncio.timeout(20):
            while len(received) < len(payloads):
                batch = await client.receive_batch(7)
                assert len(batch) <= 7
                client.ack(batch)
                received += batch
        await publisher
        assert [m.payload for m in received] == payloads


async def test_large_payload_split_across_reads_is_decoded_intact(
    mosquitto: MosquittoBroker,
) -> None:
    """A 3 MiB payload spans many socket reads and comes out byte for byte, then small ones."""
    base = unique("dev")
    client = make_client(mosquitto, unique("bridge"), [f"{base}/#"])
    big = secrets.token_bytes(3 * 1024 * 1024 + 17)
    async with running(client):
        messages = [(f"{base}/small", b"before"), (f"{base}/big", big), (f"{base}/small", b"after")]
        await asyncio.to_thread(publish_many, mosquitto, messages, qos=1)
        received = await receive(client, 3)
        assert [(m.topic, m.payload) for m in received] == messages
        assert client.ack(received) == 3


# --- manual acks and the persistent session -----------------------------------------


async def test_unacked_message_is_redelivered_after_reconnect_and_acked_one_is_not(
    mosquitto: MosquittoBroker,
) -> None:
    """Only the QoS 1 message never acknowledged comes back to the same client id."""
    base, client_id = unique("dev"), unique("bridge")
    async with running(make_client(mosquitto, client_id, [f"{base}/#"])) as client:
        await apublish(mosquitto, f"{base}/t", b"acked", qos=1)
        await apublish(mosquitto, f"{base}/t", b"not-acked", qos=1)
        acked, _not_acked = await receive(client, 2)
        assert client.ack([acked]) == 1
    async with running(make_client(mosquitto, client_id, [f"{base}/#"])) as client:
        [again] = await receive(client, 1)
        assert (again.payload, again.duplicate) == (b"not-acked", True)
        client.ack([again])
        await next_is_marker(client, mosquitto, f"{base}/marker")


async def test_messages_published_while_the_client_was_away_arrive_when_it_returns(
    mosquitto: MosquittoBroker,
) -> None:
    """The broker keeps the session (clean_start false) and queues QoS 1 messages for it."""
    base, client_id = unique("dev"), unique("bridge")
    async with running(make_client(mosquitto, client_id, [f"{base}/#"])):
        pass
    sent = [(f"{base}/t", f"m{i}".encode()) for i in range(20)]
    await asyncio.to_thread(publish_many, mosquitto, sent, qos=1)
    async with running(make_client(mosquitto, client_id, [f"{base}/#"])) as client:
        received = await receive(client, 20)
        assert [(m.topic, m.payload) for m in received] == sent
        client.ack(received)


async def test_queued_messages_survive_a_broker_restart(
    mosquitto_factory: BrokerFactory,
) -> None:
    """Persistence on: QoS 1 messages queued for an offline session outlive a restart."""
    broker = mosquitto_factory()
    client_id = unique("bridge")
    async with running(make_client(broker, client_id, ["dev/#"])):
        pass
    await asyncio.to_thread(publish_many, broker, [("dev/t", b"a"), ("dev/t", b"b")], qos=1)
    await asyncio.to_thread(broker.restart)
    async with running(make_client(broker, client_id, ["dev/#"])) as client:
        received = await receive(client, 2)
        assert [m.payload for m in received] == [b"a", b"b"]


async def test_clean_start_true_forgets_the_session(mosquitto: MosquittoBroker) -> None:
    """With clean_start the broker drops what it queued for the old session."""
    base, client_id = unique("dev"), unique("bridge")
    async with running(make_client(mosquitto, client_id, [f"{base}/#"])):
        pass
    await apublish(mosquitto, f"{base}/t", b"queued", qos=1)
    client = make_client(mosquitto, client_id, [f"{base}/#"], clean_start=True)
    async with running(client):
        await next_is_marker(client, mosquitto, f"{base}/marker")


async def test_stale_ack_tokens_are_ignored_after_reconnect(
    mosquitto_factory: BrokerFactory,
) -> None:
    """A token of an older connection sends no PUBACK; the broker redelivers that message."""
    broker = mosquitto_factory()
    client = make_client(broker, unique("bridge"), ["dev/#"])
    async with running(client):
        await apublish(broker, "dev/t", b"first", qos=1)
        [old] = await receive(client, 1)
        await asyncio.to_thread(broker.restart)
        await wait_until(lambda: client.connected)
        assert client.ack([old]) == 0
        [again] = await receive(client, 1)
        assert again.payload == b"first"
        assert again.ack_token is not None
        assert old.ack_token is not None
        assert again.ack_token[0] > old.ack_token[0]
        assert client.ack([again]) == 1
        await next_is_marker(client, broker, "dev/marker")


# --- broker availability --------------------------------------------------------------


async def test_broker_down_at_start_then_up_connects_by_itself(
    mosquitto_factory: BrokerFactory,
) -> None:
    """The client keeps retrying with backoff and connects once the broker starts."""
    broker = mosquitto_factory(start=False)
    client = make_client(broker, unique("bridge"), ["dev/#"])
    async with running(client, connect=False):
        await wait_until(lambda: client.last_error is not None)
        assert not client.connected
        assert "connection refused" in (client.last_error or "")
        assert broker.address in (client.last_error or "")
        await asyncio.to_thread(broker.start)
        assert await client.wait_connected(10), client.last_error
        assert client.last_error is None
        await apublish(broker, "dev/t", b"hello", qos=1)
        [message] = await receive(client, 1)
        assert message.payload == b"hello"


async def test_broker_restart_mid_stream_loses_nothing(mosquitto_factory: BrokerFactory) -> None:
    """Across a broker restart the client reconnects, resubscribes and gets every message."""
    broker = mosquitto_factory()
    client = make_client(broker, unique("bridge"), ["dev/#"])
    async with running(client):
        await asyncio.to_thread(publish_many, broker, [("dev/t", b"1"), ("dev/t", b"2")], qos=1)
        before = await receive(client, 2)
        client.ack(before)
        await processed_by_broker(client)
        await asyncio.to_thread(broker.stop)
        await wait_until(lambda: not client.connected)
        assert client.last_error is not None
        await asyncio.to_thread(broker.start)
        # published before the bridge is back: queued in its persistent session
        await asyncio.to_thread(publish_many, broker, [("dev/t", b"3"), ("dev/t", b"4")], qos=1)
        after = await receive(client, 2)
        assert [m.payload for m in before + after] == [b"1", b"2", b"3", b"4"]
        # queued messages may arrive before the resubscribe is confirmed
        assert await client.wait_connected(10)


async def test_keepalive_detects_a_broker_that_stopped_answering(
    mosquitto_factory: BrokerFactory,
) -> None:
    """A frozen broker (socket open, no PINGRESP) is dropped after 1.5 keep-alives."""
    broker = mosquitto_factory()
    client = make_client(broker, unique("bridge"), ["dev/#"], keepalive_s=1)
    async with running(client):
        broker.freeze()
        try:
            await wait_until(lambda: not client.connected, timeout_s=10)
            assert "no packet from the broker" in (client.last_error or "")
        finally:
            broker.thaw()
        assert await client.wait_connected(10), client.last_error
        await apublish(broker, "dev/t", b"back", qos=1)
        [message] = await receive(client, 1)
        assert message.payload == b"back"


async def test_wrong_password_sets_last_error_and_keeps_retrying(
    mosquitto_factory: BrokerFactory,
) -> None:
    """CONNACK 134/135 gives a clear last_error without the password; retries go on."""
    broker = mosquitto_factory(users={"bridge": "right-password"})
    backoff = fast_backoff()
    wrong = MqttClient(
        MqttSettings(
            **broker.client_settings_kwargs(),
            client_id=unique("bridge"),
            username="bridge",
            password="wrong-secret-123",
        ),
        subscriptions=["dev/#"],
        backoff=backoff,
    )
    with capture_logs() as logs:
        async with running(wrong, connect=False):
            await wait_until(lambda: backoff.attempts >= 3)
            error = wrong.last_error or ""
            assert "username" in error, error
            assert "password" in error, error
            assert "CONNACK reason 13" in error
            assert "wrong-secret-123" not in error
            assert "wrong-secret-123" not in repr(wrong.settings)
            assert not wrong.connected
    failures = [entry for entry in logs if entry["event"] == "mqtt_connection_failed"]
    assert len(failures) >= 3
    assert failures[0]["broker"] == broker.address
    assert "wrong-secret-123" not in repr(logs)
    fixed = make_client(
        broker, unique("bridge"), ["dev/#"], username="bridge", password="right-password"
    )
    async with running(fixed):
        await apublish(broker, "dev/t", b"ok", qos=1)
        [message] = await receive(fixed, 1)
        assert message.payload == b"ok"


async def test_password_file_hashed_without_mosquitto_passwd_works(
    mosquitto_factory: BrokerFactory,
) -> None:
    """The PBKDF2-SHA512 hashes written by the test support are accepted by mosquitto."""
    broker = mosquitto_factory(users={"bridge": "pw-ünï"}, password_tool=False)
    assert broker.password_file is not None
    assert broker.password_file.read_text().startswith("bridge:$7$101$")
    client = make_client(broker, unique("bridge"), ["dev/#"], username="bridge", password="pw-ünï")
    async with running(client):
        assert client.connected


async def test_anonymous_client_is_refused_by_a_password_broker(
    mosquitto_factory: BrokerFactory,
) -> None:
    """No credentials against a password file: refused, reported, not connected."""
    broker = mosquitto_factory(users={"bridge": "pw"})
    client = make_client(broker, unique("bridge"), ["dev/#"])
    async with running(client, connect=False):
        await wait_until(lambda: client.last_error is not None)
        assert "CONNACK reason 13" in (client.last_error or "")
        assert not client.connected


# --- TLS --------------------------------------------------------------------------------


async def test_tls_with_the_generated_ca(mosquitto_factory: BrokerFactory) -> None:
    """A TLS listener is reached with ca_file, the hostname being verified."""
    broker = mosquitto_factory(tls=True)
    client = make_client(broker, unique("bridge"), ["dev/#"])
    assert client.settings.use_tls
    assert client.settings.ca_file
    async with running(client):
        await apublish(broker, "dev/t", b"secure", qos=1)
        [message] = await receive(client, 1)
        assert message.payload == b"secure"


async def test_tls_without_the_ca_fails_verification_and_insecure_connects(
    mosquitto_factory: BrokerFactory,
) -> None:
    """An unknown CA is refused with a clear error; tls_insecure skips verification."""
    broker = mosquitto_factory(tls=True)
    untrusting = make_client(broker, unique("bridge"), ["dev/#"], ca_file=None)
    async with running(untrusting, connect=False):
        await wait_until(lambda: untrusting.last_error is not None)
        assert "certificate verify failed" in (untrusting.last_error or "")
    insecure = make_client(broker, unique("bridge"), ["dev/#"], ca_file=None, tls_insecure=True)
    async with running(insecure):
        assert insecure.connected


async def test_plain_client_on_a_tls_port_reports_the_mismatch(
    mosquitto_factory: BrokerFactory,
) -> None:
    """Speaking plain MQTT to a TLS listener fails with a hint, not a hang."""
    broker = mosquitto_factory(tls=True)
    client = make_client(broker, unique("bridge"), ["dev/#"], use_tls=False, ca_file=None)
    async with running(client, connect=False):
        await wait_until(lambda: client.last_error is not None)
        assert not client.connected


async def test_missing_ca_file_is_reported(mosquitto_factory: BrokerFactory) -> None:
    """A CA path that does not exist gives a last_error naming it."""
    broker = mosquitto_factory(tls=True)
    client = make_client(broker, unique("bridge"), ["dev/#"], ca_file="/nonexistent/ca.pem")
    async with running(client, connect=False):
        await wait_until(lambda: client.last_error is not None)
        assert "/nonexistent/ca.pem" in (client.last_error or "")


# --- subscriptions ------------------------------------------------------------------------


async def test_subscription_diff_while_connected(mosquitto: MosquittoBroker) -> None:
    """Added filters start delivering and removed ones stop, on the live connection."""
    base = unique("dev")
    client = make_client(mosquitto, unique("bridge"), [f"{base}/old"])
    async with running(client):
        await client.set_subscriptions([f"{base}/new", f"{base}/kept/+"])
        assert client.subscriptions == {f"{base}/new", f"{base}/kept/+"}
        for topic in (f"{base}/old", f"{base}/new", f"{base}/kept/x"):
            await apublish(mosquitto, topic, topic.encode(), qos=1)
        received = await receive(client, 2)
        assert [m.topic for m in received] == [f"{base}/new", f"{base}/kept/x"]
        client.ack(received)
        await client.set_subscriptions([f"{base}/kept/+", f"{base}/marker"])
        await apublish(mosquitto, f"{base}/new", b"gone", qos=1)
        await next_is_marker(client, mosquitto, f"{base}/marker")


async def test_many_filters_are_subscribed_and_dropped_in_batches(
    mosquitto: MosquittoBroker,
) -> None:
    """2,500 filters (more than one SUBSCRIBE batch) all deliver; removing them all works."""
    base = unique("many")
    filters = [f"{base}/{n}" for n in range(2 * SUBSCRIBE_BATCH + 500)]
    client = make_client(mosquitto, unique("bridge"), [])
    async with running(client):
        await client.set_subscriptions(filters)
        for topic in (filters[0], filters[SUBSCRIBE_BATCH], filters[-1]):
            await apublish(mosquitto, topic, b"x", qos=1)
        received = await receive(client, 3)
        assert [m.topic for m in received] == [filters[0], filters[SUBSCRIBE_BATCH], filters[-1]]
        client.ack(received)
        await client.set_subscriptions([f"{base}/marker"])
        await apublish(mosquitto, filters[-1], b"gone", qos=1)
        await next_is_marker(client, mosquitto, f"{base}/marker")


async def test_subscription_diff_while_disconnected_is_applied_on_reconnect(
    mosquitto_factory: BrokerFactory,
) -> None:
    """Changed while the broker is down: the reconnect subscribes new and drops old filters."""
    broker = mosquitto_factory()
    client = make_client(broker, unique("bridge"), ["dev/old", "dev/marker"])
    async with running(client):
        await asyncio.to_thread(broker.stop)
        await wait_until(lambda: not client.connected)
        await client.set_subscriptions(["dev/new", "dev/marker"])
        assert client.subscriptions == {"dev/new", "dev/marker"}
        await asyncio.to_thread(broker.start)
        assert await client.wait_connected(10), client.last_error
        await apublish(broker, "dev/old", b"old", qos=1)
        await apublish(broker, "dev/new", b"new", qos=1)
        [message] = await receive(client, 1)
        assert message.payload == b"new"
        client.ack([message])
        await next_is_marker(client, broker, "dev/marker")


async def test_subscriptions_set_before_run_are_used_on_connect(
    mosquitto: MosquittoBroker,
) -> None:
    """set_subscriptions works before the first connect."""
    base = unique("dev")
    client = make_client(mosquitto, unique("bridge"), [])
    await client.set_subscriptions([f"{base}/t"])
    async with running(client):
        await apublish(mosquitto, f"{base}/t", b"x", qos=0)
        [message] = await receive(client, 1)
        assert message.topic == f"{base}/t"


async def test_retained_message_comes_once_per_new_subscription(
    mosquitto: MosquittoBroker,
) -> None:
    """A retained value is sent (retain=True) for a new subscription, not on resubscribe."""
    base, client_id = unique("dev"), unique("bridge")
    await apublish(mosquitto, f"{base}/online", b"true", qos=1, retain=True)
    async with running(make_client(mosquitto, client_id, [f"{base}/#"])) as client:
        [message] = await receive(client, 1)
        assert (message.payload, message.retain) == (b"true", True)
        client.ack([message])
    async with running(make_client(mosquitto, client_id, [f"{base}/#"])) as client:
        await next_is_marker(client, mosquitto, f"{base}/marker")


# --- will message and close ---------------------------------------------------------------

_WILL_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from iot_bridge.net.mqtt import MqttClient, MqttSettings, WillMessage
    from iot_bridge.logs import configure_logging

    async def main() -> None:
        configure_logging(stream=sys.stderr)
        settings = MqttSettings(
            host="127.0.0.1", port=int(sys.argv[1]), client_id=sys.argv[2],
            will=WillMessage(topic=sys.argv[3], payload=b"offline", qos=1, retain=True),
        )
        client = MqttClient(settings)
        task = asyncio.create_task(client.run())
        if not await client.wait_connected(10):
            sys.exit(f"not connected: {client.last_error}")
        print("connected", flush=True)
        await task

    asyncio.run(main())
    """
)


async def test_will_is_published_when_the_process_is_killed(mosquitto: MosquittoBroker) -> None:
    """SIGKILL closes the socket without DISCONNECT: the broker publishes our will."""
    base = unique("dev")
    watcher = make_client(mosquitto, unique("watcher"), [f"{base}/status"])
    async with running(watcher):
        arguments = [str(mosquitto.port), unique("dying"), f"{base}/status"]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WILL_SCRIPT,
            *arguments,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 20)
            assert line.strip() == b"connected"
        finally:
            process.send_signal(signal.SIGKILL)
            await asyncio.wait_for(process.wait(), 10)
        [will] = await receive(watcher, 1)
        assert (will.topic, will.payload, will.qos) == (f"{base}/status", b"offline", 1)
        watcher.ack([will])
    late = make_client(mosquitto, unique("late"), [f"{base}/status"])
    async with running(late):
        [retained] = await receive(late, 1)
        assert (retained.payload, retained.retain) == (b"offline", True)


async def test_close_disconnects_normally_so_no_will_is_sent(mosquitto: MosquittoBroker) -> None:
    """close() sends DISCONNECT reason 0: the broker discards the will."""
    base = unique("dev")
    watcher = make_client(mosquitto, unique("watcher"), [f"{base}/#"])
    async with running(watcher):
        leaving = make_client(
            mosquitto,
            unique("leaving"),
            [],
            will=WillMessage(topic=f"{base}/status", payload=b"offline", retain=False),
        )
        async with running(leaving):
            pass
        assert leaving.closed
        assert not leaving.connected
        await next_is_marker(watcher, mosquitto, f"{base}/marker")


async def test_close_while_the_broker_is_down_returns_promptly(
    mosquitto_factory: BrokerFactory,
) -> None:
    """close() interrupts the backoff wait; receive_batch then returns []."""
    broker = mosquitto_factory(start=False)
    client = MqttClient(
        MqttSettings(host=broker.host, port=broker.port, client_id=unique("bridge")),
        backoff=Backoff(initial_s=30, max_s=30),
    )
    task = asyncio.create_task(client.run())
    await wait_until(lambda: client.last_error is not None)
    async with asyncio.timeout(5):
        await client.close()
        await task
    assert await client.receive_batch() == []


# --- publishing and bad input ------------------------------------------------------------


async def test_publish_qos1_waits_for_puback_and_qos0_does_not(mosquitto: MosquittoBroker) -> None:
    """The client's own publish reaches subscribers at both QoS levels."""
    base = unique("dev")
    client = make_client(mosquitto, unique("bridge"), [f"{base}/#"])
    async with running(client):
        await client.publish(f"{base}/one", b"1", qos=1)
        await client.publish(f"{base}/zero", b"0", qos=0, retain=False)
        received = await receive(client, 2)
        assert sorted((m.topic, m.payload) for m in received) == [
            (f"{base}/one", b"1"),
            (f"{base}/zero", b"0"),
        ]


async def test_publish_bad_input_and_not_connected_raise_mqtt_error(
    mosquitto: MosquittoBroker,
) -> None:
    """A wildcard topic, QoS 2, a str payload or no connection: MqttError, nothing sent."""
    client = make_client(mosquitto, unique("bridge"), [])
    with pytest.raises(MqttError, match="not connected"):
        await client.publish("dev/t", b"x")
    async with running(client):
        with pytest.raises(MqttError, match="wildcards"):
            await client.publish("dev/+/t", b"x")
        with pytest.raises(MqttError, match="must not be empty"):
            await client.publish("", b"x")
        with pytest.raises(MqttError, match="qos 2"):
            await client.publish("dev/t", b"x", qos=2)
        with pytest.raises(MqttError, match="payload must be bytes"):
            await client.publish("dev/t", "text")  # type: ignore[arg-type]


async def test_run_twice_is_refused(mosquitto: MosquittoBroker) -> None:
    """One client, one run loop."""
    client = make_client(mosquitto, unique("bridge"), [])
    async with running(client):
        with pytest.raises(MqttError, match="only be called once"):
            await client.run()


async def test_an_unencodable_host_name_is_a_failed_connect_not_a_dead_client() -> None:
    """A host the resolver cannot even encode (IDNA) is reported in last_error and retried."""
    from iot_bridge.net.mqtt import MqttClient, MqttSettings

    client = MqttClient(MqttSettings(host="broker..local", port=1), subscriptions=["a/b"])
    task = asyncio.create_task(client.run())
    try:
        for _ in range(200):
            if client.last_error:
                break
            await asyncio.sleep(0.01)
        assert client.last_error is not None
        assert "invalid host name" in client.last_error
        assert not task.done()
    finally:
        await client.close()
        await asyncio.wait_for(task, 5)
