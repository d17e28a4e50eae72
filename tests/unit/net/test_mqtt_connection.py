"""The MQTT connection's decoder without a socket: any cut of the stream, PUBACKs, pauses."""

from __future__ import annotations

import asyncio
import itertools

import mqtt5
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iot_bridge.net.mqtt import (
    InboundMessage,
)
from iot_bridge.net.mqtt._connection import InboundQueue, MqttConnection, _needed_size

# --- the decoder ---------------------------------------------------------------------------


class RecordingTransport(asyncio.Transport):
    """An in-memory transport: records writes, pauses and closes."""

    def __init__(self, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.written = bytearray()
        self.closed = False
        self.paused = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def close(self) -> None:
        self.abort()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.protocol.connection_lost(None)


def connect(
    queue: InboundQueue, generation: int = 1, *, read_coalesce_s: float = 0.0
) -> tuple[MqttConnection, RecordingTransport]:
    """A connection wired to a recording transport (read coalescing off unless asked)."""
    connection = MqttConnection(queue, generation, read_coalesce_s=read_coalesce_s)
    transport = RecordingTransport(connection)
    connection.connection_made(transport)
    return connection, transport


def publish_packet(topic: str, payload: bytes, qos: int = 0, packet_id: int | None = None) -> bytes:
    """One encoded PUBLISH."""
    level = (mqtt5.QoS.AT_MOST_ONCE, mqtt5.QoS.AT_LEAST_ONCE, mqtt5.QoS.EXACTLY_ONCE)[qos]
    return mqtt5.PublishPacket(topic, payload, qos=level, packet_id=packet_id).write()


BIG = bytes(range(256)) * 1200  # 300 KiB: larger than one socket read
STREAM = b"".join(
    [
        mqtt5.ConnAckPacket(session_present=True).write(),
        publish_packet("dev/a", b'{"apower": 1}', 1, 10),
        publish_packet("dev/b", b"", 0),
        mqtt5.PingRespPacket().write(),
        publish_packet("dev/big", BIG, 1, 11),
        publish_packet("dev/c", b"x" * 130, 0),  # remaining length needs two bytes
        publish_packet("dev/d", b"last", 1, 12),
    ]
)
EXPECTED = [
    InboundMessage("dev/a", b'{"apower": 1}', 1, False, False, (4, 10)),
    InboundMessage("dev/b", b"", 0, False, False, None),
    InboundMessage("dev/big", BIG, 1, False, False, (4, 11)),
    InboundMessage("dev/c", b"x" * 130, 0, False, False, None),
    InboundMessage("dev/d", b"last", 1, False, False, (4, 12)),
]


def feed(cuts: list[int]) -> tuple[MqttConnection, InboundQueue]:
    """Feed STREAM cut at the given offsets into a fresh connection."""
    queue = InboundQueue(1_000_000)
    connection, _ = connect(queue, generation=4)
    bounds = [0, *sorted(set(cuts)), len(STREAM)]
    for start, end in itertools.pairwise(bounds):
        if end > start:
            connection.data_received(STREAM[start:end])
    return connection, queue


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64, 1000, 65536, 262144, len(STREAM)])
async def test_stream_decodes_the_same_whatever_the_read_size(chunk: int) -> None:
    """Packets cut anywhere (even inside the header) decode to the same messages."""
    connection, queue = feed(list(range(chunk, len(STREAM), chunk)))
    assert queue.items == EXPECTED
    assert connection.connack.done()
    assert connection.unacked == {10, 11, 12}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=40))
def test_stream_decodes_the_same_for_random_cuts(cuts: list[int]) -> None:
    """Property: any set of cut points yields exactly the expected messages."""

    async def scenario() -> list[InboundMessage]:
        return feed(cuts)[1].items

    assert asyncio.run(scenario()) == EXPECTED


async def test_decoded_messages_are_plain_inbound_messages() -> None:
    """The decoder yields InboundMessage instances equal to ones built by hand."""
    queue = InboundQueue(10)
    connection, _ = connect(queue)
    connection.data_received(publish_packet("t", b"p", 1, 5))
    [message] = queue.items
    assert type(message) is InboundMessage
    assert message == InboundMessage("t", b"p", 1, False, False, (1, 5))


async def test_pubacks_are_written_in_one_go_and_only_for_outstanding_ids() -> None:
    """send_pubacks writes standard PUBACK packets, skipping ids not outstanding."""
    queue = InboundQueue(10)
    connection, transport = connect(queue)
    connection.data_received(publish_packet("t", b"1", 1, 7) + publish_packet("t", b"2", 1, 300))
    assert connection.send_pubacks([7, 300, 999, 7]) == 2
    expected = mqtt5.PubAckPacket(7).write() + mqtt5.PubAckPacket(300).write()
    assert bytes(transport.written) == expected
    assert connection.unacked == set()


