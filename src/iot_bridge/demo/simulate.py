"""``iot-bridge simulate``: a Shelly PM Gen3 publishing ``status/pm1:0`` over MQTT.

With ``--model pro3em`` it is a Shelly Pro 3EM in front of a three-phase lathe
instead: ``status/em:0`` on change and ``status/emdata:0`` once a simulated
minute (the data topic's sibling).

The scenarios and the device model live in ``demo/simulation.py``; this
module connects, paces simulated time (``--speed`` simulated seconds per real
second) and publishes. Like a real Shelly Gen2+ it announces
``<prefix>/online`` = ``true`` (retained) when connected and leaves ``false``
as its MQTT will, so a killed simulator shows as offline; a clean end
(scenario over, Ctrl-C, SIGTERM) publishes ``false`` itself.

TLS is on by default, as in the original simulator: the default port is
8883 with TLS and 1883 with ``--no-tls``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from iot_bridge.demo.simulation import (
    DEFAULT_OFFLINE_DURATION_S,
    SAMPLE_PERIOD_S,
    SCENARIOS,
    Report,
    Scenario,
    ShellyPmSimulation,
    ShellyPro3EmSimulation,
    availability_topic,
    build_scenario,
    sibling_topic,
)
from iot_bridge.entrypoints.exit_codes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from iot_bridge.errors import BridgeError, ConfigError
from iot_bridge.logs import configure_logging
from iot_bridge.net.mqtt import (
    MqttClient,
    MqttError,
    MqttSettings,
    WillMessage,
    topic_name_problem,
)

DEFAULT_DEVICE_ID: Final = "shellypmminig3-sim001"
# --model -> (default device id, the data topic's last level)
MODELS: Final = {
    "pm1": ("shellypmminig3-sim001", "pm1:0"),
    "pro3em": ("shellypro3em-sim001", "em:0"),
}
TLS_PORT: Final = 8883
PLAIN_PORT: Final = 1883
CONNECT_TIMEOUT_S: Final = 10.0
MAX_SPEED: Final = 10_000.0
# Real seconds between samples never drop below this, however high --speed is:
# the simulated clock follows the real one, samples just get coarser.
MIN_STEP_REAL_S: Final = 0.01


class UsageError(ValueError):
    """A bad flag or combination of flags; one sentence, exit code 2."""


class BrokerUnreachableError(BridgeError):
    """The broker did not accept the simulator within its connect timeout."""


@dataclass(frozen=True, slots=True)
class SimulatorOptions:
    """One simulated device: where it connects, what it publishes, how fast."""

    settings: MqttSettings
    device_id: str
    topic: str
    scenario: Scenario
    speed: float = 1.0
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    model: str = "pm1"
    online_topic: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "online_topic", availability_topic(self.topic))


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``iot-bridge simulate`` (the original simulator's, plus three)."""
    parser.add_argument("--broker", default="localhost", help="MQTT broker host (localhost)")
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"broker port ({TLS_PORT}; {PLAIN_PORT} with --no-tls)",
    )
    parser.add_argument("--username", default="", help="MQTT username (none)")
    parser.add_argument("--password", default="", help="MQTT password (none)")
    parser.add_argument(
        "--no-tls", dest="use_tls", action="store_false", help="plain TCP instead of TLS"
    )
    parser.add_argument("--ca-file", type=Path, default=None, help="CA certificate (PEM) for TLS")
    parser.add_argument(
        "--tls-insecure", action="store_true", help="do not verify the broker's certificate"
    )
    parser.add_argument(
        "--scenario", choices=SCENARIOS, default="full_session", help="what the machine does"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help=(
            "simulated seconds to run (default: one full_session cycle of 155 s; 60 s for "
            "standby, working and online_test; 30 + offline + 30 s for offline_test)"
        ),
    )
    parser.add_argument(
        "--offline-duration",
        type=float,
        default=DEFAULT_OFFLINE_DURATION_S,
        help="offline_test: simulated seconds without messages (60)",
    )
    parser.add_argument(
        "--model",
        choices=tuple(MODELS),
        default="pm1",
        help="pm1: a PM Mini Gen3 (status/pm1:0); pro3em: a Pro 3EM on a three-phase lathe "
        "(status/em:0, and status/emdata:0 once a simulated minute)",
    )
    parser.add_argument(
        "--device-id",
        default=None,
        help=f"device id and client id ({DEFAULT_DEVICE_ID}; shellypro3em-sim001 for pro3em)",
    )
    parser.add_argument(
        "--topic", default=None, help="data topic (<device-id>/status/pm1:0, or em:0 for pro3em)"
    )
    parser.add_argument(
        "--speed", type=float, default=1.0, help="simulated seconds per real second (1)"
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=CONNECT_TIMEOUT_S,
        help=f"seconds to reach the broker before giving up with exit 1 ({CONNECT_TIMEOUT_S:g})",
    )


