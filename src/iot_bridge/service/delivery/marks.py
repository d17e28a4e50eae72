"""Flush batching: events Odoo accepted, marked delivered in the store many at a time.

Lanes only record a success here; the worker's loop writes the marks, in one
transaction per flush in a thread, so a scan for due devices never overtakes
a mark. Reads skip what is recorded or being marked, so they need no write
and never wait behind a commit's fsync. A crash before a flush re-sends those
events with the same ``event_uid`` (at-least-once; Odoo dedupes).
"""

from __future__ import annotations

import asyncio

from iot_bridge.errors import StoreError
from iot_bridge.logs import get_logger
from iot_bridge.service.ports import Clock, DeliveryQueue

log = get_logger(__name__)

FLUSH_DELIVERED = 512  # successes marked in one transaction (a crash re-sends at most about this)


class DeliveredMarks:
    """The successes not yet marked delivered, and those being marked right now."""

    def __init__(self, store: DeliveryQueue, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._accepted: list[int] = []  # accepted by Odoo, not yet marked in the store
        self._marking: set[int] = set()  # being marked right now (in a thread)

    def __len__(self) -> int:
        """Successes recorded and not handed to a flush yet."""
        return len(self._accepted)

    def add(self, seq: int) -> None:
        """Odoo accepted event ``seq``."""
        self._accepted.append(seq)

    def skip(self) -> frozenset[int]:
        """What a read of pending events must leave out: recorded or being marked."""
        return frozenset(self._accepted) | self._marking

    def _take(self) -> list[int]:
        """The recorded successes, handed over (on the event loop) to be marked."""
        accepted, self._accepted = self._accepted, []
        return accepted

    async def flush(self) -> None:
        """Mark the recorded successes delivered, in one transaction in a thread."""
        accepted = self._take()
        if not accepted:
            return
        self._marking.update(accepted)  # reads skip them until the mark is written
        try:
            await asyncio.to_thread(self._store.mark_delivered_many, accepted, self._clock.now())
        except StoreError:
            self._accepted[:0] = accepted  # kept for the next try
            raise
        finally:
            self._marking.difference_update(accepted)
        log.info("events_delivered", events=len(accepted))

    def flush_now(self, now: float) -> None:
        """``flush`` blocking the event loop: only when cancelled, as shutdown runs out."""
        accepted = self._take()
        self._store.mark_delivered_many(accepted, now)
