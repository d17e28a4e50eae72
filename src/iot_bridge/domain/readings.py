"""What a parser extracts from one device message."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reading:
    """One device message, reduced to what sessions need.

    ``power_w`` is ``None`` when the message carries no power value: it is
    then a sign of life that keeps the last known power. ``energy_wh`` is the
    device's cumulative import energy counter in Wh, or ``None``; for a
    multi-channel device, the sum over its channels with each channel's
    resets bridged (it never goes backwards). ``negative_power`` says that the
    message carried a negative power (export, or a clamp the wrong way round),
    read as 0 W: the service counts such messages.
    """

    power_w: float | None
    energy_wh: float | None = None
    negative_power: bool = False