def options_from_args(args: argparse.Namespace) -> SimulatorOptions:
    """Validate the flags; raises ``UsageError`` with one sentence."""
    model: str = getattr(args, "model", "pm1")
    default_id, component = MODELS[model]
    device_id: str = args.device_id if args.device_id is not None else default_id
    if (
        not device_id
        or any(char in device_id for char in "/+#\x00")
        or device_id != device_id.strip()
    ):
        raise UsageError(
            f"--device-id {device_id!r} must be non-empty without '/', '+', '#' or spaces around it"
        )
    topic: str = args.topic if args.topic is not None else f"{device_id}/status/{component}"
    problem = topic_name_problem(topic)
    if problem:
        raise UsageError(f"--topic {topic!r} cannot be published to: {problem}")
    speed: float = args.speed
    if not math.isfinite(speed) or not 0 < speed <= MAX_SPEED:
        raise UsageError(f"--speed must be a number above 0 and at most {MAX_SPEED:g}, got {speed}")
    try:
        scenario = build_scenario(
            args.scenario, duration_s=args.duration, offline_duration_s=args.offline_duration
        )
    except ValueError as err:
        raise UsageError(str(err)) from err
    connect_timeout_s: float = args.connect_timeout
    if not math.isfinite(connect_timeout_s) or not 0 < connect_timeout_s <= 3600:
        raise UsageError(
            f"--connect-timeout must be above 0 and at most 3600 s, got {connect_timeout_s}"
        )
    use_tls: bool = args.use_tls
    port: int = args.port if args.port is not None else (TLS_PORT if use_tls else PLAIN_PORT)
    if not 1 <= port <= 65_535:
        raise UsageError(f"--port must be 1..65535, got {port}")
    if args.password and not args.username:
        raise UsageError("--password needs --username")
    ca_file: Path | None = args.ca_file
    if ca_file is not None and not ca_file.is_file():
        raise UsageError(f"--ca-file {str(ca_file)!r} is not a readable file")
    try:
        settings = MqttSettings(
            host=args.broker,
            port=port,
            username=args.username or None,
            password=args.password or None,
            client_id=device_id,
            keepalive_s=15,
            use_tls=use_tls,
            ca_file=str(ca_file) if ca_file is not None else None,
            tls_insecure=args.tls_insecure,
            clean_start=True,
            session_expiry_s=0,
            will=WillMessage(availability_topic(topic), b"false", qos=1, retain=True),
        )
    except ConfigError as err:
        raise UsageError("; ".join(str(issue) for issue in err.issues)) from err
    return SimulatorOptions(settings, device_id, topic, scenario, speed, connect_timeout_s, model)


ReportListener = Callable[[Report], None]


async def simulate(
    options: SimulatorOptions,
    *,
    stop: asyncio.Event | None = None,
    on_report: ReportListener | None = None,
    on_notice: Callable[[str], None] | None = None,
    start_ts: float | None = None,
) -> int:
    """Connect, run the scenario (or until ``stop`` is set), then announce offline.

    Returns the number of data messages published. Raises
    ``BrokerUnreachableError`` when the broker does not accept the connection
    within ``options.connect_timeout_s``. Reports made while the connection is down
    are dropped, as a real device would lose them; ``on_notice`` hears about it.
    """
    stop = stop or asyncio.Event()
    notice = on_notice or (lambda _message: None)
    client = MqttClient(options.settings)
    runner = asyncio.create_task(client.run(), name=f"simulator-mqtt {options.device_id}")
    try:
        connected = await _first_connect(client, stop, options.connect_timeout_s)
        if not connected:
            if stop.is_set():
                return 0
            reason = client.last_error or f"no connection to {client.broker}"
            raise BrokerUnreachableError(
                f"{reason} (gave up after {options.connect_timeout_s:g} s)"
            )
        return await _publish_loop(
            options, client, stop=stop, on_report=on_report, notice=notice, start_ts=start_ts
        )
    finally:
        if client.connected:
            with contextlib.suppress(MqttError):
                await client.publish(options.online_topic, b"false", qos=1, retain=True)
        await client.close()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, MqttError):
            await runner


