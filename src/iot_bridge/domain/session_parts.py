"""The named parts of a session detector's state, each with its own snapshot.

``SessionDetector`` (``session.py``) holds one of each and decides when they
move; the parts only keep their figures consistent:

- ``SessionTotals``: the time, power integral, peak and energy of a session,
  with the checkpoint taken at the first low reading of a stop debounce (rolled
  back if the session stops, dropped if the power comes back);
- ``HeartbeatSchedule``: when the next ``session_heartbeat`` is due, and the
  figures of the last one (each heartbeat reports its interval);
- ``Debounce``: the start or stop debounce in progress;
- ``DevicePresence``: whether the device is heard (``device_online`` /
  ``device_offline``), when it was last, and when its silence becomes a timeout.

Pure like the detector: no I/O, no clock. Each part writes its own fields
(``snapshot()``, a ``TypedDict`` of ``session_snapshot.py``) and reads them
back strictly (``restore``: ``ValueError`` naming a bad field); the detector
puts the parts' fields together into its snapshot.
"""

from __future__ import annotations

import enum
import math
from typing import NamedTuple

from iot_bridge.domain.events import (
    DevicePresenceData,
    EndReason,
    SessionEndedData,
    SessionHeartbeatData,
    iso_utc,
)
from iot_bridge.domain.session_snapshot import (
    DebounceSnapshot,
    HeartbeatSnapshot,
    PresenceSnapshot,
    SnapshotReader,
    StopDebounceSnapshot,
    TotalsCheckpointSnapshot,
    TotalsSnapshot,
)

__all__ = [
    "Debounce",
    "DetectorState",
    "DevicePresence",
    "HeartbeatSchedule",
    "SessionTotals",
    "TotalsCheckpoint",
    "rounded_or_none",
    "rounded_split",
]

_INF = math.inf


class DetectorState(enum.StrEnum):
    """The detector's states (``GET /devices`` shows their values)."""

    IDLE = "idle"
    STARTING = "starting"
    STANDBY = "standby"
    WORKING = "working"
    STOPPING = "stopping"


def _due(reader: SnapshotReader, key: str) -> float:
    due = reader.optional_number(key)
    return _INF if due is None else due


def rounded_or_none(value: float | None) -> float | None:
    """``value`` to 3 decimals, or None."""
    return None if value is None else round(value, 3)


def rounded_split(part: float, whole: float) -> tuple[float, float, float]:
    """``(part, whole - part, whole)`` to 3 decimals, as people read them (``2.344``).

    ``part`` is capped at ``whole``; the rest is computed from the rounded
    figures, so the three agree to the millisecond.
    """
    whole = round(whole, 3)
    part = min(round(part, 3), whole)
    return part, round(whole - part, 3), whole


# ------------------------------------------------------------------ totals


class TotalsCheckpoint(NamedTuple):
    """A session's totals as they were at the first low reading of a stop debounce.

    A named tuple: taken at every dip, it must cost no more than a plain tuple.
    """

    working_s: float
    power_integral_ws: float
    peak_power_w: float
    energy_wh: float | None

    def snapshot(self) -> TotalsCheckpointSnapshot:
        """As plain JSON-ready data."""
        return {
            "working_s": self.working_s,
            "power_integral_ws": self.power_integral_ws,
            "peak_power_w": self.peak_power_w,
            "energy_wh": self.energy_wh,
        }

    @classmethod
    def restore(cls, reader: SnapshotReader) -> TotalsCheckpoint:
        """Read ``snapshot()`` data back; ValueError names a bad field."""
        return cls(
            working_s=reader.number("working_s"),
            power_integral_ws=reader.number("power_integral_ws"),
            peak_power_w=reader.number("peak_power_w"),
            energy_wh=reader.optional_number("energy_wh"),
        )


