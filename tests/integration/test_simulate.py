"""``iot-bridge simulate`` as a process against real brokers: a mosquitto on a free port,
and the demo's built-in Python broker (the fallback when mosquitto is not installed)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import secrets
import signal
import socket
import struct
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import mqtt5
import pytest

from iot_bridge.demo.broker import PythonBroker
from iot_bridge.entrypoints.cli import main
from iot_bridge.net.mqtt import InboundMessage, MqttClient, MqttSettings
from iot_bridge.parsers import make_parser
from tests.support.mosquitto import BrokerFactory, MosquittoBroker, free_port

pytest_plugins = ["tests.support.mosquitto"]

PM_MINI_GEN3_KEYS = {"id", "voltage", "current", "apower", "freq", "aenergy", "ret_aenergy"}


@dataclass
class Received:
    """A message and when it arrived (event loop time)."""

    at: float
    message: InboundMessage


@dataclass
class Collector:
    """A subscriber on the project's MQTT client that keeps every message it gets."""

    client: MqttClient
    messages: list[Received] = field(default_factory=list)

    def on(self, topic: str) -> list[InboundMessage]:
        """Messages received on ``topic``, in order."""
        return [r.message for r in self.messages if r.message.topic == topic]

    async def wait_for(
        self, predicate: Callable[[InboundMessage], bool], timeout_s: float = 10.0
    ) -> InboundMessage:
        """The first message matching ``predicate``, polling until the deadline."""
        async with asyncio.timeout(timeout_s):
            while True:
                for received in self.messages:
                    if predicate(received.message):
                        return received.message
                await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def collecting(host: str, port: int, topic_filter: str) -> AsyncIterator[Collector]:
    """Subscribe ``topic_filter`` (QoS 1) and collect until the block ends."""
    client = MqttClient(
        MqttSettings(
            host=host,
            port=port,
            client_id=f"collector-{secrets.token_hex(4)}",
            clean_start=True,
            session_expiry_s=0,
        ),
        subscriptions=[topic_filter],
    )
    collector = Collector(client)
    runner = asyncio.create_task(client.run())

    async def pump() -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await client.receive_batch()
            if not batch:
                return
            collector.messages += [Received(loop.time(), message) for message in batch]
            client.ack(batch)

    pumping = asyncio.create_task(pump())
    try:
        assert await client.wait_connected(10), client.last_error
        yield collector
    finally:
        await client.close()
        pumping.cancel()
        await asyncio.gather(runner, pumping, return_exceptions=True)


@pytest.fixture(params=["mosquitto", "python"])
async def broker(
    request: pytest.FixtureRequest, mosquitto: MosquittoBroker
) -> AsyncIterator[tuple[str, int]]:
    """``(host, port)`` of a real mosquitto, then of the demo's built-in broker."""
    if request.param == "mosquitto":
        yield mosquitto.host, mosquitto.port
        return
    python_broker = PythonBroker()
    await python_broker.start()
    try:
        yield python_broker.host, python_broker.port
    finally:
        await python_broker.stop()


def device() -> str:
    """A device id no other test uses (retained messages outlive a test on the shared broker)."""
    return f"shellypmminig3-test{secrets.token_hex(3)}"


async def start_simulator(
    host: str, port: int, device_id: str, *extra: str
) -> asyncio.subprocess.Process:
    """``iot-bridge simulate`` as a child process, plain TCP."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "iot_bridge",
        "simulate",
        "--broker",
        host,
        "--port",
        str(port),
        "--no-tls",
        "--device-id",
        device_id,
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def finish(
    process: asyncio.subprocess.Process, timeout_s: float = 30.0
) -> tuple[int, str, str]:
    """Wait for the process; its exit code, stdout and stderr."""
    async with asyncio.timeout(timeout_s):
        stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_killed_simulator_leaves_online_true_retained_then_its_will_says_false(
    broker: tuple[str, int],
) -> None:
    """A running simulator's online=true is retained; SIGKILL makes the broker publish false."""
    host, port = broker
    device_id = device()
    online = f"{device_id}/online"
    async with collecting(host, port, f"{device_id}/#") as live:
        process = await start_simulator(host, port, device_id, "--scenario", "working")
        killed = False
        try:
            await live.wait_for(lambda m: m.topic.endswith("/status/pm1:0"))
            assert [m.payload for m in live.on(online)] == [b"true"]
            async with collecting(host, port, online) as late:
                retained = await late.wait_for(lambda m: m.topic == online)
                assert retained.payload == b"true"
                assert retained.retain
            process.kill()
            killed = True
            will = await live.wait_for(lambda m: m.topic == online and m.payload == b"false")
            assert will.payload == b"false"
        finally:
            # One signal only: a second one would make Popen.send_signal poll (waitpid) and
            # could reap the dead child before asyncio's child watcher thread does, which then
            # reports returncode 255 ("Unknown child process pid") instead of -SIGKILL.
            if not killed:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await process.wait()
    assert process.returncode == -signal.SIGKILL
    async with collecting(host, port, online) as after:
        retained = await after.wait_for(lambda m: m.topic == online)
        assert retained.payload == b"false"


