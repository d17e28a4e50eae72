"""MQTT 3.1.1 framing for brokers that do not speak MQTT 5 (sans-IO, no sockets).

The ``mqtt5`` codec only knows MQTT 5, whose CONNECT, CONNACK, PUBLISH, SUBACK
and UNSUBACK carry properties that 3.1.1 does not have. This module reads and
writes the 3.1.1 forms of the packets the bridge uses, in terms of the same
``mqtt5`` packet objects, so the connection and the client handle one packet
model whatever the protocol: ``read`` has ``mqtt5.read``'s contract
(``IndexError`` while a packet is incomplete, ``ValueError`` when it is
malformed) and ``encode`` writes a packet object as 3.1.1 bytes.

Packets that are byte-for-byte the same in both versions (PUBACK with a
success code, PINGREQ, DISCONNECT without reason) need nothing special, but
go through ``encode`` too so a caller never has to know.
"""

from __future__ import annotations

import struct
from typing import Final

import mqtt5

PROTOCOL_LEVEL: Final = 4
CONNACK_HEAD: Final = b"\x20\x02"  # a 3.1.1 CONNACK: type 2, remaining length 2

_MAX_REMAINING_LENGTH: Final = 268_435_455
_QOS: Final = (mqtt5.QoS.AT_MOST_ONCE, mqtt5.QoS.AT_LEAST_ONCE, mqtt5.QoS.EXACTLY_ONCE)
# 3.1.1 CONNACK return codes -> the MQTT 5 reason codes of the same meaning
# (the mapping MQTT 5 itself gives for a server answering a 3.1.1 client).
_CONNACK_CODES: Final = {
    0: mqtt5.ConnAckReasonCode.SUCCESS,
    1: mqtt5.ConnAckReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
    2: mqtt5.ConnAckReasonCode.CLIENT_ID_NOT_VALID,
    3: mqtt5.ConnAckReasonCode.SERVER_UNAVAILABLE,
    4: mqtt5.ConnAckReasonCode.BAD_USER_NAME_OR_PASSWORD,
    5: mqtt5.ConnAckReasonCode.NOT_AUTHORIZED,
}
_SUBACK_FAILURE: Final = 0x80
_TYPE_CONNACK: Final = 2
_TYPE_PUBLISH: Final = 3
_TYPE_PUBACK: Final = 4
_TYPE_PUBREC: Final = 5
_TYPE_PUBREL: Final = 6
_TYPE_PUBCOMP: Final = 7
_TYPE_SUBACK: Final = 9
_TYPE_UNSUBACK: Final = 11
_TYPE_PINGRESP: Final = 13


# --- reading --------------------------------------------------------------------


def read(buffer: memoryview) -> tuple[mqtt5.Packet, int]:
    """Decode the 3.1.1 packet at the start of ``buffer``: ``(packet, bytes used)``.

    Raises ``IndexError`` while the packet is not complete yet and
    ``ValueError`` for a malformed packet or one a broker never sends.
    """
    length, header_size = _remaining_length(buffer)
    size = header_size + length
    if len(buffer) < size:
        raise IndexError("Not enough bytes")
    first = buffer[0]
    body = buffer[header_size:size]
    kind = first >> 4
    if kind == _TYPE_PUBLISH:
        return _publish(first, body), size
    if kind == _TYPE_CONNACK:
        return _connack(body), size
    if kind in (_TYPE_PUBACK, _TYPE_PUBREC, _TYPE_PUBREL, _TYPE_PUBCOMP):
        packet_id = _packet_id(body, exact=True)
        if kind == _TYPE_PUBACK:
            return mqtt5.PubAckPacket(packet_id), size
        if kind == _TYPE_PUBREC:
            return mqtt5.PubRecPacket(packet_id), size
        if kind == _TYPE_PUBREL:
            return mqtt5.PubRelPacket(packet_id), size
        return mqtt5.PubCompPacket(packet_id), size
    if kind == _TYPE_SUBACK:
        codes = [mqtt5.SubAckReasonCode(_suback_code(code)) for code in body[2:]]
        return mqtt5.SubAckPacket(_packet_id(body), codes), size
    if kind == _TYPE_UNSUBACK:
        return mqtt5.UnsubAckPacket(_packet_id(body, exact=True), []), size
    if kind == _TYPE_PINGRESP and length == 0:
        return mqtt5.PingRespPacket(), size
    raise ValueError(f"unexpected MQTT 3.1.1 packet type {kind} from the broker")


def is_connack(data: bytes | bytearray | memoryview) -> bool:
    """True when ``data`` starts with a whole 3.1.1 CONNACK.

    What a 3.1.1-only broker answers an MQTT 5 CONNECT with (return code 1,
    unacceptable protocol version); an MQTT 5 CONNACK is never this short.
    """
    return len(data) >= len(CONNACK_HEAD) + 2 and bytes(data[:2]) == CONNACK_HEAD


def _remaining_length(buffer: memoryview) -> tuple[int, int]:
    length = 0
    for index in range(1, min(len(buffer), 5)):
        byte = buffer[index]
        length |= (byte & 0x7F) << (7 * (index - 1))
        if not byte & 0x80:
            return length, index + 1
    if len(buffer) >= 5:
        raise ValueError("Invalid remaining length")
    raise IndexError("Not enough bytes")


def _packet_id(body: memoryview, *, exact: bool = False) -> int:
    if len(body) < 2 or (exact and len(body) != 2):
        raise ValueError("Invalid packet identifier")
    packet_id = int(body[0]) << 8 | int(body[1])
    if packet_id == 0:
        raise ValueError("Packet identifier 0")
    return packet_id


