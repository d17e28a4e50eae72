"""Decode cost per message of one connection, MQTT 5 vs MQTT 3.1.1, without a broker.

    python3 benchmarks/mqtt_decode.py [--messages 200000] [--chunk 262144] [--repeat 5]

Feeds a stream of QoS 1 Shelly-like PUBLISH packets (~190-byte payloads) in
socket-sized chunks into ``MqttConnection.data_received`` of each protocol
(an in-memory transport, nothing else runs), and prints the best of
``--repeat`` runs in CPU microseconds per message: what the decode loop costs
before the pipeline sees the message. The MQTT 5 path decodes with the Rust
``mqtt5`` codec; 3.1.1 with ``net/mqtt/_v311.py`` in Python.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import sys
import time

import mqtt5

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from iot_bridge.net.mqtt import _v311
from iot_bridge.net.mqtt._connection import (
    MQTT_3_1_1,
    MQTT_5,
    InboundQueue,
    MqttConnection,
    ProtocolVersion,
)


class _NullTransport(asyncio.Transport):
    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _stream(protocol: ProtocolVersion, messages: int) -> bytes:
    parts = []
    for index in range(messages):
        payload = json.dumps(
            {"id": 0, "voltage": 229.8, "apower": 850.0 + index % 97, "aenergy": {"total": index}}
        ).encode()
        packet = mqtt5.PublishPacket(
            f"bench/dev{index % 1000}/status/pm1:0",
            payload,
            qos=mqtt5.QoS.AT_LEAST_ONCE,
            packet_id=index % 65_535 + 1,
        )
        parts.append(packet.write() if protocol == MQTT_5 else _v311.encode(packet))
    return b"".join(parts)


async def _decode_us_per_message(protocol: ProtocolVersion, stream: bytes, chunk: int) -> float:
    queue = InboundQueue(10**9)
    connection = MqttConnection(queue, 1, read_coalesce_s=0.0, protocol=protocol)
    connection.connection_made(_NullTransport())
    count_before = len(queue.items)
    started = time.process_time()  # CPU time: the machine is shared
    for offset in range(0, len(stream), chunk):
        connection.data_received(stream[offset : offset + chunk])
        connection.unacked.clear()
    elapsed = time.process_time() - started
    decoded = len(queue.items) - count_before
    return elapsed / decoded * 1e6


def main() -> None:
    """Print µs/message for each protocol."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--chunk", type=int, default=256 * 1024)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for protocol in (MQTT_5, MQTT_3_1_1):
        stream = _stream(protocol, args.messages)
        best = min(
            asyncio.run(_decode_us_per_message(protocol, stream, args.chunk))
            for _ in range(args.repeat)
        )
        print(f"MQTT {protocol:<6} {args.messages:>9,} msgs  {best:6.2f} cpu us/msg")


if __name__ == "__main__":
    main()