async def test_full_session_publishes_parseable_payloads_with_rising_energy(
    broker: tuple[str, int],
) -> None:
    """full_session: online, idle-standby-working-idle readings, rising energy, offline, exit 0."""
    host, port = broker
    device_id = device()
    topic = f"{device_id}/status/pm1:0"
    parser = make_parser("shelly_pm", topic)
    async with collecting(host, port, f"{device_id}/#") as live:
        process = await start_simulator(host, port, device_id, "--speed", "100")
        code, stdout, stderr = await finish(process)
        await live.wait_for(lambda m: m.topic.endswith("/online") and m.payload == b"false")
    assert code == 0, stderr
    assert "done:" in stdout
    topics = [r.message.topic for r in live.messages]
    assert topics[0] == f"{device_id}/online"
    assert topics[-1] == f"{device_id}/online"
    data = live.on(topic)
    assert len(data) >= 20
    readings = [parser.parse(topic, m.payload) for m in data]
    energies = [r.energy_wh for r in readings]
    assert all(e is not None for e in energies)
    assert energies == sorted(energies)  # type: ignore[type-var]
    assert energies[-1] > 3.0  # type: ignore[operator]
    powers = [r.power_w for r in readings]
    assert powers[0] == 0.0
    assert powers[-1] == 0.0
    assert any(20 <= p < 50 for p in powers if p is not None)
    assert any(p > 100 for p in powers if p is not None)
    for message in data:
        status = json.loads(message.payload)
        assert set(status) == PM_MINI_GEN3_KEYS
        assert message.qos == 1


async def test_sigterm_ends_cleanly_and_announces_offline(mosquitto: MosquittoBroker) -> None:
    """SIGTERM mid-scenario: the simulator publishes online=false itself and exits 0."""
    device_id = device()
    online = f"{device_id}/online"
    async with collecting(mosquitto.host, mosquitto.port, f"{device_id}/#") as live:
        process = await start_simulator(
            mosquitto.host, mosquitto.port, device_id, "--scenario", "standby", "--duration", "3600"
        )
        await live.wait_for(lambda m: m.topic.endswith("/status/pm1:0"))
        process.send_signal(signal.SIGTERM)
        code, _, stderr = await finish(process)
        await live.wait_for(lambda m: m.topic == online and m.payload == b"false")
    assert code == 0, stderr
    assert [m.payload for m in live.on(online)] == [b"true", b"false"]


async def test_offline_test_goes_silent_for_the_offline_duration(
    mosquitto: MosquittoBroker,
) -> None:
    """offline_test: data, a gap of --offline-duration (scaled by --speed), data again."""
    device_id = device()
    topic = f"{device_id}/status/pm1:0"
    async with collecting(mosquitto.host, mosquitto.port, f"{device_id}/#") as live:
        process = await start_simulator(
            mosquitto.host,
            mosquitto.port,
            device_id,
            "--scenario",
            "offline_test",
            "--offline-duration",
            "40",
            "--duration",
            "80",
            "--speed",
            "20",
        )
        code, _, stderr = await finish(process)
        await live.wait_for(lambda m: m.topic.endswith("/online") and m.payload == b"false")
    assert code == 0, stderr
    arrivals = [r.at for r in live.messages if r.message.topic == topic]
    gaps = sorted(b - a for a, b in itertools.pairwise(arrivals))
    # 40 simulated seconds at speed 20 is 2 s of silence; reports otherwise come
    # at least every 10 simulated seconds (0.5 s).
    assert gaps[-1] >= 1.8
    assert gaps[-2] < 1.0


