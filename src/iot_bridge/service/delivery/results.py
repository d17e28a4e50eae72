"""What one attempt's answer does: delivered, retried later, dead, or Odoo down.

- success -> recorded for the next mark (``marks.py``);
- a transient failure of this event alone -> ``mark_retry`` on the retry
  policy's delay; flagged after ``FLAG_AFTER_ATTEMPTS`` failures, retried forever;
- a permanent failure -> ``mark_dead`` at once; the device's later events go on;
- a failure of Odoo as a whole -> the endpoint goes down (``endpoint.py``) and
  what was read ahead is dropped; an event sent before that was noticed waits
  for the probe.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from iot_bridge.domain.events import EncodedEvent
from iot_bridge.errors import DeliveryError
from iot_bridge.logs import get_logger
from iot_bridge.service.delivery.endpoint import Endpoint
from iot_bridge.service.delivery.marks import DeliveredMarks
from iot_bridge.service.delivery.retry import RetryPolicy
from iot_bridge.service.delivery.work import Work
from iot_bridge.service.ports import (
    FLAG_AFTER_ATTEMPTS,
    Clock,
    DeliveryQueue,
    EventSender,
    OutboxItem,
)

log = get_logger(__name__)


async def attempt(sender: EventSender, item: OutboxItem) -> DeliveryError | None:
    """Send one event; the failure, or None on success."""
    try:
        await sender.send(EncodedEvent(item.event_uid, item.payload_json))
    except DeliveryError as err:
        return err
    except Exception as err:  # a sender bug must not stop delivery: retry it
        log.exception("delivery_unexpected_error", event_uid=item.event_uid)
        return DeliveryError(f"{type(err).__name__}: {err}", permanent=False)
    return None


class Results:
    """Records each attempt's outcome in the store, the endpoint's health and the metrics."""

    def __init__(
        self,
        *,
        store: DeliveryQueue,
        clock: Clock,
        endpoint: Endpoint,
        retry: RetryPolicy,
        marks: DeliveredMarks,
        work: Work,
        on_result: Callable[[str], None] | None,
    ) -> None:
        """``on_result`` is called with "ok", "transient" or "permanent" per attempt."""
        self._store = store
        self._clock = clock
        self._endpoint = endpoint
        self._retry = retry
        self._marks = marks
        self._work = work
        self._on_result = on_result

    def succeeded(self, item: OutboxItem) -> None:
        """Odoo accepted ``item``: marked delivered with the next flush."""
        self._marks.add(item.seq)
        self.report("ok")
        log.debug(
            "event_delivered",
            event_uid=item.event_uid,
            event_type=item.event_type,
            device_id=item.device_id,
            attempts=item.attempts + 1,
        )

    async def failed(self, item: OutboxItem, err: DeliveryError) -> None:
        """``item`` failed with ``err``: dead, retried later, or held by Odoo's outage."""
        now = self._clock.now()
        error = str(err)
        if err.permanent:
            await asyncio.to_thread(self._store.mark_dead, item.seq, now, error)
            self.report("permanent")
            log.warning(
                "event_dead",
                event_uid=item.event_uid,
                device_id=item.device_id,
                event_type=item.event_type,
                error=error,
            )
            return
        failures = item.attempts + 1
        self.report("transient")
        health = self._endpoint.health
        if err.endpoint and not health.up:
            # Sent before Odoo was found down: it failed only because of the outage.
            assert health.probe_due is not None
            self._endpoint.held_by_outage(item.seq)
            log.debug("odoo_send_failed", event_uid=item.event_uid, error=error)
            await asyncio.to_thread(self._store.mark_retry, item.seq, now, health.probe_due, error)
            return
        if err.endpoint:
            # Before any await: the other lanes see it at once.
            self._endpoint.went_down(now, err)
            self._work.forget()
        delay = self._retry.delay_for(err, failures)
        fields = {
            "event_uid": item.event_uid,
            "device_id": item.device_id,
            "attempts": failures,
            "retry_in_s": round(delay, 3),
            "error": error,
        }
        await asyncio.to_thread(self._store.mark_retry, item.seq, now, now + delay, error)
        if err.endpoint:
            pass  # odoo_unavailable said it
        elif failures == FLAG_AFTER_ATTEMPTS:
            log.error("event_flagged", **fields)
        else:
            log.warning("odoo_send_failed", **fields)

    def report(self, result: str) -> None:
        """Tell ``on_result``; its failure is logged, never raised."""
        if self._on_result is None:
            return
        try:
            self._on_result(result)
        except Exception:  # metrics must never break delivery
            log.exception("delivery_on_result_failed", result=result)