class SessionTotals:
    """Time, power and energy of the session (or start) in progress.

    Power is held between readings: the open *segment* runs from the last
    reading (``segment_started_at``) at its power, counted as working time when
    ``segment_working``. ``energy_wh`` is None until a counter value arrives.
    """

    __slots__ = (
        "checkpoint",
        "energy_wh",
        "peak_power_w",
        "power_integral_ws",
        "segment_started_at",
        "segment_working",
        "working_s",
    )

    segment_started_at: float
    segment_working: bool
    working_s: float
    power_integral_ws: float
    peak_power_w: float
    energy_wh: float | None
    checkpoint: TotalsCheckpoint | None

    def __init__(self) -> None:
        """Empty totals (no session)."""
        self.reset()

    def reset(self) -> None:
        """Back to empty (no session)."""
        self.segment_started_at = 0.0
        self.segment_working = False
        self.working_s = 0.0
        self.power_integral_ws = 0.0
        self.peak_power_w = 0.0
        self.energy_wh = None
        self.checkpoint = None

    def begin(self, at: float, power_w: float, working: bool, has_energy: bool) -> None:
        """Start counting at the first reading (``at``, ``power_w``)."""
        self.segment_started_at = at
        self.segment_working = working
        self.working_s = 0.0
        self.power_integral_ws = 0.0
        self.peak_power_w = power_w
        # The counter at the first reading is the baseline; without one, the last known.
        self.energy_wh = 0.0 if has_energy else None

    def close_segment(self, at: float, power_w: float) -> None:
        """Count the open segment, held at ``power_w``, up to ``at``."""
        elapsed = at - self.segment_started_at
        self.power_integral_ws += power_w * elapsed
        if self.segment_working:
            self.working_s += elapsed

    def take_checkpoint(self) -> None:
        """Remember the totals (the first low reading of a stop debounce)."""
        self.checkpoint = TotalsCheckpoint(
            self.working_s, self.power_integral_ws, self.peak_power_w, self.energy_wh
        )

    def rollback(self) -> None:
        """Back to the checkpoint: the readings of a dip that ends in a stop do not count."""
        saved = self.checkpoint
        assert saved is not None
        self.working_s = saved.working_s
        self.power_integral_ws = saved.power_integral_ws
        self.peak_power_w = saved.peak_power_w
        self.energy_wh = saved.energy_wh

    def ended_data(self, started_at: float, ended_at: float, reason: EndReason) -> SessionEndedData:
        """The ``data`` of the session's final event (totals closed at ``ended_at``)."""
        duration = ended_at - started_at
        working_s, standby_s, duration_s = rounded_split(self.working_s, duration)
        peak = self.peak_power_w
        average = self.power_integral_ws / duration if duration > 0 else peak
        return {
            "started_at": iso_utc(started_at),
            "ended_at": iso_utc(ended_at),
            "duration_s": duration_s,
            "working_s": working_s,
            "standby_s": standby_s,
            # Rounding must not lift an average above the peak it averages.
            "avg_power_w": min(round(average, 3), peak),
            "peak_power_w": float(peak),
            "energy_wh": rounded_or_none(self.energy_wh),
            "reason": reason,
        }

    def snapshot(self) -> TotalsSnapshot:
        """As plain JSON-ready data (the checkpoint has its own)."""
        return {
            "segment_started_at": self.segment_started_at,
            "segment_working": self.segment_working,
            "working_s": self.working_s,
            "power_integral_ws": self.power_integral_ws,
            "peak_power_w": self.peak_power_w,
            "energy_wh": self.energy_wh,
        }

    @classmethod
    def restore(cls, reader: SnapshotReader, checkpoint: SnapshotReader | None) -> SessionTotals:
        """Read ``snapshot()`` data (and the checkpoint's) back; ValueError names a bad field."""
        totals = cls()
        totals.segment_started_at = reader.number("segment_started_at")
        totals.segment_working = reader.boolean("segment_working")
        totals.working_s = reader.number("working_s")
        totals.power_integral_ws = reader.number("power_integral_ws")
        totals.peak_power_w = reader.number("peak_power_w")
        totals.energy_wh = reader.optional_number("energy_wh")
        totals.checkpoint = None if checkpoint is None else TotalsCheckpoint.restore(checkpoint)
        return totals


# ------------------------------------------------------------------ heartbeats