async def test_unreachable_broker_exits_1_with_one_sentence() -> None:
    """No broker on the port: one sentence on stderr after --connect-timeout, exit code 1."""
    port = free_port()
    process = await start_simulator("127.0.0.1", port, device(), "--connect-timeout", "1")
    code, _, stderr = await finish(process)
    assert code == 1
    lines = stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"127.0.0.1:{port}" in lines[0]
    assert "connection refused" in lines[0]
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--speed", "0"], "--speed must be"),
        (["--speed", "nan"], "--speed must be"),
        (["--duration", "-1"], "--duration must be"),
        (["--scenario", "offline_test", "--duration", "30"], "longer than --offline-duration"),
        (["--offline-duration", "0", "--scenario", "offline_test"], "--offline-duration must"),
        (["--topic", "plant/+/status/pm1:0"], "wildcards"),
        (["--device-id", "a/b"], "--device-id"),
        (["--port", "70000"], "--port must be"),
        (["--password", "secret"], "--password needs --username"),
        (["--ca-file", "/nonexistent/ca.pem"], "--ca-file"),
        (["--connect-timeout", "0"], "--connect-timeout must"),
    ],
)
def test_bad_flags_exit_2_with_one_sentence(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each kind of bad flag is refused with exit 2 and one sentence, before connecting."""
    code = main(["simulate", "--broker", "127.0.0.1", "--no-tls", *flags])
    captured = capsys.readouterr()
    assert code == 2
    assert message in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert "secret" not in captured.err


def test_unknown_scenario_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown --scenario is refused by the argument parser with exit 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--scenario", "dance"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'dance'" in capsys.readouterr().err


async def test_python_broker_refuses_mqtt_311_clients_with_their_own_connack() -> None:
    """The built-in broker answers an MQTT 3.1.1 CONNECT with 'unacceptable protocol version'."""
    python_broker = PythonBroker()
    await python_broker.start()
    try:
        reader, writer = await asyncio.open_connection(python_broker.host, python_broker.port)
        writer.write(bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 0]))
        async with asyncio.timeout(5):
            reply = await reader.read(4)
        writer.close()
        assert reply == bytes([0x20, 0x02, 0x00, 0x01])
    finally:
        await python_broker.stop()


async def test_python_broker_holds_back_qos1_beyond_the_receive_maximum() -> None:
    """Unacknowledged QoS 1 deliveries never exceed the client's receive maximum."""
    python_broker = PythonBroker()
    await python_broker.start()
    client = MqttClient(
        MqttSettings(
            host=python_broker.host,
            port=python_broker.port,
            client_id="slow-reader",
            receive_maximum=5,
        ),
        subscriptions=["load/#"],
    )
    runner = asyncio.create_task(client.run())
    try:
        assert await client.wait_connected(5)
        for index in range(12):
            python_broker.route(f"load/{index}", b"x", 1, False, sender=None)
        # QoS 0 is not held back: once this marker is in, so is every earlier write.
        python_broker.route("load/marker", b"", 0, False, sender=None)
        first: list[InboundMessage] = []
        async with asyncio.timeout(5):
            while not any(m.topic == "load/marker" for m in first):
                first += await client.receive_batch()
        first = [m for m in first if m.qos == 1]
        assert len(first) == 5
        client.ack(first)
        received = len(first)
        async with asyncio.timeout(5):
            while received < 12:
                batch = await client.receive_batch()
                client.ack(batch)
                received += len(batch)
        assert received == 12
    finally:
        await client.close()
        await asyncio.gather(runner, return_exceptions=True)
        await python_broker.stop()


async def _connect_raw(broker: PythonBroker, client_id: str, keep_alive: int) -> socket.socket:
    """A raw MQTT 5 connection with a retained will on ``<client_id>/online``."""
    sock = socket.create_connection((broker.host, broker.port))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    will = mqtt5.Will(
        f"{client_id}/online", payload=b"false", qos=mqtt5.QoS.AT_LEAST_ONCE, retain=True
    )
    await loop.sock_sendall(
        sock, mqtt5.ConnectPacket(client_id, will=will, keep_alive=keep_alive).write()
    )
    connack, _ = mqtt5.read(memoryview(await loop.sock_recv(sock, 1024)))
    assert isinstance(connack, mqtt5.ConnAckPacket)
    return sock


@pytest.mark.parametrize("ending", ["reset", "keep-alive"])
async def test_python_broker_publishes_the_will_when_a_client_vanishes(ending: str) -> None:
    """A connection reset, or silence beyond 1.5 x keep-alive, publishes the client's will."""
    python_broker = PythonBroker()
    await python_broker.start()
    try:
        async with collecting(python_broker.host, python_broker.port, "+/online") as live:
            sock = await _connect_raw(python_broker, "vanishing", keep_alive=1)
            if ending == "reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            will = await live.wait_for(lambda m: m.topic == "vanishing/online", timeout_s=5)
            assert will.payload == b"false"
            sock.close()
    finally:
        await python_broker.stop()


async def test_tls_is_the_default_and_works_with_the_brokers_ca(
    mosquitto_factory: BrokerFactory,
) -> None:
    """Without --no-tls the simulator speaks TLS, verifying the broker with --ca-file."""
    tls_broker = mosquitto_factory(tls=True, persistence=False)
    device_id = device()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "iot_bridge",
        "simulate",
        "--broker",
        tls_broker.host,
        "--port",
        str(tls_broker.port),
        "--ca-file",
        str(tls_broker.ca_file),
        "--device-id",
        device_id,
        "--scenario",
        "working",
        "--duration",
        "20",
        "--speed",
        "20",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    code, stdout, stderr = await finish(process)
    assert code == 0, stderr
    assert "with TLS" in stdout
    published = re.search(r"done: (\d+) messages published", stdout)
    assert published is not None
    assert int(published.group(1)) > 0
