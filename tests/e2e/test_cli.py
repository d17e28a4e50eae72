"""The ``iot-bridge`` command as a user runs it: replay, config check, exit codes, error sentences."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TRACE = REPO / "samples/traces/cnc-session.jsonl"
TRACE_CONFIG = REPO / "samples/traces/replay-config.yaml"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iot_bridge", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_replay_of_the_three_phase_sample_gives_every_meter_its_session() -> None:
    """replay of samples/traces/three-phase.jsonl: each §4a meter one session, 450 Wh or so."""
    result = cli(
        "replay",
        str(REPO / "samples/traces/three-phase.jsonl"),
        "--config",
        str(REPO / "samples/traces/three-phase-config.yaml"),
    )
    assert result.returncode == 0, result.stderr
    stops = [json.loads(line) for line in result.stdout.splitlines()]
    energy = {
        e["device_id"]: e["data"]["energy_wh"]
        for e in stops
        if e["event_type"] == "session_stopped"
    }
    assert energy == {
        "lathe": 450.0, "press": 450.0, "mill": 450.0, "saw": 450.0, "kiln": 450.0,
        "drill": 350.0, "compressor": 450.0, "laser": 450.0, "router": 450.0, "cnc": 450.0,
    }  # fmt: skip


def test_replay_prints_events_as_json_lines_on_stdout() -> None:
    """replay: one EVENT object per line on stdout, nothing else, exit 0."""
    result = cli("replay", str(TRACE), "--config", str(TRACE_CONFIG))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["event_type"] for e in events] == [
        "device_online",
        "session_started",
        "session_heartbeat",
        "session_stopped",
    ]
    assert set(events[0]) == {
        "event_uid",
        "event_type",
        "device_id",
        "machine_name",
        "session_id",
        "timestamp",
        "data",
    }


def test_replay_is_deterministic_except_event_uid() -> None:
    """Two replays of the same trace print the same events but for event_uid."""
    runs = [cli("replay", str(TRACE), "--config", str(TRACE_CONFIG)).stdout for _ in range(2)]
    parsed = [[json.loads(line) for line in run.splitlines()] for run in runs]
    for event in parsed[0] + parsed[1]:
        event.pop("event_uid")
    assert parsed[0] == parsed[1]


def test_replay_errors_exit_2_with_one_sentence(tmp_path: Path) -> None:
    """A missing trace, a bad line (with its number) or an invalid config: exit 2, no traceback."""
    missing = cli("replay", str(tmp_path / "nope.jsonl"), "--config", str(TRACE_CONFIG))
    assert missing.returncode == 2 and "nope.jsonl" in missing.stderr

    bad = tmp_path / "bad.jsonl"
    bad.write_text(TRACE.read_text().splitlines()[0] + "\n{broken\n")
    result = cli("replay", str(bad), "--config", str(TRACE_CONFIG))
    assert result.returncode == 2 and "line 2" in result.stderr

    config = tmp_path / "c.yaml"
    config.write_text("devices:\n  - device_id: 'bad id'\n")
    result = cli("replay", str(TRACE), "--config", str(config))
    assert result.returncode == 2 and "devices.0.device_id" in result.stderr
    for run in (missing, result):
        assert "Traceback" not in run.stderr


def test_config_check(tmp_path: Path) -> None:
    """config check: exit 0 and a one-line summary, or exit 2 and every error with its path."""
    ok = cli("config", "check", str(REPO / "samples/config.example.yaml"))
    assert ok.returncode == 0, ok.stderr
    assert len(ok.stdout.strip().splitlines()) == 1

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "devices:\n"
        "  - device_id: a\n    machine_name: A\n    mqtt_topic: 'a/#/b'\n    parser_type: shelly_pm\n"
        "    session_config: {standby_threshold_w: 10, working_threshold_w: 5, stop_debounc_s: 1}\n"
    )
    result = cli("config", "check", str(bad))
    assert result.returncode == 2
    for path in (
        "devices.0.mqtt_topic",
        "devices.0.session_config.working_threshold_w",
        "devices.0.session_config.stop_debounc_s",
    ):
        assert path in result.stderr
    assert "Traceback" not in result.stderr


def test_version_prints_the_package_version() -> None:
    """--version prints ``iot-bridge <version>`` of the installed package and exits 0."""
    from importlib.metadata import version

    result = cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["iot-bridge", version("iot-bridge")]


def test_usage_errors_exit_2() -> None:
    """Unknown commands and flags are usage errors (exit 2)."""
    assert cli("frobnicate").returncode == 2
    assert cli("run", "--port", "notaport").returncode == 2
    assert cli("config").returncode == 2


def test_replay_rejects_millisecond_timestamps(tmp_path: Path) -> None:
    """A ts in milliseconds is a bad line with a hint, exit 2, not a traceback."""
    trace = tmp_path / "ms.jsonl"
    trace.write_text(json.dumps({"ts": 1739389218123, "topic": "a", "payload": "1"}) + "\n")
    result = cli("replay", str(trace), "--config", str(TRACE_CONFIG))
    assert result.returncode == 2
    assert "line 1" in result.stderr and "milliseconds" in result.stderr
    assert "Traceback" not in result.stderr


def test_replay_into_a_closed_pipe_is_quiet() -> None:
    """`iot-bridge replay ... | head -1` ends without a BrokenPipeError traceback."""
    result = subprocess.run(
        f"{sys.executable} -m iot_bridge replay {TRACE} --config {TRACE_CONFIG} | head -c 10",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in result.stderr
    assert "BrokenPipe" not in result.stderr


def test_unwritable_log_file_is_a_clear_error(tmp_path: Path) -> None:
    """LOG_FILE in a missing folder: one sentence naming LOG_FILE, exit 2."""
    import os

    env = {**os.environ, "LOG_FILE": str(tmp_path / "missing" / "x.log")}
    result = cli("run", "--data-dir", str(tmp_path / "data"), "--port", "0", env=env)
    assert result.returncode == 2
    assert "LOG_FILE" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_bridge_shard_stops_the_start_with_exit_2(tmp_path: Path) -> None:
    """BRIDGE_SHARD=0/3, 4/3, x or 1/0: one sentence naming BRIDGE_SHARD on stderr, exit 2."""
    import os

    for value in ("0/3", "4/3", "x", "1/0"):
        env = {**os.environ, "BRIDGE_SHARD": value}
        result = cli("run", "--data-dir", str(tmp_path / "data"), "--port", "0", env=env)
        assert result.returncode == 2, (value, result.stderr)
        assert "BRIDGE_SHARD" in result.stderr and value in result.stderr
        assert "Traceback" not in result.stderr
        assert not (tmp_path / "data").exists()  # nothing was started or written