class HeartbeatSchedule:
    """Heartbeats at ``base + number * interval_s``; a non-positive interval: none.

    ``last_*`` are the figures at the last heartbeat (or the session's start),
    from which the next one reports its interval.
    """

    __slots__ = (
        "base",
        "due",
        "interval_s",
        "last_at",
        "last_power_integral_ws",
        "last_working_s",
        "number",
    )

    interval_s: float
    due: float
    base: float
    number: int
    last_at: float
    last_working_s: float
    last_power_integral_ws: float

    def __init__(self, interval_s: float) -> None:
        """No heartbeat due (no session), every ``interval_s`` once one runs."""
        self.interval_s = interval_s
        self.reset()

    def reset(self) -> None:
        """No heartbeat due (the session ended); the interval stays."""
        self.due = _INF
        self.base = 0.0
        self.number = 0
        self.last_at = 0.0
        self.last_working_s = 0.0
        self.last_power_integral_ws = 0.0

    def start(self, started_at: float, confirmed_at: float) -> None:
        """The session started at ``started_at``: the first heartbeat after ``confirmed_at``."""
        self.base = started_at
        self.last_at = started_at
        self.last_working_s = 0.0
        self.last_power_integral_ws = 0.0
        if self.interval_s > 0:
            self.number = self.first_after(confirmed_at)
            self.due = started_at + self.number * self.interval_s

    def first_after(self, after: float) -> int:
        """The smallest k >= 1 with ``base + k * interval_s > after``."""
        base = self.base
        interval = self.interval_s
        k = max(int((after - base) // interval) + 1, 1)
        while k > 1 and base + (k - 1) * interval > after:
            k -= 1
        while base + k * interval <= after:
            k += 1
        return k

    def skip_missed(self, now: float) -> None:
        """Heartbeats due before ``now`` (a downtime) are skipped: the next one covers them."""
        if self.due < now:
            self.number = self.first_after(now)
            self.due = self.base + self.number * self.interval_s

    def set_interval(self, interval_s: float, running: bool, started_at: float, now: float) -> None:
        """A new interval: the next heartbeat keeps its time, later ones follow the new one."""
        if interval_s == self.interval_s:
            return
        self.interval_s = interval_s
        if not running:
            return
        if interval_s <= 0:
            self.due = _INF
        elif self.due != _INF:
            self.base = self.due
            self.number = 0
        else:  # heartbeats were disabled: resume the schedule from started_at
            self.base = started_at
            self.number = self.first_after(max(now, self.last_at))
            self.due = self.base + self.number * interval_s

    def fire(
        self, state: DetectorState, power_w: float, totals: SessionTotals, started_at: float
    ) -> SessionHeartbeatData:
        """The heartbeat due now: its ``data``, and the schedule moved to the next one."""
        at = self.due
        elapsed = at - totals.segment_started_at
        working = totals.working_s + elapsed if totals.segment_working else totals.working_s
        integral = totals.power_integral_ws + power_w * elapsed
        duration = at - started_at
        interval = at - self.last_at
        interval_working = min(max(working - self.last_working_s, 0.0), interval)
        interval_avg = (
            (integral - self.last_power_integral_ws) / interval if interval > 0 else power_w
        )
        interval_working_s, interval_standby_s, interval_s = rounded_split(
            interval_working, interval
        )
        session_working_s, session_standby_s, session_s = rounded_split(
            min(working, duration), duration
        )
        data: SessionHeartbeatData = {
            "state": state.value,
            "power_w": float(power_w),
            "interval_s": interval_s,
            # Rounding must not lift an average above the peak it averages.
            "interval_avg_power_w": min(round(interval_avg, 3), totals.peak_power_w),
            "interval_working_s": interval_working_s,
            "interval_standby_s": interval_standby_s,
            "session_duration_s": session_s,
            "session_working_s": session_working_s,
            "session_standby_s": session_standby_s,
            "session_energy_wh": rounded_or_none(totals.energy_wh),
        }
        self.last_at = at
        self.last_working_s = working
        self.last_power_integral_ws = integral
        self.number += 1
        self.due = self.base + self.number * self.interval_s
        return data

    def snapshot(self) -> HeartbeatSnapshot:
        """As plain JSON-ready data (the interval is the device's, stored with it)."""
        return {
            "heartbeat_due": None if self.due == _INF else self.due,
            "heartbeat_base": self.base,
            "heartbeat_number": self.number,
            "last_heartbeat_at": self.last_at,
            "last_heartbeat_working_s": self.last_working_s,
            "last_heartbeat_power_integral_ws": self.last_power_integral_ws,
        }

    def restore_from(self, reader: SnapshotReader) -> None:
        """Take ``snapshot()`` data back (the interval stays); ValueError names a bad field."""
        self.due = _due(reader, "heartbeat_due")
        self.base = reader.number("heartbeat_base")
        self.number = reader.integer("heartbeat_number")
        reader.check(self.number >= 0, "heartbeat_number must be >= 0")
        self.last_at = reader.number("last_heartbeat_at")
        self.last_working_s = reader.number("last_heartbeat_working_s")
        self.last_power_integral_ws = reader.number("last_heartbeat_power_integral_ws")


# ------------------------------------------------------------------ debounce


class Debounce:
    """The start or stop debounce in progress: when it ends (``due``), and for a stop,
    the first low reading and the state the session was in before it."""

    __slots__ = ("due", "first_low_at", "state_before_stop")

    due: float
    first_low_at: float
    state_before_stop: DetectorState

    def __init__(self) -> None:
        """No debounce."""
        self.reset()

    def reset(self) -> None:
        """No debounce."""
        self.due = _INF
        self.first_low_at = 0.0
        self.state_before_stop = DetectorState.IDLE

    def begin_stop(self, at: float, previous: DetectorState, stop_debounce_s: float) -> None:
        """The power fell below the standby threshold at ``at`` while in ``previous``."""
        self.state_before_stop = previous
        self.first_low_at = at
        self.due = at + stop_debounce_s

    def snapshot(self) -> DebounceSnapshot:
        """When the debounce ends, as plain JSON-ready data."""
        return {"debounce_due": None if self.due == _INF else self.due}

    def stop_snapshot(self) -> StopDebounceSnapshot:
        """The stop debounce's own figures (while stopping)."""
        return {
            "first_low_at": self.first_low_at,
            "state_before_stop": self.state_before_stop._value_,
        }

    @classmethod
    def restore(cls, reader: SnapshotReader, stopping: SnapshotReader | None) -> Debounce:
        """Read ``snapshot()`` (and ``stop_snapshot()``) data back; ValueError names a bad field."""
        debounce = cls()
        debounce.due = _due(reader, "debounce_due")
        if stopping is not None:
            debounce.first_low_at = stopping.number("first_low_at")
            debounce.state_before_stop = stopping.choice("state_before_stop", DetectorState)
        return debounce


# ------------------------------------------------------------------ presence


class DevicePresence:
    """Whether the device is heard.

    ``online`` is what the events said (None before the first message and
    after a restart); ``announced_online`` that a ``device_online`` was sent and
    no ``device_offline`` since; ``silence_due`` when the device's silence
    becomes a timeout (+infinity: not watched).
    """

    __slots__ = ("announced_online", "last_seen", "online", "silence_due")

    online: bool | None
    announced_online: bool
    last_seen: float | None
    silence_due: float

    def __init__(self) -> None:
        """A device never heard."""
        self.online = None
        self.announced_online = False
        self.last_seen = None
        self.silence_due = _INF

    def come_online(self, now: float) -> DevicePresenceData:
        """The device is heard again: the ``data`` of its ``device_online``."""
        self.online = True
        self.announced_online = True
        return {"last_seen": iso_utc(now)}

    def go_offline(self) -> DevicePresenceData | None:
        """Silence or availability offline: ``device_offline``'s ``data``, None if none is owed."""
        self.silence_due = _INF
        if not self.announced_online:
            return None
        self.announced_online = False
        self.online = False
        last = self.last_seen
        return {"last_seen": iso_utc(last) if last is not None else None}

    def forget(self) -> None:
        """The device was removed: no timer, no ``device_offline`` owed, ``online`` unknown."""
        self.silence_due = _INF
        self.announced_online = False
        self.online = None

    def excuse_silence(self, now: float, message_timeout_s: float) -> None:
        """The bridge could not hear until ``now``: silence counts from ``max(last_seen, now)``."""
        last_seen = self.last_seen
        if self.silence_due != _INF and last_seen is not None:
            self.silence_due = max(self.silence_due, max(last_seen, now) + message_timeout_s)

    def resume_after_restart(self, now: float, message_timeout_s: float) -> None:
        """The bridge restarted: ``online`` unknown, silence from ``max(last_seen, now)``."""
        self.online = None
        last_seen = self.last_seen
        if self.silence_due != _INF and last_seen is not None:
            self.silence_due = max(last_seen, now) + message_timeout_s

    def snapshot(self) -> PresenceSnapshot:
        """As plain JSON-ready data."""
        return {
            "online": self.online,
            "announced_online": self.announced_online,
            "last_seen": self.last_seen,
            "silence_due": None if self.silence_due == _INF else self.silence_due,
        }

    @classmethod
    def restore(cls, reader: SnapshotReader) -> DevicePresence:
        """Read ``snapshot()`` data back; ValueError names a bad field or a contradiction."""
        presence = cls()
        presence.online = reader.optional_bool("online")
        presence.announced_online = announced = reader.boolean("announced_online")
        presence.last_seen = reader.optional_number("last_seen")
        presence.silence_due = _due(reader, "silence_due")
        reader.check(
            presence.online is None or presence.online == announced,
            "online and announced_online disagree",
        )
        reader.check(
            (presence.silence_due != _INF) == announced,
            "silence_due must be set exactly when the device is announced online",
        )
        reader.check(
            not announced or presence.last_seen is not None, "an announced device needs last_seen"
        )
        return presence
