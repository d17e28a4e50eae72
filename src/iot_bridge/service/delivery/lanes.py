"""The lanes: tasks that send due events, one device's chunk or one call of many at a time.

A single-event lane works through one device's chunk (up to ``LANE_CHUNK``),
then the next chunk waiting for a lane; a device's chunk ends at its first
failure. A lane of calls (``request_format: batch``) sends a call of several
devices' events (``batching.py`` fills it), then the next. Either ends when
Odoo goes down, the sender changes, the worker closes, or nothing is queued.
Lanes record successes in memory, never write them: the worker's loop marks
them, so a scan for due devices never overtakes a mark.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import cast

from iot_bridge.domain.events import EncodedEvent
from iot_bridge.errors import DeliveryError, StoreError
from iot_bridge.logs import get_logger
from iot_bridge.service.delivery.batching import fills_a_call, sort_outcomes, take_batch
from iot_bridge.service.delivery.marks import FLUSH_DELIVERED, DeliveredMarks
from iot_bridge.service.delivery.results import Results, attempt
from iot_bridge.service.delivery.work import Work
from iot_bridge.service.ports import BatchEventSender, Clock, EventSender, OutboxItem

log = get_logger(__name__)

STORE_ERROR_PAUSE_S = 1.0


class Lanes:
    """Starts and runs the lanes; the worker's loop decides when."""

    def __init__(
        self,
        *,
        work: Work,
        marks: DeliveredMarks,
        results: Results,
        clock: Clock,
        wake: asyncio.Event,
        goes_on: Callable[[EventSender], bool],
        closing: Callable[[], bool],
        store_error: Callable[[StoreError, str | None], None],
        max_in_flight: int,
        max_batches: int,
    ) -> None:
        """``goes_on(sender)``: a lane may send its next event (same sender, Odoo up, open)."""
        self._work = work
        self._marks = marks
        self._results = results
        self._clock = clock
        self._wake = wake
        self._goes_on = goes_on
        self._closing = closing
        self._store_error = store_error
        self._max_in_flight = max_in_flight
        self._max_batches = max_batches
        self.tasks: set[asyncio.Task[None]] = set()
        self.batch_lanes = 0  # calls of several events under way

    def start(self, sender: EventSender) -> None:
        """Start single-event lanes for the queued chunks, up to ``max_in_flight``."""
        work = self._work
        while work.chunks and len(work.in_flight) < self._max_in_flight and not self._closing():
            chunk = work.chunks.popleft()
            device_id = chunk[0].device_id
            if device_id in work.in_flight:  # read twice across a scan: its lane has it
                continue
            task = asyncio.create_task(self._lane(sender, chunk), name=f"deliver:{device_id}")
            work.in_flight[device_id] = (task, sender)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def start_batches(self, sender: BatchEventSender) -> None:
        """Start lanes of calls for the queued chunks, up to ``max_batches_in_flight``."""
        work = self._work
        while work.chunks and self.batch_lanes < self._max_batches and not self._closing():
            if work.more_to_read() and not fills_a_call(work.chunks):
                return  # the loop reads more due devices first, at once: a fuller call
            batch = take_batch(work.chunks, work.in_flight)
            if not batch:
                return
            task = asyncio.create_task(self._batch_lane(sender, batch), name="deliver:batch")
            work.claim(batch, task, sender)
            self.batch_lanes += 1
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def drain(self, grace_s: float) -> None:
        """Let the lanes finish for up to ``grace_s``, then cancel the rest."""
        tasks = list(self.tasks)
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=grace_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- one device at a time ----------------------------------------------------------

    async def _lane(self, sender: EventSender, chunk: list[OutboxItem]) -> None:
        """Send device chunks in order, this one first, then others waiting for a lane.

        A crash before the loop marks the successes re-sends them with the same
        event_uids.
        """
        work = self._work
        device_id = chunk[0].device_id
        try:
            while True:
                await self.send_chunk(sender, chunk)
                work.in_flight.pop(device_id, None)
                if len(self._marks) >= FLUSH_DELIVERED:
                    self._wake.set()  # the loop marks them (lanes never write them)
                if not self._goes_on(sender):
                    return
                next_chunk = work.next_chunk()
                if next_chunk is None:
                    return
                chunk = next_chunk
                device_id = chunk[0].device_id
                work.in_flight[device_id] = (asyncio.current_task(), sender)  # type: ignore[assignment]
                if len(work.chunks) < self._max_in_flight:
                    self._wake.set()  # read ahead while this lane works
        except asyncio.CancelledError:
            # Shutdown ran out of grace: record what Odoo already accepted, right
            # here (briefly blocking), so the next start does not send it again.
            with contextlib.suppress(StoreError):
                self._marks.flush_now(self._clock.now())
            raise
        except StoreError as err:
            # Unmarked events stay pending (at-least-once); hold the device a moment
            # so a broken disk does not turn into a storm of re-sends.
            self._store_error(err, device_id)
            await self._clock.sleep(STORE_ERROR_PAUSE_S)
        finally:
            work.in_flight.pop(device_id, None)
            # Out of the lanes before waking the loop: the task's done callback runs a
            # turn later, and a loop already woken could look at the lanes in between,
            # clear this wake-up and wait for another that never comes.
            self.tasks.discard(asyncio.current_task())
            self._wake.set()

    async def send_chunk(self, sender: EventSender, chunk: list[OutboxItem]) -> None:
        """One device's events in order, until the first failure."""
        for index, item in enumerate(chunk):
            if index and not self._goes_on(sender):
                return
            error = await attempt(sender, item)
            if error is not None:
                await self._results.failed(item, error)
                return
            self._results.succeeded(item)

    # -- calls of several events (request_format: batch) ---------------------------

    async def _batch_lane(self, sender: BatchEventSender, batch: list[list[OutboxItem]]) -> None:
        """Send calls, this one first, then more from the queued chunks, as ``_lane`` does.

        After each call the loop is woken to mark the successes and read ahead.
        """
        work = self._work
        task = cast("asyncio.Task[None]", asyncio.current_task())
        try:
            while True:
                await self._send_batch(sender, batch)
                work.release(batch)
                batch = []
                self._wake.set()
                if not self._goes_on(sender):
                    return
                if work.more_to_read() and not fills_a_call(work.chunks):
                    return  # the loop reads more first, then starts the call
                batch = take_batch(work.chunks, work.in_flight)
                if not batch:
                    return
                work.claim(batch, task, sender)
        except asyncio.CancelledError:
            with contextlib.suppress(StoreError):  # as in _lane: shutdown ran out of grace
                self._marks.flush_now(self._clock.now())
            raise
        except StoreError as err:
            self._store_error(err, None)
            await self._clock.sleep(STORE_ERROR_PAUSE_S)
        finally:
            work.release(batch)
            self.batch_lanes -= 1
            # Out of the tasks now, not in the done callback: a loop woken by the line
            # below may look at them before that callback runs, and wait for a lane
            # that ended.
            self.tasks.discard(task)
            self._wake.set()

    async def _send_batch(self, sender: BatchEventSender, batch: list[list[OutboxItem]]) -> None:
        """One call: each event's result recorded, or the whole call's failure handled."""
        items = [item for chunk in batch for item in chunk]
        if len(items) == 1:
            await self.send_chunk(sender, batch[0])  # a call of one: its failure is the event's
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
            self._results.succeeded(item)
        for item, error in (*outcome.dead, *outcome.retry):
            await self._results.failed(item, error)

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
                await self._results.failed(chunk[0], err)
            return
        log.warning(
            "odoo_batch_refused",
            events=sum(map(len, batch)),
            devices=len(batch),
            error=str(err),
        )
        for chunk in batch:
            if not self._goes_on(sender):
                return
            await self.send_chunk(sender, chunk)
