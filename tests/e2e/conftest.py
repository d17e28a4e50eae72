"""Shared helpers for the e2e tests of the ``iot-bridge run`` process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

DEFAULT_SESSION = {
    "standby_threshold_w": 5.0,
    "working_threshold_w": 50.0,
    "start_debounce_s": 0.3,
    "stop_debounce_s": 0.5,
    "message_timeout_s": 60.0,
    "heartbeat_interval_s": 300.0,
}


def device(device_id: str, prefix: str | None = None, **session: float) -> dict[str, Any]:
    """A shelly_pm device on ``<prefix>/status/pm1:0``."""
    return {
        "device_id": device_id,
        "machine_name": f"Machine {device_id}",
        "mqtt_topic": f"{prefix or device_id}/status/pm1:0",
        "parser_type": "shelly_pm",
        "session_config": {**DEFAULT_SESSION, **session},
    }


def config(broker: Any, *devices: dict[str, Any], **mqtt: Any) -> dict[str, Any]:
    """A config document for ``broker`` (a MosquittoBroker) with ``devices``."""
    section = {"broker": broker.host, "port": broker.port, "client_id": "bridge-e2e", **mqtt}
    return {"mqtt": section, "devices": list(devices), "version": "1.0"}


def write_config(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document))
    return path


def power(watts: float, energy_wh: float | None = None) -> str:
    body: dict[str, Any] = {"id": 0, "voltage": 230.0, "apower": watts}
    if energy_wh is not None:
        body["aenergy"] = {"total": energy_wh, "by_minute": [0, 0, 0], "minute_ts": 0}
    return json.dumps(body)


def flicker_kill_restart(bridge: Any, publish_reading: Any) -> None:
    """100/0/100/0/100 W on "mill" (no debounce), kill -9 at once, restart: 3 starts, 2 stops, once each.

    Whatever was not committed before the kill comes again from the broker's
    persistent session; whatever was committed is not processed twice.
    """
    from tests.support.bridge_process import wait_until

    for watts in (100.0, 0.0, 100.0, 0.0, 100.0):
        publish_reading("mill/status/pm1:0", power(watts))
    bridge.kill()
    bridge.start()
    wait_until(
        lambda: (
            bridge.device("mill")["power_w"] == 100.0
            and bridge.event_types().count("session_started") == 3
        )
    )
    kinds = bridge.event_types("mill")
    assert kinds.count("session_started") == 3
    assert kinds.count("session_stopped") == 2


def pytest_collection_modifyitems(items: list[Any]) -> None:
    """Every e2e test runs the bridge as a process: mark them ``slow`` (``-m "not slow"`` skips)."""
    import pytest

    for item in items:
        if "/tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.slow)
