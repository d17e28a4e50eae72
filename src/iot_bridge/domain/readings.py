"""What a parser extracts from one device message."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reading:
    """One device message, reduced to what sessions need.

    ``power_w`` is ``None`` when the message carries no power value: it is
    then a sign of life that keeps the last known power. ``energy_wh`` is the
    device's cumulative energy counter converted to Wh, or ``None``.
    """

    power_w: float | None
    energy_wh: float | None = None
