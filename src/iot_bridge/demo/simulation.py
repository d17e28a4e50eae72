"""A simulated Shelly PM Gen3 meter: scenarios of machine power over simulated time.

Pure: no I/O and no clock. ``iot-bridge simulate`` and ``iot-bridge demo``
drive a ``ShellyPmSimulation`` with the simulated time (seconds since the
start) and publish what it returns.

The device model follows a real Shelly Gen2+/Gen3 ``status/pm1:0`` stream:

- the meter samples power once per simulated second (``SAMPLE_PERIOD_S``);
- it reports when power changed by at least 5 % of the last reported value
  (and by at least ``REPORT_MIN_CHANGE_W``, so noise around 0 W is not a
  change), and at least every ``REPORT_PERIOD_S`` = 10 simulated seconds;
  a real device reports less often when idle, but a 10 s period keeps the
  bridge's default ``message_timeout_s`` of 20 s satisfied;
- ``aenergy.total`` (Wh) integrates the power, ``by_minute`` holds the mWh of
  the last three complete minutes, ``minute_ts`` is the start of the current
  minute, all in simulated time.

Power levels are those of the original simulator: idle 0 W, standby 25-45 W
(inside the seed's 20-100 W and below the default ``working_threshold_w`` of
50 W), working 155-365 W (above 100 W).
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass
from typing import Any, Final

SCENARIOS: Final[tuple[str, ...]] = (
    "full_session",
    "standby",
    "working",
    "online_test",
    "offline_test",
)
SAMPLE_PERIOD_S: Final = 1.0
REPORT_PERIOD_S: Final = 10.0
REPORT_CHANGE_RATIO: Final = 0.05
REPORT_MIN_CHANGE_W: Final = 0.5
DEFAULT_DURATION_S: Final = 60.0
DEFAULT_OFFLINE_DURATION_S: Final = 60.0
# offline_test: how long the device publishes before and after its silence.
OFFLINE_TEST_PUBLISHING_S: Final = 30.0
MAX_DURATION_S: Final = 365 * 86_400.0


class Level(enum.StrEnum):
    """What the simulated machine is doing; sets the power range."""

    IDLE = "idle"
    STANDBY = "standby"
    WORKING = "working"


@dataclass(frozen=True, slots=True)
class Phase:
    """One stretch of a scenario. ``publishing`` False: the device is silent (offline)."""

    level: Level
    duration_s: float
    publishing: bool = True


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named sequence of phases, repeated until ``total_s`` (``None``: forever)."""

    name: str
    phases: tuple[Phase, ...]
    total_s: float | None

    def __post_init__(self) -> None:
        if not self.phases or any(phase.duration_s <= 0 for phase in self.phases):
            raise ValueError("a scenario needs phases of positive duration")

    @property
    def cycle_s(self) -> float:
        """Length of one pass through the phases, in simulated seconds."""
        return sum(phase.duration_s for phase in self.phases)

    def phase_at(self, t_s: float) -> Phase:
        """The phase running at ``t_s`` simulated seconds after the start."""
        offset = t_s % self.cycle_s if t_s >= 0 else 0.0
        for phase in self.phases:
            if offset < phase.duration_s:
                return phase
            offset -= phase.duration_s
        return self.phases[-1]

    def finished(self, t_s: float) -> bool:
        """Whether the scenario is over at ``t_s``."""
        return self.total_s is not None and t_s >= self.total_s


def power_w(level: Level, t_s: float) -> float:
    """The machine's power at simulated time ``t_s``: smooth, deterministic wobble.

    Slow sinusoids keep successive samples a few percent apart, so a working
    machine reports every few seconds as a real one does, not every second.
    """
    if level is Level.IDLE:
        return 0.0
    if level is Level.STANDBY:
        value = 35.0 + 8.0 * math.sin(2 * math.pi * t_s / 45.0) + 2.0 * math.sin(t_s / 1.1)
    else:
        value = 260.0 + 80.0 * math.sin(2 * math.pi * t_s / 120.0) + 25.0 * math.sin(t_s / 2.7)
    return round(value, 1)


def voltage_v(t_s: float) -> float:
    """Mains voltage with a slow drift around 230 V."""
    return round(230.0 + 1.5 * math.sin(2 * math.pi * t_s / 300.0), 1)


def _checked_seconds(name: str, value: float, low: float) -> float:
    if not math.isfinite(value) or value < low or value > MAX_DURATION_S:
        raise ValueError(f"{name} must be a number of seconds from {low:g} to {MAX_DURATION_S:g}")
    return value


