"""``iot-bridge demo``: broker, three simulated machines and the bridge, zero set-up.

Starts an embedded MQTT broker on a free loopback port (mosquitto when
installed, else a small built-in one; ``IOT_BRIDGE_DEMO_BROKER=python`` or
``mosquitto`` chooses), the bridge on it with the local event
store (no Odoo) and a config of three machines, and three simulated Shelly PM
Gen3 plugs looping their scenarios at ``--speed`` simulated seconds per real
second. Detection timings in the config are scaled by the speed, so sessions
come and go every few seconds. The terminal shows the machines and the
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
from typing import Any, Final, Protocol
from urllib.parse import quote

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from iot_bridge.adapters.embedded_broker import (
    BROKER_KINDS,
    EmbeddedBroker,
    start_embedded_broker,
)
from iot_bridge.adapters.mqtt import MqttSettings, WillMessage
from iot_bridge.bootstrap import ServiceOptions, serve
from iot_bridge.config.model import MqttSection, parse_config
from iot_bridge.config.sources import EnvSettings, persist_config
from iot_bridge.domain.events import Event, EventType
from iot_bridge.domain.simulation import availability_topic, looping
from iot_bridge.entrypoints.exit_codes import EXIT_OK, EXIT_USAGE
from iot_bridge.entrypoints.simulate import SimulatorOptions, simulate
from iot_bridge.errors import BridgeError
from iot_bridge.logs import configure_logging, get_logger
from iot_bridge.service.bridge import Bridge

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
    """One simulated machine: its device id, name, scenario and stagger."""

    device_id: str
    machine_name: str
    scenario: str
    lead_idle_s: float

    @property
    def topic(self) -> str:
        """The Shelly's data topic."""
        return f"shellypmminig3-{self.device_id}/status/pm1:0"


MACHINES: Final = (
    DemoMachine("cnc-mill", "CNC Mill", "full_session", 0.0),
    DemoMachine("laser-cutter", "Laser Cutter", "working", 10.0),
    DemoMachine("3d-printer", "3D Printer", "standby", 25.0),
)


def session_config(speed: float) -> dict[str, float]:
    """Detector timings for machines running ``speed`` times faster than real time.

    In simulated seconds: start debounce 5 s, stop debounce 20 s, message
    timeout 35 s (3.5 report periods), heartbeat 120 s; divided by the speed
    and kept within the config's lower bounds (timeout 1 s, heartbeat 10 s).
    """
    return {
        "standby_threshold_w": 10.0,
        "working_threshold_w": 100.0,
        "start_debounce_s": round(5.0 / speed, 3),
        "stop_debounce_s": round(20.0 / speed, 3),
        "message_timeout_s": round(max(1.0, 35.0 / speed), 3),
        "heartbeat_interval_s": round(max(10.0, 120.0 / speed), 3),
    }


