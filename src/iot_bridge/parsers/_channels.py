"""Per-channel state of a multi-channel or three-phase device (CONTRACT section 4a).

A message often carries one channel (a Gen1 per-phase topic, ``status/em1:2``,
a ``NotifyStatus`` delta): it updates that channel only, and the device's
power is the sum of the latest power of every channel heard so far. A channel
missing from a message is unchanged, never 0.

Energy is the device's import energy: the sum, over its channels, of how far
each import counter advanced. A counter that goes backwards was restarted
from zero (a reboot), so its new value counts as use since the restart. The
sum is kept as one counter that never goes backwards (``import_wh``): it
starts as the sum of the channels' counters once every channel has reported
one, then grows by each channel's step. The session detector then measures a
session's energy on it like on any single counter.

The state lives with the parser (one per device) and is persisted with the
detector's snapshot (``snapshot``/``resume``), so a restart neither forgets a
channel's power nor counts a counter's lifetime as use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from iot_bridge.domain.readings import Reading

__all__ = ["ChannelState"]


class ChannelState:
    """The latest power and import counter of each channel of one device.

    ``layout`` names the channels (``("em1:0", "em1:1", "em1:2")``); a slot is
    an index into it. ``counter_layout`` names the counters when they are not
    one a channel (``energy_paths`` beside ``power_paths``). Parsers validate a
    whole message before calling ``update``, so a refused message changes nothing.
    """

    __slots__ = ("_counter_layout", "_counter_wh", "_import_wh", "_layout", "_power_w")

    def __init__(self, layout: Sequence[str], counter_layout: Sequence[str] | None = None) -> None:
        """No channel heard yet."""
        self._layout: tuple[str, ...] = ()
        self._counter_layout: tuple[str, ...] = ()
        self._power_w: list[float | None] = []
        self._counter_wh: list[float | None] = []
        self._import_wh: float | None = None
        self.relayout(layout, counter_layout)

    @property
    def layout(self) -> tuple[str, ...]:
        """The channels' names, in slot order."""
        return self._layout

    @property
    def counter_layout(self) -> tuple[str, ...]:
        """The counters' names, in slot order (the channels' unless set apart)."""
        return self._counter_layout

    @property
    def power_w(self) -> tuple[float | None, ...]:
        """The latest power of each channel (W), None for a channel not heard yet."""
        return tuple(self._power_w)

    @property
    def import_wh(self) -> float | None:
        """The device's import counter (Wh), None until every channel reported one."""
        return self._import_wh

    def update(
        self,
        powers: Sequence[tuple[int, float]],
        counters: Sequence[tuple[int, float]],
    ) -> Reading:
        """Apply one message's ``(slot, power in W)`` and ``(slot, counter in Wh)`` values.

        A negative power is a reading of 0 W of that channel (the reading is
        flagged). The reading's power is None when the message carried none,
        its energy None when it carried no counter or not every channel has
        reported one yet.
        """
        power_sum: float | None = None
        negative = False
        if powers:
            latest = self._power_w
            for slot, value in powers:
                if value < 0.0:
                    negative = True
                    value = 0.0  # noqa: PLW2901 (a negative power is 0 W)
                latest[slot] = value
            # fsum rounds once: 145.4 + 90.3 + 358.3 is 594.0, not 594.0000000000001.
            power_sum = math.fsum(value for value in latest if value is not None)
        energy_wh: float | None = None
        if counters:
            known = self._counter_wh
            total = self._import_wh
            for slot, value in counters:
                previous = known[slot]
                known[slot] = value
                if previous is not None and total is not None:
                    # A counter that went backwards restarted from zero: its value is the use since.
                    total += value - previous if value >= previous else value
            if total is None and None not in known:
                total = math.fsum(value for value in known if value is not None)
            self._import_wh = total
            energy_wh = total
        if power_sum is None and energy_wh is None:
            return _SIGN_OF_LIFE
        return Reading(power_sum, energy_wh, negative)

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready state (``resume`` takes it back)."""
        return {
            "layout": list(self._layout),
            "counter_layout": list(self._counter_layout),
            "power_w": list(self._power_w),
            "counter_wh": list(self._counter_wh),
            "import_wh": self._import_wh,
        }

    def resume(self, saved: Mapping[str, Any] | None, counter_wh: float | None) -> None:
        """Continue from ``snapshot()`` data, or after a change of channels.

        With saved data of the same layout, everything continues. Otherwise
        (no data, another layout, data that cannot be read) only the import
        counter continues, from the saved one or else from ``counter_wh`` (the
        detector's last counter): each channel's next counter is then a new
        baseline, so a change of channels never counts a lifetime as use.
        Raises nothing.
        """
        try:
            layouts, powers, counters, import_wh = _read(saved)
        except ValueError:
            layouts, powers, counters, import_wh = ((), ()), [], [], None
        if layouts == (self._layout, self._counter_layout):
            self._power_w, self._counter_wh, self._import_wh = powers, counters, import_wh
            return
        self._import_wh = import_wh if import_wh is not None else counter_wh
        self.relayout(self._layout, self._counter_layout)

    def relayout(self, layout: Sequence[str], counter_layout: Sequence[str] | None = None) -> None:
        """Take another set of channels: the import counter continues, the rest starts afresh."""
        self._layout = tuple(layout)
        self._counter_layout = self._layout if counter_layout is None else tuple(counter_layout)
        self._power_w = [None] * len(self._layout)
        self._counter_wh = [None] * len(self._counter_layout)


_SIGN_OF_LIFE = Reading(None, None)


_Layouts = tuple[tuple[str, ...], tuple[str, ...]]


def _read(
    saved: Mapping[str, Any] | None,
) -> tuple[_Layouts, list[float | None], list[float | None], float | None]:
    if not isinstance(saved, Mapping):
        raise ValueError("no channel state")
    layout = _names(saved.get("layout"))
    counter_layout = _names(saved.get("counter_layout"))
    powers = _numbers(saved.get("power_w"), len(layout))
    counters = _numbers(saved.get("counter_wh"), len(counter_layout))
    import_wh = _number(saved.get("import_wh"))
    return (layout, counter_layout), powers, counters, import_wh


def _names(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValueError("a list of channel names")
    return tuple(value)


def _numbers(values: object, count: int) -> list[float | None]:
    if not isinstance(values, list) or len(values) != count:
        raise ValueError("a list of one value a channel")
    return [_number(value) for value in values]


def _number(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("a finite number")
    if value < 0:
        raise ValueError("a number >= 0")
    return float(value)