_FULL_SESSION: Final = (
    Phase(Level.IDLE, 10.0),
    Phase(Level.STANDBY, 30.0),
    Phase(Level.WORKING, 60.0),
    Phase(Level.STANDBY, 15.0),
    Phase(Level.IDLE, 40.0),
)


def build_scenario(
    name: str,
    *,
    duration_s: float | None = None,
    offline_duration_s: float = DEFAULT_OFFLINE_DURATION_S,
) -> Scenario:
    """The scenario ``name`` (one of ``SCENARIOS``), as the original simulator meant it.

    - ``full_session``: idle 10 s, standby 30 s, working 60 s, standby 15 s,
      idle 40 s (155 s, one complete session: IDLE -> STANDBY -> WORKING ->
      STOPPING -> idle); with ``duration_s`` the cycle repeats until then.
    - ``standby`` / ``working``: that level for ``duration_s`` (default 60 s).
    - ``online_test``: idle power, reported every 10 s for ``duration_s``: the
      device must stay online and no session starts.
    - ``offline_test``: working for 30 s, silent for ``offline_duration_s``,
      working for 30 s; with ``duration_s`` the silence sits in the middle and
      the two publishing halves share the rest.

    Raises ``ValueError`` with one sentence for an unknown name or a bad duration.
    """
    if duration_s is not None:
        duration_s = _checked_seconds("--duration", duration_s, 1.0)
    if name == "full_session":
        cycle = sum(phase.duration_s for phase in _FULL_SESSION)
        return Scenario(name, _FULL_SESSION, duration_s or cycle)
    if name in ("standby", "working", "online_test"):
        level = {"standby": Level.STANDBY, "working": Level.WORKING}.get(name, Level.IDLE)
        total = duration_s or DEFAULT_DURATION_S
        return Scenario(name, (Phase(level, total),), total)
    if name == "offline_test":
        offline = _checked_seconds("--offline-duration", offline_duration_s, 1.0)
        if duration_s is None:
            half = OFFLINE_TEST_PUBLISHING_S
        elif duration_s > offline + 2.0:
            half = (duration_s - offline) / 2
        else:
            raise ValueError(
                "--duration must be longer than --offline-duration plus 2 s for offline_test"
            )
        phases = (
            Phase(Level.WORKING, half),
            Phase(Level.WORKING, offline, publishing=False),
            Phase(Level.WORKING, half),
        )
        return Scenario(name, phases, 2 * half + offline)
    raise ValueError(f"unknown scenario {name!r}: choose one of {', '.join(SCENARIOS)}")


def looping(name: str, lead_idle_s: float = 0.0) -> Scenario:
    """An endless variant of ``full_session``, ``standby`` or ``working`` for the demo.

    Each cycle has an idle gap long enough for a session to stop, so sessions
    keep coming; ``lead_idle_s`` staggers machines that start together.
    """
    cycles = {
        "full_session": _FULL_SESSION,
        "working": (Phase(Level.IDLE, 15.0), Phase(Level.WORKING, 50.0), Phase(Level.IDLE, 35.0)),
        "standby": (
            Phase(Level.IDLE, 20.0),
            Phase(Level.WORKING, 15.0),
            Phase(Level.STANDBY, 70.0),
            Phase(Level.IDLE, 35.0),
        ),
    }
    if name not in cycles:
        raise ValueError(f"no looping variant of {name!r}: choose one of {', '.join(cycles)}")
    phases = cycles[name]
    if lead_idle_s > 0:
        first = phases[0]
        phases = (Phase(first.level, first.duration_s + lead_idle_s), *phases[1:])
    return Scenario(name, phases, None)


def pm1_status(
    *,
    apower_w: float,
    voltage: float,
    energy_wh: float,
    by_minute_mwh: tuple[float, float, float],
    minute_ts: int,
) -> dict[str, Any]:
    """A ``status/pm1:0`` object shaped like the PM Mini Gen3's (vendor doc example)."""
    current_a = round(apower_w / voltage, 3) if voltage > 0 else 0.0
    return {
        "id": 0,
        "voltage": voltage,
        "current": current_a,
        "apower": apower_w,
        "freq": 50.0,
        "aenergy": {
            "total": round(energy_wh, 3),
            "by_minute": [round(value, 3) for value in by_minute_mwh],
            "minute_ts": minute_ts,
        },
        "ret_aenergy": {"total": 0.0, "by_minute": [0.0, 0.0, 0.0], "minute_ts": minute_ts},
    }


