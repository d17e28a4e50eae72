"""Hot-path benchmark: parse + detect, 1,000 devices, real-shaped Shelly payloads.

    python3 benchmarks/core.py [--messages N] [--devices N]

Payloads are bytes as a Shelly PM Mini Gen3 publishes them on
``<prefix>/status/pm1:0``; power follows a pattern that makes sessions start,
change state and stop, so events come out. Two figures:

- ``parse+detect``: the parser and the detector of each device called directly;
- ``ingestor``: the same through ``Ingestor.handle`` (routing, counters, timer
  scheduling, batches of 1,000 messages), as the service runs it.

Then the same two figures for three-channel devices (a Shelly Pro 3EM in the
monophase profile, ``status/em1:N`` with ``channels: [0, 1, 2]``): each
message carries one channel, the parser sums the channels (``ChannelState``).

Target (issue 2): >= 250,000 messages/s on one core.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass

from iot_bridge.domain.session import SessionDetector
from iot_bridge.domain.session_config import SessionConfig
from iot_bridge.logs import configure_logging
from iot_bridge.parsers import make_parser
from iot_bridge.service.ingest import DeviceSpec, Ingestor

CONFIG = SessionConfig(
    standby_threshold_w=5.0,
    working_threshold_w=50.0,
    start_debounce_s=3.0,
    stop_debounce_s=15.0,
    message_timeout_s=120.0,
    heartbeat_interval_s=300.0,
)
_clock = time.perf_counter
POWER_PATTERN = [0.0] * 20 + [12.5] * 10 + [850.0, 870.5, 910.0, 640.0] * 15 + [0.0] * 30


@dataclass(slots=True)
class Msg:
    topic: str
    payload: bytes


def payload(power_w: float, energy_wh: float, ts: int) -> bytes:
    body = {
        "id": 0,
        "voltage": 229.8,
        "current": round(power_w / 229.8, 3),
        "apower": power_w,
        "freq": 50.0,
        "aenergy": {"total": round(energy_wh, 3), "by_minute": [0.0, 0.0, 0.0], "minute_ts": ts},
        "ret_aenergy": {"total": 0.0, "by_minute": [0.0, 0.0, 0.0], "minute_ts": ts},
    }
    return json.dumps(body, separators=(",", ":")).encode()


def build_messages(devices: int, count: int) -> list[tuple[int, Msg, float]]:
    """(device index, message, time) round-robin over devices, 1 s apart per device."""
    messages = []
    energy = [1000.0] * devices
    for i in range(count):
        device = i % devices
        step = i // devices
        power = POWER_PATTERN[(step + device) % len(POWER_PATTERN)]
        energy[device] += power / 3600
        ts = 1_764_000_000.0 + step
        topic = f"shellypmminig3-{device:012x}/status/pm1:0"
        messages.append((device, Msg(topic, payload(power, energy[device], int(ts))), ts))
    return messages


def em1_payload(channel: int, power_w: float) -> bytes:
    body = {
        "id": channel,
        "current": round(power_w / 230.1, 3),
        "voltage": 230.1,
        "act_power": power_w,
        "aprt_power": round(power_w * 1.25, 1),
        "pf": 0.8,
        "freq": 50.0,
        "calibration": "factory",
    }
    return json.dumps(body, separators=(",", ":")).encode()


def build_three_channel_messages(devices: int, count: int) -> list[tuple[int, Msg, float]]:
    """One channel per message, channels in turn, devices round-robin; a third the power each."""
    messages = []
    for i in range(count):
        device = i % devices
        step = i // devices
        channel = step % 3
        power = POWER_PATTERN[(step // 3 + device) % len(POWER_PATTERN)] / 3
        ts = 1_764_000_000.0 + step / 3
        topic = f"shellypro3em-{device:012x}/status/em1:{channel}"
        messages.append((device, Msg(topic, em1_payload(channel, power)), ts))
    return messages


THREE_CHANNELS = {"channels": [0, 1, 2]}


def _topic(kind: str, device: int) -> str:
    if kind == "three":
        return f"shellypro3em-{device:012x}/status/em1:0"
    return f"shellypmminig3-{device:012x}/status/pm1:0"


def bench_direct(
    devices: int, messages: list[tuple[int, Msg, float]], kind: str = "single"
) -> tuple[float, int]:
    options = THREE_CHANNELS if kind == "three" else {}
    parsers = [make_parser("shelly_pm", _topic(kind, d), options) for d in range(devices)]
    detectors = [
        SessionDetector(device_id=f"d{d}", machine_name=f"Machine {d}", config=CONFIG)
        for d in range(devices)
    ]
    events = 0
    start = _clock()
    for device, msg, ts in messages:
        reading = parsers[device].parse(msg.topic, msg.payload)
        events += len(detectors[device].on_reading(ts, reading))
    return _clock() - start, events


def bench_ingestor(
    devices: int, messages: list[tuple[int, Msg, float]], kind: str = "single"
) -> tuple[float, int]:
    ingestor = Ingestor()
    ingestor.apply_devices(
        [
            DeviceSpec(
                device_id=f"d{d}",
                machine_name=f"Machine {d}",
                mqtt_topic=_topic(kind, d),
                parser_type="shelly_pm",
                parser_options=THREE_CHANNELS if kind == "three" else {},
                session_config=CONFIG,
            )
            for d in range(devices)
        ],
        messages[0][2],
    )
    events = 0
    batch = 1000
    start = _clock()
    for offset in range(0, len(messages), batch):
        chunk = messages[offset : offset + batch]
        events += len(ingestor.handle([m for _, m, _ in chunk], chunk[-1][2]))
        ingestor.take_changes()
        ingestor.drain_counters()
    return _clock() - start, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--single-only", action="store_true", help="skip the three-channel runs")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with this process's CPU seconds (steadier on a shared machine) not wall time",
    )
    args = parser.parse_args()
    configure_logging(level="WARNING")
    global _clock  # noqa: PLW0603 (a command-line switch of the timer)
    _clock = time.process_time if args.cpu_time else time.perf_counter
    print(f"{args.messages} messages, {args.devices} devices, best of {args.repeat}")
    kinds = [("single", build_messages)]
    if not args.single_only:
        kinds.append(("three", build_three_channel_messages))
    for kind, build in kinds:
        messages = build(args.devices, args.messages)
        for name, bench in (("parse+detect", bench_direct), ("ingestor", bench_ingestor)):
            runs = [bench(args.devices, messages, kind) for _ in range(args.repeat)]
            elapsed, events = min(runs)
            rate = args.messages / elapsed
            label = f"{name} ({'3-channel' if kind == 'three' else '1-channel'})"
            figures = f"{rate:10,.0f} messages/s  {1e6 / rate:5.2f} us/message"
            print(f"{label:26s} {figures}  {events} events")


if __name__ == "__main__":
    main()
