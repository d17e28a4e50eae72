"""The delivery worker: outbox -> Odoo, in order per device, several devices at once.

Each device has at most one event in flight: its oldest pending one. Up to
``max_in_flight`` lanes send concurrently, each working through one device's
chunk of due events (up to ``LANE_CHUNK``) before taking the next device's.
The devices that are due are read in one skip-scan, their chunks in batches
(``PREFETCH_DEVICES`` at a time, in the same thread hop that marks the
previous successes delivered), so 10,000 devices with one event each cost a
handful of store round trips, not one per event.

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
of several devices' events instead (``service/delivery/batching.py`` fills them: at
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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from iot_bridge.backoff import nominal_delay
from iot_bridge.domain.events import EncodedEvent
from iot_bridge.errors import DeliveryError, StoreError
from iot_bridge.logs import RateLimiter, get_logger
from iot_bridge.service.delivery.batching import (
    MAX_BATCH_EVENTS,
    device_chunk_limit,
    fills_a_call,
    sort_outcomes,
    take_batch,
)
from iot_bridge.service.ports import (
    FLAG_AFTER_ATTEMPTS,
    BatchEventSender,
    Clock,
    DeliveryQueue,
    EventSender,
    OutboxItem,
)

log = get_logger(__name__)

BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 300.0
BACKOFF_JITTER = 0.2  # a retry waits between 80 % and 100 % of its nominal backoff
MIN_RETRY_AFTER_S = 1.0  # a server saying "Retry-After: 0" forever must not spin us
STORE_ERROR_PAUSE_S = 1.0
LANE_CHUNK = 16  # a device's events one lane sends before the device goes back to the pool
PREFETCH_DEVICES = 256  # devices whose chunks are read from the store in one go
BATCH_PREFETCH_DEVICES = 512  # the same for calls of 500: one read fills them with one event each
FLUSH_DELIVERED = 512  # successes marked in one transaction (a crash re-sends at most about this)
# Calls of up to 500 events at once: one in Odoo, one on its way; more would queue in
# Odoo's few workers and near the call timeout without making it faster.
BATCHES_IN_FLIGHT = 2


def backoff_delay(failures: int, rng: random.Random) -> float:
    """Seconds before the next try after ``failures`` failed tries (>= 1).

    1, 2, 4, ... seconds, capped at 300, each shortened by up to 20 % at random
    so events that failed together do not retry together.
    """
    nominal = nominal_delay(
        max(failures, 1) - 1, initial_s=BACKOFF_BASE_S, multiplier=2.0, cap_s=BACKOFF_CAP_S
    )
    return nominal * (1.0 - BACKOFF_JITTER * rng.random())


@dataclass(slots=True)
class EndpointHealth:
    """The Odoo endpoint's state as delivery sees it (``/health``, ``/metrics``)."""

    up: bool = True
    changed_at: float | None = None  # unix time of the last change; None: never changed
    last_error: str | None = None
    failed_probes: int = 0  # in the current outage
    probe_due: float | None = None  # while down: when the next probe goes out


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
        self._sender = sender
        self._clock = clock
        self._max_in_flight = max_in_flight
        self._max_batches = max_batches_in_flight
        self._batch_lanes = 0  # calls of several events under way (lanes of _batch_lane)
        self._reading = False  # the loop reads due work from the store right now
        self._on_result = on_result
        self._rng = rng or random.Random()
        self._shutdown_grace_s = shutdown_grace_s
        self._health = EndpointHealth()
        # device_id -> its lane and the sender it uses
        self._in_flight: dict[str, tuple[asyncio.Task[None], EventSender]] = {}
        self._lanes: set[asyncio.Task[None]] = set()
        self._due_devices: deque[str] = deque()  # found due, chunks not read yet
        self._chunks: deque[list[OutboxItem]] = deque()  # read, waiting for a lane
        self._delivered: list[int] = []  # accepted by Odoo, not yet marked in the store
        self._marking: set[int] = set()  # being marked right now (in a thread)
        self._outage_failures: set[int] = set()  # seqs that failed only because Odoo was down
        self._retired: list[EventSender] = []
        self._wake_event = asyncio.Event()
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
        return self._sender is None

    @property
    def in_flight(self) -> int:
        """Devices with a delivery under way."""
        return len(self._in_flight)

    @property
    def endpoint(self) -> EndpointHealth:
        """The Odoo endpoint's health (read it, do not change it)."""
        return self._health

    def set_sender(self, sender: EventSender | None) -> None:
        """Switch Odoo (a config push); None = local-only mode.

        Pending events in backoff become due at once, and a new endpoint starts
        as up: the new settings may be the fix an operator was waiting for.
        """
        if sender is self._sender:
            return
        if self._sender is not None:
            self._retired.append(self._sender)
        self._sender = sender
        self._reschedule = sender is not None
        self._forget_work()
        if not self._health.up:
            self._health = EndpointHealth(changed_at=self._clock.now())
            self._outage_failures.clear()
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
        log.info("delivery_started", local_only=self._sender is None)
        try:
            while not self._closing:
                self._wake_event.clear()
                delay: float | None
                try:
                    await self._close_idle_retired()
                    delay = await self._dispatch()
                except StoreError as err:
                    self._store_error(err)
                    self._forget_work()
                    delay = STORE_ERROR_PAUSE_S
                await self._wait(delay)
        finally:
            await self._drain()
            with contextlib.suppress(StoreError):
                await self._flush()
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
        """Start lanes for due work, or probe a down Odoo; return how long to sleep.

        None means until woken (a lane ending, new events, a config push).
        """
        sender = self._sender
        if sender is None:
            await self._flush()
            return None
        now = self._clock.now()
        if self._reload:
            self._reload = False
            self._forget_work()
        if self._reschedule:
            self._reschedule = False
            await asyncio.to_thread(self._store.retry_now, now)
        if not self._health.up:
            return await self._probe_when_due(sender, now)
        batching = isinstance(sender, BatchEventSender)
        # A call's successes are marked before the next read: a read that skipped them
        # would find the same device's next events missing, to be read once more.
        if len(self._delivered) >= FLUSH_DELIVERED or (batching and self._delivered):
            await self._flush()
        later: float | None = None
        devices_per_read = BATCH_PREFETCH_DEVICES if batching else PREFETCH_DEVICES
        busy, slots, queued, exclude = self._occupancy(batching=batching)
        # A new scan for due devices waits while most lanes are busy: their devices
        # come round in it (one scan per round of work, not one per lane ending).
        scan_waits = not self._due_devices and busy * 2 > slots
        if queued < slots and not scan_waits:
            scan = not self._due_devices
            take = [
                self._due_devices.popleft()
                for _ in range(min(devices_per_read, len(self._due_devices)))
            ]
            # Successes not yet marked are skipped by the read (so it needs no write
            # and never waits behind a commit's fsync); they are marked right after.
            skip = frozenset(self._delivered) | self._marking
            self._reading = True
            try:
                chunks, rest, later = await asyncio.to_thread(
                    self._read_work, skip, scan, take, exclude, now, batching=batching
                )
            finally:
                self._reading = False
            if sender is not self._sender or not self._health.up:
                return 0.0
            self._due_devices.extend(rest)
            self._chunks.extend(chunks)
        if isinstance(sender, BatchEventSender):
            self._start_batches(sender)
        while (
            not batching
            and self._chunks
            and len(self._in_flight) < self._max_in_flight
            and not self._closing
        ):
            chunk = self._chunks.popleft()
            device_id = chunk[0].device_id
            if device_id in self._in_flight:  # read twice across a scan: its lane has it
                continue
            task = asyncio.create_task(self._lane(sender, chunk), name=f"deliver:{device_id}")
            self._in_flight[device_id] = (task, sender)
            self._lanes.add(task)
            task.add_done_callback(self._lanes.discard)
        flushed = bool(self._delivered)
        if flushed:
            await self._flush()
        if batching and self._due_devices and self._batch_lanes < self._max_batches:
            return 0.0  # a call has room: read the next due devices for it now
        if self._chunks or self._due_devices:
            return None  # more work as soon as a lane is free (it wakes us)
        if flushed and not self._in_flight:
            return 0.0  # the read skipped what was just marked: look again
        if later is None:
            return None
        return max(0.0, later - self._clock.now())

    def _occupancy(self, *, batching: bool) -> tuple[int, int, int, tuple[str, ...]]:
        """Lanes busy, lanes in all, work queued (in lanes' worth), devices a scan leaves out."""
        if not batching:
            exclude = tuple(self._in_flight)
            return len(self._in_flight), self._max_in_flight, len(self._chunks), exclude
        queued = sum(map(len, self._chunks)) // MAX_BATCH_EVENTS  # full calls' worth
        # Devices already read are left out of a new scan too: a second chunk of the
        # same device could go in another call, out of order.
        exclude = (*self._in_flight, *(chunk[0].device_id for chunk in self._chunks))
        return self._batch_lanes, self._max_batches, queued, exclude

    def _read_work(
        self,
        skip: frozenset[int],
        scan: bool,
        take: list[str],
        in_flight: tuple[str, ...],
        now: float,
        *,
        batching: bool = False,
    ) -> tuple[list[list[OutboxItem]], list[str], float | None]:
        """In a thread: find due devices if ``scan``, read their chunks.

        Events in ``skip`` (accepted by Odoo, their mark not yet written) are
        left out. Returns the chunks, the due devices left for later reads,
        and when the earliest device not due yet will be. For calls of several
        events (``batching``) few due devices are read deeper, to fill a call.
        """
        rest: list[str] = []
        later: float | None = None
        if scan:
            due, later = self._store.due_devices(now, in_flight)
            prefetch = BATCH_PREFETCH_DEVICES if batching else PREFETCH_DEVICES
            take, rest = due[:prefetch], due[prefetch:]
        limit = device_chunk_limit(len(take)) if batching else LANE_CHUNK
        chunks = self._store.pending_chunks(take, now, limit)
        if skip:
            chunks = [
                kept for kept in ([i for i in c if i.seq not in skip] for c in chunks) if kept
            ]
        return chunks, rest, later

    def _forget_work(self) -> None:
        self._due_devices.clear()
        self._chunks.clear()

    async def _wait(self, delay: float | None) -> None:
        if self._wake_event.is_set() or self._closing:
            return
        if delay is not None and delay <= 0:
            await asyncio.sleep(0)
            return
        if self._delivered and not self._lanes:
            await self._flush()  # idle: record what was delivered before sleeping
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

    # -- one lane --------------------------------------------------------------------

    async def _lane(self, sender: EventSender, chunk: list[OutboxItem]) -> None:
        """Send device chunks in order, this one first, then others waiting for a lane.

        Successes are recorded in memory and marked in the store in batches by
        the loop, never by a lane (a scan for due devices must not overtake a
        mark); a crash before that re-sends them with the same event_uids. A device's
        chunk ends at its first failure; the lane ends when Odoo goes down, the
        sender changes, the worker closes, or no chunk is waiting.
        """
        device_id = chunk[0].device_id
        try:
            while True:
                await self._send_chunk(sender, chunk)
                self._in_flight.pop(device_id, None)
                if len(self._delivered) >= FLUSH_DELIVERED:
                    self._wake_event.set()  # the loop marks them (lanes never write them)
                if self._closing or sender is not self._sender or not self._health.up:
                    return
                next_chunk = self._next_chunk()
                if next_chunk is None:
                    return
                chunk = next_chunk
                device_id = chunk[0].device_id
                self._in_flight[device_id] = (asyncio.current_task(), sender)  # type: ignore[assignment]
                if len(self._chunks) < self._max_in_flight:
                    self._wake_event.set()  # read ahead while this lane works
        except asyncio.CancelledError:
            # Shutdown ran out of grace: record what Odoo already accepted, right
            # here (briefly blocking), so the next start does not send it again.
            with contextlib.suppress(StoreError):
                self._flush_now(self._clock.now())
            raise
        except StoreError as err:
            # Unmarked events stay pending (at-least-once); hold the device a moment
            # so a broken disk does not turn into a storm of re-sends.
            self._store_error(err, device_id=device_id)
            await self._clock.sleep(STORE_ERROR_PAUSE_S)
        finally:
            self._in_flight.pop(device_id, None)
            # Out of the lanes before waking the loop: the task's done callback runs a
            # turn later, and a loop already woken could look at the lanes in between,
            # clear this wake-up and wait for another that never comes.
            self._lanes.discard(asyncio.current_task())
            self._wake_event.set()

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

    def _next_chunk(self) -> list[OutboxItem] | None:
        while self._chunks:
            chunk = self._chunks.popleft()
            if chunk[0].device_id not in self._in_flight:
                return chunk
        return None

    async def _send_chunk(self, sender: EventSender, chunk: list[OutboxItem]) -> None:
        for index, item in enumerate(chunk):
            if index and (self._closing or sender is not self._sender or not self._health.up):
                return
            error = await self._attempt(sender, item)
            if error is not None:
                await self._failed(item, error)
                return
            self._delivered.append(item.seq)
            self._report("ok")
            log.debug(
                "event_delivered",
                event_uid=item.event_uid,
                event_type=item.event_type,
                device_id=item.device_id,
                attempts=item.attempts + 1,
            )

    async def _attempt(self, sender: EventSender, item: OutboxItem) -> DeliveryError | None:
        """Send one event; the failure, or None on success."""
        try:
            await sender.send(EncodedEvent(item.event_uid, item.payload_json))
        except DeliveryError as err:
            return err
        except Exception as err:  # a sender bug must not stop delivery: retry it
            log.exception("delivery_unexpected_error", event_uid=item.event_uid)
            return DeliveryError(f"{type(err).__name__}: {err}", permanent=False)
        return None

    # -- calls of several events (request_format: batch) ---------------------------

    def _start_batches(self, sender: BatchEventSender) -> None:
        """Start lanes of calls for the queued chunks, up to ``max_batches_in_flight``."""
        while self._chunks and self._batch_lanes < self._max_batches and not self._closing:
            if self._more_to_read() and not fills_a_call(self._chunks):
                return  # the loop reads more due devices first, at once: a fuller call
            batch = take_batch(self._chunks, self._in_flight)
            if not batch:
                return
            task = asyncio.create_task(self._batch_lane(sender, batch), name="deliver:batch")
            self._claim(batch, task, sender)
            self._batch_lanes += 1
            self._lanes.add(task)
            task.add_done_callback(self._lanes.discard)

    def _more_to_read(self) -> bool:
        """Due devices are known but not read yet, or being read."""
        return bool(self._due_devices) or self._reading

    def _claim(
        self, batch: list[list[OutboxItem]], task: asyncio.Task[None], sender: EventSender
    ) -> None:
        for chunk in batch:
            self._in_flight[chunk[0].device_id] = (task, sender)

    def _release(self, batch: list[list[OutboxItem]]) -> None:
        for chunk in batch:
            self._in_flight.pop(chunk[0].device_id, None)

    async def _batch_lane(self, sender: BatchEventSender, batch: list[list[OutboxItem]]) -> None:
        """Send calls, this one first, then more from the queued chunks, as ``_lane`` does.

        After each call the loop is woken to mark the successes (lanes never
        write them) and read ahead. The lane ends when Odoo goes down, the
        sender changes, the worker closes, or nothing is queued.
        """
        task = cast("asyncio.Task[None]", asyncio.current_task())
        try:
            while True:
                await self._send_batch(sender, batch)
                self._release(batch)
                batch = []
                self._wake_event.set()
                if self._closing or sender is not self._sender or not self._health.up:
                    return
                if self._more_to_read() and not fills_a_call(self._chunks):
                    return  # the loop reads more first, then starts the call
                batch = take_batch(self._chunks, self._in_flight)
                if not batch:
                    return
                self._claim(batch, task, sender)
        except asyncio.CancelledError:
            with contextlib.suppress(StoreError):  # as in _lane: shutdown ran out of grace
                self._flush_now(self._clock.now())
            raise
        except StoreError as err:
            self._store_error(err)
            await self._clock.sleep(STORE_ERROR_PAUSE_S)
        finally:
            self._release(batch)
            self._batch_lanes -= 1
            # Out of _lanes now, not in the done callback: a loop woken by the line below
            # may look at _lanes before that callback runs, and wait for a lane that ended.
            self._lanes.discard(task)
            self._wake_event.set()

    async def _send_batch(self, sender: BatchEventSender, batch: list[list[OutboxItem]]) -> None:
        """One call: each event's result recorded, or the whole call's failure handled."""
        items = [item for chunk in batch for item in chunk]
        if len(items) == 1:
            await self._send_chunk(sender, batch[0])  # a call of one: its failure is the event's
            return
        try:
            results = await sender.send_batch(
                [EncodedEvent(item.event_uid, item.payload_json) for item in items]
            )
            outcome = sort_outcomes(items, results)
        except DeliveryError as err:
            await self._batch_failed(sender, batch, err)
            return
        except Exception as err:  # a sender bug must not stop delivery: retry it
            log.exception("delivery_unexpected_error", events=len(items))
            error = DeliveryError(f"{type(err).__name__}: {err}", permanent=False)
            await self._batch_failed(sender, batch, error)
            return
        for item in outcome.delivered:
            self._delivered.append(item.seq)
            self._report("ok")
            log.debug(
                "event_delivered",
                event_uid=item.event_uid,
                event_type=item.event_type,
                device_id=item.device_id,
                attempts=item.attempts + 1,
            )
        for item, error in (*outcome.dead, *outcome.retry):
            await self._failed(item, error)

    async def _batch_failed(
        self, sender: BatchEventSender, batch: list[list[OutboxItem]], err: DeliveryError
    ) -> None:
        """A failure of a whole call, for every event in it (CONTRACT §6).

        Transient: each device's oldest event in the call takes it (counted, backed
        off, or waiting for the probe when Odoo is down); the device's later events
        wait behind it untried. Permanent: nothing goes dead yet; the events are
        sent again one at a time, each device in order, and each answer is that
        event's own.
        """
        if not err.permanent:
            for chunk in batch:
                await self._failed(chunk[0], err)
            return
        log.warning(
            "odoo_batch_refused",
            events=sum(map(len, batch)),
            devices=len(batch),
            error=str(err),
        )
        for chunk in batch:
            if self._closing or sender is not self._sender or not self._health.up:
                return
            await self._send_chunk(sender, chunk)

    def _take_delivered(self) -> list[int]:
        """The recorded successes, handed over (on the event loop) to be marked."""
        delivered, self._delivered = self._delivered, []
        return delivered

    async def _flush(self) -> None:
        """Mark the recorded successes delivered, in one transaction in a thread."""
        delivered = self._take_delivered()
        if not delivered:
            return
        self._marking.update(delivered)  # reads skip them until the mark is written
        try:
            await asyncio.to_thread(self._store.mark_delivered_many, delivered, self._clock.now())
        except StoreError:
            self._delivered[:0] = delivered  # kept for the next try
            raise
        finally:
            self._marking.difference_update(delivered)
        log.info("events_delivered", events=len(delivered))

    def _flush_now(self, now: float) -> None:
        """``_flush`` blocking the event loop: only when cancelled, as shutdown runs out."""
        delivered = self._take_delivered()
        self._store.mark_delivered_many(delivered, now)

    # -- failures and the endpoint's health ------------------------------------------

    def _delay_for(self, err: DeliveryError, failures: int) -> float:
        if err.retry_after_s is not None:
            return max(err.retry_after_s, MIN_RETRY_AFTER_S)
        return backoff_delay(failures, self._rng)

    async def _failed(self, item: OutboxItem, err: DeliveryError) -> None:
        now = self._clock.now()
        error = str(err)
        if err.permanent:
            await asyncio.to_thread(self._store.mark_dead, item.seq, now, error)
            self._report("permanent")
            log.warning(
                "event_dead",
                event_uid=item.event_uid,
                device_id=item.device_id,
                event_type=item.event_type,
                error=error,
            )
            return
        failures = item.attempts + 1
        self._report("transient")
        health = self._health
        if err.endpoint and not health.up:
            # Sent before Odoo was found down: it failed only because of the outage.
            assert health.probe_due is not None
            self._outage_failures.add(item.seq)
            log.debug("odoo_send_failed", event_uid=item.event_uid, error=error)
            await asyncio.to_thread(self._store.mark_retry, item.seq, now, health.probe_due, error)
            return
        if err.endpoint:
            self._went_down(now, err)  # before any await: the other lanes see it at once
        delay = self._delay_for(err, failures)
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

    def _went_down(self, now: float, err: DeliveryError) -> None:
        delay = self._delay_for(err, 1)
        self._health = EndpointHealth(
            up=False, changed_at=now, last_error=str(err), failed_probes=0, probe_due=now + delay
        )
        self._forget_work()
        log.warning("odoo_unavailable", error=str(err), probe_in_s=round(delay, 3))

    def _came_back(self, now: float) -> None:
        health = self._health
        down_s = now - health.changed_at if health.changed_at is not None else None
        self._health = EndpointHealth(up=True, changed_at=now)
        log.info(
            "odoo_available",
            down_s=None if down_s is None else round(down_s, 3),
            failed_probes=health.failed_probes,
        )

    async def _probe_when_due(self, sender: EventSender, now: float) -> float | None:
        """While Odoo is down: one request at a time, when the next probe is due."""
        if self._lanes:
            return None  # sends of before the outage are still finishing
        health = self._health
        assert health.probe_due is not None
        if now < health.probe_due:
            return health.probe_due - now
        await self._flush()
        item = await asyncio.to_thread(self._probe_candidate)
        if item is None:  # nothing pending: up again as soon as there is something
            self._came_back(now)
            return 0.0
        error = await self._attempt(sender, item)
        now = self._clock.now()
        if sender is not self._sender:
            return 0.0
        if error is not None and error.endpoint and not error.permanent:
            self._report("transient")
            health.failed_probes += 1
            delay = self._delay_for(error, health.failed_probes + 1)
            health.probe_due = now + delay
            health.last_error = str(error)
            await asyncio.to_thread(self._store.mark_retry, item.seq, now, now + delay, str(error))
            self._outage_failures.add(item.seq)
            log.debug("odoo_probe_failed", error=str(error), probe_in_s=round(delay, 3))
            return delay
        self._came_back(now)
        outage_failures, self._outage_failures = self._outage_failures, set()
        outage_failures.discard(item.seq)
        if error is None:
            self._delivered.append(item.seq)
            self._report("ok")
            await self._flush()
        await asyncio.to_thread(self._store.make_due, outage_failures, now)
        if error is not None:
            await self._failed(item, error)
        return 0.0

    def _probe_candidate(self) -> OutboxItem | None:
        """In a thread: the most overdue device's oldest pending event, due or not."""
        devices, _ = self._store.due_devices(float("inf"))
        for chunk in self._store.pending_chunks(devices[:1], float("inf"), 1):
            return chunk[0]
        return None

    def _report(self, result: str) -> None:
        if self._on_result is None:
            return
        try:
            self._on_result(result)
        except Exception:  # metrics must never break delivery
            log.exception("delivery_on_result_failed", result=result)

    # -- shutdown and sender lifetime ----------------------------------------------

    async def _drain(self) -> None:
        tasks = list(self._lanes)
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
