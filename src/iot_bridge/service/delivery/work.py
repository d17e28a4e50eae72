"""The lanes' work: due devices and their chunks read ahead, and the device each lane holds.

The devices that are due are read in one skip-scan, their chunks in batches
(``PREFETCH_DEVICES`` at a time, in the same thread hop that marks the
previous successes delivered), so 10,000 devices with one event each cost a
handful of store round trips, not one per event. A device is held by at most
one lane (``in_flight``), which is how its events stay in order.
"""

from __future__ import annotations

import asyncio
from collections import deque

from iot_bridge.service.delivery.batching import MAX_BATCH_EVENTS, device_chunk_limit
from iot_bridge.service.ports import DeliveryQueue, EventSender, OutboxItem

LANE_CHUNK = 16  # a device's events one lane sends before the device goes back to the pool
PREFETCH_DEVICES = 256  # devices whose chunks are read from the store in one go
BATCH_PREFETCH_DEVICES = 512  # the same for calls of 500: one read fills them with one event each


class Work:
    """Due work read ahead of the lanes, and which lane holds which device."""

    def __init__(self, store: DeliveryQueue) -> None:
        self._store = store
        # device_id -> its lane and the sender it uses
        self.in_flight: dict[str, tuple[asyncio.Task[None], EventSender]] = {}
        self.due_devices: deque[str] = deque()  # found due, chunks not read yet
        self.chunks: deque[list[OutboxItem]] = deque()  # read, waiting for a lane
        self.reading = False  # the loop reads due work from the store right now

    def forget(self) -> None:
        """Drop what was read ahead (the sender changed, Odoo went down, events revived)."""
        self.due_devices.clear()
        self.chunks.clear()

    def busy_senders(self) -> list[EventSender]:
        """The senders the deliveries under way use."""
        return [sender for _, sender in self.in_flight.values()]

    def occupancy(
        self, *, batching: bool, lanes: int, batch_lanes: int, max_batches: int
    ) -> tuple[int, int, int, tuple[str, ...]]:
        """Lanes busy, lanes in all, work queued (in lanes' worth), devices a scan leaves out."""
        if not batching:
            exclude = tuple(self.in_flight)
            return len(self.in_flight), lanes, len(self.chunks), exclude
        queued = sum(map(len, self.chunks)) // MAX_BATCH_EVENTS  # full calls' worth
        # Devices already read are left out of a new scan too: a second chunk of the
        # same device could go in another call, out of order.
        exclude = (*self.in_flight, *(chunk[0].device_id for chunk in self.chunks))
        return batch_lanes, max_batches, queued, exclude

    def read(
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

    def probe_candidate(self) -> OutboxItem | None:
        """In a thread: the most overdue device's oldest pending event, due or not."""
        devices, _ = self._store.due_devices(float("inf"))
        for chunk in self._store.pending_chunks(devices[:1], float("inf"), 1):
            return chunk[0]
        return None

    def next_chunk(self) -> list[OutboxItem] | None:
        """The next queued chunk of a device no lane holds."""
        while self.chunks:
            chunk = self.chunks.popleft()
            if chunk[0].device_id not in self.in_flight:
                return chunk
        return None

    def more_to_read(self) -> bool:
        """Due devices are known but not read yet, or being read."""
        return bool(self.due_devices) or self.reading

    def claim(
        self, batch: list[list[OutboxItem]], task: asyncio.Task[None], sender: EventSender
    ) -> None:
        """``task`` holds the devices of ``batch``."""
        for chunk in batch:
            self.in_flight[chunk[0].device_id] = (task, sender)

    def release(self, batch: list[list[OutboxItem]]) -> None:
        """The devices of ``batch`` are free again."""
        for chunk in batch:
            self.in_flight.pop(chunk[0].device_id, None)