def significant_change(previous_w: float, current_w: float) -> bool:
    """Shelly's report rule: a change of at least 5 % (and of ``REPORT_MIN_CHANGE_W``)."""
    change = abs(current_w - previous_w)
    return change >= REPORT_MIN_CHANGE_W and change >= REPORT_CHANGE_RATIO * abs(previous_w)


@dataclass(frozen=True, slots=True)
class Report:
    """One message the device sends: ``t_s`` simulated seconds after the start."""

    t_s: float
    level: Level
    power_w: float
    energy_wh: float
    payload: bytes


class ShellyPmSimulation:
    """The meter's state: energy counter, per-minute history and the last report.

    Call ``sample(t_s)`` with non-decreasing simulated times (typically once
    per ``SAMPLE_PERIOD_S``); it returns the ``Report`` to publish, or None.
    ``start_ts`` (unix seconds) anchors the payload's timestamps.
    """

    def __init__(self, scenario: Scenario, *, start_ts: float, energy_wh: float = 0.0) -> None:
        self.scenario = scenario
        self.start_ts = start_ts
        self.energy_wh = energy_wh
        self._t_s: float | None = None
        self._power_w = 0.0
        # Energy total at the start of each recent simulated minute (unix ts -> Wh).
        self._minute_marks: dict[int, float] = {}
        self._last_report_t_s: float | None = None
        self._last_report_w = 0.0

    def _integrate(self, t_s: float) -> None:
        """Advance the energy counter to ``t_s`` at the power held since the last sample."""
        if self._t_s is None:
            self._minute_marks[self._minute_of(t_s)] = self.energy_wh
            self._t_s = t_s
            return
        start = self._t_s
        watts = self._power_w
        boundary = self._minute_of(start) + 60
        while self.start_ts + t_s >= boundary:
            crossed = boundary - self.start_ts
            self._minute_marks[boundary] = self.energy_wh + watts * (crossed - start) / 3600.0
            boundary += 60
        self.energy_wh += watts * (t_s - start) / 3600.0
        self._t_s = t_s
        for old in sorted(self._minute_marks)[:-4]:
            del self._minute_marks[old]

    def _minute_of(self, t_s: float) -> int:
        return int((self.start_ts + t_s) // 60) * 60

    def _by_minute(self, minute_ts: int) -> tuple[float, float, float]:
        marks = self._minute_marks
        values = []
        for back in (1, 2, 3):
            end = marks.get(minute_ts - 60 * (back - 1))
            begin = marks.get(minute_ts - 60 * back)
            values.append(0.0 if end is None or begin is None else (end - begin) * 1000.0)
        return values[0], values[1], values[2]

    def sample(self, t_s: float) -> Report | None:
        """Measure at ``t_s``; return the report due then, if any."""
        if self._t_s is not None and t_s < self._t_s:
            raise ValueError("simulated time must not run backwards")
        self._integrate(t_s)
        phase = self.scenario.phase_at(t_s)
        self._power_w = power_w(phase.level, t_s)
        if not phase.publishing:
            return None
        due = (
            self._last_report_t_s is None
            or t_s - self._last_report_t_s >= REPORT_PERIOD_S
            or significant_change(self._last_report_w, self._power_w)
        )
        if not due:
            return None
        return self._report(t_s, phase.level)

    def _report(self, t_s: float, level: Level) -> Report:
        self._last_report_t_s = t_s
        self._last_report_w = self._power_w
        minute_ts = self._minute_of(t_s)
        status = pm1_status(
            apower_w=self._power_w,
            voltage=voltage_v(t_s),
            energy_wh=self.energy_wh,
            by_minute_mwh=self._by_minute(minute_ts),
            minute_ts=minute_ts,
        )
        return Report(
            t_s,
            level,
            self._power_w,
            self.energy_wh,
            json.dumps(status, separators=(",", ":")).encode(),
        )


def availability_topic(data_topic: str) -> str:
    """Where a Shelly Gen2+ announces itself: ``<prefix>/online``.

    ``<prefix>`` is what precedes the last ``/status/`` level of the data
    topic (``shellypmminig3-abc/status/pm1:0`` -> ``shellypmminig3-abc``);
    for another layout it is the data topic's parent (or the topic itself
    when it has one level).
    """
    levels = data_topic.split("/")
    if "status" in levels[1:]:
        index = len(levels) - 1 - levels[::-1].index("status")
        if index > 0:
            return "/".join(levels[:index]) + "/online"
    if len(levels) > 1:
        return "/".join(levels[:-1]) + "/online"
    return f"{data_topic}/online"
