"""What the demo's terminal shows: a live ``rich`` screen, or one plain line per event."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Protocol

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from iot_bridge.domain.events import Event, EventType

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
        """Committed events (a feed subscriber)."""
        ...

    def refresh(self, devices: list[dict[str, Any]], now: float) -> None:
        """The machines' current state (``bridge.status.devices()``)."""
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
    head = f"{event.event_type} {event.device_id} ({event.machine_name})"
    if (ended := event.ended_data()) is not None:
        duration = ended["duration_s"]
        simulated = f" ({duration * speed:.0f} s simulated)"
        energy = _energy(ended["energy_wh"])
        return (
            f"{head} duration={_seconds(duration)}{simulated} energy={energy}"
            f" avg_power={_watts(ended['avg_power_w'])} reason={ended['reason']}"
        )
    if (started := event.started_data()) is not None:
        return f"{head} state={started['state']} power={_watts(started['power_w'])}"
    if (heartbeat := event.heartbeat_data()) is not None:
        return (
            f"{head} state={heartbeat['state']} power={_watts(heartbeat['power_w'])}"
            f" session={_seconds(heartbeat['session_duration_s'])}"
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
            kind = event.event_type
            when = time.strftime("%H:%M:%S", time.localtime(event.timestamp))
            if (started := event.started_data()) is not None:
                self._running_since[event.device_id] = event.timestamp
                row = (when, event.machine_name, "started", started["state"], "", "")
            elif (ended := event.ended_data()) is not None:
                self._running_since.pop(event.device_id, None)
                self._completed[event.device_id] = self._completed.get(event.device_id, 0) + 1
                duration = ended["duration_s"]
                simulated = f" ({duration * self._speed:.0f} s sim)"
                label = "stopped" if kind is EventType.SESSION_STOPPED else "timed out"
                row = (
                    when,
                    event.machine_name,
                    label,
                    _seconds(duration) + simulated,
                    _energy(ended["energy_wh"]),
                    _watts(ended["avg_power_w"]),
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
