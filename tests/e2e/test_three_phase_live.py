"""A three-phase lathe end to end: ``iot-bridge simulate --model pro3em`` → mosquitto → ``run``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import pytest

from tests.e2e.conftest import config, write_config
from tests.support.bridge_process import wait_until
from tests.support.mosquitto import MosquittoBroker

PREFIX = "shellypro3em-lathe"


def test_simulated_pro3em_gives_a_session_with_its_power_and_energy(
    mosquitto_factory, bridge_factory, tmp_path: Path
) -> None:
    """The lathe's session: power from status/em:0, energy from status/emdata:0 counters."""
    subscriber = shutil.which("mosquitto_sub")
    if subscriber is None:
        pytest.skip("mosquitto_sub is needed to record what the meter published")
    broker: MosquittoBroker = mosquitto_factory()
    lathe = {
        "device_id": "lathe",
        "machine_name": "Lathe (three-phase)",
        "mqtt_topic": f"{PREFIX}/status/em:0",
        "parser_type": "shelly_pm",
        # Real seconds at --speed 20: debounces of 4 and 10 simulated seconds.
        "session_config": {
            "standby_threshold_w": 100.0,
            "working_threshold_w": 1000.0,
            "start_debounce_s": 0.2,
            "stop_debounce_s": 0.5,
            "message_timeout_s": 5.0,
            "heartbeat_interval_s": 300.0,
        },
    }
    bridge = bridge_factory(config_file=write_config(tmp_path / "c.yaml", config(broker, lathe)))
    bridge.start()
    wait_until(lambda: bridge.health()["mqtt"]["connected"])
    recorded = tmp_path / "emdata.txt"
    with recorded.open("wb") as output:
        recorder = subprocess.Popen(
            [
                subscriber,
                "-h",
                broker.host,
                "-p",
                str(broker.port),
                "-t",
                f"{PREFIX}/status/emdata:0",
            ],
            stdout=output,
        )
    try:
        simulate = [
            sys.executable, "-m", "iot_bridge", "simulate", "--model", "pro3em",
            "--broker", broker.host, "--port", str(broker.port), "--no-tls",
            "--device-id", PREFIX, "--scenario", "full_session", "--speed", "20",
        ]  # fmt: skip
        subprocess.run(simulate, capture_output=True, timeout=60, check=True)
        wait_until(lambda: "session_stopped" in bridge.event_types(), timeout_s=20)
    finally:
        recorder.terminate()
        recorder.wait(timeout=10)
    events = [e for e in bridge.events() if e["device_id"] == "lathe"]
    kinds = [e["event_type"] for e in events]
    assert kinds[:3] == ["device_online", "session_started", "session_stopped"], kinds
    started, stopped = events[1]["data"], events[2]["data"]
    # The lathe draws 350 W in standby and 1.5-3.7 kW working (ten times the plug's machine).
    assert started["power_w"] >= 100.0
    assert stopped["peak_power_w"] > 1000.0
    assert stopped["working_s"] > 0 and stopped["standby_s"] > 0
    # Energy: how far the meter's own import counter advanced between two of its reports.
    counters = [json.loads(line)["total_act"] for line in recorded.read_text().splitlines()]
    assert len(counters) >= 2, counters
    steps = {round(later - earlier, 3) for earlier, later in combinations(counters, 2)}
    assert stopped["energy_wh"] > 0
    assert min(abs(stopped["energy_wh"] - step) for step in steps) < 1e-6
    assert bridge.stop() == 0
