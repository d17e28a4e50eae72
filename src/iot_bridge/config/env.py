"""Settings from environment variables (CONTRACT section 2 names exactly).

An empty variable (``MQTT_USERNAME=`` in a compose file) counts as unset.
Every invalid value is reported at once, named by its variable; secret
values never appear in an error or a ``repr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from iot_bridge.config._issues import issues_from_validation
from iot_bridge.config.model import (
    MAX_CONNECTIONS_RANGE,
    MAX_DISK_BUDGET_MB,
    MAX_RETENTION_DAYS,
    MIN_DISK_BUDGET_MB,
    MqttSection,
    OdooSection,
)
from iot_bridge.config.shard import Shard, parse_shard
from iot_bridge.errors import ConfigError, ConfigIssue

SOURCE: Final = "environment"
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS: Final = ("json", "text")

_MQTT_VARIABLES: Final = {
    "broker": "MQTT_BROKER",
    "port": "MQTT_PORT",
    "username": "MQTT_USERNAME",
    "password": "MQTT_PASSWORD",
    "client_id": "MQTT_CLIENT_ID",
    "use_tls": "MQTT_USE_TLS",
}
_ODOO_VARIABLES: Final = {
    "base_url": "ODOO_BASE_URL",
    "database": "ODOO_DATABASE",
    "username": "ODOO_USERNAME",
    "api_key": "ODOO_API_KEY",
}
_SECRETS: Final = frozenset({"MQTT_PASSWORD", "ODOO_API_KEY", "BRIDGE_API_TOKEN"})
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class EnvSettings:
    """Everything the process takes from its environment.

    ``mqtt`` and ``odoo`` are the fallbacks when the config document has no
    such section; ``odoo`` is ``None`` without ``ODOO_BASE_URL``. ``shard``
    (``BRIDGE_SHARD``) is this instance's share of the devices; ``None``: all.
    ``retention_days`` (``BRIDGE_RETENTION_DAYS``) and ``disk_budget_mb``
    (``BRIDGE_DISK_BUDGET_MB``) are the store's limits when the config document's
    ``store`` section does not set them; ``None``: the defaults (30 days, no budget).
    ``max_connections`` (``BRIDGE_MAX_CONNECTIONS``) is the fallback for the
    document's ``http.max_connections``; ``None``: the default.
    """

    mqtt: MqttSection = field(default_factory=MqttSection)
    odoo: OdooSection | None = None
    bridge_host: str = "0.0.0.0"
    bridge_port: int = 8080
    api_token: str | None = None
    data_dir: Path = Path("./data")
    log_level: str = "INFO"
    log_format: str = "json"
    log_file: str | None = None
    shard: Shard | None = None
    retention_days: float | None = None
    disk_budget_mb: int | None = None
    max_connections: int | None = None

    def __repr__(self) -> str:
        token = "***" if self.api_token else None
        return (
            f"EnvSettings(mqtt={self.mqtt!r}, odoo={self.odoo!r}, bridge_host={self.bridge_host!r},"
            f" bridge_port={self.bridge_port!r}, api_token={token!r},"
            f" data_dir={self.data_dir!r}, log_level={self.log_level!r},"
            f" log_format={self.log_format!r}, log_file={self.log_file!r}, shard={self.shard!r},"
            f" retention_days={self.retention_days!r}, disk_budget_mb={self.disk_budget_mb!r},"
            f" max_connections={self.max_connections!r})"
        )


class _Reader:
    """Reads variables, collecting one issue per bad one."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.issues: list[ConfigIssue] = []

    def text(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or not value.strip():
            return None
        return value if name in _SECRETS else value.strip()

    def bad(self, name: str, message: str) -> None:
        value = self.env.get(name, "")
        got = "" if name in _SECRETS else f" (got {value.strip()[:80]!r})"
        self.issues.append(ConfigIssue(name, message + got))

    def integer(self, name: str, low: int, high: int) -> int | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            number = int(value)
        except ValueError:
            self.bad(name, "must be a whole number")
            return None
        if not low <= number <= high:
            self.bad(name, f"must be between {low} and {high}")
            return None
        return number

    def number(self, name: str, *, above: float, high: float) -> float | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            number = float(value)
        except ValueError:
            self.bad(name, "must be a number")
            return None
        if not above < number <= high:  # NaN fails too
            self.bad(name, f"must be more than {above:g} and at most {high:g}")
            return None
        return number

    def flag(self, name: str) -> bool | None:
        value = self.text(name)
        if value is None:
            return None
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        self.bad(name, "must be true or false (or 1/0, yes/no, on/off)")
        return None

    def choice(self, name: str, choices: tuple[str, ...], *, upper: bool) -> str | None:
        value = self.text(name)
        if value is None:
            return None
        value = value.upper() if upper else value.lower()
        value = "WARNING" if value == "WARN" else value
        if value not in choices:
            self.bad(name, f"must be one of {', '.join(choices)}")
            return None
        return value

    def shard(self, name: str) -> Shard | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            return parse_shard(value)
        except ValueError as err:
            self.bad(name, str(err))
            return None

    def section(
        self,
        model: type[MqttSection] | type[OdooSection],
        data: dict[str, Any],
        names: Mapping[str, str],
    ) -> Any:
        try:
            return model.model_validate(data)
        except ValidationError as err:
            for issue in issues_from_validation(err):
                name = names.get(issue.path, issue.path)
                message = issue.message
                if name in _SECRETS or name in ("MQTT_USERNAME", "ODOO_USERNAME"):
                    message = message.split(" (got ", 1)[0]
                self.issues.append(ConfigIssue(name, message))
            return None


def _present(values: Mapping[str, object | None]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def settings_from_env(env: Mapping[str, str]) -> EnvSettings:
    """Build ``EnvSettings`` from ``env`` (usually ``os.environ``).

    Raises ``ConfigError`` (source ``"environment"``) listing every invalid
    variable by name, such as ``MQTT_PORT: must be a whole number (got 'abc')``.
    """
    read = _Reader(env)
    mqtt_values = {
        "broker": read.text("MQTT_BROKER"),
        "port": read.integer("MQTT_PORT", 1, 65_535),
        "username": read.text("MQTT_USERNAME"),
        "password": read.text("MQTT_PASSWORD"),
        "client_id": read.text("MQTT_CLIENT_ID"),
        "use_tls": read.flag("MQTT_USE_TLS"),
    }
    mqtt = read.section(MqttSection, _present(mqtt_values), _MQTT_VARIABLES)
    odoo = None
    if read.text("ODOO_BASE_URL") is not None:
        odoo_values = {key: read.text(name) for key, name in _ODOO_VARIABLES.items()}
        odoo = read.section(OdooSection, _present(odoo_values), _ODOO_VARIABLES)
    bridge_port = read.integer("BRIDGE_PORT", 1, 65_535)
    log_level = read.choice("LOG_LEVEL", LOG_LEVELS, upper=True)
    log_format = read.choice("LOG_FORMAT", LOG_FORMATS, upper=False)
    shard = read.shard("BRIDGE_SHARD")
    retention_days = read.number("BRIDGE_RETENTION_DAYS", above=0.0, high=MAX_RETENTION_DAYS)
    disk_budget_mb = read.integer("BRIDGE_DISK_BUDGET_MB", MIN_DISK_BUDGET_MB, MAX_DISK_BUDGET_MB)
    max_connections = read.integer("BRIDGE_MAX_CONNECTIONS", *MAX_CONNECTIONS_RANGE)
    if read.issues:
        raise ConfigError(read.issues, SOURCE)
    return EnvSettings(
        mqtt=mqtt,
        odoo=odoo,
        bridge_host=read.text("BRIDGE_HOST") or "0.0.0.0",
        bridge_port=bridge_port or 8080,
        api_token=read.text("BRIDGE_API_TOKEN"),
        data_dir=Path(read.text("BRIDGE_DATA_DIR") or "./data"),
        log_level=log_level or "INFO",
        log_format=log_format or "json",
        log_file=read.text("LOG_FILE"),
        shard=shard,
        retention_days=retention_days,
        disk_budget_mb=disk_budget_mb,
        max_connections=max_connections,
    )
