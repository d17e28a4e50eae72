"""An in-process feed of what the pipeline did, for views that must never slow it.

The pipeline publishes one ``FeedBatch`` per committed batch (readings
accepted, state changes, events committed, in that order of interest). Each
subscriber has a bounded queue of batches: ``publish`` never waits and never
raises; a subscriber whose queue is full misses the batch, and the miss is
counted (``Subscription.dropped``, ``Feed.dropped``). The board, the MQTT
state out and any future output hang off it without touching the pipeline.

Everything here runs on the event loop's thread: ``publish`` is a plain call
from the pipeline task, ``Subscription.get`` an await in the consumer's task.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from iot_bridge.domain.events import Event

DEFAULT_MAX_BATCHES = 256


@dataclass(frozen=True, slots=True)
class ReadingAccepted:
    """A power reading that reached a device's detector (``power_w`` as the device sent it)."""

    device_id: str
    ts: float
    power_w: float


@dataclass(frozen=True, slots=True)
class StateChanged:
    """A device's detector moved from ``previous`` to ``state`` (names of CONTRACT section 5)."""

    device_id: str
    ts: float
    previous: str
    state: str
    session_id: str | None


@dataclass(frozen=True, slots=True)
class FeedBatch:
    """What one committed pipeline batch did. ``ts`` is the batch's time (unix seconds).

    ``energy_read``: devices whose energy counter arrived in a message without
    power (a Shelly's minute update of ``aenergy`` alone), once per message.
    """

    ts: float
    readings: Sequence[ReadingAccepted] = ()
    changes: Sequence[StateChanged] = ()
    events: Sequence[Event] = ()
    energy_read: Sequence[str] = ()


@dataclass(eq=False, slots=True)
class Subscription:
    """One subscriber's bounded queue; iterate it or ``await get()``."""

    name: str
    max_batches: int
    _feed: Feed
    _queue: deque[FeedBatch] = field(default_factory=deque)
    _waiter: asyncio.Future[None] | None = None
    dropped: int = 0
    closed: bool = False

    def offer(self, batch: FeedBatch) -> None:
        """Queue ``batch``, or count it dropped when the queue is full. Never blocks."""
        if self.closed:
            return
        if len(self._queue) >= self.max_batches:
            self.dropped += 1
            self._feed.dropped += 1
            return
        self._queue.append(batch)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def get_nowait(self) -> FeedBatch | None:
        """The oldest queued batch, or None when there is none."""
        return self._queue.popleft() if self._queue else None

    async def get(self) -> FeedBatch:
        """Wait for the next batch. Raises ``EOFError`` once the subscription is closed."""
        while not self._queue:
            if self.closed:
                raise EOFError(self.name)
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.popleft()

    def close(self) -> None:
        """Stop receiving; a waiting ``get`` ends with ``EOFError``."""
        if self.closed:
            return
        self.closed = True
        self._feed.unsubscribe(self)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def __aiter__(self) -> AsyncIterator[FeedBatch]:
        try:
            while True:
                yield await self.get()
        except EOFError:
            return


class Feed:
    """Fan-out of ``FeedBatch``es to bounded subscriber queues."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self.dropped = 0  # batches missed by any subscriber, for /metrics

    @property
    def has_subscribers(self) -> bool:
        """Whether anyone listens: the pipeline may skip building a batch otherwise."""
        return bool(self._subscriptions)

    @property
    def subscriptions(self) -> Sequence[Subscription]:
        """The live subscriptions (for metrics and tests)."""
        return tuple(self._subscriptions)

    def subscribe(self, name: str, *, max_batches: int = DEFAULT_MAX_BATCHES) -> Subscription:
        """A new subscription that receives every batch published from now on."""
        if max_batches < 1:
            raise ValueError("max_batches must be at least 1")
        subscription = Subscription(name=name, max_batches=max_batches, _feed=self)
        self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget ``subscription`` (``Subscription.close`` calls this)."""
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def publish(self, batch: FeedBatch) -> None:
        """Offer ``batch`` to every subscriber; never waits, never raises."""
        for subscription in self._subscriptions:
            subscription.offer(batch)
