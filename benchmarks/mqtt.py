"""MQTT ingestion benchmark: how many messages/s MqttClient consumes (receive_batch + ack).

    python3 benchmarks/mqtt.py [--messages 200000] [--qos 0 1] [--mode live backlog]
                               [--devices 1000] [--batch 1000] [--receive-maximum 1000]
                               [--consumer client bare mosquitto_sub] [--tls]

A mosquitto on a free port of 127.0.0.1 (never 1883) relays small Shelly-like
``<prefix>/status/pm1:0`` payloads (~190 bytes) from a publisher process to the
consumer in this process.

- ``live``: the consumer is connected and subscribed; a separate publisher
  process floods N messages (QoS 1 with a window of the broker's receive
  maximum); the clock runs from the first message received to the last.
- ``backlog``: the N messages are queued in the consumer's persistent session
  while it is away; the clock runs from its reconnect to the last message.

Consumers: ``client`` is ``MqttClient`` (InboundMessage objects, manual acks
after each batch); ``bare`` is a minimal protocol that decodes with
``mqtt5.read`` and acks at once, for comparison. The machine has 2 cores shared
by the broker, the publisher and the consumer, so ``cpu us/msg`` (consumer
process CPU per message) says more about our cost than the wall-clock rate;
``broker N% of a core`` (live runs) shows when single-threaded mosquitto is the
limit. ``mosquitto_sub`` runs the C client as a reference (libmosquitto's own
receive maximum, output to /dev/null).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import mqtt5

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from tests.support.mosquitto import MosquittoBroker, free_port

from iot_bridge.net.mqtt import MqttClient, MqttSettings

TOPIC_ROOT = "bench"


def shelly_payload(index: int) -> bytes:
    power_w = 850.0 + (index % 97) / 10
    return json.dumps(
        {
            "id": 0,
            "voltage": 229.8,
            "current": round(power_w / 229.8, 3),
            "apower": power_w,
            "freq": 50.0,
            "aenergy": {"total": 1234.5 + index / 1000, "by_minute": [0, 0, 0], "minute_ts": 1},
        },
        separators=(",", ":"),
    ).encode()


# --- publisher (runs as a separate process) -------------------------------------------


def run_publisher(port: int, messages: int, qos: int, devices: int) -> None:
    """Flood ``messages`` PUBLISHes as fast as the broker's receive maximum allows."""
    packets = []
    for index in range(messages):
        topic = f"{TOPIC_ROOT}/shellypmminig3-{index % devices:06d}/status/pm1:0"
        if qos == 0:
            packets.append(mqtt5.PublishPacket(topic, shelly_payload(index)).write())
        else:
            packets.append(
                mqtt5.PublishPacket(
                    topic,
                    shelly_payload(index),
                    qos=mqtt5.QoS.AT_LEAST_ONCE,
                    packet_id=index % 65535 + 1,
                ).write()
            )
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(mqtt5.ConnectPacket("bench-publisher", clean_start=True, keep_alive=60).write())
    connack, _size = mqtt5.read(memoryview(sock.recv(4096)))
    assert isinstance(connack, mqtt5.ConnAckPacket)
    window = connack.receive_max if qos else len(packets)
    print("ready", flush=True)
    sys.stdin.readline()  # go
    sent = acked = 0
    pending = b""
    while sent < len(packets):
        room = min(window - (sent - acked), 2000, len(packets) - sent)
        if room > 0:
            sock.sendall(b"".join(packets[sent : sent + room]))
            sent += room
        if qos:
            pending += sock.recv(65536) if room <= 0 or sent == len(packets) else _recv_nowait(sock)
            acked += len(pending) // 4  # only 4-byte PUBACKs come back
            pending = pending[len(pending) // 4 * 4 :]
    while qos and acked < len(packets):
        pending += sock.recv(65536)
        acked += len(pending) // 4
        pending = pending[len(pending) // 4 * 4 :]
    sock.sendall(mqtt5.DisconnectPacket().write())
    sock.close()


def _recv_nowait(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    try:
        return sock.recv(65536)
    except BlockingIOError:
        return b""
    finally:
        sock.setblocking(True)


def forget_session(args: argparse.Namespace, client_id: str) -> None:
    """End a benchmark session so the broker stops queueing the next runs for it."""
    with socket.create_connection(("127.0.0.1", args.plain_port)) as sock:
        sock.sendall(mqtt5.ConnectPacket(client_id, clean_start=True).write())
        sock.recv(4096)
        sock.sendall(mqtt5.DisconnectPacket().write())


class Publisher:
    """The publisher process: prepared first, then told to go."""

    def __init__(self, port: int, messages: int, qos: int, devices: int) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--publisher",
                str(port),
                str(messages),
                str(qos),
                str(devices),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"publisher failed: {line!r}")

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")
        self.process.stdin.flush()

    def wait(self) -> None:
        if self.process.wait(300) != 0:
            raise RuntimeError("publisher failed")


# --- consumers --------------------------------------------------------------------------


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of another process (Linux /proc)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    consumer: str
    mode: str
    qos: int
    messages: int
    seconds: float
    cpu_s: float
    broker_cpu_s: float = float("nan")

    def line(self) -> str:
        rate = self.messages / self.seconds
        cpu_us = self.cpu_s / self.messages * 1e6
        line = (
            f"{self.consumer:8} {self.mode:7} qos{self.qos}  {self.messages:>8,} msgs  "
            f"{self.seconds:6.2f} s  {rate:>9,.0f} msg/s  {cpu_us:5.2f} cpu us/msg"
        )
        if self.mode == "live":
            line += f"  broker {self.broker_cpu_s / self.seconds * 100:3.0f}% of a core"
        return line


async def consume_with_client(
    broker: MosquittoBroker, args: argparse.Namespace, mode: str, qos: int
) -> Result:
    client_id = f"bench-{mode}-{qos}-{time.monotonic_ns()}"

    def make() -> MqttClient:
        return MqttClient(
            MqttSettings(
                host=broker.host,
                port=broker.port,
                use_tls=broker.tls,
                ca_file=broker.ca_file,
                client_id=client_id,
                receive_maximum=args.receive_maximum,
            ),
            subscriptions=[f"{TOPIC_ROOT}/#"],
        )

    client = make()
    task = asyncio.create_task(client.run())
    assert await client.wait_connected(10), client.last_error
    publisher = Publisher(args.plain_port, args.messages, qos, args.devices)
    if mode == "backlog":
        await client.close()
        await task
        await asyncio.to_thread(publisher.go)
        await asyncio.to_thread(publisher.wait)
        client = make()
        started = time.perf_counter()
        cpu_started = time.process_time()
        task = asyncio.create_task(client.run())
    else:
        await asyncio.to_thread(publisher.go)
        started = cpu_started = 0.0
    received = 0
    while received < args.messages:
        try:
            batch = await asyncio.wait_for(client.receive_batch(args.batch), 30)
        except TimeoutError:
            raise RuntimeError(f"stalled after {received} messages") from None
        if not started:
            started = time.perf_counter()
            cpu_started = time.process_time()
        client.ack(batch)
        received += len(batch)
    seconds = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started
    await client.close()
    await task
    if mode == "live":
        await asyncio.to_thread(publisher.wait)
    forget_session(args, client_id)
    return Result("client", mode, qos, received, seconds, cpu_s)


class BareConsumer(asyncio.Protocol):
    """The baseline: decode with mqtt5.read, count, ack at once; no objects kept."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.received = 0
        self.buffer = b""
        self.done = asyncio.get_running_loop().create_future()
        self.started = 0.0
        self.cpu_started = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        data = self.buffer + data if self.buffer else data
        view = memoryview(data)
        offset = 0
        acks = []
        while offset < len(data):
            try:
                packet, size = mqtt5.read(view[offset:])
            except IndexError:
                break
            offset += size
            if isinstance(packet, mqtt5.PublishPacket):
                if not self.received:
                    self.started = time.perf_counter()
                    self.cpu_started = time.process_time()
                self.received += 1
                if packet.packet_id is not None:
                    acks.append(0x40020000 | packet.packet_id)
        self.buffer = bytes(view[offset:])
        if acks and self.transport is not None:
            self.transport.write(struct.pack(f">{len(acks)}I", *acks))
        if self.received >= self.target and not self.done.done():
            self.done.set_result(None)


async def consume_bare(
    broker: MosquittoBroker, args: argparse.Namespace, mode: str, qos: int
) -> Result:
    loop = asyncio.get_running_loop()
    client_id = f"bare-{mode}-{qos}-{time.monotonic_ns()}"

    async def connect() -> tuple[asyncio.Transport, BareConsumer]:
        transport, protocol = await loop.create_connection(
            lambda: BareConsumer(args.messages), broker.host, args.plain_port
        )
        transport.write(
            mqtt5.ConnectPacket(
                client_id,
                clean_start=False,
                session_expiry_interval=3600,
                receive_max=args.receive_maximum,
                keep_alive=60,
            ).write()
            + mqtt5.SubscribePacket(
                1, [mqtt5.TopicFilter(f"{TOPIC_ROOT}/#", max_qos=mqtt5.QoS.AT_LEAST_ONCE)]
            ).write()
        )
        return transport, protocol

    transport, protocol = await connect()
    await asyncio.sleep(0.3)  # CONNACK + SUBACK
    publisher = Publisher(args.plain_port, args.messages, qos, args.devices)
    if mode == "backlog":
        transport.write(mqtt5.DisconnectPacket().write())
        transport.close()
        await asyncio.to_thread(publisher.go)
        await asyncio.to_thread(publisher.wait)
        started, cpu_started = time.perf_counter(), time.process_time()
        transport, protocol = await connect()
        await asyncio.wait_for(protocol.done, 120)
    else:
        await asyncio.to_thread(publisher.go)
        await asyncio.wait_for(protocol.done, 120)
        started, cpu_started = protocol.started, protocol.cpu_started
    seconds = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started
    transport.write(mqtt5.DisconnectPacket().write())
    transport.close()
    if mode == "live":
        await asyncio.to_thread(publisher.wait)
    forget_session(args, client_id)
    return Result("bare", mode, qos, protocol.received, seconds, cpu_s)


async def consume_mosquitto_sub(
    broker: MosquittoBroker, args: argparse.Namespace, mode: str, qos: int
) -> Result:
    """The C reference: mosquitto_sub with a persistent session, output discarded."""
    client_id = f"sub-{mode}-{qos}-{time.monotonic_ns()}"
    base = ["mosquitto_sub", "-h", broker.host, "-p", str(args.plain_port), "-V", "mqttv5"]
    base += ["-i", client_id, "-c", "-x", "3600", "-q", "1", "-t", f"{TOPIC_ROOT}/#"]
    # create the session and its subscription, then exit
    await asyncio.to_thread(subprocess.run, [*base, "-E"], check=True, timeout=30)
    publisher = Publisher(args.plain_port, args.messages, qos, args.devices)
    consume = [*base, "-C", str(args.messages)]
    if mode == "backlog":
        await asyncio.to_thread(publisher.go)
        await asyncio.to_thread(publisher.wait)
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(*consume, stdout=subprocess.DEVNULL)
    else:
        process = await asyncio.create_subprocess_exec(*consume, stdout=subprocess.DEVNULL)
        await asyncio.sleep(0.5)  # connected and subscribed by then
        started = time.perf_counter()
        await asyncio.to_thread(publisher.go)
    await asyncio.wait_for(process.wait(), 300)
    seconds = time.perf_counter() - started
    if mode == "live":
        await asyncio.to_thread(publisher.wait)
    forget_session(args, client_id)
    return Result("mosq_sub", mode, qos, args.messages, seconds, float("nan"))


CONSUMERS = {
    "client": consume_with_client,
    "bare": consume_bare,
    "mosquitto_sub": consume_mosquitto_sub,
}


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as directory:
        extra_config = [
            "max_queued_messages 0",  # keep the whole backlog (default 1000 drops the rest)
            "max_inflight_messages 1000",  # publisher window (the broker's receive maximum)
            "queue_qos0_messages true",  # so the QoS 0 backlog run has a backlog
        ]
        if args.tls:  # MqttClient on the TLS listener, everything else on a plain one
            args.plain_port = free_port()
            extra_config.append(f"listener {args.plain_port} 127.0.0.1")
        broker = MosquittoBroker(
            pathlib.Path(directory),
            persistence=False,
            log_types=("error", "warning"),
            tls=args.tls,
            extra_config=extra_config,
        )
        with broker:
            if not args.tls:
                args.plain_port = broker.port
            print(
                f"mosquitto on {broker.address} (client over {'TLS' if args.tls else 'TCP'}); "
                f"{args.messages:,} messages per run"
            )
            for consumer in args.consumer:
                for mode in args.mode:
                    for qos in args.qos:
                        assert broker.pid is not None
                        broker_cpu = process_cpu_s(broker.pid)
                        result = await CONSUMERS[consumer](broker, args, mode, qos)
                        # live: the broker's CPU over the run (set-up included, so an upper
                        # bound) against the timed seconds; ~100 % means the broker is the limit
                        result.broker_cpu_s = min(
                            process_cpu_s(broker.pid) - broker_cpu, result.seconds
                        )
                        print(result.line(), flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--qos", type=int, nargs="+", choices=(0, 1), default=[1, 0])
    parser.add_argument(
        "--mode", nargs="+", choices=("live", "backlog"), default=["live", "backlog"]
    )
    parser.add_argument("--consumer", nargs="+", choices=sorted(CONSUMERS), default=["client"])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--receive-maximum", type=int, default=1000)
    parser.add_argument("--tls", action="store_true", help="MqttClient connects over TLS")
    return parser.parse_args()


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--publisher":
        run_publisher(*(int(value) for value in sys.argv[2:]))
    else:
        asyncio.run(main(parse_args()))
