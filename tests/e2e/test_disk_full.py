"""A data dir on a small card (issue 22): the ``iot-bridge run`` process, mosquitto, the Odoo
stand-in and a real small filesystem (a tmpfs the test mounts) that the test fills.

A full disk is survived: the bridge stays up, says so (``/health``, ``/metrics``, the
board), acknowledges nothing it could not commit, and carries on by itself once space
is freed, every event delivered once. What cannot heal still stops it with exit 1.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.e2e.conftest import config, device, power, write_config
from tests.support.bridge_process import BridgeProcess, wait_until
from tests.support.mosquitto import MosquittoBroker, publish_many
from tests.support.mqtt_watch import retained
from tests.support.odoo_standin import OdooStandin
from tests.support.small_fs import SmallFilesystem

MACHINES = [f"m{i:02d}" for i in range(20)]
AVAILABILITY = "iot-bridge/bridge/availability"
# CONTRACT/issue 22: /health says degraded within 5 s of the disk-full failure.
DEGRADED_WITHIN_S = 5.0


def _start(
    card: SmallFilesystem,
    broker: MosquittoBroker,
    standin: OdooStandin,
    bridge_factory: Any,
    tmp_path: Path,
) -> BridgeProcess:
    """The bridge with its data dir on the card (its log beside it, not on it): 20 machines,
    events to the stand-in, state out on (the MQTT availability)."""
    document = config(broker, *(device(m) for m in MACHINES))
    document["state_out"] = {"enabled": True, "homeassistant_discovery": False}
    cfg = write_config(tmp_path / "c.yaml", document)
    env = {"ODOO_BASE_URL": standin.url}
    bridge: BridgeProcess = bridge_factory(
        data_dir=card.path / "data", config_file=cfg, env=env, log_path=tmp_path / "bridge.log"
    ).start()
    wait_until(lambda: bridge.health()["mqtt"]["connected"])
    return bridge


def _round(broker: MosquittoBroker, watts: float) -> None:
    """One reading of every machine (QoS 1)."""
    publish_many(broker, [(f"{m}/status/pm1:0", power(watts)) for m in MACHINES])


def _sessions_running(broker: MosquittoBroker, standin: OdooStandin) -> None:
    """Every machine starts a session; the 20 starts reach Odoo."""
    _round(broker, 120.0)
    wait_until(lambda: _count(standin, "session_started") == len(MACHINES), timeout_s=30)


def _count(standin: OdooStandin, event_type: str) -> int:
    return sum(1 for e in standin.events if e["event_type"] == event_type)


def _fill_until_a_commit_fails(
    card: SmallFilesystem, broker: MosquittoBroker, bridge: BridgeProcess
) -> dict[str, Any]:
    """Fill the card, then keep the sessions' readings coming until a commit fails (the
    WAL's already allocated pages absorb a few hundred commits first). Returns /health
    once it says so, checking that this took at most DEGRADED_WITHIN_S after the failure."""
    card.fill()
    deadline = time.monotonic() + 90.0
    watts = 130.0
    failed_at: float | None = None
    while True:
        assert time.monotonic() < deadline, "the bridge never hit the full disk"
        if failed_at is None:
            watts = 260.0 if watts == 130.0 else 130.0
            _round(broker, watts)
            if bridge.log_events("store_disk_full"):
                failed_at = time.monotonic()
        health = bridge.health()
        if health["store"]["disk_full"]:
            if failed_at is None:
                failed_at = time.monotonic()
            assert time.monotonic() - failed_at <= DEGRADED_WITHIN_S
            return health
        if failed_at is not None:
            assert time.monotonic() - failed_at <= DEGRADED_WITHIN_S, "/health not degraded"
        time.sleep(0.05)


def _each_session_once(standin: OdooStandin) -> None:
    """Per machine: one session_started and one session_stopped, of the same session."""
    for machine in MACHINES:
        events = standin.events_for(machine)
        kinds = Counter(e["event_type"] for e in events)
        assert kinds["session_started"] == 1, (machine, kinds)
        assert kinds["session_stopped"] == 1, (machine, kinds)
        sessions = {e["session_id"] for e in events if e["event_type"].startswith("session_")}
        assert len(sessions) == 1, (machine, sessions)


def test_a_full_disk_is_survived_and_space_freed_carries_on_without_a_restart(
    small_fs, mosquitto_factory, odoo_standin: OdooStandin, bridge_factory, tmp_path: Path
) -> None:
    """Disk filled during 20 sessions: up, degraded within 5 s, no ack; freed: all once."""
    card: SmallFilesystem = small_fs(size_mb=24)
    broker = mosquitto_factory()
    bridge = _start(card, broker, odoo_standin, bridge_factory, tmp_path)
    _sessions_running(broker, odoo_standin)
    pid = bridge.process.pid  # type: ignore[union-attr]

    health = _fill_until_a_commit_fails(card, broker, bridge)
    assert health["status"] == "degraded"
    assert "disk holding the data dir is full" in health["store"]["error"]
    assert health["store"]["since"] is not None
    assert health["store"]["data_dir_bytes"] > 0
    _round(broker, 0.0)  # every session stops: these readings wait, unacknowledged
    time.sleep(1.0)  # the stop debounce (0.5 s) passes: nothing may come of it yet
    assert _count(odoo_standin, "session_stopped") == 0
    assert bridge.health()["store"]["disk_full"] is True
    metrics = bridge.get("/metrics").text
    assert "iot_bridge_store_disk_full 1.0" in metrics
    board = bridge.get("/board").json()["delivery"]
    assert board["store_disk_full"] is True and board["store_error"]
    assert retained(broker, AVAILABILITY) == {AVAILABILITY: b"online"}

    card.free()
    wait_until(lambda: _count(odoo_standin, "session_stopped") == len(MACHINES), timeout_s=60)
    wait_until(lambda: bridge.health()["status"] == "ok", timeout_s=30)
    assert bridge.process.poll() is None and bridge.process.pid == pid  # type: ignore[union-attr]
    _each_session_once(odoo_standin)
    assert odoo_standin.duplicates == []
    assert len(bridge.log_events("store_disk_full")) == 1
    assert len(bridge.log_events("store_disk_full_ended")) == 1
    assert "iot_bridge_store_disk_full 0.0" in bridge.get("/metrics").text
    assert bridge.stop() == 0


def test_messages_that_came_while_the_disk_was_full_were_not_acknowledged(
    small_fs, mosquitto_factory, odoo_standin: OdooStandin, bridge_factory, tmp_path: Path
) -> None:
    """kill -9 during the wait, free, restart: the broker sends them again, the stops happen."""
    card: SmallFilesystem = small_fs(size_mb=24)
    broker = mosquitto_factory()
    bridge = _start(card, broker, odoo_standin, bridge_factory, tmp_path)
    _sessions_running(broker, odoo_standin)
    _fill_until_a_commit_fails(card, broker, bridge)
    _round(broker, 0.0)  # had these been acknowledged uncommitted, no session would stop
    time.sleep(1.0)
    bridge.kill()
    card.free()
    bridge.start()
    wait_until(lambda: _count(odoo_standin, "session_stopped") == len(MACHINES), timeout_s=60)
    _each_session_once(odoo_standin)


def test_a_bridge_started_on_a_full_disk_waits_for_space(
    small_fs, mosquitto_factory, odoo_standin: OdooStandin, bridge_factory, tmp_path: Path
) -> None:
    """Restarted on a full card, it waits (said once in the log) instead of failing in a loop."""
    card: SmallFilesystem = small_fs(size_mb=16)
    broker = mosquitto_factory()
    bridge = _start(card, broker, odoo_standin, bridge_factory, tmp_path)
    assert bridge.stop() == 0
    card.fill()
    bridge.start(wait=False)
    wait_until(lambda: bridge.log_events("store_disk_full"), timeout_s=30)
    time.sleep(2.0)  # several retries
    assert bridge.process.poll() is None  # type: ignore[union-attr]
    assert len(bridge.log_events("store_disk_full")) == 1
    card.free()
    wait_until(bridge._healthy, timeout_s=60)
    assert bridge.health()["store"]["disk_full"] is False
    assert bridge.stop() == 0


def test_a_data_dir_that_vanishes_under_the_running_bridge_stops_it_with_exit_1(
    mosquitto_factory, bridge_factory, tmp_path: Path
) -> None:
    """Removed (or unmounted) under it: what it committed would be lost, so it stops, clearly."""
    broker = mosquitto_factory()
    cfg = write_config(tmp_path / "c.yaml", config(broker, device("mill")))
    bridge = bridge_factory(config_file=cfg, log_path=tmp_path / "bridge.log").start()
    shutil.rmtree(bridge.data_dir)
    assert bridge.process.wait(timeout=90) == 1  # type: ignore[union-attr]
    (line,) = bridge.log_events("store_unusable")
    assert "removed or replaced while the bridge ran" in line["error"]
    assert "Traceback" not in bridge.log()


def test_a_read_only_data_dir_stops_the_start_with_exit_1(
    small_fs, bridge_factory, tmp_path: Path
) -> None:
    """A read-only filesystem cannot heal by waiting: one clear sentence naming it, exit 1."""
    card: SmallFilesystem = small_fs(size_mb=4, read_only=True)
    bridge = bridge_factory(data_dir=card.path, log_path=tmp_path / "bridge.log")
    bridge.start(wait=False)
    assert bridge.process.wait(timeout=30) == 1  # type: ignore[union-attr]
    output = bridge.log()
    assert f"data dir {card.path} is not writable: Read-only file system" in output
    assert "Traceback" not in output


def test_a_corrupt_database_stops_the_start_with_exit_1(bridge_factory, tmp_path: Path) -> None:
    """A bridge.db that is not a database: the start stops, naming it and what to do."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "bridge.db").write_bytes(b"not a database" * 1000)
    bridge = bridge_factory(data_dir=data_dir, log_path=tmp_path / "bridge.log")
    bridge.start(wait=False)
    assert bridge.process.wait(timeout=30) == 1  # type: ignore[union-attr]
    output = bridge.log()
    assert "bridge.db is corrupt or not an iot-bridge database" in output
    assert "move it aside" in output
    assert "Traceback" not in output
