"""A fake-clock driver for SessionDetector tests: times are offsets from T0."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from iot_bridge.domain.events import Event, EventType
from iot_bridge.domain.readings import Reading
from iot_bridge.domain.session import SessionDetector
from iot_bridge.domain.session_config import SessionConfig

T0 = 1_700_000_000.0

# The seed's defaults, spelled out so the tests read on their own.
CONFIG = SessionConfig(
    standby_threshold_w=5.0,
    working_threshold_w=50.0,
    start_debounce_s=3.0,
    stop_debounce_s=15.0,
    message_timeout_s=20.0,
    heartbeat_interval_s=300.0,
)

SESSION_END_KEYS = {
    "started_at",
    "ended_at",
    "duration_s",
    "working_s",
    "standby_s",
    "avg_power_w",
    "peak_power_w",
    "energy_wh",
    "reason",
}
HEARTBEAT_KEYS = {
    "state",
    "power_w",
    "interval_s",
    "interval_avg_power_w",
    "interval_working_s",
    "interval_standby_s",
    "session_duration_s",
    "session_working_s",
    "session_standby_s",
    "session_energy_wh",
}


def counting_uids() -> Callable[[], str]:
    """A uid factory giving uid-1, uid-2, ..."""
    counter = itertools.count(1)
    return lambda: f"uid-{next(counter)}"


def without_uid(events: list[Event]) -> list[tuple[Any, ...]]:
    """Events as comparable tuples, leaving out ``event_uid``."""
    return [
        (e.event_type, e.device_id, e.machine_name, e.session_id, e.timestamp, e.data)
        for e in events
    ]


class Sim:
    """Drives one detector; every call takes an offset (s) from T0 and records events."""

    def __init__(
        self,
        config: SessionConfig = CONFIG,
        *,
        device_id: str = "dev-1",
        machine_name: str = "Mill",
    ) -> None:
        self.detector = SessionDetector(
            device_id=device_id,
            machine_name=machine_name,
            config=config,
            uid_factory=counting_uids(),
        )
        self.events: list[Event] = []

    def _keep(self, events: list[Event]) -> list[Event]:
        self.events.extend(events)
        return events

    def read(self, offset: float, power: float | None, energy: float | None = None) -> list[Event]:
        """A device message at T0 + offset."""
        return self._keep(self.detector.on_reading(T0 + offset, Reading(power, energy)))

    def avail(self, offset: float, online: bool) -> list[Event]:
        """An availability message at T0 + offset."""
        return self._keep(self.detector.on_availability(T0 + offset, online))

    def tick(self, offset: float) -> list[Event]:
        """The timer task at T0 + offset."""
        return self._keep(self.detector.tick(T0 + offset))

    def remove(self, offset: float) -> list[Event]:
        """The device is removed at T0 + offset."""
        return self._keep(self.detector.remove(T0 + offset))

    def types(self) -> list[EventType]:
        """The types of every event so far."""
        return [e.event_type for e in self.events]

    def only(self, event_type: EventType) -> Event:
        """The single event of ``event_type`` (fails if not exactly one)."""
        found = [e for e in self.events if e.event_type == event_type]
        assert len(found) == 1, f"{len(found)} {event_type} events: {self.types()}"
        return found[0]

    def all_of(self, event_type: EventType) -> list[Event]:
        """Every event of ``event_type``."""
        return [e for e in self.events if e.event_type == event_type]

    def start_working(self, offset: float = 0.0, power: float = 100.0) -> None:
        """Cross the threshold at ``offset`` and let the start debounce run out."""
        self.read(offset, power)
        self.tick(offset + self.detector.config.start_debounce_s)
