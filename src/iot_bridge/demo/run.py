"""``iot-bridge demo``: broker, four simulated machines and the bridge, zero set-up.

Starts an embedded MQTT broker on a free loopback port (mosquitto when
installed, else a small built-in one; ``IOT_BRIDGE_DEMO_BROKER=python`` or
``mosquitto`` chooses), the bridge on it with the local event
store (no Odoo) and a config of four machines: three simulated Shelly PM
Gen3 plugs and a three-phase lathe behind a simulated Shelly Pro 3EM
(``status/em:0``, ``status/emdata:0`` once a simulated minute), looping their
scenarios at ``--speed`` simulated seconds per real second. Detection timings
in the config are scaled by the speed, so sessions come and go every few
seconds. The terminal shows the machines and the
sessions live (``rich``); without a terminal it prints one line per event.
Ctrl-C or SIGTERM (or ``--duration``) stops the simulators, then the bridge,
then the broker, and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from iot_bridge.bootstrap import ServiceOptions, serve
from iot_bridge.config.model import MqttSection
from iot_bridge.config.parse import parse_config
from iot_bridge.config.sources import EnvSettings, persist_config
from iot_bridge.demo.broker import (
    BROKER_KINDS,
    EmbeddedBroker,
    start_embedded_broker,
)
from iot_bridge.demo.simulate import SimulatorOptions, simulate
from iot_bridge.demo.simulation import LATHE_SCALE, availability_topic, looping
from iot_bridge.demo.views import DemoView, make_view
from iot_bridge.entrypoints.exit_codes import EXIT_OK, EXIT_USAGE
from iot_bridge.errors import BridgeError
from iot_bridge.logs import configure_logging, get_logger
from iot_bridge.net.mqtt import MqttSettings, WillMessage
from iot_bridge.service.bridge import Bridge
from iot_bridge.service.feed import Subscription

log = get_logger(__name__)

MIN_SPEED: Final = 0.1
MAX_SPEED: Final = 100.0
REFRESH_S: Final = 0.25
STOP_TIMEOUT_S: Final = 10.0
OFFLINE_WAIT_S: Final = 2.0
# auto (mosquitto when installed, else the built-in broker), mosquitto or python.
BROKER_VARIABLE: Final = "IOT_BRIDGE_DEMO_BROKER"


@dataclass(frozen=True, slots=True)
class DemoMachine:
    """One simulated machine: its device id, name, scenario, stagger and meter.

    ``model`` is ``pm1`` (a Shelly PM Mini Gen3 plug) or ``pro3em`` (a Shelly
    Pro 3EM on a three-phase machine, ten times the power: its thresholds too).
    """

    device_id: str
    machine_name: str
    scenario: str
    lead_idle_s: float
    model: str = "pm1"

    @property
    def topic(self) -> str:
        """The Shelly's data topic."""
        if self.model == "pro3em":
            return f"shellypro3em-{self.device_id}/status/em:0"
        return f"shellypmminig3-{self.device_id}/status/pm1:0"

    @property
    def power_scale(self) -> float:
        """How much more this machine draws than a plug-sized one."""
        return LATHE_SCALE if self.model == "pro3em" else 1.0


MACHINES: Final = (
    DemoMachine("cnc-mill", "CNC Mill", "full_session", 0.0),
    DemoMachine("laser-cutter", "Laser Cutter", "working", 10.0),
    DemoMachine("3d-printer", "3D Printer", "standby", 25.0),
    DemoMachine("lathe", "Lathe (three-phase)", "full_session", 40.0, model="pro3em"),
)


def session_config(speed: float, power_scale: float = 1.0) -> dict[str, float]:
    """Detector timings for machines running ``speed`` times faster than real time.

    In simulated seconds: start debounce 5 s, stop debounce 20 s, message
    timeout 35 s (3.5 report periods), heartbeat 120 s; divided by the speed
    and kept within the config's lower bounds (timeout 1 s, heartbeat 10 s).
    Thresholds 10 W and 100 W, times ``power_scale`` for a bigger machine.
    """
    return {
        "standby_threshold_w": 10.0 * power_scale,
        "working_threshold_w": 100.0 * power_scale,
        "start_debounce_s": round(5.0 / speed, 3),
        "stop_debounce_s": round(20.0 / speed, 3),
        "message_timeout_s": round(max(1.0, 35.0 / speed), 3),
        "heartbeat_interval_s": round(max(10.0, 120.0 / speed), 3),
    }