def _publish(first: int, body: memoryview) -> mqtt5.PublishPacket:
    qos = (first >> 1) & 0x03
    if qos == 3:
        raise ValueError("PUBLISH with QoS 3")
    if len(body) < 2:
        raise ValueError("PUBLISH without a topic")
    topic_end = 2 + (int(body[0]) << 8 | int(body[1]))
    if len(body) < topic_end:
        raise ValueError("PUBLISH topic longer than the packet")
    topic = bytes(body[2:topic_end]).decode("utf-8")
    packet_id = None
    payload_start = topic_end
    if qos:
        packet_id = _packet_id(body[topic_end : topic_end + 2])
        payload_start += 2
    return mqtt5.PublishPacket(
        topic,
        bytes(body[payload_start:]),
        qos=_QOS[qos],
        retain=bool(first & 0x01),
        packet_id=packet_id,
        duplicate=bool(first & 0x08),
    )


def _connack(body: memoryview) -> mqtt5.ConnAckPacket:
    if len(body) != 2:
        raise ValueError("Invalid CONNACK length")
    code = _CONNACK_CODES.get(int(body[1]), mqtt5.ConnAckReasonCode.UNSPECIFIED_ERROR)
    return mqtt5.ConnAckPacket(session_present=bool(body[0] & 0x01), reason_code=code)


def _suback_code(code: int) -> int:
    if code in (0, 1, 2, _SUBACK_FAILURE):
        return code
    raise ValueError(f"Invalid SUBACK return code {code}")


# --- writing --------------------------------------------------------------------


def encode(packet: mqtt5.Packet) -> bytes:
    """``packet`` (an ``mqtt5`` packet object) as MQTT 3.1.1 bytes.

    MQTT 5-only fields (properties, retain handling, reason strings) are left
    out: 3.1.1 cannot carry them. Raises ``ValueError`` for a packet a client
    never sends.
    """
    if isinstance(packet, mqtt5.PublishPacket):
        return _encode_publish(packet)
    if isinstance(packet, mqtt5.PubAckPacket):
        return struct.pack(">BBH", 0x40, 2, packet.packet_id)
    if isinstance(packet, mqtt5.PubRecPacket):
        return struct.pack(">BBH", 0x50, 2, packet.packet_id)
    if isinstance(packet, mqtt5.PubRelPacket):
        return struct.pack(">BBH", 0x62, 2, packet.packet_id)
    if isinstance(packet, mqtt5.PubCompPacket):
        return struct.pack(">BBH", 0x70, 2, packet.packet_id)
    if isinstance(packet, mqtt5.SubscribePacket):
        body = bytearray(struct.pack(">H", packet.packet_id))
        for topic_filter in packet.topic_filters:
            body += _string(topic_filter.pattern.encode("utf-8"))
            body.append(int(topic_filter.max_qos))
        return _frame(0x82, body)
    if isinstance(packet, mqtt5.UnsubscribePacket):
        body = bytearray(struct.pack(">H", packet.packet_id))
        for pattern in packet.patterns:
            body += _string(pattern.encode("utf-8"))
        return _frame(0xA2, body)
    if isinstance(packet, mqtt5.ConnectPacket):
        return _encode_connect(packet)
    if isinstance(packet, mqtt5.PingReqPacket):
        return b"\xc0\x00"
    if isinstance(packet, mqtt5.DisconnectPacket):
        return b"\xe0\x00"
    raise ValueError(f"cannot write {type(packet).__name__} as MQTT 3.1.1")


def _encode_publish(packet: mqtt5.PublishPacket) -> bytes:
    qos = int(packet.qos)
    first = 0x30 | qos << 1 | (0x01 if packet.retain else 0) | (0x08 if packet.duplicate else 0)
    body = bytearray(_string(packet.topic.encode("utf-8")))
    if qos:
        if packet.packet_id is None:
            raise ValueError("a QoS 1 or 2 PUBLISH needs a packet id")
        body += struct.pack(">H", packet.packet_id)
    body += packet.payload
    return _frame(first, body)


def _encode_connect(packet: mqtt5.ConnectPacket) -> bytes:
    flags = 0x02 if packet.clean_start else 0x00
    payload = bytearray(_string(packet.client_id.encode("utf-8")))
    will = packet.will
    if will is not None:
        flags |= 0x04 | int(will.qos) << 3 | (0x20 if will.retain else 0)
        payload += _string(will.topic.encode("utf-8"))
        payload += _string(will.payload or b"")
    username = packet.username
    if username is None and packet.password is not None:
        username = ""  # 3.1.1 allows a password only together with a user name
    if username is not None:
        flags |= 0x80
        payload += _string(username.encode("utf-8"))
    if packet.password is not None:
        flags |= 0x40
        payload += _string(packet.password)
    header = _string(b"MQTT") + struct.pack(">BBH", PROTOCOL_LEVEL, flags, packet.keep_alive)
    return _frame(0x10, header + payload)


def _string(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError("an MQTT string is at most 65,535 bytes")
    return struct.pack(">H", len(data)) + data


def _frame(first: int, body: bytes | bytearray) -> bytes:
    length = len(body)
    if length > _MAX_REMAINING_LENGTH:
        raise ValueError("packet too large for MQTT")
    header = bytearray([first])
    while True:
        byte = length & 0x7F
        length >>= 7
        header.append(byte | 0x80 if length else byte)
        if not length:
            return bytes(header) + bytes(body)