async def _first_connect(client: MqttClient, stop: asyncio.Event, timeout_s: float) -> bool:
    stop_wait = asyncio.create_task(stop.wait())
    connect_wait = asyncio.create_task(client.wait_connected(timeout_s))
    try:
        await asyncio.wait({stop_wait, connect_wait}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop_wait.cancel()
        connect_wait.cancel()
    return client.connected and not stop.is_set()


async def _publish_loop(
    options: SimulatorOptions,
    client: MqttClient,
    *,
    stop: asyncio.Event,
    on_report: ReportListener | None,
    notice: Callable[[str], None],
    start_ts: float | None,
) -> int:
    loop = asyncio.get_running_loop()
    scenario = options.scenario
    begin_ts = time.time() if start_ts is None else start_ts
    simulation: ShellyPmSimulation | ShellyPro3EmSimulation = (
        ShellyPro3EmSimulation(scenario, start_ts=begin_ts)
        if options.model == "pro3em"
        else ShellyPmSimulation(scenario, start_ts=begin_ts)
    )
    step_real_s = max(SAMPLE_PERIOD_S / options.speed, MIN_STEP_REAL_S)
    started = loop.time()
    announced = False
    published = 0
    step = 0
    while True:
        t_s = (loop.time() - started) * options.speed
        if scenario.total_s is not None:
            t_s = min(t_s, scenario.total_s)
        reports = simulation.reports(t_s)
        if not client.connected:
            if announced:
                notice(f"lost the broker at {client.broker}: messages are dropped until it is back")
            announced = False
        elif not announced:
            announced = await _try_publish(client, options.online_topic, b"true", notice)
        for report in reports:
            if on_report is not None:
                on_report(report)
            if announced:
                topic = sibling_topic(options.topic, report.sibling)
                if await _try_publish(client, topic, report.payload, notice):
                    published += 1
                else:
                    announced = False
        if scenario.finished(t_s) or stop.is_set():
            return published
        step += 1
        delay_s = started + step * step_real_s - loop.time()
        if delay_s > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay_s):
                    await stop.wait()


async def _try_publish(
    client: MqttClient, topic: str, payload: bytes, notice: Callable[[str], None]
) -> bool:
    retain = topic.endswith("/online")
    try:
        await client.publish(topic, payload, qos=1, retain=retain)
    except MqttError as err:
        notice(str(err))
        return False
    return True


def _print_report_changes() -> ReportListener:
    """A listener printing one line whenever the machine's level changes."""
    last_level: list[str] = []

    def listener(report: Report) -> None:
        if report.sibling is not None:
            return  # energy data: the power report of the same moment says it
        level = str(report.level)
        if last_level and last_level[0] == level:
            return
        last_level[:] = [level]
        print(
            f"t={report.t_s:7.1f} s  {level:<8} {report.power_w:7.1f} W  "
            f"energy {report.energy_wh:.3f} Wh",
            flush=True,
        )

    return listener


def run_simulate(args: argparse.Namespace) -> int:
    """``iot-bridge simulate``: returns the exit code (0 done, 1 broker unreachable, 2 usage)."""
    try:
        options = options_from_args(args)
    except UsageError as err:
        print(f"iot-bridge simulate: {err}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(level=os.environ.get("LOG_LEVEL", "ERROR"), fmt="text")
    scenario = options.scenario
    length = "until stopped" if scenario.total_s is None else f"{scenario.total_s:g} s simulated"
    print(
        f"simulating {options.device_id} ({scenario.name}, {length}, speed {options.speed:g}) "
        f"on {options.settings.broker}{' with TLS' if options.settings.use_tls else ''}: "
        f"{options.topic}",
        flush=True,
    )
    try:
        published = asyncio.run(_main(options))
    except BrokerUnreachableError as err:
        print(f"iot-bridge simulate: {err}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"done: {published} messages published, {options.online_topic} = false", flush=True)
    return EXIT_OK


async def _main(options: SimulatorOptions) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await simulate(
            options,
            stop=stop,
            on_report=_print_report_changes(),
            on_notice=lambda message: print(f"warning: {message}", file=sys.stderr, flush=True),
        )
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
