"""The delivery worker: outbox -> Odoo, in order per device, several devices at once.

Each device has at most one event in flight: its oldest pending one. Up to
``max_in_flight`` devices are served concurrently, so one slow or failing
device never stalls the others. Results go back to the store:

- success -> marked delivered (a device's consecutive successes are marked in
  one transaction per chunk of ``LANE_CHUNK``);
- transient failure -> ``mark_retry`` with exponential backoff (1 s doubling,
  capped at 300 s, with jitter) or the ``Retry-After`` Odoo asked for; never
  dropped, flagged after 10 failures, retried forever;
- permanent failure -> ``mark_dead`` at once; the device's later events go on.

An event is marked delivered only after Odoo accepted it, so a crash in
between re-sends it with the same ``event_uid`` (at-least-once; Odoo dedupes).
Time comes from a ``Clock`` so tests drive backoff without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from typing import Any

from iot_bridge.backoff import nominal_delay
from iot_bridge.errors import DeliveryError, StoreError
from iot_bridge.logs import get_logger
from iot_bridge.service.ports import (
    FLAG_AFTER_ATTEMPTS,
    Clock,
    DeliveryQueue,
    EventSender,
    StoredEvent,
)

log = get_logger(__name__)

BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 300.0
BACKOFF_JITTER = 0.2  # a retry waits between 80 % and 100 % of its nominal backoff
MIN_RETRY_AFTER_S = 1.0  # a server saying "Retry-After: 0" forever must not spin us
STORE_ERROR_PAUSE_S = 1.0
LANE_CHUNK = 16  # events read, and then marked delivered, together (a crash re-sends <= this)
LANE_TURN = 64  # events one device sends before its slot goes back to the pool


def backoff_delay(failures: int, rng: random.Random) -> float:
    """Seconds before the next try after ``failures`` failed tries (>= 1).

    1, 2, 4, ... seconds, capped at 300, each shortened by up to 20 % at random
    so events that failed together do not retry together.
    """
    nominal = nominal_delay(
        max(failures, 1) - 1, initial_s=BACKOFF_BASE_S, multiplier=2.0, cap_s=BACKOFF_CAP_S
    )
    return nominal * (1.0 - BACKOFF_JITTER * rng.random())


class DeliveryWorker:
    """Delivers pending events from the store through a sender until ``close()``.

    The worker owns its senders: a sender replaced by ``set_sender`` is closed
    (its ``aclose()``, if it has one) once no delivery uses it any more, and the
    current one is closed by ``close()``.
    """

    def __init__(
        self,
        *,
        store: DeliveryQueue,
        sender: EventSender | None,
        clock: Clock,
        max_in_flight: int = 8,
        on_result: Callable[[str], None] | None = None,
        rng: random.Random | None = None,
        shutdown_grace_s: float = 5.0,
    ) -> None:
        """``on_result`` is called with "ok", "transient" or "permanent" per attempt."""
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self._store = store
        self._sender = sender
        self._clock = clock
        self._max_in_flight = max_in_flight
        self._on_result = on_result
        self._rng = rng or random.Random()
        self._shutdown_grace_s = shutdown_grace_s
        self._in_flight: dict[str, tuple[asyncio.Task[None], EventSender]] = {}
        self._retired: list[EventSender] = []
        self._wake_event = asyncio.Event()
        self._stopped = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False
        self._closing = False
        self._reschedule = False

    # -- control -------------------------------------------------------------------

    @property
    def local_only(self) -> bool:
        """True when no Odoo is configured: events stay pending in the store."""
        return self._sender is None

    @property
    def in_flight(self) -> int:
        """Deliveries currently under way."""
        return len(self._in_flight)

    def set_sender(self, sender: EventSender | None) -> None:
        """Switch Odoo (a config push); None = local-only mode.

        Pending events in backoff become due at once: the new settings may be
        the fix an operator was waiting for.
        """
        if sender is self._sender:
            return
        if self._sender is not None:
            self._retired.append(self._sender)
        self._sender = sender
        self._reschedule = sender is not None
        log.info("delivery_sender_changed", local_only=sender is None)
        self.wake()

    def wake(self) -> None:
        """New events were committed (or something else changed): look again.

        Safe to call from any thread.
        """
        loop = self._loop
        if loop is None:
            self._wake_event.set()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake_event.set()
        else:
            loop.call_soon_threadsafe(self._wake_event.set)

    async def run(self) -> None:
        """Deliver until ``close()``; store failures pause, never end, the loop."""
        if self._running:
            raise RuntimeError("DeliveryWorker.run() is already running")
        self._running = True
        self._loop = asyncio.get_running_loop()
        log.info("delivery_started", local_only=self._sender is None)
        try:
            while not self._closing:
                self._wake_event.clear()
                delay: float | None
                try:
                    await self._close_idle_retired()
                    delay = await self._dispatch()
                except StoreError as err:
                    log.error("delivery_store_error", error=str(err))
                    delay = STORE_ERROR_PAUSE_S
                await self._wait(delay)
        finally:
            await self._drain()
            await self._close_senders()
            self._stopped.set()
            log.info("delivery_stopped")

    async def close(self) -> None:
        """Stop: let deliveries in flight finish (bounded), close the senders."""
        self._closing = True
        self.wake()
        if self._running:
            await self._stopped.wait()
        else:
            await self._close_senders()

    # -- the loop ------------------------------------------------------------------

    async def _dispatch(self) -> float | None:
        """Start a lane for each due device; return how long to sleep (None = until woken)."""
        sender = self._sender
        if sender is None:
            return None
        now = self._clock.now()
        if self._reschedule:
            self._reschedule = False
            await asyncio.to_thread(self._store.retry_now, now)
        free = self._max_in_flight - len(self._in_flight)
        if free <= 0:
            return None
        due, later = await asyncio.to_thread(self._store.poll, now, free, tuple(self._in_flight))
        if sender is not self._sender:  # switched while polling: the next round uses the new one
            return 0.0
        for event in due:
            if self._closing or event.device_id in self._in_flight:
                continue
            task = asyncio.create_task(
                self._serve_device(sender, event), name=f"deliver:{event.device_id}"
            )
            self._in_flight[event.device_id] = (task, sender)
        if later is None or len(self._in_flight) >= self._max_in_flight:
            return None
        return max(0.0, later - self._clock.now())

    async def _wait(self, delay: float | None) -> None:
        if self._wake_event.is_set() or self._closing:
            return
        if delay is not None and delay <= 0:
            await asyncio.sleep(0)
            return
        waiters: set[asyncio.Task[Any]] = {asyncio.create_task(self._wake_event.wait())}
        if delay is not None:
            waiters.add(asyncio.create_task(self._clock.sleep(delay)))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    # -- one device's lane ---------------------------------------------------------

    async def _serve_device(self, sender: EventSender, head: StoredEvent) -> None:
        """Send one device's due events in order, starting at its oldest pending one.

        Successes are marked in one transaction per chunk (fetched together with
        the next chunk); a crash before that re-sends the chunk with the same
        event_uids. The lane ends at the first failure, when nothing more is
        due, after ``LANE_TURN`` events (so devices take turns), or when the
        sender changes or the worker closes.
        """
        delivered: list[int] = []
        queue = [head]
        served = 0
        try:
            while queue:
                if served and (self._closing or sender is not self._sender):
                    break
                event = queue.pop(0)
                try:
                    await sender.send(event.payload)
                except DeliveryError as err:
                    await self._flush(delivered)
                    await self._failed(event, err)
                    return
                except Exception as err:  # a sender bug must not stop delivery: retry it
                    log.exception("delivery_unexpected_error", event_uid=event.event_uid)
                    await self._flush(delivered)
                    await self._failed(
                        event, DeliveryError(f"{type(err).__name__}: {err}", permanent=False)
                    )
                    return
                delivered.append(event.seq)
                served += 1
                self._report("ok")
                log.info(
                    "event_delivered",
                    event_uid=event.event_uid,
                    event_type=event.event_type,
                    device_id=event.device_id,
                    attempts=event.attempts + 1,
                )
                if queue:
                    continue
                if served >= LANE_TURN:
                    break
                queue = await asyncio.to_thread(
                    self._complete_and_fetch, delivered, event.device_id, self._clock.now()
                )
                delivered = []
            await self._flush(delivered)
        except asyncio.CancelledError:
            # Shutdown ran out of grace: record what Odoo already accepted, right
            # here (briefly blocking), so the next start does not send it again.
            with contextlib.suppress(StoreError):
                self._store.mark_delivered_many(delivered, self._clock.now())
            raise
        except StoreError as err:
            # Unmarked events stay pending (at-least-once); hold the device a moment
            # so a broken disk does not turn into a storm of re-sends.
            log.error("delivery_store_error", error=str(err), device_id=head.device_id)
            await self._clock.sleep(STORE_ERROR_PAUSE_S)
        finally:
            self._in_flight.pop(head.device_id, None)
            self._wake_event.set()

    def _complete_and_fetch(
        self, delivered: list[int], device_id: str, now: float
    ) -> list[StoredEvent]:
        """In a thread: mark a chunk delivered, then read the device's next due chunk."""
        self._store.mark_delivered_many(delivered, now)
        return self._store.pending_for_device(device_id, now, LANE_CHUNK)

    async def _flush(self, delivered: list[int]) -> None:
        if delivered:
            await asyncio.to_thread(self._store.mark_delivered_many, delivered, self._clock.now())
            delivered.clear()

    async def _failed(self, event: StoredEvent, err: DeliveryError) -> None:
        now = self._clock.now()
        error = str(err)
        if err.permanent:
            await asyncio.to_thread(self._store.mark_dead, event.seq, now, error)
            self._report("permanent")
            log.warning(
                "event_dead",
                event_uid=event.event_uid,
                device_id=event.device_id,
                event_type=event.event_type,
                error=error,
            )
            return
        failures = event.attempts + 1
        if err.retry_after_s is not None:
            delay = max(err.retry_after_s, MIN_RETRY_AFTER_S)
        else:
            delay = backoff_delay(failures, self._rng)
        await asyncio.to_thread(self._store.mark_retry, event.seq, now, now + delay, error)
        self._report("transient")
        fields = {
            "event_uid": event.event_uid,
            "device_id": event.device_id,
            "attempts": failures,
            "retry_in_s": round(delay, 3),
            "error": error,
        }
        if failures == FLAG_AFTER_ATTEMPTS:
            log.error("event_flagged", **fields)
        else:
            log.warning("odoo_send_failed", **fields)

    def _report(self, result: str) -> None:
        if self._on_result is None:
            return
        try:
            self._on_result(result)
        except Exception:  # metrics must never break delivery
            log.exception("delivery_on_result_failed", result=result)

    # -- shutdown and sender lifetime ----------------------------------------------

    async def _drain(self) -> None:
        tasks = [task for task, _ in self._in_flight.values()]
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=self._shutdown_grace_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _close_idle_retired(self) -> None:
        if not self._retired:
            return
        busy = {id(sender) for _, sender in self._in_flight.values()}
        idle = [sender for sender in self._retired if id(sender) not in busy]
        self._retired = [sender for sender in self._retired if id(sender) in busy]
        for sender in idle:
            await _close_sender(sender)

    async def _close_senders(self) -> None:
        senders, self._retired = self._retired, []
        if self._sender is not None:
            senders.append(self._sender)
        for sender in senders:
            await _close_sender(sender)


async def _close_sender(sender: EventSender) -> None:
    aclose = getattr(sender, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except Exception:  # closing a connection pool must not break shutdown
        log.exception("delivery_sender_close_failed")
