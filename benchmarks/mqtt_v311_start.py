"""How long ``iot-bridge run`` takes to connect to an MQTT 3.1.1-only broker, start after start.

amqtt never answers an MQTT 5 CONNECT: the first start sits out the 10 s
connect timeout before it falls back to 3.1.1. The data dir then remembers the
broker (``net/mqtt/protocol_memory.py``), so every later start asks in
3.1.1 at once. Target (issue 19): the starts after the first connect without
that wait (well under the 10 s timeout).

    python3 benchmarks/mqtt_v311_start.py [--starts 3]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.amqtt_broker import AmqttBroker  # noqa: E402
from tests.support.bridge_process import BridgeProcess, wait_until  # noqa: E402


def main() -> int:
    """Start the bridge ``--starts`` times on one data dir; print each start's time to connect."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-v311-") as tmp:
        work = pathlib.Path(tmp)
        broker = AmqttBroker(work / "amqtt").start()
        try:
            document = {
                "mqtt": {
                    "broker": broker.host,
                    "port": broker.port,
                    "client_id": "bench",
                    "username": AmqttBroker.username,
                },
                "devices": [
                    {
                        "device_id": "mill",
                        "machine_name": "Mill",
                        "mqtt_topic": "mill/status/pm1:0",
                        "parser_type": "shelly_pm",
                    }
                ],
            }
            (work / "c.yaml").write_text(yaml.safe_dump(document))
            bridge = BridgeProcess(data_dir=work / "data", config_file=work / "c.yaml")
            for start in range(1, args.starts + 1):
                began = time.monotonic()
                bridge.start()
                wait_until(
                    lambda: bridge.health()["mqtt"]["connected"], timeout_s=60, interval_s=0.02
                )
                protocol = bridge.health()["mqtt"]["protocol"]
                seconds = time.monotonic() - began
                print(
                    f"start {start}: connected {seconds:.2f} s after the process start, {protocol}"
                )
                bridge.stop()
        finally:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
