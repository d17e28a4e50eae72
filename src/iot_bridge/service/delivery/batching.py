"""Batched delivery (``odoo.request_format: batch``, CONTRACT §6): what goes into one
call, and what each event's result in it means for the outbox.

Pure: no I/O, no clock. ``service/delivery/worker.py`` reads the due events as per-device
chunks (each device's oldest pending events, in order), and

- ``take_batch`` fills one call from the front of that queue: at most
  ``MAX_BATCH_EVENTS`` events and ``MAX_BATCH_BYTES`` of body, never a device
  that is already in a call (so a device's events stay in order across calls);
  a chunk that does not fit is split, its rest left to a later read; an event
  larger than the limit alone goes alone.
- ``sort_outcomes`` turns Odoo's per-event results into what to do with each
  event: delivered, dead, retried (a device's first transient failure in the
  call), or held (that device's later events in the call: not marked
  delivered, not counted as tried; they are sent again after the failed one).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field

from iot_bridge.errors import DeliveryError
from iot_bridge.service.ports import OutboxItem

MAX_BATCH_EVENTS = 500  # CONTRACT §6
MAX_BATCH_BYTES = 1024 * 1024  # CONTRACT §6: the whole request body
# The JSON-RPC envelope around the events ({"jsonrpc": "2.0", "method": "call", "id": <an
# event_uid>, "params": {"events": [...]}}) is about 100 bytes; this leaves room to spare.
ENVELOPE_BYTES = 256
MIN_DEVICE_CHUNK = 16  # events read per device when many devices are due


def event_bytes(item: OutboxItem) -> int:
    """What one event adds to a call's body: its JSON and the comma after it."""
    return len(item.payload_json) + 1


def device_chunk_limit(devices: int) -> int:
    """Events to read per device when ``devices`` are due at once.

    Few devices with long backlogs fill a call between them (one device alone:
    a full call of ``MAX_BATCH_EVENTS``); many devices take ``MIN_DEVICE_CHUNK``
    each, so one read stays a few calls' worth.
    """
    return max(MIN_DEVICE_CHUNK, MAX_BATCH_EVENTS // max(1, devices))


def fills_a_call(chunks: Iterable[list[OutboxItem]]) -> bool:
    """Whether ``chunks`` hold at least a full call: ``MAX_BATCH_EVENTS`` or ``MAX_BATCH_BYTES``.

    While more due devices wait to be read, a call that would leave half empty
    waits for that read (not for time: the read follows at once).
    """
    events, size = 0, ENVELOPE_BYTES
    for chunk in chunks:
        for item in chunk:
            events += 1
            size += event_bytes(item)
            if events >= MAX_BATCH_EVENTS or size >= MAX_BATCH_BYTES:
                return True
    return False


def take_batch(
    chunks: deque[list[OutboxItem]],
    busy: Container[str],
    *,
    max_events: int = MAX_BATCH_EVENTS,
    max_bytes: int = MAX_BATCH_BYTES,
) -> list[list[OutboxItem]]:
    """One call's events, as per-device chunks in queue order, taken from the front of ``chunks``.

    A chunk whose device is ``busy`` (in a call now) is dropped: the device is
    read again once that call is answered. A chunk that does not fit wholly is
    split: the part that fits goes in and the rest is dropped, to be read again
    (still pending) after this call. When the call is still empty, at least one
    event goes in, however large. Returns ``[]`` when ``chunks`` holds nothing
    that can go.
    """
    batch: list[list[OutboxItem]] = []
    in_batch: set[str] = set()
    events = 0
    size = ENVELOPE_BYTES
    while chunks and events < max_events:
        chunk = chunks[0]
        device_id = chunk[0].device_id
        if device_id in busy or device_id in in_batch:
            chunks.popleft()
            continue
        fits = 0
        for item in chunk:
            cost = event_bytes(item)
            if events + fits >= max_events or size + cost > max_bytes:
                break
            size += cost
            fits += 1
        if fits == len(chunk):
            batch.append(chunks.popleft())
            in_batch.add(device_id)
            events += fits
            continue
        if fits == 0 and not batch:
            fits = 1  # an event larger than a call's limit goes alone
        if fits:
            chunks.popleft()
            batch.append(chunk[:fits])
        break
    return batch


@dataclass(slots=True)
class BatchOutcome:
    """What Odoo's per-event results of one call mean for each event in it."""

    delivered: list[OutboxItem] = field(default_factory=list)
    dead: list[tuple[OutboxItem, DeliveryError]] = field(default_factory=list)
    # At most one per device: its first event that failed transiently in the call.
    retry: list[tuple[OutboxItem, DeliveryError]] = field(default_factory=list)
    # The later events of a device with a retry: left pending as they are.
    held: list[OutboxItem] = field(default_factory=list)


def sort_outcomes(
    items: Sequence[OutboxItem], results: Sequence[DeliveryError | None]
) -> BatchOutcome:
    """Each event's fate from its result (None: ``ok`` or ``duplicate``), in the order sent.

    A permanent error makes that event dead and the device goes on (a dead
    event does not block its device). A transient one (any other error,
    ``Skipped`` included) is retried, and everything after it of the same
    device is held, whatever Odoo answered for it: the device's order holds.
    Raises ``ValueError`` when the counts differ.
    """
    if len(items) != len(results):
        raise ValueError(f"{len(results)} results for {len(items)} events")
    outcome = BatchOutcome()
    blocked: set[str] = set()
    for item, error in zip(items, results, strict=True):
        if item.device_id in blocked:
            outcome.held.append(item)
        elif error is None:
            outcome.delivered.append(item)
        elif error.permanent:
            outcome.dead.append((item, error))
        else:
            outcome.retry.append((item, error))
            blocked.add(item.device_id)
    return outcome