def demo_config(broker_port: int, speed: float) -> dict[str, Any]:
    """The bridge's config document for the demo: the embedded broker, four machines."""
    return {
        "mqtt": {"broker": "127.0.0.1", "port": broker_port, "client_id": "iot_bridge_demo"},
        "devices": [
            {
                "device_id": machine.device_id,
                "machine_name": machine.machine_name,
                "mqtt_topic": machine.topic,
                "parser_type": "shelly_pm",
                "session_config": session_config(speed, machine.power_scale),
            }
            for machine in MACHINES
        ],
        "version": "demo",
    }


def _simulator(machine: DemoMachine, broker: EmbeddedBroker, speed: float) -> SimulatorOptions:
    settings = MqttSettings(
        host=broker.host,
        port=broker.port,
        client_id=f"sim-{machine.device_id}",
        keepalive_s=15,
        clean_start=True,
        session_expiry_s=0,
        will=WillMessage(availability_topic(machine.topic), b"false", qos=1, retain=True),
    )
    return SimulatorOptions(
        settings,
        machine.device_id,
        machine.topic,
        looping(machine.scenario, lead_idle_s=machine.lead_idle_s),
        speed,
        model=machine.model,
    )


def board_url(url: str, token: str | None) -> str:
    """The board's address; with a token, in the fragment (never sent to the server)."""
    return f"{url}/#token={quote(token, safe='')}" if token else f"{url}/"


def _usage_problem(args: argparse.Namespace) -> str | None:
    speed = args.speed
    if not math.isfinite(speed) or not MIN_SPEED <= speed <= MAX_SPEED:
        return f"--speed must be from {MIN_SPEED:g} to {MAX_SPEED:g}, got {speed}"
    if args.duration is not None and (not math.isfinite(args.duration) or args.duration <= 0):
        return f"--duration must be a positive number of seconds, got {args.duration}"
    if args.port is not None and not 0 <= args.port <= 65_535:
        return f"--port must be 0..65535, got {args.port}"
    broker_kind = os.environ.get(BROKER_VARIABLE, "auto")
    if broker_kind not in BROKER_KINDS:
        return f"{BROKER_VARIABLE} must be one of {', '.join(BROKER_KINDS)}, got {broker_kind!r}"
    if args.data_dir is not None and args.data_dir.exists() and not args.data_dir.is_dir():
        return f"--data-dir {str(args.data_dir)!r} is not a directory"
    return None


def run_demo(args: argparse.Namespace) -> int:
    """``iot-bridge demo``; returns the exit code (0 after Ctrl-C, SIGTERM or --duration)."""
    problem = _usage_problem(args)
    if problem:
        print(f"iot-bridge demo: {problem}", file=sys.stderr)
        return EXIT_USAGE
    keep_data = args.data_dir is not None
    data_dir: Path = args.data_dir or Path(tempfile.mkdtemp(prefix="iot-bridge-demo-"))
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(f"iot-bridge demo: cannot create {data_dir}: {err.strerror or err}", file=sys.stderr)
        return EXIT_USAGE
    log_file = data_dir / "demo.log"
    configure_logging(level="INFO", fmt="json", file=str(log_file))
    view = make_view(interactive=sys.stdout.isatty())
    try:
        asyncio.run(_DemoRun(args, data_dir, log_file, view).run())
    finally:
        view.close()
        if not keep_data:
            shutil.rmtree(data_dir, ignore_errors=True)
    return EXIT_OK