async def test_no_puback_is_counted_once_the_connection_is_closing() -> None:
    """Acks for a dead connection send nothing and report nothing sent."""
    queue = InboundQueue(10)
    connection, transport = connect(queue)
    connection.data_received(publish_packet("t", b"1", 1, 7))
    transport.abort()
    assert connection.send_pubacks([7]) == 0
    assert bytes(transport.written) == b""


async def test_malformed_packet_drops_the_connection_with_a_reason() -> None:
    """Garbage from the broker aborts the connection; the reason is kept."""
    queue = InboundQueue(10)
    connection, transport = connect(queue)
    connection.data_received(b"\xff\x00")
    assert transport.closed
    assert "malformed packet" in connection.lost.result()


async def test_server_disconnect_closes_with_its_reason() -> None:
    """A DISCONNECT from the broker (e.g. session taken over) is reported by name."""
    queue = InboundQueue(10)
    connection, transport = connect(queue)
    taken_over = mqtt5.DisconnectReasonCode.SESSION_TAKEN_OVER
    connection.data_received(mqtt5.DisconnectPacket(reason_code=taken_over).write())
    assert transport.closed
    assert "session taken over (reason 142)" in connection.lost.result()


async def test_qos2_is_completed_at_once_and_delivered_without_token() -> None:
    """A QoS 2 message (never asked for) gets PUBREC/PUBCOMP and no ack token."""
    queue = InboundQueue(10)
    connection, transport = connect(queue)
    connection.data_received(publish_packet("t", b"2", 2, 9))
    assert queue.items == [InboundMessage("t", b"2", 2, False, False, None)]
    connection.data_received(mqtt5.PubRelPacket(9).write())
    assert bytes(transport.written) == (
        mqtt5.PubRecPacket(9).write() + mqtt5.PubCompPacket(9).write()
    )


async def test_reading_pauses_when_the_queue_is_full_and_resumes_when_drained() -> None:
    """Back-pressure: over max_queue the socket is paused until receive_batch drains it."""
    queue = InboundQueue(3)
    connection, transport = connect(queue)
    connection.data_received(b"".join(publish_packet("t", b"x") for _ in range(5)))
    assert transport.paused
    assert connection.idle_s() == 0.0
    assert len(await queue.get_batch(2)) == 2
    assert transport.paused  # still 3 queued
    assert len(await queue.get_batch(2)) == 2
    assert not transport.paused


async def test_stale_qos1_messages_are_dropped_when_the_session_resumes() -> None:
    """On a resumed session, queued QoS 1 messages of older connections go (redelivered)."""
    queue = InboundQueue(100)
    old, _ = connect(queue, generation=1)
    old.data_received(publish_packet("t", b"old1", 1, 1) + publish_packet("t", b"old0", 0))
    new, _ = connect(queue, generation=2)
    new.data_received(publish_packet("t", b"new1", 1, 1))
    assert queue.drop_stale_qos1(2) == 1
    assert [m.payload for m in queue.items] == [b"old0", b"new1"]


@pytest.mark.parametrize(
    ("header", "needed"),
    [
        (b"\x30", 2),
        (b"\x30\x05", 7),
        (b"\x30\x80", 3),
        (b"\x30\x80\x01", 131),
        (b"\x30\xff\xff", 4),
    ],
)
def test_needed_size_reads_the_remaining_length(header: bytes, needed: int) -> None:
    """The size of a cut packet comes from its variable-length header (len+1 while cut)."""
    assert _needed_size(bytearray(header)) == needed


async def test_small_reads_pause_briefly_and_floods_do_not() -> None:
    """Read coalescing: a small read pauses the socket until the timer; a big one never."""
    queue = InboundQueue(1_000_000)
    connection, transport = connect(queue, read_coalesce_s=0.001)
    connection.data_received(publish_packet("t", b"small"))
    assert transport.paused
    connection._end_coalescing()
    assert not transport.paused
    connection.data_received(b"".join(publish_packet("t", b"x" * 200) for _ in range(200)))
    assert not transport.paused


async def test_an_isolated_small_read_does_not_pause() -> None:
    """A trickle (the last read long ago) is read at once: no timer, no pause."""
    queue = InboundQueue(1_000_000)
    connection, transport = connect(queue, read_coalesce_s=0.001)
    connection.last_received -= 1.0  # the previous read was a second ago
    connection.data_received(publish_packet("t", b"small"))
    assert not transport.paused
    connection.data_received(publish_packet("t", b"next"))  # right behind it: a stream
    assert transport.paused


async def test_coalescing_timer_does_not_override_back_pressure() -> None:
    """When the queue is full, the end of a coalescing pause leaves reading paused."""
    queue = InboundQueue(2)
    connection, transport = connect(queue, read_coalesce_s=0.001)
    connection.data_received(publish_packet("t", b"1") + publish_packet("t", b"2"))
    connection._end_coalescing()
    assert transport.paused
    await queue.get_batch(10)
    assert not transport.paused
