"""An MQTT broker on a free loopback port, for ``iot-bridge demo``.

``start_embedded_broker()`` spawns ``mosquitto`` when it is installed (a temp
config, anonymous, no persistence, its own session so a Ctrl-C in the
terminal reaches the demo first, and on Linux a parent-death signal so it
never outlives the demo). Without mosquitto it runs ``PythonBroker``: a small
MQTT 5 broker on the ``mqtt5`` codec the bridge already depends on.

Why not amqtt: amqtt (0.12) speaks MQTT 3.1.1 only and refuses the protocol
level 5 CONNECT of the bridge's client. ``PythonBroker`` does what the demo
needs: QoS 0/1, retained messages, wills, wildcards, keep-alive, receive
maximum. It keeps no sessions (``session_present`` is always false), so it is
for demos and tests, not production.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

import mqtt5

from iot_bridge.errors import BridgeError
from iot_bridge.logs import get_logger
from iot_bridge.topics import topic_filter_problem, topic_matches, topic_name_problem

log = get_logger(__name__)

MOSQUITTO_CANDIDATES: Final = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
LOOPBACK: Final = "127.0.0.1"
_PR_SET_PDEATHSIG: Final = 1


class EmbeddedBroker(Protocol):
    """A running broker the demo can connect to and must stop."""

    @property
    def host(self) -> str:
        """Address it listens on (loopback)."""
        ...

    @property
    def port(self) -> int:
        """TCP port it listens on."""
        ...

    @property
    def kind(self) -> str:
        """``"mosquitto"`` or ``"python"``, for the demo's banner."""
        ...

    async def stop(self) -> None:
        """Stop it; no process or task is left behind. Safe to call twice."""
        ...


