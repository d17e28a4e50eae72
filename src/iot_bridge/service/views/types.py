"""The types the read models share: one place, so no view imports another for a type.

The board, the MQTT state out and the machines' directory all speak of
``MachineStatus``; the directory that supplies it (``views/machines.py``) is
a ``MachineDirectory``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from iot_bridge.domain.session_config import SessionConfig


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
