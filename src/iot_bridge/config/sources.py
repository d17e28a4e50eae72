"""Where the active config comes from, and how it is kept (CONTRACT section 2).

Sources, highest first: the persisted ``<data-dir>/config-active.yaml``
(written by every accepted ``POST /config``), then ``--config FILE``, then
the environment alone (no devices). A persisted file that cannot be used is
moved aside and reported; an invalid ``--config`` file is the operator's own
mistake and stops the startup.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import orjson

from iot_bridge.config.env import EnvSettings, settings_from_env
from iot_bridge.config.files import load_config_file
from iot_bridge.config.model import (
    DEFAULT_MAX_CONNECTIONS,
    BridgeConfig,
    MqttSection,
    OdooSection,
)
from iot_bridge.errors import ConfigError, StoreError
from iot_bridge.fsutil import fsync_dir
from iot_bridge.logs import get_logger

__all__ = [
    "ACTIVE_CONFIG_NAME",
    "EnvSettings",
    "LoadedConfig",
    "StoreLimits",
    "effective_max_connections",
    "effective_mqtt",
    "effective_odoo",
    "effective_store",
    "load_active_config",
    "load_config_file",
    "persist_config",
    "settings_from_env",
    "summarize",
]

log = get_logger(__name__)

ACTIVE_CONFIG_NAME: Final = "config-active.yaml"
# Characters a YAML reader refuses raw or reads as line breaks; JSON escapes
# them as \uXXXX, which both JSON and YAML read back exactly. They can only
# occur inside strings, so the substitution keeps the JSON valid.
_YAML_UNSAFE: Final = re.compile("[\x7f-\x9f\u2028\u2029\ufeff]")


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """The config the bridge starts with and where it came from.

    ``source`` is ``"persisted"``, ``"file"`` or ``"env"``; ``moved_aside`` is
    where an unusable persisted file went; ``last_update`` is the persisted
    file's modification time (ISO-8601 UTC), ``None`` for other sources.
    """

    config: BridgeConfig
    source: str
    moved_aside: Path | None = None
    last_update: str | None = None


def _bad_name(persisted: Path, now: datetime) -> Path:
    stamp = (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(UTC)
    base = persisted.with_name(f"{persisted.name}.bad-{stamp.strftime('%Y%m%dT%H%M%SZ')}")
    candidate, counter = base, 0
    while candidate.exists() or candidate.is_symlink():
        counter += 1
        candidate = base.with_name(f"{base.name}-{counter}")
    return candidate


def _move_aside(persisted: Path, now: datetime, err: ConfigError) -> Path | None:
    issues = [str(issue) for issue in err.issues]
    try:
        target = _bad_name(persisted, now)
        persisted.rename(target)
        fsync_dir(persisted.parent)
    except OSError as move_err:
        log.error(
            "config_persisted_invalid",
            path=str(persisted),
            issues=issues,
            moved_to=None,
            move_error=move_err.strerror or str(move_err),
        )
        return None
    log.error("config_persisted_invalid", path=str(persisted), issues=issues, moved_to=str(target))
    return target


def _mtime_iso(path: Path) -> str | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat()
    except OSError:
        return None


def load_active_config(
    *, data_dir: Path, config_file: Path | None, env: EnvSettings, now: datetime | None = None
) -> LoadedConfig:
    """The highest-priority usable config: persisted, then ``config_file``, then ``env``.

    An unusable persisted file is renamed to
    ``config-active.yaml.bad-<YYYYmmddTHHMMSSZ>`` (``now``, UTC), logged as
    ``config_persisted_invalid`` with its issues, and the next source is used.
    Raises ``ConfigError`` when ``config_file`` is given and invalid.
    ``env`` is not read here: env-only means no devices, and the broker and
    Odoo come from ``effective_mqtt``/``effective_odoo``.
    """
    persisted = data_dir / ACTIVE_CONFIG_NAME
    moved_aside: Path | None = None
    if persisted.exists() or persisted.is_symlink():
        try:
            config = load_config_file(persisted)
        except ConfigError as err:
            moved_aside = _move_aside(persisted, now or datetime.now(UTC), err)
        else:
            log.info("config_loaded", source="persisted", path=str(persisted))
            return LoadedConfig(config, "persisted", None, _mtime_iso(persisted))
    if config_file is not None:
        config = load_config_file(config_file)
        log.info("config_loaded", source="file", path=str(config_file))
        return LoadedConfig(config, "file", moved_aside, None)
    log.info("config_loaded", source="env", broker=f"{env.mqtt.broker}:{env.mqtt.port}")
    return LoadedConfig(BridgeConfig(), "env", moved_aside, None)


def persist_config(data_dir: Path, config: BridgeConfig) -> Path:
    """Write ``config`` to ``<data_dir>/config-active.yaml`` atomically, mode 0600.

    Temp file in the same directory, write, flush, fsync, chmod, rename over
    the old file, fsync the directory: a crash leaves the old or the new file,
    never a mix. Secrets are written in clear (the bridge needs them at the
    next start). The syntax is JSON, which is also YAML: any YAML tool reads
    it, and it loads in milliseconds where PyYAML takes seconds for
    thousands of devices. Raises ``StoreError`` when the directory cannot be written;
    the old file is then untouched and no temp file is left behind.
    """
    target = data_dir / ACTIVE_CONFIG_NAME
    # orjson: json.dumps with indent runs the pure-Python encoder, most of the time
    # of a 10,000-device push; the text is the same JSON (2-space indent, UTF-8).
    text = _YAML_UNSAFE.sub(
        lambda match: f"\\u{ord(match.group()):04x}",
        orjson.dumps(config.model_dump(mode="json"), option=orjson.OPT_INDENT_2).decode() + "\n",
    )
    temp_path: str | None = None
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd, temp_path = tempfile.mkstemp(
            prefix=f".{ACTIVE_CONFIG_NAME}.", suffix=".tmp", dir=data_dir
        )
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), 0o600)
        os.replace(temp_path, target)
        temp_path = None
        fsync_dir(data_dir)
    except OSError as err:
        raise StoreError(f"cannot persist the config to {target}: {err.strerror or err}") from err
    finally:
        if temp_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp_path)
    log.info("config_persisted", path=str(target), devices=len(config.devices))
    return target


def effective_mqtt(config: BridgeConfig, env: EnvSettings) -> MqttSection:
    """The broker to use: the document's ``mqtt`` section, else the environment's."""
    return config.mqtt if config.mqtt is not None else env.mqtt


def effective_odoo(config: BridgeConfig, env: EnvSettings) -> OdooSection | None:
    """Where events go: the document's ``odoo`` section, else the environment's, else nowhere."""
    return config.odoo if config.odoo is not None else env.odoo


DEFAULT_RETENTION_DAYS: Final = 30.0


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """How long delivered events are kept and how much disk the data dir may use."""

    retention_days: float = DEFAULT_RETENTION_DAYS
    disk_budget_mb: int | None = None

    @property
    def retention_s(self) -> float:
        """The retention in seconds."""
        return self.retention_days * 86400.0

    @property
    def budget_bytes(self) -> int | None:
        """The disk budget in bytes (MB are 1024 * 1024 bytes), or None."""
        return None if self.disk_budget_mb is None else self.disk_budget_mb * 1024 * 1024


def effective_store(config: BridgeConfig, env: EnvSettings) -> StoreLimits:
    """The store's limits: each key of the document's ``store`` section when set there,
    else the environment's (``BRIDGE_RETENTION_DAYS``, ``BRIDGE_DISK_BUDGET_MB``),
    else the default (30 days, no budget)."""
    section = config.store
    retention = section.retention_days if section is not None else None
    budget = section.disk_budget_mb if section is not None else None
    if retention is None:
        retention = env.retention_days
    if budget is None:
        budget = env.disk_budget_mb
    return StoreLimits(
        retention_days=DEFAULT_RETENTION_DAYS if retention is None else retention,
        disk_budget_mb=budget,
    )


def effective_max_connections(config: BridgeConfig, env: EnvSettings) -> int:
    """The HTTP connection cap: the document's ``http.max_connections``, else
    ``BRIDGE_MAX_CONNECTIONS``, else ``DEFAULT_MAX_CONNECTIONS``."""
    if config.http is not None:
        return config.http.max_connections
    return env.max_connections if env.max_connections is not None else DEFAULT_MAX_CONNECTIONS


def summarize(config: BridgeConfig) -> str:
    """One line for ``iot-bridge config check``, without secrets.

    Like ``valid: 3 devices (2 shelly_pm, 1 tasmota), mqtt localhost:1883,
    odoo http://odoo:8069 db=odoo``.
    """
    count = len(config.devices)
    by_type = Counter(device.parser_type for device in config.devices)
    kinds = ", ".join(f"{n} {parser_type}" for parser_type, n in sorted(by_type.items()))
    devices = f"{count} device{'' if count == 1 else 's'}" + (f" ({kinds})" if kinds else "")
    if config.mqtt is None:
        mqtt = "mqtt from the environment"
    else:
        tls = " tls" if config.mqtt.use_tls else ""
        mqtt = f"mqtt {config.mqtt.broker}:{config.mqtt.port}{tls}"
    if config.odoo is None:
        odoo = "odoo from the environment (or events kept locally)"
    else:
        database = f" db={config.odoo.database}" if config.odoo.database else ""
        odoo = f"odoo {config.odoo.base_url}{database}"
    return f"valid: {devices}, {mqtt}, {odoo}"


@dataclass(frozen=True, slots=True)
class DataDirConfigRepository:
    """The config repository port on ``<data_dir>/config-active.yaml`` (see ``persist_config``)."""

    data_dir: Path

    def persist(self, config: BridgeConfig) -> None:
        """Write ``config`` atomically; raises ``StoreError`` when it cannot."""
        persist_config(self.data_dir, config)