@dataclass(slots=True)
class _DemoRun:
    """One run of the demo: what it was asked for and the parts it started."""

    args: argparse.Namespace
    data_dir: Path
    log_file: Path
    view: DemoView
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    deadline: float | None = None

    async def run(self) -> None:
        """Broker, then bridge, then machines; stop in the reverse order."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        if self.args.duration is not None:
            self.deadline = loop.time() + self.args.duration
        broker = await start_embedded_broker(os.environ.get(BROKER_VARIABLE, "auto"))
        try:
            config = parse_config(demo_config(broker.port, self.args.speed), source="demo config")
            persist_config(self.data_dir, config)  # the demo's config wins over an older one
            await self._bridge_and_machines(broker)
        finally:
            await broker.stop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def _service_options(self, broker: EmbeddedBroker) -> ServiceOptions:
        return ServiceOptions(
            env=EnvSettings(
                mqtt=MqttSection(broker=broker.host, port=broker.port),
                api_token=os.environ.get("BRIDGE_API_TOKEN") or None,
            ),
            config_file=None,
            data_dir=self.data_dir,
            host="127.0.0.1",
            port=self.args.port or 0,
        )

    async def _bridge_and_machines(self, broker: EmbeddedBroker) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[Bridge] = loop.create_future()

        def on_ready(bridge: Bridge, url: str) -> None:
            events = bridge.feed.subscribe("demo")
            bridge.add_task("demo-events", lambda: _show_events(events, self.view))
            self.view.started(
                board_url=board_url(url, os.environ.get("BRIDGE_API_TOKEN") or None),
                url=url,
                broker=f"{broker.kind} on {broker.host}:{broker.port}",
                data_dir=self.data_dir,
                log_file=self.log_file,
                speed=self.args.speed,
                machines=[(m.device_id, m.machine_name, m.scenario) for m in MACHINES],
            )
            if not ready.done():
                ready.set_result(bridge)

        service = asyncio.create_task(
            serve(self._service_options(broker), on_ready=on_ready, install_signal_handlers=False),
            name="bridge",
        )
        stop_wait = asyncio.create_task(self.stop.wait())
        waited: set[asyncio.Future[Any]] = {service, ready, stop_wait}
        await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        if not ready.done():
            ready.cancel()
            if service.done():
                service.result()  # raises the bridge's startup error
            service.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await service
            return
        bridge = ready.result()
        machines_stop = asyncio.Event()
        simulators = [
            asyncio.create_task(
                simulate(_simulator(m, broker, self.args.speed), stop=machines_stop),
                name=f"simulator {m.device_id}",
            )
            for m in MACHINES
        ]
        try:
            await self._display(bridge, service, simulators)
        finally:
            self.view.stopping()
            machines_stop.set()
            await _wait_quietly(simulators, STOP_TIMEOUT_S)
            await _until_offline(bridge, OFFLINE_WAIT_S)
            bridge.stop()
            await _wait_quietly([service], STOP_TIMEOUT_S)
        if service.done() and not service.cancelled() and service.exception() is not None:
            raise BridgeError(f"the bridge stopped with an error: {service.exception()}")

    async def _display(
        self, bridge: Bridge, service: asyncio.Task[None], simulators: list[asyncio.Task[int]]
    ) -> None:
        """Refresh the view until a stop is asked, the duration is over, or a part fails."""
        loop = asyncio.get_running_loop()
        while not self.stop.is_set() and not service.done():
            finished = [task for task in simulators if task.done()]
            if finished:
                error = finished[0].exception()
                self.view.notice(f"a simulated machine stopped: {error or 'scenario over'}")
                return
            self.view.refresh(bridge.status.devices(), time.time())
            timeout_s = REFRESH_S
            if self.deadline is not None:
                timeout_s = min(timeout_s, self.deadline - loop.time())
                if timeout_s <= 0:
                    return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self.stop.wait()


async def _show_events(events: Subscription, view: DemoView) -> None:
    """Hand the view every batch of committed events (a feed subscriber)."""
    try:
        async for batch in events:
            if batch.events:
                view.on_events(batch.events)
    finally:
        events.close()


async def _until_offline(bridge: Bridge, timeout_s: float) -> None:
    """Give the bridge a moment to record the machines' goodbyes (``online`` = false)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    # The bridge offers no "changed" event to wait on; poll its state briefly.
    while loop.time() < deadline and any(device["online"] for device in bridge.status.devices()):  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def _wait_quietly(tasks: Sequence[asyncio.Task[Any]], timeout_s: float) -> None:
    """Wait for tasks to finish; cancel what is still running after ``timeout_s``."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in pending:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            log.warning("demo_part_failed", error=str(result))
