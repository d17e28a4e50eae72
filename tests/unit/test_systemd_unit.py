"""Static checks of deploy/systemd/iot-bridge.service and its environment file.

scripts/package-test runs ``systemd-analyze verify`` on the unit; these pin what
the bare-metal path promises: an unprivileged service whose only writable place
is its state directory, the data dir there, secrets from a root-only file, and
a restart on failure but not on an invalid config.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from iot_bridge.config.env import settings_from_env
from iot_bridge.entrypoints.exit_codes import EXIT_USAGE

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "iot-bridge.service"
ENV_FILE = ROOT / "deploy" / "systemd" / "iot-bridge.env.example"
VENV = "/opt/iot-bridge"  # the container image's venv path too


def unit_sections(text: str) -> dict[str, dict[str, list[str]]]:
    """{section: {key: [values in order]}}; comments and blank lines dropped."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{line!r} before any [section]"
        key, sep, value = line.partition("=")
        assert sep, f"{line!r} is not Key=value"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    """The [Service] section of the unit."""
    return unit_sections(UNIT.read_text(encoding="utf-8"))["Service"]


def one(service: dict[str, list[str]], key: str) -> str:
    """The single value of ``key``."""
    values = service.get(key, [])
    assert len(values) == 1, f"{key}: {values}"
    return values[0]


def environment(service: dict[str, list[str]]) -> dict[str, str]:
    """Every ``Environment=KEY=VALUE`` of the unit."""
    pairs = (item.partition("=") for value in service["Environment"] for item in shlex.split(value))
    return {key: item for key, _, item in pairs}


def test_unit_parser_rejects_keys_outside_a_section() -> None:
    """A key before the first [section] is reported, not silently dropped."""
    with pytest.raises(AssertionError, match="before any"):
        unit_sections("ExecStart=/bin/true\n[Service]\n")


def test_runs_the_venv_console_script_unprivileged(service: dict[str, list[str]]) -> None:
    """ExecStart is ``iot-bridge run`` from the venv; no root: DynamicUser or a named user."""
    assert shlex.split(one(service, "ExecStart")) == [f"{VENV}/bin/iot-bridge", "run"]
    assert service.get("DynamicUser") == ["yes"] or one(service, "User") not in {"root", "0"}
    assert one(service, "NoNewPrivileges") == "yes"
    assert one(service, "CapabilityBoundingSet") == ""


def test_data_dir_is_the_state_directory(service: dict[str, list[str]]) -> None:
    """BRIDGE_DATA_DIR is /var/lib/<StateDirectory>, the only writable place (ProtectSystem=strict)."""
    state = one(service, "StateDirectory")
    env = environment(service)
    assert env["BRIDGE_DATA_DIR"] == f"/var/lib/{state}"
    assert settings_from_env(env).data_dir == Path(f"/var/lib/{state}")
    assert one(service, "ProtectSystem") == "strict"
    assert one(service, "ProtectHome") == "yes"
    assert "ReadWritePaths" not in service


def test_secrets_come_from_a_required_environment_file(service: dict[str, list[str]]) -> None:
    """EnvironmentFile is required (no '-'), and the unit itself holds no token or key."""
    path = one(service, "EnvironmentFile")
    assert path.startswith("/etc/")
    assert set(environment(service)) <= {"BRIDGE_DATA_DIR", "LOG_FORMAT"}


def test_restarts_on_failure_but_not_on_an_invalid_config(service: dict[str, list[str]]) -> None:
    """Restart=on-failure; exit 2 (invalid config or usage) is not retried; SIGTERM stops it."""
    assert one(service, "Restart") == "on-failure"
    assert one(service, "RestartPreventExitStatus").split() == [str(EXIT_USAGE)]
    assert one(service, "KillSignal") == "SIGTERM"
    assert float(one(service, "TimeoutStopSec")) >= 30  # the compose file's stop_grace_period


def test_installed_for_multi_user_after_the_network() -> None:
    """It starts at boot after the network is up."""
    sections = unit_sections(UNIT.read_text(encoding="utf-8"))
    assert sections["Install"]["WantedBy"] == ["multi-user.target"]
    assert "network-online.target" in sections["Unit"]["After"][0].split()
    assert "network-online.target" in sections["Unit"]["Wants"][0].split()


def test_environment_file_example_is_valid_for_the_bridge() -> None:
    """The example file names bridge variables only, leaves the secrets empty, and parses."""
    values: dict[str, str] = {}
    for line in ENV_FILE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, line
            values[key] = value
    assert "BRIDGE_DATA_DIR" not in values  # the unit sets it to the state directory
    assert values["BRIDGE_API_TOKEN"] == values["MQTT_PASSWORD"] == values["ODOO_API_KEY"] == ""
    values["BRIDGE_API_TOKEN"] = "a-long-random-token"
    settings = settings_from_env(values)
    assert settings.api_token == "a-long-random-token"
    assert settings.bridge_port == 8080
