"""What a broker holds retained, read by a tiny independent MQTT client (raw socket).

``retained(broker, "iot-bridge/#")`` subscribes, then publishes a sentinel to
itself: the broker sends the retained messages of a new subscription before
anything published afterwards, so the sentinel marks the end of them (no
waiting for a quiet period). Retained QoS 1 messages are acknowledged as they
come: unacknowledged, the broker stops at its in-flight limit (mosquitto: 20)
and the sentinel overtakes the rest.
"""

from __future__ import annotations

import secrets
import socket

import mqtt5

from tests.support.mosquitto import MosquittoBroker, _read_packet


def retained(
    broker: MosquittoBroker, topic_filter: str, timeout_s: float = 10.0
) -> dict[str, bytes]:
    """Topic -> payload of every retained message matching ``topic_filter`` right now."""
    sentinel = f"test-sentinel/{secrets.token_hex(6)}"
    buffer = bytearray()
    found: dict[str, bytes] = {}
    with socket.create_connection((broker.host, broker.port), timeout=timeout_s) as sock:
        sock.sendall(
            mqtt5.ConnectPacket(f"test-watch-{secrets.token_hex(4)}", clean_start=True).write()
        )
        _read_packet(sock, buffer)
        sock.sendall(mqtt5.SubscribePacket(1, [mqtt5.TopicFilter(topic_filter)]).write())
        sock.sendall(mqtt5.SubscribePacket(2, [mqtt5.TopicFilter(sentinel)]).write())
        subacks = 0
        while True:
            packet = _read_packet(sock, buffer)
            if isinstance(packet, mqtt5.SubAckPacket):
                subacks += 1
                if subacks == 2:
                    sock.sendall(mqtt5.PublishPacket(sentinel, b"end").write())
            elif isinstance(packet, mqtt5.PublishPacket):
                if packet.packet_id is not None:  # QoS 1
                    sock.sendall(mqtt5.PubAckPacket(packet.packet_id).write())
                if packet.topic == sentinel:
                    break
                if packet.retain:
                    found[packet.topic] = bytes(packet.payload)
        sock.sendall(mqtt5.DisconnectPacket().write())
    return found
