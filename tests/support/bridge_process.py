"""Runs ``iot-bridge run`` as a subprocess, the way an operator does, for e2e tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest


def free_port() -> int:
    """A TCP port nobody listens on right now (on 127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], Any], timeout_s: float = 20.0, interval_s: float = 0.05
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after the deadline."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s (last value: {last!r})")


class BridgeProcess:
    """One ``iot-bridge run`` process with its own data dir and HTTP port."""

    def __init__(
        self,
        *,
        data_dir: Path,
        env: Mapping[str, str] | None = None,
        config_file: Path | None = None,
        port: int | None = None,
        token: str | None = None,
        log_path: Path | None = None,
        open_files: int | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.open_files = open_files  # the process's hard (and soft) RLIMIT_NOFILE, if set
        self.port = port or free_port()
        self.token = token
        self.config_file = config_file
        self.log_path = log_path or data_dir.parent / f"{data_dir.name}-bridge.log"
        self.extra_env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True) -> BridgeProcess:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "ODOO_", "BRIDGE_"))
        }
        env.update({"LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG", "PYTHONUNBUFFERED": "1"})
        if self.token:
            env["BRIDGE_API_TOKEN"] = self.token
        env.update(self.extra_env)
        args = [
            sys.executable, "-m", "iot_bridge", "run",
            "--data-dir", str(self.data_dir), "--host", "127.0.0.1", "--port", str(self.port),
        ]  # fmt: skip
        if self.config_file:
            args += ["--config", str(self.config_file)]
        log = self.log_path.open("ab")
        if self.open_files is not None:  # util-linux's prlimit: no preexec_fn in a threaded parent
            args = ["prlimit", f"--nofile={self.open_files}:{self.open_files}", "--", *args]
        self.process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if wait:
            wait_until(self._healthy, timeout_s=30.0)
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"bridge exited with {self.process.returncode}:\n{self.log()}")
        try:
            return httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self, name: str) -> list[dict[str, Any]]:
        """Parsed JSON log lines whose event is ``name``."""
        import json

        found = []
        for line in self.log().splitlines():
            if f'"{name}"' not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == name:
                found.append(record)
        return found

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers=self.headers(), timeout=10.0, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers(), **kwargs.pop("headers", {})}
        return httpx.post(f"{self.url}{path}", headers=headers, timeout=10.0, **kwargs)

    def health(self) -> dict[str, Any]:
        return dict(self.get("/health").json())

    def events(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Events oldest first (the API lists newest first)."""
        return list(reversed(self.get("/events", params={"limit": limit}).json()))

    def event_types(self, device_id: str | None = None) -> list[str]:
        return [
            e["event_type"]
            for e in self.events()
            if device_id is None or e["device_id"] == device_id
        ]

    def device(self, device_id: str) -> dict[str, Any]:
        for device in self.get("/devices").json():
            if device["device_id"] == device_id:
                return dict(device)
        raise KeyError(device_id)

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            # Where it hangs: SIGUSR1 makes the bridge log every task's stack (task_dump).
            self.process.send_signal(signal.SIGUSR1)
            with contextlib.suppress(AssertionError):
                wait_until(lambda: bool(self.log_events("task_dump")), timeout_s=5.0)
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"bridge did not stop on SIGTERM within {timeout_s} s:\n{self.log()[-20000:]}"
            ) from None

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def bridge_factory(tmp_path: Path) -> Iterator[Callable[..., BridgeProcess]]:
    """Creates bridge processes (data dir under tmp_path); kills leftovers at teardown."""
    made: list[BridgeProcess] = []

    def make(name: str = "bridge", **kwargs: Any) -> BridgeProcess:
        kwargs.setdefault("data_dir", tmp_path / name)
        bridge = BridgeProcess(**kwargs)
        made.append(bridge)
        return bridge

    yield make
    for bridge in made:
        bridge.kill()