def find_mosquitto() -> str | None:
    """Path of an executable ``mosquitto``, or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in MOSQUITTO_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


BROKER_KINDS: Final = ("auto", "mosquitto", "python")


async def start_embedded_broker(kind: str = "auto") -> EmbeddedBroker:
    """Start a broker of ``kind`` (one of ``BROKER_KINDS``) on a free loopback port.

    ``auto``: mosquitto when installed and able to start, else ``PythonBroker``.
    Raises ``BridgeError`` with one sentence when the chosen broker cannot
    start, ``ValueError`` for an unknown ``kind``.
    """
    if kind not in BROKER_KINDS:
        raise ValueError(f"unknown broker kind {kind!r}: choose one of {', '.join(BROKER_KINDS)}")
    binary = None if kind == "python" else find_mosquitto()
    if binary is None and kind == "mosquitto":
        raise BridgeError(
            "mosquitto is not installed (apt-get install mosquitto), "
            "choose the built-in broker instead"
        )
    if binary is not None:
        process = MosquittoProcess(binary)
        try:
            await process.start()
        except BridgeError as err:
            if kind == "mosquitto":
                raise
            log.warning("embedded_mosquitto_failed", reason=str(err), fallback="python")
        else:
            return process
    broker = PythonBroker()
    await broker.start()
    return broker


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the demo dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class MosquittoProcess:
    """``mosquitto -c <temp config>`` on a free loopback port."""

    kind = "mosquitto"

    def __init__(self, binary: str, *, host: str = LOOPBACK) -> None:
        self.binary = binary
        self.host = host
        self.port = 0
        self._directory: Path | None = None
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        """The mosquitto process id while it runs."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    def _config(self, directory: Path) -> str:
        # As root, mosquitto would switch to user `mosquitto`, which cannot read a
        # 0700 temp dir; `user root` keeps the starting user (ignored when not root).
        return "\n".join(
            [
                "user root",
                f"listener {self.port} {self.host}",
                "allow_anonymous true",
                "persistence false",
                f"log_dest file {directory / 'mosquitto.log'}",
                "log_type error",
                "log_type warning",
                "",
            ]
        )

    async def start(self, timeout_s: float = 10.0) -> None:
        """Spawn mosquitto and wait until it accepts TCP connections.

        A port taken between picking and binding is retried with another one.
        """
        self._directory = Path(tempfile.mkdtemp(prefix="iot-bridge-mosquitto-"))
        last_error = "did not start"
        for _attempt in range(3):
            self.port = _free_port(self.host)
            config = self._directory / "mosquitto.conf"
            config.write_text(self._config(self._directory), encoding="utf-8")
            with (self._directory / "mosquitto.out").open("ab") as output:
                self._process = await asyncio.create_subprocess_exec(
                    self.binary,
                    "-c",
                    str(config),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=output,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                )
            try:
                await self._wait_ready(timeout_s)
            except BridgeError as err:
                last_error = str(err)
                await self._terminate()
                continue
            log.info("embedded_broker_started", kind="mosquitto", port=self.port, pid=self.pid)
            return
        self._remove_directory()
        raise BridgeError(f"mosquitto could not start on {self.host}: {last_error}")

    async def _wait_ready(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            process = self._process
            if process is None or process.returncode is not None:
                raise BridgeError(f"it exited: {self._log_tail()}")
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                if loop.time() > deadline:
                    raise BridgeError(f"not listening after {timeout_s:g} s") from None
                await asyncio.sleep(0.02)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return

    def _log_tail(self) -> str:
        if self._directory is None:
            return "(no log)"
        text = ""
        for name in ("mosquitto.out", "mosquitto.log"):
            path = self._directory / name
            if path.exists():
                text += path.read_text(encoding="utf-8", errors="replace")
        lines = [line for line in text.splitlines() if line.strip()]
        return lines[-1] if lines else "(no log)"

    async def _terminate(self, timeout_s: float = 5.0) -> None:
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                async with asyncio.timeout(timeout_s):
                    await process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        self._process = None

    def _remove_directory(self) -> None:
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    async def stop(self) -> None:
        """SIGTERM, SIGKILL after 5 s, then remove the temp directory."""
        await self._terminate()
        self._remove_directory()
        log.info("embedded_broker_stopped", kind="mosquitto")


# --- the pure-Python fallback -------------------------------------------------------


@dataclass(slots=True)
class _Subscription:
    max_qos: int
    no_local: bool
    retain_as_published: bool


@dataclass(eq=False, slots=True)
class _Session:
    """One connected client."""

    client_id: str
    writer: asyncio.StreamWriter
    receive_max: int
    will: mqtt5.Will | None
    idle_limit_s: float | None  # 1.5 x keep-alive: silence beyond it ends the connection
    subscriptions: dict[str, _Subscription] = field(default_factory=dict)
    inflight: dict[int, bytes] = field(default_factory=dict)
    waiting: deque[tuple[str, bytes, bool]] = field(default_factory=deque)
    next_packet_id: int = 1
    closed: bool = False

    def write(self, data: bytes) -> None:
        if not self.closed and not self.writer.is_closing():
            self.writer.write(data)

    def deliver(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        """Send a message; QoS 1 waits in line beyond the client's receive maximum."""
        if qos == 0:
            self.write(mqtt5.PublishPacket(topic, payload, retain=retain).write())
        elif len(self.inflight) >= self.receive_max:
            self.waiting.append((topic, payload, retain))
        else:
            packet_id = self._new_packet_id()
            data = mqtt5.PublishPacket(
                topic, payload, qos=mqtt5.QoS.AT_LEAST_ONCE, retain=retain, packet_id=packet_id
            ).write()
            self.inflight[packet_id] = data
            self.write(data)

    def acknowledged(self, packet_id: int) -> None:
        self.inflight.pop(packet_id, None)
        while self.waiting and len(self.inflight) < self.receive_max:
            topic, payload, retain = self.waiting.popleft()
            self.deliver(topic, payload, 1, retain)

    def _new_packet_id(self) -> int:
        while True:
            packet_id = self.next_packet_id
            self.next_packet_id = packet_id % 65_535 + 1
            if packet_id not in self.inflight:
                return packet_id


_CONNACK: Final = mqtt5.ConnAckPacket(
    max_qos=mqtt5.QoS.AT_LEAST_ONCE,
    subscription_id_available=False,
    shared_subscription_available=False,
)


_CONNACK_V311_BAD_PROTOCOL: Final = bytes([0x20, 0x02, 0x00, 0x01])


class PythonBroker:
    """A small in-process MQTT 5 broker on a free loopback port (see the module doc)."""

    kind = "python"

    def __init__(self, *, host: str = LOOPBACK, port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._sessions: dict[str, _Session] = {}
        self._retained: dict[str, tuple[bytes, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen; ``port`` 0 picks a free one."""
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
        except OSError as err:
            raise BridgeError(
                f"the embedded MQTT broker cannot listen on {self.host}:{self.port}: "
                f"{err.strerror or err}"
            ) from err
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("embedded_broker_started", kind="python", port=self.port)

    async def stop(self) -> None:
        """Close the listener and every connection (no wills: the broker goes away)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for session in list(self._sessions.values()):
            session.will = None
            session.writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()
        log.info("embedded_broker_stopped", kind="python")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        packets = _PacketReader(reader)
        session: _Session | None = None
        try:
            session = await self._accept(packets, writer)
            while session is not None and not session.closed:
                packet = await asyncio.wait_for(packets.next(), timeout=session.idle_limit_s)
                if packet is None or not self._on_packet(session, packet):
                    break
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
            pass  # reset, keep-alive timeout (TimeoutError), malformed packet: drop it
        finally:
            if task is not None:
                self._tasks.discard(task)
            if session is not None:
                self._end(session)  # publishes the will unless the client said goodbye
            writer.close()

    async def _accept(
        self, packets: _PacketReader, writer: asyncio.StreamWriter
    ) -> _Session | None:
        """Read CONNECT, take over an older connection of the same client, answer CONNACK."""
        try:
            connect = await asyncio.wait_for(packets.next(), timeout=10.0)
        except ValueError:
            # Most likely an MQTT 3.1.1 client: answer in its own format,
            # "unacceptable protocol version", rather than just hanging up.
            writer.write(_CONNACK_V311_BAD_PROTOCOL)
            return None
        if not isinstance(connect, mqtt5.ConnectPacket):
            return None
        client_id = connect.client_id or f"auto-{id(writer):x}"
        old = self._sessions.get(client_id)
        if old is not None:
            old.write(
                mqtt5.DisconnectPacket(
                    reason_code=mqtt5.DisconnectReasonCode.SESSION_TAKEN_OVER
                ).write()
            )
            self._end(old)
        session = _Session(
            client_id=client_id,
            writer=writer,
            receive_max=connect.receive_max,
            will=connect.will,
            idle_limit_s=connect.keep_alive * 1.5 if connect.keep_alive else None,
        )
        self._sessions[client_id] = session
        connack = _CONNACK
        if not connect.client_id:
            connack = mqtt5.ConnAckPacket(
                assigned_client_id=client_id,
                max_qos=mqtt5.QoS.AT_LEAST_ONCE,
                subscription_id_available=False,
                shared_subscription_available=False,
            )
        session.write(connack.write())
        return session

    def _on_packet(self, session: _Session, packet: mqtt5.Packet) -> bool:
        """Handle one packet; False ends the connection."""
        if isinstance(packet, mqtt5.PublishPacket):
            return self._on_publish(session, packet)
        if isinstance(packet, mqtt5.PubAckPacket):
            session.acknowledged(packet.packet_id)
        elif isinstance(packet, mqtt5.SubscribePacket):
            self._on_subscribe(session, packet)
        elif isinstance(packet, mqtt5.UnsubscribePacket):
            codes = []
            for pattern in packet.patterns:
                existed = session.subscriptions.pop(pattern, None) is not None
                codes.append(
                    mqtt5.UnsubAckReasonCode.SUCCESS
                    if existed
                    else mqtt5.UnsubAckReasonCode.NO_SUBSCRIPTION_EXISTED
                )
            session.write(mqtt5.UnsubAckPacket(packet.packet_id, codes).write())
        elif isinstance(packet, mqtt5.PingReqPacket):
            session.write(mqtt5.PingRespPacket().write())
        elif isinstance(packet, mqtt5.DisconnectPacket):
            keep_will = (
                packet.reason_code == mqtt5.DisconnectReasonCode.DISCONNECT_WITH_WILL_MESSAGE
            )
            if not keep_will:
                session.will = None
            return False
        else:
            return False  # QoS 2, AUTH or a second CONNECT: not supported here
        return True

    def _on_publish(self, session: _Session, packet: mqtt5.PublishPacket) -> bool:
        qos = int(packet.qos)
        if qos > 1 or topic_name_problem(packet.topic):
            return False
        self.route(packet.topic, packet.payload, qos, packet.retain, sender=session)
        if qos == 1 and packet.packet_id is not None:
            session.write(mqtt5.PubAckPacket(packet.packet_id).write())
        return True

    def _on_subscribe(self, session: _Session, packet: mqtt5.SubscribePacket) -> None:
        codes = []
        new_filters = []
        for topic_filter in packet.topic_filters:
            if topic_filter_problem(topic_filter.pattern) or topic_filter.pattern.startswith(
                "$share/"
            ):
                codes.append(mqtt5.SubAckReasonCode.TOPIC_FILTER_INVALID)
                continue
            granted = min(int(topic_filter.max_qos), 1)
            is_new = topic_filter.pattern not in session.subscriptions
            session.subscriptions[topic_filter.pattern] = _Subscription(
                granted, topic_filter.no_local, topic_filter.retain_as_published
            )
            codes.append(mqtt5.SubAckReasonCode(granted))
            handling = topic_filter.retain_handling
            if handling == mqtt5.RetainHandling.SEND_ALWAYS or (
                handling == mqtt5.RetainHandling.SEND_IF_SUBSCRIPTION_NOT_EXISTS and is_new
            ):
                new_filters.append((topic_filter.pattern, granted))
        session.write(mqtt5.SubAckPacket(packet.packet_id, codes).write())
        for pattern, granted in new_filters:
            for topic, (payload, qos) in list(self._retained.items()):
                if topic_matches(pattern, topic):
                    session.deliver(topic, payload, min(qos, granted), True)

    def route(
        self, topic: str, payload: bytes, qos: int, retain: bool, *, sender: _Session | None
    ) -> None:
        """Store a retained message and deliver to every matching subscription."""
        if retain:
            if payload:
                self._retained[topic] = (payload, qos)
            else:
                self._retained.pop(topic, None)
        for session in list(self._sessions.values()):
            best: _Subscription | None = None
            for pattern, subscription in session.subscriptions.items():
                if subscription.no_local and session is sender:
                    continue
                if topic_matches(pattern, topic) and (
                    best is None or subscription.max_qos > best.max_qos
                ):
                    best = subscription
            if best is not None:
                session.deliver(
                    topic, payload, min(qos, best.max_qos), retain and best.retain_as_published
                )

    def _end(self, session: _Session) -> None:
        """Forget a connection; publish its will unless it said goodbye."""
        if session.closed:
            return
        session.closed = True
        if self._sessions.get(session.client_id) is session:
            del self._sessions[session.client_id]
        session.writer.close()
        will, session.will = session.will, None
        if will is not None and not topic_name_problem(will.topic):
            self.route(will.topic, will.payload or b"", int(will.qos), will.retain, sender=None)


class _PacketReader:
    """Decodes packets from a stream; ``next()`` returns None at end of stream."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._buffer = bytearray()

    async def next(self) -> mqtt5.Packet | None:
        while True:
            if self._buffer:
                try:
                    packet, size = mqtt5.read(memoryview(bytes(self._buffer)))
                except IndexError:
                    pass  # incomplete: read more
                else:
                    del self._buffer[:size]
                    return packet
            chunk = await self._reader.read(65_536)
            if not chunk:
                return None
            self._buffer += chunk
