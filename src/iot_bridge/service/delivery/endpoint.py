"""The Odoo endpoint's health as delivery sees it: up, or down and probed one event at a time.

A failure of Odoo as a whole (``DeliveryError.endpoint``) marks it down
(``odoo_unavailable``, logged once) and schedules the first probe on the
retry policy's delay; the first answer that is not an endpoint failure marks
it up again (``odoo_available``, once). The events that failed only because
of the outage are remembered here, so they can be made due at once when it
ends.
"""

from __future__ import annotations

from dataclasses import dataclass

from iot_bridge.errors import DeliveryError
from iot_bridge.logs import get_logger
from iot_bridge.service.delivery.retry import RetryPolicy

log = get_logger(__name__)


@dataclass(slots=True)
class EndpointHealth:
    """The Odoo endpoint's state as delivery sees it (``/health``, ``/metrics``)."""

    up: bool = True
    changed_at: float | None = None  # unix time of the last change; None: never changed
    last_error: str | None = None
    failed_probes: int = 0  # in the current outage
    probe_due: float | None = None  # while down: when the next probe goes out


class Endpoint:
    """The endpoint's up/down state, its probe schedule, and what its outage held back."""

    def __init__(self, retry: RetryPolicy) -> None:
        self._retry = retry
        self.health = EndpointHealth()
        self._outage_failures: set[int] = set()  # seqs that failed only because Odoo was down

    @property
    def up(self) -> bool:
        """True while Odoo answers (or nothing says otherwise yet)."""
        return self.health.up

    def went_down(self, now: float, err: DeliveryError) -> None:
        """Odoo failed as a whole: down, first probe after the retry policy's first delay."""
        delay = self._retry.delay_for(err, 1)
        self.health = EndpointHealth(
            up=False, changed_at=now, last_error=str(err), failed_probes=0, probe_due=now + delay
        )
        log.warning("odoo_unavailable", error=str(err), probe_in_s=round(delay, 3))

    def came_back(self, now: float) -> None:
        """Odoo answered again: up."""
        health = self.health
        down_s = now - health.changed_at if health.changed_at is not None else None
        self.health = EndpointHealth(up=True, changed_at=now)
        log.info(
            "odoo_available",
            down_s=None if down_s is None else round(down_s, 3),
            failed_probes=health.failed_probes,
        )

    def reset(self, now: float) -> None:
        """A new endpoint (a config push) starts up, with no outage behind it."""
        self.health = EndpointHealth(changed_at=now)
        self._outage_failures.clear()

    def probe_failed(self, now: float, err: DeliveryError) -> float:
        """A probe failed: the seconds until the next one (also recorded in the health)."""
        health = self.health
        health.failed_probes += 1
        delay = self._retry.delay_for(err, health.failed_probes + 1)
        health.probe_due = now + delay
        health.last_error = str(err)
        return delay

    def held_by_outage(self, seq: int) -> None:
        """Event ``seq`` failed only because Odoo was down."""
        self._outage_failures.add(seq)

    def take_outage_failures(self) -> set[int]:
        """The events the outage held back, handed over (and forgotten here)."""
        failures, self._outage_failures = self._outage_failures, set()
        return failures
