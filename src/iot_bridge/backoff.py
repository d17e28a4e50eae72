"""Capped exponential backoff, the one the bridge uses everywhere.

``nominal_delay`` is the curve (initial, doubling, capped); ``Backoff`` draws
jittered reconnect delays from it for the MQTT client, and the delivery
worker's retry delays (``service/delivery/retry.backoff_delay``) come from it too.
"""

from __future__ import annotations

import random


def nominal_delay(attempt: int, *, initial_s: float, multiplier: float, cap_s: float) -> float:
    """``initial_s * multiplier ** attempt`` (attempt 0-based), never above ``cap_s``."""
    try:
        nominal = initial_s * multiplier ** min(max(attempt, 0), 1024)
    except OverflowError:  # a very long outage: the cap has long been reached
        return cap_s
    return min(nominal, cap_s)


class Backoff:
    """Delays before reconnect attempts: from 0.5 s, doubling, capped at 30 s, with jitter.

    The n-th delay (n = 0, 1, ...) is drawn uniformly from ``[nominal / 2, nominal]``
    where ``nominal = min(max_s, initial_s * multiplier**(n + 1))``: the first
    lies in [0.5 s, 1 s], so many bridges that lost the broker together do not
    reconnect in lockstep, and no delay leaves ``[initial_s, max_s]``.
    ``reset()`` starts over; the client calls it once a connection has stayed up
    for a while, not at every CONNACK (a link that drops right after connecting
    must still back off). No clock and no sleeping here: the caller sleeps.
    """

    def __init__(
        self,
        *,
        initial_s: float = 0.5,
        max_s: float = 30.0,
        multiplier: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < initial_s <= max_s:
            raise ValueError(f"backoff needs 0 < initial_s <= max_s, got {initial_s}, {max_s}")
        if multiplier < 1:
            raise ValueError(f"backoff multiplier must be >= 1, got {multiplier}")
        self.initial_s = initial_s
        self.max_s = max_s
        self.multiplier = multiplier
        self._rng = rng or random.Random()
        self._attempts = 0

    @property
    def attempts(self) -> int:
        """How many delays were handed out since the last reset."""
        return self._attempts

    def nominal_s(self, attempt: int) -> float:
        """The un-jittered delay for the given attempt number (0-based)."""
        return nominal_delay(
            attempt + 1, initial_s=self.initial_s, multiplier=self.multiplier, cap_s=self.max_s
        )

    def next_delay(self) -> float:
        """The delay before the next attempt, in seconds."""
        nominal = self.nominal_s(self._attempts)
        self._attempts += 1
        return min(self.max_s, max(self.initial_s, self._rng.uniform(nominal / 2, nominal)))

    def reset(self) -> None:
        """Start over from the first delay (after a connection that stayed up)."""
        self._attempts = 0
