"""Per-device thresholds and timings of the session detector."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Thresholds (W) and timings (s) for one device; validated at config time."""

    standby_threshold_w: float = 5.0
    working_threshold_w: float = 50.0
    start_debounce_s: float = 3.0
    stop_debounce_s: float = 15.0
    message_timeout_s: float = 20.0
    heartbeat_interval_s: float = 300.0
