"""The types the read models share: one place, so no view imports another for a type.

The board, the MQTT state out and the machines' directory all speak of
``MachineStatus``; the directory that supplies it (``views/machines.py``) is
a ``MachineDirectory``. The status queries (``views/status.py``) read the write
path through the narrow, read-only Protocols below, not its classes: the
pipeline, the broker link, the config use case, the housekeeping and
delivery's endpoint health satisfy them as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from iot_bridge.domain.session import SessionDetector
from iot_bridge.domain.session_config import SessionConfig
from iot_bridge.service.ports import MessageSource


@dataclass(frozen=True, slots=True)
class MachineStatus:
    """One configured device as views see it (``GET /devices`` plus what the board needs)."""

    device_id: str
    machine_name: str
    state: str
    online: bool | None
    last_seen: float | None
    power_w: float | None
    session_id: str | None
    session_started_at: float | None
    session_config: SessionConfig
    parser_type: str = ""
    energy_wh_total: float | None = None  # the detector's energy total, never down


class MachineDirectory(Protocol):
    """Where views read the configured devices and their live state."""

    def device_ids(self) -> Sequence[str]:
        """Configured devices, in config order."""
        ...

    def status(self, device_id: str) -> MachineStatus | None:
        """One device's live state; None when it is not configured."""
        ...


# -- what the status queries read of the write path --------------------------------------


class DeviceSpecView(Protocol):
    """A configured device's identity."""

    @property
    def machine_name(self) -> str: ...
    @property
    def mqtt_topic(self) -> str: ...
    @property
    def parser_type(self) -> str: ...


class DeviceTable(Protocol):
    """The configured devices and their detectors (the ingestor)."""

    @property
    def device_ids(self) -> Sequence[str]: ...
    def detector(self, device_id: str) -> SessionDetector | None: ...
    def spec(self, device_id: str) -> DeviceSpecView | None: ...


class DiskWait(Protocol):
    """A commit waiting for disk space."""

    @property
    def since(self) -> float: ...
    @property
    def error(self) -> str: ...
    @property
    def messages(self) -> int: ...
    @property
    def events(self) -> int: ...
    @property
    def attempts(self) -> int: ...


class PipelineState(Protocol):
    """The pipeline: its devices, a commit waiting for space, its clock."""

    @property
    def ingestor(self) -> DeviceTable: ...
    @property
    def disk_full(self) -> DiskWait | None: ...
    def now(self) -> float: ...


class LinkState(Protocol):
    """The broker link: the current source and its address."""

    @property
    def source(self) -> MessageSource: ...
    @property
    def broker_address(self) -> str: ...


class ConfigState(Protocol):
    """The active config as the status shows it."""

    @property
    def odoo_configured(self) -> bool: ...
    @property
    def shard(self) -> str | None: ...
    @property
    def last_config_update(self) -> str | None: ...


class DiskCheck(Protocol):
    """The last housekeeping pass's warning, if any."""

    @property
    def warning(self) -> str | None: ...


class HousekeepingState(Protocol):
    """The housekeeping's last report."""

    @property
    def report(self) -> DiskCheck: ...


class EndpointState(Protocol):
    """The Odoo endpoint's health as delivery sees it."""

    @property
    def up(self) -> bool: ...
    @property
    def changed_at(self) -> float | None: ...
    @property
    def last_error(self) -> str | None: ...
