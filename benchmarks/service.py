"""End-to-end benchmark: messages/s through the whole ``iot-bridge run`` process.

    python3 benchmarks/service.py [--messages 200000] [--devices 1000] [--mode live backlog]

A mosquitto on a free port of 127.0.0.1 (never 1883) relays QoS 1 Shelly
``status/pm1:0`` payloads from a publisher process to a real bridge process
(its own data dir, local-only events, 1,000 devices). Everything the service
does per message is in the figure: MQTT decoding, routing, parsing, session
detection, the group commit of events and detector snapshots to SQLite
(synchronous=FULL), and the PUBACKs sent after each commit.

- ``live``: the bridge is connected; the publisher floods N messages; the
  clock runs until ``/metrics`` counts all N received.
- ``backlog``: the bridge is stopped (its persistent session queues the
  messages), the publisher floods N, the bridge starts; the clock runs from
  its start to the last message counted.

The machine has 2 cores shared by broker, publisher and bridge; ``cpu`` is the
bridge process's own CPU time per message (and the broker's, for scale).
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys
import tempfile
import time

import httpx
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from mqtt import TOPIC_ROOT, Publisher  # noqa: E402
from tests.support.bridge_process import BridgeProcess, wait_until  # noqa: E402
from tests.support.mosquitto import MosquittoBroker  # noqa: E402

RECEIVED = re.compile(r'^iot_bridge_messages_received_total\{parser="shelly_pm"\} (\S+)$', re.M)


def received(bridge: BridgeProcess) -> int:
    match = RECEIVED.search(httpx.get(f"{bridge.url}/metrics", timeout=10).text)
    return int(float(match.group(1))) if match else 0


def cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks


def config(broker: MosquittoBroker, devices: int) -> dict[str, object]:
    return {
        "mqtt": {"broker": broker.host, "port": broker.port, "client_id": "bench-bridge"},
        "devices": [
            {
                "device_id": f"dev{index:06d}",
                "machine_name": f"Machine {index}",
                "mqtt_topic": f"{TOPIC_ROOT}/shellypmminig3-{index:06d}/status/pm1:0",
                "parser_type": "shelly_pm",
                "session_config": {"message_timeout_s": 600.0},
            }
            for index in range(devices)
        ],
    }


def run(args: argparse.Namespace, mode: str, directory: pathlib.Path) -> str:
    broker = MosquittoBroker(
        directory / f"broker-{mode}",
        persistence=False,
        log_types=("error", "warning"),
        extra_config=[
            "max_queued_messages 0",  # keep the whole backlog
            f"max_inflight_messages {args.inflight}",  # unacked QoS 1 messages per client
        ],
    ).start()
    try:
        config_file = directory / f"config-{mode}.yaml"
        config_file.write_text(yaml.safe_dump(config(broker, args.devices)))
        bridge = BridgeProcess(
            data_dir=directory / f"data-{mode}",
            config_file=config_file,
            env={"LOG_LEVEL": "WARNING"},
        ).start()
        wait_until(lambda: httpx.get(f"{bridge.url}/health").json()["mqtt"]["connected"])
        publisher = Publisher(broker.port, args.messages, 1, args.devices)
        if mode == "backlog":
            bridge.stop()
            publisher.go()
            publisher.wait()
            start = time.perf_counter()
            bridge.start()
        else:
            start = time.perf_counter()
            publisher.go()
        assert bridge.process is not None
        cpu_start = cpu_seconds(bridge.process.pid) if mode == "live" else 0.0
        broker_cpu_start = cpu_seconds(broker.pid or 0)
        wait_until(lambda: received(bridge) >= args.messages, timeout_s=600, interval_s=0.02)
        elapsed = time.perf_counter() - start
        cpu = cpu_seconds(bridge.process.pid) - cpu_start
        broker_cpu = cpu_seconds(broker.pid or 0) - broker_cpu_start
        if mode == "live":
            publisher.wait()
        bridge.stop()
        rate = args.messages / elapsed
        return (
            f"{mode:8} {args.messages:>9,} msgs  {elapsed:6.2f} s  {rate:>9,.0f} msg/s  "
            f"cpu us/msg: bridge {cpu / args.messages * 1e6:5.2f}, "
            f"mosquitto {broker_cpu / args.messages * 1e6:5.2f}"
        )
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument(
        "--inflight", type=int, default=1000, help="mosquitto max_inflight_messages"
    )
    parser.add_argument(
        "--mode", nargs="+", choices=("live", "backlog"), default=["live", "backlog"]
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        print(
            f"{args.devices} devices, QoS 1, mosquitto max_inflight_messages {args.inflight}",
            flush=True,
        )
        for mode in args.mode:
            print(run(args, mode, pathlib.Path(directory)), flush=True)


if __name__ == "__main__":
    main()
