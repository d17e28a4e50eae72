"""One broker connection: bytes in, packets decoded in a tight loop; packets out.

Sans-IO codec (``mqtt5``) under an ``asyncio.Protocol``: ``data_received`` gets
whole socket reads (up to 256 KiB from the selector transport), decodes every
complete packet in them, turns PUBLISHes into ``InboundMessage``s appended to the
shared ``InboundQueue``, and keeps an incomplete tail until the rest arrives.
Nothing here acknowledges a QoS 1 message on its own: ``send_pubacks`` does,
when the client is told to.

A connection speaks MQTT 5 or, for brokers that refuse it, MQTT 3.1.1
(``_v311``): the same packet objects either way, so only ``read`` and
``encode`` differ.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Iterable
from typing import Final, Literal

import mqtt5

from iot_bridge.errors import MqttError
from iot_bridge.net.mqtt import _v311
from iot_bridge.net.mqtt.messages import InboundMessage

ProtocolVersion = Literal["5", "3.1.1"]
MQTT_5: Final = "5"
MQTT_3_1_1: Final = "3.1.1"

_PUBACK_BASE = 0x4002_0000  # PUBACK fixed header (0x40, remaining length 2) + packet id
_PINGREQ = mqtt5.PingReqPacket().write()
_MAX_PACKET_ID = 65_535
# Read coalescing: after a read smaller than this, stop reading for READ_COALESCE_S so
# the next read carries many packets. A trickle of one packet per wake-up costs about
# 12 us of CPU per message (epoll, recv, callbacks, a PUBACK write each time); pausing
# 1 ms brings that to about 3 us, leaving the CPU to the broker and the pipeline, and
# adds at most 1 ms of latency. Big reads (a flood) never pause.
# Only while reads come close together (a stream of small packets): an isolated read of
# an idle trickle (messages 100 ms apart) gains nothing from a pause and would cost a
# timer and two more wake-ups each time.
SMALL_READ_BYTES = 32 * 1024
READ_COALESCE_S = 0.001
COALESCE_WITHIN_S = 0.005


def describe_reason(code: object) -> str:
    """``BAD_USER_NAME_OR_PASSWORD`` -> ``bad user name or password``."""
    name = getattr(code, "name", None)
    return name.lower().replace("_", " ") if isinstance(name, str) else str(code)


def reason_value(code: object) -> int:
    """The numeric value of an ``mqtt5`` reason code (they are not ``int`` subclasses)."""
    value = getattr(code, "value", code)
    return value if isinstance(value, int) else -1


def _needed_size(buffer: bytearray) -> int:
    """Total size of the packet that starts ``buffer``, or len+1 while its header is cut."""
    length = 0
    shift = 0
    for index in range(1, min(len(buffer), 5)):
        byte = buffer[index]
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return index + 1 + length
        shift += 7
    return len(buffer) + 1


class InboundQueue:
    """Messages waiting for the consumer; shared by all connections of one client.

    Bounded softly: past ``max_messages`` the connection stops reading from the
    socket (TCP back-pressure to the broker) until the consumer catches up.
    """

    def __init__(self, max_messages: int) -> None:
        self.items: list[InboundMessage] = []
        self.max_messages = max_messages
        self.closed = False
        self._ready = asyncio.Event()
        self._paused: MqttConnection | None = None

    def after_append(self, connection: MqttConnection) -> None:
        """Called by the connection after it appended messages."""
        self._ready.set()
        if len(self.items) >= self.max_messages and self._paused is None:
            self._paused = connection
            connection.pause_reading()

    async def get_batch(self, max_messages: int) -> list[InboundMessage]:
        """Wait for at least one message; return up to ``max_messages`` ([] once closed)."""
        while not self.items:
            if self.closed:
                return []
            self._ready.clear()
            await self._ready.wait()
        items = self.items
        if len(items) <= max_messages:
            self.items = []
            batch = items
        else:
            batch = items[:max_messages]
            del items[:max_messages]
        if self._paused is not None and len(self.items) < self.max_messages:
            self._paused.resume_reading()
            self._paused = None
        return batch

    def drop_stale_qos1(self, generation: int) -> int:
        """Drop queued QoS 1 messages of older connections (the broker redelivers them)."""
        before = len(self.items)
        self.items = [
            message
            for message in self.items
            if message.ack_token is None or message.ack_token[0] == generation
        ]
        return before - len(self.items)

    def forget_connection(self, connection: MqttConnection) -> None:
        """A lost connection can no longer be paused or resumed."""
        if self._paused is connection:
            self._paused = None

    def close(self) -> None:
        """Wake every waiting consumer; they get [] once the queue is empty."""
        self.closed = True
        self._ready.set()


class MqttConnection(asyncio.Protocol):
    """The protocol object of one TCP/TLS connection (one ``generation``)."""

    def __init__(
        self,
        queue: InboundQueue,
        generation: int,
        *,
        read_coalesce_s: float = READ_COALESCE_S,
        protocol: ProtocolVersion = MQTT_5,
    ) -> None:
        self.generation = generation
        self.protocol: ProtocolVersion = protocol
        self._read: Callable[[memoryview], tuple[mqtt5.Packet, int]] = (
            mqtt5.read if protocol == MQTT_5 else _v311.read
        )
        self.read_coalesce_s = read_coalesce_s
        self.transport: asyncio.Transport | None = None
        self.unacked: set[int] = set()
        self.reading_paused = False  # back-pressure from a full queue
        self._coalescing = False  # a short pause after a small read
        self._queue = queue
        self._loop = asyncio.get_running_loop()
        self.connack: asyncio.Future[mqtt5.ConnAckPacket] = self._loop.create_future()
        self.lost: asyncio.Future[str] = self._loop.create_future()
        self.last_received = self._loop.time()
        self._partial = bytearray()
        self._needed = 0
        self._close_reason: str | None = None
        self._requests: dict[int, asyncio.Future[mqtt5.Packet]] = {}
        self._next_packet_id = 0
        self.send_quota = asyncio.Semaphore(_MAX_PACKET_ID)

    # --- asyncio.Protocol -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        reason = self._close_reason or (
            f"connection lost: {exc}" if exc else "connection closed by the broker"
        )
        self._queue.forget_connection(self)
        error = MqttError(reason)
        if not self.connack.done():
            self.connack.set_exception(error)
            self.connack.exception()  # retrieved here: a refused connect is no crash
        for request in self._requests.values():
            if not request.done():
                request.set_exception(error)
                request.exception()
        self._requests.clear()
        if not self.lost.done():
            self.lost.set_result(reason)

    def data_received(self, data: bytes) -> None:
        previous = self.last_received
        self.last_received = now = self._loop.time()
        if self._partial:
            self._partial += data
            if len(self._partial) < self._needed:
                return
            data = bytes(self._partial)
            self._partial = bytearray()
        items = self._queue.items
        count_before = len(items)
        append = items.append
        read = self._read
        publish_type = mqtt5.PublishPacket
        builder = InboundMessage
        qos1 = mqtt5.QoS.AT_LEAST_ONCE
        unacked_add = self.unacked.add
        generation = self.generation
        view = memoryview(data)
        end = len(data)
        offset = 0
        try:
            while offset < end:
                try:
                    packet, size = read(view[offset:])
                except IndexError:  # "Not enough bytes": the rest comes with the next read
                    break
                offset += size
                if type(packet) is publish_type:
                    packet_id = packet.packet_id
                    message: InboundMessage
                    if packet_id is None:
                        message = builder(
                            packet.topic, packet.payload, 0, packet.retain, False, None
                        )
                    elif packet.qos is qos1:
                        unacked_add(packet_id)
                        message = builder(
                            packet.topic,
                            packet.payload,
                            1,
                            packet.retain,
                            packet.duplicate,
                            (generation, packet_id),
                        )
                    else:
                        message = self._exactly_once(packet)
                    append(message)
                else:
                    self._on_control_packet(packet)
        except Exception as err:  # any decode failure ends this connection
            if not self._refused_in_v311(view[offset:]):
                self.fail(f"malformed packet from the broker: {err}")
            return
        if offset < end:
            self._partial = bytearray(view[offset:])
            self._needed = _needed_size(self._partial)
        if len(items) != count_before:
            self._queue.after_append(self)
        if (
            end < SMALL_READ_BYTES
            and self.read_coalesce_s > 0
            and now - previous < COALESCE_WITHIN_S
        ):
            self._coalesce()

    def eof_received(self) -> bool | None:
        return None  # close the transport

    # --- control packets ----------------------------------------------------

    def _refused_in_v311(self, data: memoryview) -> bool:
        # A 3.1.1-only broker answers our MQTT 5 CONNECT with a 3.1.1 CONNACK
        # (return code 1, unacceptable protocol version), which the MQTT 5 codec
        # cannot read. Whatever its code, a broker answering in 3.1.1 does not
        # speak MQTT 5: the client hears "unsupported protocol version".
        if self.protocol != MQTT_5 or self.connack.done() or not _v311.is_connack(data):
            return False
        self.connack.set_result(
            mqtt5.ConnAckPacket(
                reason_code=mqtt5.ConnAckReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
                reason_str=f"answered in MQTT 3.1.1 (CONNACK return code {data[3]})",
            )
        )
        return True

    def _exactly_once(self, packet: mqtt5.PublishPacket) -> InboundMessage:
        # Subscriptions ask for QoS 1 at most, so QoS 2 only comes from a broker
        # that ignores that; complete its handshake at once and deliver it like QoS 0.
        packet_id = packet.packet_id if packet.packet_id is not None else 0
        self.send(mqtt5.PubRecPacket(packet_id))
        return InboundMessage(packet.topic, packet.payload, 2, packet.retain, False, None)

    def _on_control_packet(self, packet: mqtt5.Packet) -> None:
        if isinstance(packet, mqtt5.ConnAckPacket):
            if not self.connack.done():
                self.connack.set_result(packet)
                if packet.receive_max and packet.receive_max < _MAX_PACKET_ID:
                    self.send_quota = asyncio.Semaphore(packet.receive_max)
        elif isinstance(packet, mqtt5.PubAckPacket | mqtt5.SubAckPacket | mqtt5.UnsubAckPacket):
            request = self._requests.pop(packet.packet_id, None)
            if request is not None and not request.done():
                request.set_result(packet)
        elif isinstance(packet, mqtt5.PubRelPacket):
            self.send(mqtt5.PubCompPacket(packet.packet_id))
        elif isinstance(packet, mqtt5.DisconnectPacket):
            detail = f" ({packet.reason_str})" if packet.reason_str else ""
            self.close(
                f"the broker disconnected us: {describe_reason(packet.reason_code)} "
                f"(reason {reason_value(packet.reason_code)}){detail}"
            )
        # PINGRESP only proves the broker is alive: last_received already says so.

    # --- outgoing -----------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """True while bytes can still be written."""
        return self.transport is not None and not self.transport.is_closing()

    def write(self, data: bytes) -> None:
        """Send raw packet bytes (dropped silently once the connection is closing)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def encode(self, packet: mqtt5.Packet) -> bytes:
        """``packet`` as bytes in this connection's protocol version."""
        return packet.write() if self.protocol == MQTT_5 else _v311.encode(packet)

    def send(self, packet: mqtt5.Packet) -> None:
        """Write one packet object in this connection's protocol version."""
        self.write(self.encode(packet))

    def send_pubacks(self, packet_ids: Iterable[int]) -> int:
        """Acknowledge outstanding QoS 1 messages in one write; returns how many were sent.

        A packet id not outstanding is skipped: the broker may already have
        reused it for a new message that must not be acknowledged by mistake.
        """
        if not self.is_open:
            return 0  # the broker redelivers on the next connection
        unacked = self.unacked
        words: list[int] = []
        for packet_id in packet_ids:
            if packet_id in unacked:
                unacked.remove(packet_id)
                words.append(_PUBACK_BASE | packet_id)
        if words:
            self.write(struct.pack(f">{len(words)}I", *words))
        return len(words)

    def ping(self) -> None:
        """Send PINGREQ."""
        self.write(_PINGREQ)

    def new_request(self) -> tuple[int, asyncio.Future[mqtt5.Packet]]:
        """A free packet id for SUBSCRIBE/UNSUBSCRIBE/PUBLISH and the future of its reply."""
        if len(self._requests) >= _MAX_PACKET_ID:
            raise MqttError("too many requests waiting for the broker")
        while True:
            self._next_packet_id = self._next_packet_id % _MAX_PACKET_ID + 1
            if self._next_packet_id not in self._requests:
                break
        future: asyncio.Future[mqtt5.Packet] = self._loop.create_future()
        self._requests[self._next_packet_id] = future
        return self._next_packet_id, future

    def forget_request(self, packet_id: int) -> None:
        """Drop a request whose reply we stopped waiting for."""
        self._requests.pop(packet_id, None)

    # --- flow control and closing -------------------------------------------

    def _coalesce(self) -> None:
        if self._coalescing or self.reading_paused or self.transport is None:
            return
        self._coalescing = True
        self.transport.pause_reading()
        self._loop.call_later(self.read_coalesce_s, self._end_coalescing)

    def _end_coalescing(self) -> None:
        self._coalescing = False
        transport = self.transport
        if transport is not None and not self.reading_paused and not transport.is_closing():
            transport.resume_reading()

    def pause_reading(self) -> None:
        """Stop reading the socket (the consumer is behind)."""
        if self.transport is not None and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Read again; the idle clock restarts so a pause is not a dead broker."""
        if self.transport is not None and self.reading_paused:
            self.reading_paused = False
            self.last_received = self._loop.time()
            if not self.transport.is_closing() and not self._coalescing:
                self.transport.resume_reading()

    def idle_s(self) -> float:
        """Seconds since the broker last sent anything (0 while we are not reading)."""
        if self.reading_paused:
            return 0.0
        return self._loop.time() - self.last_received

    def close(self, reason: str) -> None:
        """Close gracefully (flushing what was written), remembering why."""
        if self._close_reason is None:
            self._close_reason = reason
        if self.transport is not None:
            self.transport.close()

    def fail(self, reason: str) -> None:
        """Drop the connection at once, remembering why."""
        if self._close_reason is None:
            self._close_reason = reason
        if self.transport is not None:
            self.transport.abort()
