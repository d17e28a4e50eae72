"""The delivery worker: outbox -> Odoo, in order per device, several devices at once.

Each device has at most one event in flight: its oldest pending one. Up to
``max_in_flight`` lanes send concurrently, each working through one device's
chunk of due events (up to ``LANE_CHUNK``) before taking the next device's.
This module is the loop that decides when; each part it drives has its own
module: ``work.py`` (due work read ahead, which lane holds which device),
``lanes.py`` (the sending tasks), ``results.py`` (what an answer does),
``retry.py`` (the backoff), ``endpoint.py`` (Odoo up or down, the probe's
schedule), ``marks.py`` (successes marked in batches), ``senders.py`` (the
senders' lifecycle), ``batching.py`` (what goes into one call).

One health state for the Odoo endpoint (``EndpointHealth``): while it is up,
results go back to the store as

- success -> marked delivered (in one transaction per batch);
- a transient failure of this event alone (a JSON-RPC error, an odd reply)
  -> ``mark_retry`` with exponential backoff (1 s doubling, capped at 300 s,
  with jitter); flagged after 10 failures, retried forever;
- permanent failure -> ``mark_dead`` at once; the device's later events go on.

A failure of Odoo as a whole (``DeliveryError.endpoint``: refused, timeout,
5xx, 401/403/404, 408, 429) marks it *down* (``odoo_unavailable``, logged
once): no device sends any more, and one probe at a time (the most overdue
device's oldest pending event) goes out on the same capped jittered backoff,
or after the ``Retry-After`` Odoo asked for. The first answer from Odoo that
is not an endpoint failure marks it up again (``odoo_available``, once), and
every device resumes at once, in order per device: events that failed only
because of the outage are due again at once.

With a ``BatchEventSender`` (``request_format: batch``) a lane sends calls
of several devices' events instead (``batching.py`` fills them: at
most 500 events and 1 MiB, a device in one call at a time), up to
``max_batches_in_flight`` calls at once. A call is filled from what is due
when it leaves: a single new event goes at once, alone. Each event's result
goes back to the store as above; a device's first transient failure in a
call holds its later events in that call (pending, untried). A failure of the
whole call is each device's oldest event's in it (the rest wait behind it),
except that a permanent one is retried one event at a time (the sender's
``send``, a call of one) before any event goes dead. While Odoo is down, the
probe is a call of one event.

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

from iot_bridge.errors import StoreError
from iot_bridge.logs import RateLimiter, get_logger
from iot_bridge.service.delivery.endpoint import Endpoint, EndpointHealth
from iot_bridge.service.delivery.lanes import STORE_ERROR_PAUSE_S, Lanes
from iot_bridge.service.delivery.marks import FLUSH_DELIVERED, DeliveredMarks
from iot_bridge.service.delivery.results import Results, attempt
from iot_bridge.service.delivery.retry import RetryPolicy
from iot_bridge.service.delivery.senders import Senders
from iot_bridge.service.delivery.work import BATCH_PREFETCH_DEVICES, PREFETCH_DEVICES, Work
from iot_bridge.service.ports import BatchEventSender, Clock, DeliveryQueue, EventSender

log = get_logger(__name__)

# Calls of up to 500 events at once: one in Odoo, one on its way; more would queue in
# Odoo's few workers and near the call timeout without making it faster.
BATCHES_IN_FLIGHT = 2


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
        max_batches_in_flight: int = BATCHES_IN_FLIGHT,
        on_result: Callable[[str], None] | None = None,
        rng: random.Random | None = None,
        shutdown_grace_s: float = 5.0,
    ) -> None:
        """``on_result`` is called with "ok", "transient" or "permanent" per attempt.

        ``max_in_flight`` devices send at once, one event each, or with a
        ``BatchEventSender``, ``max_batches_in_flight`` calls of several devices.
        """
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        if max_batches_in_flight < 1:
            raise ValueError(
                f"max_batches_in_flight must be at least 1, got {max_batches_in_flight}"
            )
        self._store = store
        self._senders = Senders(sender)
        self._clock = clock
        self._max_in_flight = max_in_flight
        self._max_batches = max_batches_in_flight
        self._shutdown_grace_s = shutdown_grace_s
        retry = RetryPolicy(rng)
        self._endpoint = Endpoint(retry)
        self._work = Work(store)
        self._marks = DeliveredMarks(store, clock)
        self._results = Results(
            store=store,
            clock=clock,
            endpoint=self._endpoint,
            retry=retry,
            marks=self._marks,
            work=self._work,
            on_result=on_result,
        )
        self._wake_event = asyncio.Event()
        self._lanes = Lanes(
            work=self._work,
            marks=self._marks,
            results=self._results,
            clock=clock,
            wake=self._wake_event,
            goes_on=self._lane_goes_on,
            closing=lambda: self._closing,
            store_error=self._store_error,
            max_in_flight=max_in_flight,
            max_batches=max_batches_in_flight,
        )
        self._stopped = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False
        self._closing = False
        self._reschedule = False
        self._reload = False
        self._store_error_log = RateLimiter(interval_s=60.0)

    # -- control -------------------------------------------------------------------

    @property
    def local_only(self) -> bool:
        """True when no Odoo is configured: events stay pending in the store."""
        return self._senders.current is None

    @property
    def in_flight(self) -> int:
        """Devices with a delivery under way."""
        return len(self._work.in_flight)

    @property
    def endpoint(self) -> EndpointHealth:
        """The Odoo endpoint's health (read it, do not change it)."""
        return self._endpoint.health

    def set_sender(self, sender: EventSender | None) -> None:
        """Switch Odoo (a config push); None = local-only mode.

        Pending events in backoff become due at once, and a new endpoint starts
        as up: the new settings may be the fix an operator was waiting for.
        """
        if sender is self._senders.current:
            return
        self._senders.replace(sender)
        self._reschedule = sender is not None
        self._work.forget()
        if not self._endpoint.up:
            self._endpoint.reset(self._clock.now())
        log.info("delivery_sender_changed", local_only=sender is None)
        self.wake()

    def wake(self, *, reload: bool = False) -> None:
        """New events were committed (or something else changed): look again.

        ``reload``: which events are pending changed other than by new commits
        (dead events revived): forget what was read ahead. Safe to call from
        any thread.
        """
        if reload:
            self._reload = True
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
        log.info("delivery_started", local_only=self._senders.current is None)
        try:
            while not self._closing:
                self._wake_event.clear()
                delay: float | None
                try:
                    await self._senders.close_idle(self._work.busy_senders())
                    delay = await self._dispatch()
                except StoreError as err:
                    self._store_error(err)
                    self._work.forget()
                    delay = STORE_ERROR_PAUSE_S
                await self._wait(delay)
        finally:
            await self._drain()
            with contextlib.suppress(StoreError):
                await self._marks.flush()
            await self._senders.close_all()
            self._stopped.set()
            log.info("delivery_stopped")

    async def close(self) -> None:
        """Stop: let deliveries in flight finish (bounded), close the senders."""
        self._closing = True
        self.wake()
        if self._running:
            await self._stopped.wait()
        else:
            await self._senders.close_all()

    # -- the loop ------------------------------------------------------------------

    def _lane_goes_on(self, sender: EventSender) -> bool:
        """A lane may send its next event: not closing, same sender, Odoo up."""
        return not self._closing and sender is self._senders.current and self._endpoint.up

    async def _dispatch(self) -> float | None:
        """Start lanes for due work, or probe a down Odoo; return how long to sleep.

        None means until woken (a lane ending, new events, a config push).
        """
        sender = self._senders.current
        work = self._work
        if sender is None:
            await self._marks.flush()
            return None
        now = self._clock.now()
        if self._reload:
            self._reload = False
            work.forget()
        if self._reschedule:
            self._reschedule = False
            await asyncio.to_thread(self._store.retry_now, now)
        if not self._endpoint.up:
            return await self._probe_when_due(sender, now)
        batching = isinstance(sender, BatchEventSender)
        # A call's successes are marked before the next read: a read that skipped them
        # would find the same device's next events missing, to be read once more.
        if len(self._marks) >= FLUSH_DELIVERED or (batching and self._marks):
            await self._marks.flush()
        later: float | None = None
        devices_per_read = BATCH_PREFETCH_DEVICES if batching else PREFETCH_DEVICES
        busy, slots, queued, exclude = work.occupancy(
            batching=batching,
            lanes=self._max_in_flight,
            batch_lanes=self._lanes.batch_lanes,
            max_batches=self._max_batches,
        )
        # A new scan for due devices waits while most lanes are busy: their devices
        # come round in it (one scan per round of work, not one per lane ending).
        scan_waits = not work.due_devices and busy * 2 > slots
        if queued < slots and not scan_waits:
            scan = not work.due_devices
            take = [
                work.due_devices.popleft()
                for _ in range(min(devices_per_read, len(work.due_devices)))
            ]
            # Successes not yet marked are skipped by the read (so it needs no write
            # and never waits behind a commit's fsync); they are marked right after.
            skip = self._marks.skip()
            work.reading = True
            try:
                chunks, rest, later = await asyncio.to_thread(
                    work.read, skip, scan, take, exclude, now, batching=batching
                )
            finally:
                work.reading = False
            if sender is not self._senders.current or not self._endpoint.up:
                return 0.0
            work.due_devices.extend(rest)
            work.chunks.extend(chunks)
        if isinstance(sender, BatchEventSender):
            self._lanes.start_batches(sender)
        if not batching:
            self._lanes.start(sender)
        flushed = bool(self._marks)
        if flushed:
            await self._marks.flush()
        if batching and work.due_devices and self._lanes.batch_lanes < self._max_batches:
            return 0.0  # a call has room: read the next due devices for it now
        if work.chunks or work.due_devices:
            return None  # more work as soon as a lane is free (it wakes us)
        if flushed and not work.in_flight:
            return 0.0  # the read skipped what was just marked: look again
        if later is None:
            return None
        return max(0.0, later - self._clock.now())

    async def _wait(self, delay: float | None) -> None:
        if self._wake_event.is_set() or self._closing:
            return
        if delay is not None and delay <= 0:
            await asyncio.sleep(0)
            return
        if self._marks and not self._lanes.tasks:
            await self._marks.flush()  # idle: record what was delivered before sleeping
            if self._wake_event.is_set():
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

    def _store_error(self, err: StoreError, device_id: str | None = None) -> None:
        # A full disk fails every mark until space is freed (the pipeline logs it once):
        # once a minute here, not once a second.
        allowed, suppressed = self._store_error_log.allow("store", self._clock.now())
        if allowed:
            log.error(
                "delivery_store_error",
                error=str(err),
                device_id=device_id,
                suppressed_since_last=suppressed,
            )

    async def _probe_when_due(self, sender: EventSender, now: float) -> float | None:
        """While Odoo is down: one request at a time, when the next probe is due."""
        if self._lanes.tasks:
            return None  # sends of before the outage are still finishing
        endpoint = self._endpoint
        probe_due = endpoint.health.probe_due
        assert probe_due is not None
        if now < probe_due:
            return probe_due - now
        await self._marks.flush()
        item = await asyncio.to_thread(self._work.probe_candidate)
        if item is None:  # nothing pending: up again as soon as there is something
            endpoint.came_back(now)
            return 0.0
        error = await attempt(sender, item)
        now = self._clock.now()
        if sender is not self._senders.current:
            return 0.0
        if error is not None and error.endpoint and not error.permanent:
            self._results.report("transient")
            delay = endpoint.probe_failed(now, error)
            await asyncio.to_thread(self._store.mark_retry, item.seq, now, now + delay, str(error))
            endpoint.held_by_outage(item.seq)
            log.debug("odoo_probe_failed", error=str(error), probe_in_s=round(delay, 3))
            return delay
        endpoint.came_back(now)
        outage_failures = endpoint.take_outage_failures()
        outage_failures.discard(item.seq)
        if error is None:
            self._marks.add(item.seq)
            self._results.report("ok")
            await self._marks.flush()
        await asyncio.to_thread(self._store.make_due, outage_failures, now)
        if error is not None:
            await self._results.failed(item, error)
        return 0.0

    async def _drain(self) -> None:
        await self._lanes.drain(self._shutdown_grace_s)
