"""The retry policy: how long a failed event, or a down Odoo's next probe, waits.

Exponential backoff (1 s doubling, capped at 300 s) shortened by up to 20 %
at random, so events that failed together do not retry together; or the
``Retry-After`` Odoo asked for, never under a second. The random source is
passed in so tests can pin it.
"""

from __future__ import annotations

import random

from iot_bridge.backoff import nominal_delay
from iot_bridge.errors import DeliveryError

BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 300.0
BACKOFF_JITTER = 0.2  # a retry waits between 80 % and 100 % of its nominal backoff
MIN_RETRY_AFTER_S = 1.0  # a server saying "Retry-After: 0" forever must not spin us


def backoff_delay(failures: int, rng: random.Random) -> float:
    """Seconds before the next try after ``failures`` failed tries (>= 1).

    1, 2, 4, ... seconds, capped at 300, each shortened by up to 20 % at random
    so events that failed together do not retry together.
    """
    nominal = nominal_delay(
        max(failures, 1) - 1, initial_s=BACKOFF_BASE_S, multiplier=2.0, cap_s=BACKOFF_CAP_S
    )
    return nominal * (1.0 - BACKOFF_JITTER * rng.random())


class RetryPolicy:
    """The delay before the next try, from the failure and how many tries failed."""

    __slots__ = ("_rng",)

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def delay_for(self, err: DeliveryError, failures: int) -> float:
        """Odoo's ``Retry-After`` (at least ``MIN_RETRY_AFTER_S``), else the backoff."""
        if err.retry_after_s is not None:
            return max(err.retry_after_s, MIN_RETRY_AFTER_S)
        return backoff_delay(failures, self._rng)
