"""A real MQTT 3.1.1-only broker for tests: amqtt, run as its own process on a free port.

amqtt speaks only MQTT 3.1.1. Given an MQTT 5 CONNECT it misreads the
properties as the client id's length and waits for bytes that never come (no
CONNACK at all), which is one of the ways old brokers refuse MQTT 5.
``RefusingProxy`` puts the other common way in front of any broker: like
mosquitto 1.4/1.5, answer an MQTT 5 CONNECT with a 3.1.1 CONNACK, return code
1 (unacceptable protocol version), and close; 3.1.1 connections pass through.
In front of mosquitto 2 it makes a 3.1.1-only broker with mosquitto's exact
QoS 1 semantics (amqtt drops a QoS 1 message whose PUBACK does not come
within 5 s, and never redelivers unacknowledged messages on reconnect).

``publish_v311`` is a tiny blocking 3.1.1 publisher on a raw socket,
independent of the client under test.

Register the fixtures with ``pytest_plugins = ["tests.support.amqtt_broker"]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import pytest

from tests.support.mosquitto import free_port


class AmqttBroker:
    """One amqtt broker process (MQTT 3.1.1 only) on 127.0.0.1.

    Clients must give a user name (any, with any password): amqtt keeps no
    persistent session for anonymous clients, and the tests need one.
    """

    username = "bridge"

    def __init__(self, directory: pathlib.Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = free_port(self.host)
        self.config_file = directory / "amqtt.yaml"
        self.log_file = directory / "amqtt.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"

    @property
    def is_running(self) -> bool:
        """True while the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 20.0) -> AmqttBroker:
        """Start amqtt and wait until it accepts connections."""
        if self.is_running:
            return self
        self.config_file.write_text(
            "listeners:\n"
            "  default:\n"
            "    type: tcp\n"
            f"    bind: {self.host}:{self.port}\n"
            "plugins:\n"
            "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
            "    allow_anonymous: false\n",
            encoding="utf-8",
        )
        with self.log_file.open("ab") as output:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(self.config_file)],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.is_running:
                raise RuntimeError(f"amqtt on {self.address} exited:\n{self.log_tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.5),
            ):
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"amqtt on {self.address} not ready:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGINT (amqtt's own clean shutdown), then SIGKILL if it hangs."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout_s)
        self._process = None

    def log_tail(self, max_chars: int = 4000) -> str:
        """The end of the broker's output, for failure messages."""
        if not self.log_file.exists():
            return "(no log)"
        return self.log_file.read_text(encoding="utf-8", errors="replace")[-max_chars:]

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"AmqttBroker({self.address}, {state})"


# How a broker that does not speak MQTT 5 turns an MQTT 5 CONNECT away.
REFUSALS = {
    "connack_v311": b"\x20\x02\x00\x01",  # mosquitto 1.4/1.5: 3.1.1 CONNACK, return code 1
    "connack_v5": b"\x20\x03\x00\x84\x00",  # MQTT 5 CONNACK, reason 132 (unsupported version)
    "close": b"",  # RabbitMQ's MQTT plugin before 3.13: just closes the connection
}


class RefusingProxy:
    """A TCP front for a broker that makes it refuse MQTT 5 like an old broker.

    It reads each connection's CONNECT header: protocol level 5 gets the
    ``refusal`` (see ``REFUSALS``; by default the 3.1.1 CONNACK ``20 02 00 01``
    mosquitto 1.x sends) and a close; anything else is piped to the broker.
    ``refused`` counts the MQTT 5 connects turned away.
    """

    def __init__(self, target_host: str, target_port: int, refusal: str = "connack_v311") -> None:
        self.host = "127.0.0.1"
        self.port = free_port(self.host)
        self.refused = 0
        self._refusal = REFUSALS[refusal]
        self._target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> RefusingProxy:
        """Listen (in a thread with its own event loop)."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        future.result(10)
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            # Fixed header (1 byte + up to 4 of length), then "\x00\x04MQTT" and the level.
            head = await reader.readexactly(2)
            while head[-1] & 0x80:
                head += await reader.readexactly(1)
            variable = await reader.readexactly(7)
            if variable[6] == 5:
                self.refused += 1
                writer.write(self._refusal)
                await writer.drain()
                return
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
            upstream_writer.write(head + variable)
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        """Close the listener and stop the thread."""

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:  # piped connections still open
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


# --- a tiny independent 3.1.1 publisher ------------------------------------------------


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack(">H", len(data)) + data


def _frame(first: int, body: bytes) -> bytes:
    length, header = len(body), bytearray([first])
    while True:
        byte, length = length & 0x7F, length >> 7
        header.append(byte | 0x80 if length else byte)
        if not length:
            return bytes(header) + body


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        data += chunk
    return data


def publish_v311(
    host: str,
    port: int,
    messages: Sequence[tuple[str, bytes | str]],
    *,
    qos: int = 1,
    timeout_s: float = 10.0,
) -> None:
    """Publish ``messages`` in order with MQTT 3.1.1 (QoS 1 waits for each PUBACK)."""
    client_id = f"test-publisher-{secrets.token_hex(4)}"
    connect = (
        _string("MQTT")
        + bytes([4, 0x82])  # level 4; user name, clean session
        + struct.pack(">H", 30)
        + _string(client_id)
        + _string(AmqttBroker.username)
    )
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(_frame(0x10, connect))
        connack = _recv_exactly(sock, 4)
        if connack[:2] != b"\x20\x02" or connack[3] != 0:
            raise ConnectionError(f"publisher refused by {host}:{port}: {connack!r}")
        for packet_id, (topic, payload) in enumerate(messages, start=1):
            data = payload.encode() if isinstance(payload, str) else payload
            if qos == 0:
                sock.sendall(_frame(0x30, _string(topic) + data))
                continue
            sock.sendall(_frame(0x32, _string(topic) + struct.pack(">H", packet_id) + data))
            puback = _recv_exactly(sock, 4)
            if puback != b"\x40\x02" + struct.pack(">H", packet_id):
                raise ConnectionError(f"unexpected reply to PUBLISH: {puback!r}")
        sock.sendall(b"\xe0\x00")


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture
def amqtt_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], AmqttBroker]]:
    """``factory() -> started AmqttBroker``; every broker stops at teardown."""
    brokers: list[AmqttBroker] = []

    def factory() -> AmqttBroker:
        broker = AmqttBroker(tmp_path_factory.mktemp("amqtt"))
        brokers.append(broker)
        return broker.start()

    try:
        yield factory
    finally:
        for broker in brokers:
            broker.stop()


class Broker(Protocol):
    """Anything with the address of a broker (AmqttBroker, MosquittoBroker)."""

    host: str
    port: int


@pytest.fixture
def refusing_proxy_factory() -> Iterator[Callable[..., RefusingProxy]]:
    """``factory(broker, refusal=...) -> started RefusingProxy`` in front of ``broker``."""
    proxies: list[RefusingProxy] = []

    def factory(broker: Broker, refusal: str = "connack_v311") -> RefusingProxy:
        proxy = RefusingProxy(broker.host, broker.port, refusal).start()
        proxies.append(proxy)
        return proxy

    try:
        yield factory
    finally:
        for proxy in proxies:
            proxy.stop()