def demo_config(broker_port: int, speed: float) -> dict[str, Any]:
    """The bridge's config document for the demo: the embedded broker, three machines."""
    return {
        "mqtt": {"broker": "127.0.0.1", "port": broker_port, "client_id": "iot_bridge_demo"},
        "devices": [
            {
                "device_id": machine.device_id,
                "machine_name": machine.machine_name,
                "mqtt_topic": machine.topic,
                "parser_type": "shelly_pm",
                "session_config": session_config(speed),
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
            bridge.add_listener(self.view.on_events)
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
            self.view.refresh(bridge.devices(), time.time())
            timeout_s = REFRESH_S
            if self.deadline is not None:
                timeout_s = min(timeout_s, self.deadline - loop.time())
                if timeout_s <= 0:
                    return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self.stop.wait()


async def _until_offline(bridge: Bridge, timeout_s: float) -> None:
    """Give the bridge a moment to record the machines' goodbyes (``online`` = false)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    # The bridge offers no "changed" event to wait on; poll its state briefly.
    while loop.time() < deadline and any(device["online"] for device in bridge.devices()):  # noqa: ASYNC110
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


# --- what the terminal shows ----------------------------------------------------------

SESSION_LOG_LINES: Final = 12
_STATE_STYLE: Final = {
    "idle": "dim",
    "starting": "yellow",
    "standby": "cyan",
    "working": "bold green",
    "stopping": "magenta",
}


class DemoView(Protocol):
    """Where the demo reports: a live ``rich`` screen or plain lines."""

    def started(
        self,
        *,
        board_url: str,
        url: str,
        broker: str,
        data_dir: Path,
        log_file: Path,
        speed: float,
        machines: list[tuple[str, str, str]],
    ) -> None:
        """The bridge listens; show where."""
        ...

    def on_events(self, events: Sequence[Event]) -> None:
        """Committed events (the bridge's listener)."""
        ...

    def refresh(self, devices: list[dict[str, Any]], now: float) -> None:
        """The machines' current state (``Bridge.devices()``)."""
        ...

    def notice(self, message: str) -> None:
        """Something the user should know."""
        ...

    def stopping(self) -> None:
        """Shutdown has begun."""
        ...

    def close(self) -> None:
        """Shutdown is complete."""
        ...


def _seconds(value: object) -> str:
    return f"{value:.1f} s" if isinstance(value, int | float) else "-"


def _watts(value: object) -> str:
    return f"{value:.1f} W" if isinstance(value, int | float) else "-"


def _energy(value: object) -> str:
    return f"{value:.2f} Wh" if isinstance(value, int | float) else "-"


def describe_event(event: Event, speed: float) -> str:
    """One plain line for an event: type, device, then what matters about it."""
    data = event.data
    head = f"{event.event_type} {event.device_id} ({event.machine_name})"
    if event.event_type in (EventType.SESSION_STOPPED, EventType.SESSION_TIMEOUT):
        duration = data.get("duration_s")
        simulated = (
            f" ({duration * speed:.0f} s simulated)" if isinstance(duration, int | float) else ""
        )
        energy = _energy(data.get("energy_wh"))
        return (
            f"{head} duration={_seconds(duration)}{simulated} energy={energy}"
            f" avg_power={_watts(data.get('avg_power_w'))} reason={data.get('reason')}"
        )
    if event.event_type is EventType.SESSION_STARTED:
        return f"{head} state={data.get('state')} power={_watts(data.get('power_w'))}"
    if event.event_type is EventType.SESSION_HEARTBEAT:
        return (
            f"{head} state={data.get('state')} power={_watts(data.get('power_w'))}"
            f" session={_seconds(data.get('session_duration_s'))}"
        )
    return head


class PlainView:
    """No terminal (CI, a pipe): one line per event on stdout, flushed."""

    def __init__(self) -> None:
        self._speed = 1.0

    @staticmethod
    def _say(line: str) -> None:
        print(line, flush=True)

    def started(
        self,
        *,
        board_url: str,
        url: str,
        broker: str,
        data_dir: Path,
        log_file: Path,
        speed: float,
        machines: list[tuple[str, str, str]],
    ) -> None:
        """Print the board's URL first, then the banner and the line ``HTTP API: <url>``."""
        self._speed = speed
        self._say(f"Board: {board_url}")
        names = ", ".join(f"{device_id} ({scenario})" for device_id, _, scenario in machines)
        self._say(f"iot-bridge demo: MQTT broker {broker}, machines {names}, speed {speed:g}x")
        self._say(f"data dir: {data_dir} (log: {log_file})")
        self._say(f"HTTP API: {url}")

    def on_events(self, events: Sequence[Event]) -> None:
        """One line per event."""
        for event in events:
            self._say(describe_event(event, self._speed))

    def refresh(self, devices: list[dict[str, Any]], now: float) -> None:
        """Nothing: plain output only reports events."""

    def notice(self, message: str) -> None:
        """A line of its own."""
        self._say(message)

    def stopping(self) -> None:
        """Say that shutdown has begun."""
        self._say("stopping: simulators, bridge, broker")

    def close(self) -> None:
        """Say that it is over."""
        self._say("stopped")


class LiveView:
    """A terminal: a live table of the machines and a log of the sessions (``rich``)."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console()
        self._live: Live | None = None
        self._header = Text("starting the broker and the bridge...")
        self._speed = 1.0
        self._log: list[tuple[str, str, str, str, str, str]] = []
        self._running_since: dict[str, float] = {}
        self._completed: dict[str, int] = {}
        self._devices: list[dict[str, Any]] = []
        self._now = time.time()
        self._footer = Text("Ctrl-C stops everything", style="dim")

    def started(
        self,
        *,
        board_url: str,
        url: str,
        broker: str,
        data_dir: Path,
        log_file: Path,
        speed: float,
        machines: list[tuple[str, str, str]],
    ) -> None:
        """Start the live screen with the URL and the broker."""
        self._speed = speed
        self._header = Text.assemble(
            ("Board     ", "bold"),
            (board_url, "bold underline green"),
            "   (open it in a browser: the machines live)\n",
            ("HTTP API  ", "bold"),
            (url, "bold underline cyan"),
            f"   (try {url}/devices, {url}/events, {url}/metrics)\n",
            ("MQTT      ", "bold"),
            f"{broker}   speed {speed:g}x: one real second is {speed:g} simulated seconds\n",
            ("data      ", "bold"),
            f"{data_dir}   log {log_file}",
        )
        self._live = Live(
            self._render(), console=self._console, refresh_per_second=4, transient=False
        )
        self._live.start()

    def on_events(self, events: Sequence[Event]) -> None:
        """Track running sessions and log starts, stops and online changes."""
        for event in events:
            data = event.data
            kind = event.event_type
            when = time.strftime("%H:%M:%S", time.localtime(event.timestamp))
            if kind is EventType.SESSION_STARTED:
                self._running_since[event.device_id] = event.timestamp
                row = (when, event.machine_name, "started", data.get("state"), "", "")
            elif kind in (EventType.SESSION_STOPPED, EventType.SESSION_TIMEOUT):
                self._running_since.pop(event.device_id, None)
                self._completed[event.device_id] = self._completed.get(event.device_id, 0) + 1
                duration = data.get("duration_s")
                simulated = (
                    f" ({duration * self._speed:.0f} s sim)"
                    if isinstance(duration, int | float)
                    else ""
                )
                label = "stopped" if kind is EventType.SESSION_STOPPED else "timed out"
                row = (
                    when,
                    event.machine_name,
                    label,
                    _seconds(duration) + simulated,
                    _energy(data.get("energy_wh")),
                    _watts(data.get("avg_power_w")),
                )
            elif kind in (EventType.DEVICE_ONLINE, EventType.DEVICE_OFFLINE):
                row = (when, event.machine_name, str(kind).replace("_", " "), "", "", "")
            else:
                continue
            self._log.append(tuple(str(cell or "") for cell in row))  # type: ignore[arg-type]
        del self._log[:-SESSION_LOG_LINES]

    def refresh(self, devices: list[dict[str, Any]], now: float) -> None:
        """Redraw with the machines' current state."""
        self._devices = devices
        self._now = now
        if self._live is not None:
            self._live.update(self._render(), refresh=True)

    def notice(self, message: str) -> None:
        """Show it under the tables."""
        self._footer = Text(message, style="bold yellow")

    def stopping(self) -> None:
        """Show that shutdown has begun."""
        self._footer = Text("stopping: simulators, bridge, broker...", style="bold")
        if self._live is not None:
            self._live.update(self._render(), refresh=True)

    def close(self) -> None:
        """Leave the last screen in place."""
        if self._live is not None:
            self._live.stop()
            self._live = None
        self._console.print("stopped")

    def _render(self) -> Group:
        machines = Table(title="Machines", expand=True, title_justify="left")
        for column in ("Machine", "Device", "State", "Power", "Online", "Session", "Done"):
            machines.add_column(column)
        for device in self._devices:
            device_id = device["device_id"]
            state = str(device.get("state"))
            since = self._running_since.get(device_id)
            session = "-"
            if device.get("session_id"):
                session = str(device["session_id"])[:8]
                if since is not None:
                    session += f" for {self._now - since:.0f} s"
            machines.add_row(
                str(device.get("machine_name")),
                device_id,
                Text(state, style=_STATE_STYLE.get(state, "")),
                _watts(device.get("power_w")),
                Text("yes", style="green") if device.get("online") else Text("no", style="red"),
                session,
                str(self._completed.get(device_id, 0)),
            )
        sessions = Table(title="Sessions", expand=True, title_justify="left")
        for column in ("Time", "Machine", "Event", "Duration / state", "Energy", "Avg power"):
            sessions.add_column(column)
        for row in self._log:
            sessions.add_row(*row)
        return Group(Panel(self._header, title="iot-bridge demo"), machines, sessions, self._footer)


def make_view(*, interactive: bool) -> DemoView:
    """The live screen for a terminal, plain lines otherwise."""
    return LiveView() if interactive else PlainView()
