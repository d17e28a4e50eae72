"""The pipeline: receive -> route -> parse -> detect -> commit -> acknowledge, and the timers.

Ordering guarantee: every mutation of detector state happens under ``lock``
together with the commit of its effects (``commit``), so the outbox always
holds a consistent picture; MQTT acknowledgements follow the commit, and the
feed hears of a batch only after its commit. The config use case takes the
same lock to change the device set.

Ports are called once per batch: ``MessageSource.receive_batch`` and ``ack``,
``Outbox.commit``; the per-message work is ``Ingestor.handle`` on plain lists.

A full disk (``DiskFullError``) is waited out, not fatal: the commit that
failed wrote nothing, and the detectors are exactly one commit ahead of the
disk, so the same commit is tried again (``DISK_FULL_RETRY_FIRST_S`` doubling
to ``DISK_FULL_RETRY_CAP_S``) while its batch stays unacknowledged with the
broker and nothing else is processed. When it succeeds, the batch is
acknowledged and the pipeline goes on where it stopped: nothing lost, nothing
twice. ``disk_full`` says since when it waits (``/health``, ``/metrics``, the
board). Every other ``StoreError`` stops the bridge.
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from iot_bridge.domain.events import Event, iso_utc
from iot_bridge.errors import DiskFullError, StoreError
from iot_bridge.logs import get_logger
from iot_bridge.runtime.store_thread import StoreThread
from iot_bridge.service.feed import Feed, FeedBatch
from iot_bridge.service.ingest.broker_link import BrokerLink
from iot_bridge.service.ingest.ingestor import DeviceSpec, Ingestor
from iot_bridge.service.ingest.redelivery import split_redelivered
from iot_bridge.service.ports import KEPT_BATCHES, Clock, MessageSource, Outbox, SourceMessage
from iot_bridge.service.views.metrics import Metrics

log = get_logger(__name__)

# Unacknowledged QoS 1 messages the broker may send us: a group commit holds at
# most this many, so it bounds both the batch size and the redelivery after a crash.
RECEIVE_MAXIMUM = 10_000
BATCH_MAX_MESSAGES = RECEIVE_MAXIMUM
DISCONNECTED_WAKE_S = 1.0
# A commit of at most this many messages, this long after the previous one, runs
# on the loop thread (see ``Pipeline._trickle``).
TRICKLE_MAX_MESSAGES = 16
TRICKLE_GAP_S = 0.05
# Loop-thread commits slower than this, TRICKLE_SLOW_COMMITS of them in a row (a
# slow disk's fsync: an SD card; not one checkpoint), send every later commit to
# the store thread: the loop must not stall on the disk.
TRICKLE_SLOW_COMMIT_S = 0.005
TRICKLE_SLOW_COMMITS = 3
_elapsed_clock = time.perf_counter  # measures a commit's duration (a test may swap it)
# A commit that failed for lack of space is tried again after this, doubling up to the cap.
DISK_FULL_RETRY_FIRST_S = 0.5
DISK_FULL_RETRY_CAP_S = 10.0


@dataclass(slots=True)
class DiskFull:
    """A commit waits for space: since when, why, and what waits with it."""

    since: float
    error: str
    messages: int  # QoS 1 messages of the waiting batch, unacknowledged meanwhile
    events: int
    attempts: int = 1


class CommitAbandoned(DiskFullError):
    """The bridge stops while a commit waits for space: it was never written, and its
    messages stay unacknowledged with the broker (the next start gets them again)."""


class Pipeline:
    """Turns received batches into committed events, then acknowledges them."""

    def __init__(
        self,
        *,
        ingestor: Ingestor,
        outbox: Outbox,
        link: BrokerLink,
        feed: Feed,
        metrics: Metrics,
        clock: Clock,
        on_events: Callable[[int], None],
        on_fatal: Callable[[BaseException], None],
    ) -> None:
        """``on_events(count)`` runs after a commit that added events (wakes delivery);
        ``on_fatal`` when a commit failed for good (the bridge stops)."""
        self.ingestor = ingestor
        self.lock = asyncio.Lock()
        self._outbox = outbox
        self._link = link
        self._feed = feed
        self._metrics = metrics
        self._clock = clock
        self._on_events = on_events
        self._on_fatal = on_fatal
        self._last_now = 0.0
        # Fingerprints of the last committed batches (see ``_unseen``).
        self._committed: deque[set[int]] = deque(maxlen=KEPT_BATCHES)
        # Commits run on one persistent thread, in order (see store_thread); it ends
        # with the pipeline.
        self._store_thread = StoreThread()
        weakref.finalize(self, self._store_thread.close, 0.0)
        self._last_commit_at = -float("inf")  # loop time of the last commit
        self._slow_commits = 0  # loop-thread commits in a row slower than TRICKLE_SLOW_COMMIT_S
        self._disk_slow = False  # they were: every commit goes to the store thread
        self.disk_full: DiskFull | None = None  # while a commit waits for space
        self._abandon = asyncio.Event()  # set at the stop: a waiting commit gives up
        self._excuse_silence = False  # after a wait for space: the devices were not heard

    def now(self) -> float:
        """Wall-clock time that never runs backwards within this process."""
        now = max(self._clock.now(), self._last_now)
        self._last_now = now
        return now

    async def restore(self, specs: Sequence[DeviceSpec]) -> None:
        """Configure the devices, continue from the persisted detectors, commit the effects."""
        now = self.now()
        async with self.lock:
            events = self.ingestor.apply_devices(specs, now)
            snapshots = await asyncio.to_thread(self._outbox.load_snapshots)
            for fingerprints in await asyncio.to_thread(self._outbox.load_committed_batches):
                self._committed.append(set(fingerprints))
            ended, unusable = self.ingestor.restore(snapshots, now)
            if unusable:
                log.error("snapshots_dropped", device_ids=unusable)
            await self.commit(events + ended, now)

    async def run(self) -> None:
        """Receive, process, commit and acknowledge batches; fire timers when due."""
        while True:
            source = self._link.source
            deadline = self.ingestor.next_deadline()
            wait_s = None if deadline is None else max(0.0, deadline - self.now())
            if not source.connected:
                # Wake up often enough to keep excusing silence (see below).
                wait_s = DISCONNECTED_WAKE_S if wait_s is None else min(wait_s, DISCONNECTED_WAKE_S)
            batch = await self._receive(source, wait_s)
            # Stamped when taken from the queue, before waiting for the lock (a
            # config push may hold it): timers must not overtake these readings.
            now = self.now()
            async with self.lock:
                if source is not self._link.source and batch:
                    # Received from a source replaced by a config push: not acked, the
                    # old broker keeps them for our persistent session.
                    batch = []
                if not self._link.source.connected or self._excuse_silence:
                    # We cannot hear the devices (or could not while waiting for disk
                    # space): their silence is not theirs. The broker keeps their
                    # messages for our session and delivers them later.
                    self._excuse_silence = False
                    self.ingestor.excuse_silence(now)
                fresh, fingerprints = self._unseen(batch)
                events = self.ingestor.handle(fresh, now)
                try:
                    await self.commit(events, now, fingerprints)
                except CommitAbandoned:
                    return  # the bridge stops; the batch stays with the broker
                if batch:
                    source.ack(batch)

    async def _receive(
        self, source: MessageSource, wait_s: float | None
    ) -> Sequence[SourceMessage]:
        switched = self._link.switched
        switched.clear()
        receive = asyncio.ensure_future(source.receive_batch(BATCH_MAX_MESSAGES))
        switch = asyncio.ensure_future(switched.wait())
        try:
            await asyncio.wait(
                {receive, switch}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED
            )
            if not receive.done():
                receive.cancel()
                # Not ``await receive``: its CancelledError would hide a cancel of this
                # task (the stop), and the pipeline would spin on a closed source.
                await asyncio.wait({receive})
        finally:
            switch.cancel()
            receive.cancel()  # stopped while waiting: no receive left behind
        if receive.cancelled():
            return []
        return receive.result()  # a batch taken just before the cancel is not dropped

    def _unseen(self, batch: Sequence[SourceMessage]) -> tuple[list[SourceMessage], list[int]]:
        fresh, fingerprints = split_redelivered(batch, self._committed)
        skipped = len(batch) - len(fresh)
        if skipped:
            log.info("mqtt_redelivery_skipped", messages=skipped, reason="already committed")
        return fresh, fingerprints

    def _trickle(self, messages: int) -> bool:
        """Whether this commit is a trickle's: small, and the last one long ago.

        Then it runs on the loop thread: its fsync blocks the loop for about a
        millisecond, at most once per ``TRICKLE_GAP_S``, and saves the hop to the
        store thread and back (two threads woken, the GIL handed over twice).
        """
        at = asyncio.get_running_loop().time()
        quiet = at - self._last_commit_at >= TRICKLE_GAP_S
        self._last_commit_at = at
        return quiet and messages <= TRICKLE_MAX_MESSAGES and not self._disk_slow

    def _commit_on_loop(self, commit: Callable[[], None]) -> None:
        """Run a trickle's commit here; after a few slow ones in a row, never again."""
        started = _elapsed_clock()
        commit()
        if _elapsed_clock() - started <= TRICKLE_SLOW_COMMIT_S:
            self._slow_commits = 0
            return
        self._slow_commits += 1
        if self._slow_commits >= TRICKLE_SLOW_COMMITS:
            self._disk_slow = True
            log.info("store_commits_off_loop", reason="small commits took over 5 ms")

    def abandon_waits(self) -> None:
        """The bridge stops: a commit waiting for disk space gives up (``CommitAbandoned``)."""
        self._abandon.set()

    async def commit(
        self, events: list[Event], now: float, fingerprints: list[int] | None = None
    ) -> None:
        """Commit events, changed detector state and the batch's fingerprints; hold ``lock``.

        Then, and only then, the feed hears of the batch. A commit that failed
        for lack of space is tried again until it succeeds (see the module);
        the caller waits meanwhile. Any other failure is fatal (``StoreError``
        raised, ``on_fatal`` called): detector state is ahead of the disk, the
        restart restores from disk while the broker redelivers the
        unacknowledged messages.
        """
        changes = self.ingestor.take_changes()
        readings, state_changes, energy_read = self.ingestor.take_observations()
        self._metrics.add_ingest(self.ingestor.drain_counters())
        if not events and not changes:
            return
        commit = functools.partial(
            self._outbox.commit, events, changes, now=now, batch=fingerprints
        )
        try:
            if self._trickle(len(fingerprints or ())):
                self._commit_on_loop(commit)
            else:
                await self._store_thread.call(commit)
        except DiskFullError as err:
            await self._wait_for_space(commit, err, len(fingerprints or ()), len(events))
        except StoreError as err:
            self._fail(err)
            raise
        if fingerprints:
            self._committed.append(set(fingerprints))
        if events:
            self._on_events(len(events))
            for event in events:
                _log_event(event)
        feed = self._feed
        if feed.has_subscribers and (events or readings or state_changes or energy_read):
            feed.publish(
                FeedBatch(
                    ts=now,
                    readings=readings,
                    changes=state_changes,
                    events=events,
                    energy_read=energy_read,
                )
            )

    async def _wait_for_space(
        self, commit: Callable[[], None], err: DiskFullError, messages: int, events: int
    ) -> None:
        """Try ``commit`` again, on a capped doubling delay, until the disk has room.

        Logged once when the wait starts (``store_disk_full``) and once when it ends
        (``store_disk_full_ended``). Raises ``CommitAbandoned`` when the bridge stops
        meanwhile, and ``StoreError`` (fatal) when another error comes up.
        """
        waiting = DiskFull(since=self.now(), error=str(err), messages=messages, events=events)
        self.disk_full = waiting
        self._metrics.store_disk_full.set(1)
        self._metrics.store_disk_full_since.set(waiting.since)
        log.error(
            "store_disk_full",
            error=str(err),
            since=iso_utc(waiting.since),
            unacknowledged_messages=messages,
            uncommitted_events=events,
            retry_cap_s=DISK_FULL_RETRY_CAP_S,
            message="the disk holding the data dir is full: nothing is acknowledged until "
            "this commit succeeds; free space and the bridge carries on by itself",
        )
        delay = DISK_FULL_RETRY_FIRST_S
        try:
            while True:
                if await self._abandoned_within(delay):
                    log.warning(
                        "store_disk_full_abandoned",
                        unacknowledged_messages=messages,
                        uncommitted_events=events,
                        reason="the bridge stops; the broker keeps the messages",
                    )
                    raise CommitAbandoned(waiting.error) from err
                delay = min(delay * 2, DISK_FULL_RETRY_CAP_S)
                try:
                    await self._store_thread.call(commit)
                except DiskFullError as again:
                    waiting.attempts += 1
                    waiting.error = str(again)
                    continue
                except StoreError as other:
                    self._fail(other)
                    raise
                break
        finally:
            self.disk_full = None
            self._metrics.store_disk_full.set(0)
            self._metrics.store_disk_full_since.set(0)
        self._excuse_silence = True
        log.info(
            "store_disk_full_ended",
            seconds=round(self.now() - waiting.since, 3),
            attempts=waiting.attempts,
            committed_events=events,
            acknowledged_messages=messages,
        )

    async def _abandoned_within(self, seconds: float) -> bool:
        """Sleep ``seconds`` on the clock; True at once when the bridge stops meanwhile."""
        if self._abandon.is_set():
            return True
        sleep = asyncio.ensure_future(self._clock.sleep(seconds))
        stop = asyncio.ensure_future(self._abandon.wait())
        try:
            await asyncio.wait({sleep, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleep.cancel()
            stop.cancel()
        return self._abandon.is_set()

    def _fail(self, err: StoreError) -> None:
        log.critical("store_commit_failed", error=str(err))
        self._on_fatal(err)


def _log_event(event: Event) -> None:
    log.info(
        "event_emitted",
        event_type=str(event.event_type),
        device_id=event.device_id,
        session_id=event.session_id,
        at=iso_utc(event.timestamp),
    )
