"""``iot-bridge demo`` as a user runs it: one command, sessions within a minute, clean exit."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from iot_bridge.config.parse import parse_config
from iot_bridge.demo.run import demo_config
from iot_bridge.entrypoints.cli import main

pytestmark = pytest.mark.slow

URL_LINE = re.compile(r"^HTTP API: (http://127\.0\.0\.1:\d+)$")
DATA_DIR_LINE = re.compile(r"^data dir: (\S+) ")


class DemoProcess:
    """``iot-bridge demo`` with stdout on a pipe (not a terminal: plain lines)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "iot_bridge", "demo", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for_line(self, pattern: str, timeout_s: float) -> str:
        """The first stdout line (new or already seen) matching ``pattern``, within the deadline."""
        regex = re.compile(pattern)
        for line in self.lines:
            if regex.search(line):
                return line
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {pattern!r} in {timeout_s} s: {self.lines}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(
                    f"demo exited before {pattern!r}: {self.lines} {self.stderr()}"
                )
            self.lines.append(line)
            if regex.search(line):
                return line

    def wait(self, timeout_s: float) -> int:
        """Exit code, after reading the rest of stdout."""
        code = self.process.wait(timeout_s)
        self._reader.join(5)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return code

    def stderr(self) -> str:
        """Whatever the demo wrote on stderr (only once it has exited)."""
        if self.process.poll() is None or self.process.stderr is None:
            return ""
        return self.process.stderr.read()

    def children(self, name: str) -> list[int]:
        """Pids of the demo's child processes called ``name`` (from /proc)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            command = stat[stat.index("(") + 1 : stat.rindex(")")]
            parent = int(stat[stat.rindex(")") + 2 :].split()[1])
            if parent == self.process.pid and command == name:
                found.append(int(entry.name))
        return found

    def kill(self) -> None:
        """Last resort at teardown."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def demos() -> Iterator[list[DemoProcess]]:
    """Demo processes started by a test; killed at teardown if still running."""
    started: list[DemoProcess] = []
    yield started
    for demo in started:
        demo.kill()


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_demo_shows_sessions_within_a_minute_and_stops_cleanly_on_a_signal(
    demos: list[DemoProcess], stop_signal: signal.Signals
) -> None:
    """The README's first command: sessions appear, the API answers, a stop leaves nothing."""
    demo = DemoProcess("--duration", "40", "--speed", "20")
    demos.append(demo)
    url = URL_LINE.match(demo.wait_for_line(r"^HTTP API: ", 30))
    assert url is not None
    data_dir = DATA_DIR_LINE.match(demo.wait_for_line(r"^data dir: ", 1))
    assert data_dir is not None
    brokers = demo.children("mosquitto")
    assert len(brokers) == 1
    started = time.monotonic()
    line = demo.wait_for_line(r"^session_started ", 60)
    assert time.monotonic() - started < 60
    assert line.split()[1] in {"cnc-mill", "laser-cutter", "3d-printer"}

    devices = httpx.get(f"{url.group(1)}/devices", timeout=5).json()
    assert {d["device_id"] for d in devices} == {"cnc-mill", "laser-cutter", "3d-printer"}
    health = httpx.get(f"{url.group(1)}/health", timeout=5).json()
    assert health["mqtt"]["connected"] is True
    events = httpx.get(f"{url.group(1)}/events?limit=50", timeout=5).json()
    assert any(e["event_type"] == "session_started" for e in events)

    demo.process.send_signal(stop_signal)
    code = demo.wait(30)
    assert code == 0, demo.stderr()
    assert demo.lines[-1] == "stopped"
    assert not alive(brokers[0])
    assert demo.children("mosquitto") == []
    assert not Path(data_dir.group(1)).exists()  # the temporary data dir is removed


def test_demo_stops_by_itself_after_duration_and_keeps_a_given_data_dir(
    demos: list[DemoProcess], tmp_path: Path
) -> None:
    """--duration ends the demo with exit 0; --data-dir keeps the config and the event store."""
    data_dir = tmp_path / "demo-data"
    demo = DemoProcess("--duration", "6", "--speed", "20", "--data-dir", str(data_dir))
    demos.append(demo)
    demo.wait_for_line(r"^session_started ", 30)
    brokers = demo.children("mosquitto")
    assert len(brokers) == 1
    code = demo.wait(40)
    assert code == 0, demo.stderr()
    assert "stopping: simulators, bridge, broker" in demo.lines
    assert all(not alive(pid) for pid in brokers)
    assert (data_dir / "config-active.yaml").is_file()
    assert (data_dir / "demo.log").is_file()
    assert any(path.suffix in {".db", ".sqlite", ".sqlite3"} for path in data_dir.iterdir())


def test_demo_runs_on_the_built_in_broker_without_mosquitto(demos: list[DemoProcess]) -> None:
    """With the built-in Python broker (no mosquitto) sessions are detected just the same."""
    demo = DemoProcess("--duration", "8", "--speed", "20", env={"IOT_BRIDGE_DEMO_BROKER": "python"})
    demos.append(demo)
    banner = demo.wait_for_line(r"^iot-bridge demo: ", 30)
    assert "MQTT broker python on 127.0.0.1:" in banner
    demo.wait_for_line(r"^session_started ", 30)
    assert demo.children("mosquitto") == []
    assert demo.wait(40) == 0, demo.stderr()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--speed", "0"], "--speed must be"),
        (["--speed", "1000"], "--speed must be"),
        (["--duration", "0"], "--duration must be"),
        (["--duration", "nan"], "--duration must be"),
        (["--port", "-1"], "--port must be"),
    ],
)
def test_bad_demo_flags_exit_2(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad flags are refused with exit 2 and one sentence, before anything starts."""
    assert main(["demo", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_bad_broker_choice_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown IOT_BRIDGE_DEMO_BROKER is a usage error naming the variable."""
    monkeypatch.setenv("IOT_BRIDGE_DEMO_BROKER", "rabbit")
    assert main(["demo"]) == 2
    assert (
        "IOT_BRIDGE_DEMO_BROKER must be one of auto, mosquitto, python" in capsys.readouterr().err
    )


def test_data_dir_that_is_a_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--data-dir pointing at a file is refused and the file is left alone."""
    target = tmp_path / "file"
    target.write_text("keep me")
    assert main(["demo", "--data-dir", str(target)]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert target.read_text() == "keep me"


def test_busy_http_port_is_one_clear_error_and_nothing_is_left_running(
    demos: list[DemoProcess],
) -> None:
    """--port taken by someone else: exit 1 with one sentence, and the broker is stopped."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        demo = DemoProcess("--port", str(port), "--duration", "30")
        demos.append(demo)
        code = demo.wait(30)
    stderr = demo.stderr()
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in stderr
    assert "Traceback" not in stderr
    assert demo.children("mosquitto") == []


@pytest.mark.parametrize("speed", [0.1, 1.0, 10.0, 20.0, 100.0])
def test_demo_config_is_valid_at_every_allowed_speed(speed: float) -> None:
    """The generated config passes the bridge's own validation, timings scaled by the speed."""
    config = parse_config(demo_config(1884, speed), source="demo config")
    assert [d.device_id for d in config.devices] == ["cnc-mill", "laser-cutter", "3d-printer"]
    timings = config.devices[0].session_config
    assert timings.stop_debounce_s == pytest.approx(20.0 / speed, rel=1e-3)
    # Reports come every 10 simulated seconds: the timeout must leave room for them.
    assert timings.message_timeout_s * speed >= 30.0
