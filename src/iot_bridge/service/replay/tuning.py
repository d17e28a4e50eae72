"""Try thresholds: replay a device's kept readings through the same detector code.

Two fresh ``SessionDetector``s (the class the pipeline runs), one with the
device's current settings and one with the proposed ones, read the same kept
readings at their own timestamps; their timers fire at their exact due times
between readings, and at ``now`` at the end. Nothing on the bridge changes:
the detectors are private copies and their events go nowhere.

Only what the board keeps is replayed: power readings (a sign of life carries
the held power), no energy counters and no availability messages, so energy is
not compared and the first reading starts from a device that was idle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from iot_bridge.domain.events import Event
from iot_bridge.domain.readings import Reading
from iot_bridge.domain.session import SessionDetector
from iot_bridge.domain.session_config import SessionConfig

TUNABLE = (
    "standby_threshold_w",
    "working_threshold_w",
    "start_debounce_s",
    "stop_debounce_s",
    "message_timeout_s",
)


def tunable_settings(config: SessionConfig) -> dict[str, float]:
    """The settings a user can try, by name (the heartbeat does not change sessions)."""
    return {name: getattr(config, name) for name in TUNABLE}


@dataclass(frozen=True, slots=True)
class ReplayedSession:
    """One session a replay produced; ``ended_at`` is None while it still runs at the end."""

    started_at: float
    ended_at: float | None
    duration_s: float
    working_s: float | None
    standby_s: float | None
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (times as unix seconds)."""
        return {
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_s": self.duration_s,
            "working_s": self.working_s,
            "standby_s": self.standby_s,
            "reason": self.reason,
        }


def _unix(iso: str) -> float:
    from datetime import datetime  # noqa: PLC0415 (only replays parse times back)

    return datetime.fromisoformat(iso).timestamp()


def replay_sessions(
    readings: Sequence[tuple[float, float]], config: SessionConfig, *, now: float
) -> list[ReplayedSession]:
    """The sessions ``config`` gives over ``readings`` (``(ts, power_w)``, oldest first)."""
    counter = iter(range(1, 1 << 62))
    detector = SessionDetector(
        device_id="tuning",
        machine_name="tuning",
        config=config,
        uid_factory=lambda: str(next(counter)),  # no uuid4 per event: nothing keeps them
    )
    events: list[Event] = []
    for ts, power_w in readings:
        events.extend(detector.on_reading(ts, Reading(power_w=power_w)))
    end = max(now, readings[-1][0]) if readings else now
    events.extend(detector.tick(end))
    sessions: list[ReplayedSession] = []
    for event in events:
        data = event.ended_data()
        if data is not None:
            sessions.append(
                ReplayedSession(
                    started_at=_unix(data["started_at"]),
                    ended_at=_unix(data["ended_at"]),
                    duration_s=data["duration_s"],
                    working_s=data["working_s"],
                    standby_s=data["standby_s"],
                    reason=data["reason"],
                )
            )
    started_at = detector.started_at
    if detector.session_id is not None and started_at is not None:
        sessions.append(
            ReplayedSession(
                started_at=started_at,
                ended_at=None,
                duration_s=end - started_at,
                working_s=None,
                standby_s=None,
                reason=None,
            )
        )
    return sessions


def compare(
    readings: Sequence[tuple[float, float]],
    current: SessionConfig,
    proposed: SessionConfig,
    *,
    now: float,
) -> dict[str, Any]:
    """Current and proposed sessions side by side, over the same readings."""
    sides = {}
    for name, config in (("current", current), ("proposed", proposed)):
        sessions = replay_sessions(readings, config, now=now)
        sides[name] = {
            "session_config": tunable_settings(config),
            "count": len(sessions),
            "sessions": [session.to_dict() for session in sessions],
        }
    return {
        "readings": len(readings),
        "from": readings[0][0] if readings else None,
        "to": readings[-1][0] if readings else None,
        **sides,
    }
