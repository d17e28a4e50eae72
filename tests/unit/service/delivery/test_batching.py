"""What goes into one batch call, and what each event's result means (service/delivery/batching.py)."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iot_bridge.errors import DeliveryError
from iot_bridge.service.delivery.batching import (
    ENVELOPE_BYTES,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MIN_DEVICE_CHUNK,
    device_chunk_limit,
    event_bytes,
    fills_a_call,
    sort_outcomes,
    take_batch,
)
from iot_bridge.service.ports import OutboxItem

_seq = iter(range(1, 10**9))


def item(device_id: str, size: int = 100) -> OutboxItem:
    """A pending event of ``device_id`` whose JSON is ``size`` bytes."""
    seq = next(_seq)
    return OutboxItem(seq, f"uid-{seq}", device_id, "session_heartbeat", 0, b"x" * size)


def chunks_of(*spec: tuple[str, int], size: int = 100) -> deque[list[OutboxItem]]:
    """A queue of per-device chunks: (device_id, events) each."""
    return deque([item(device, size) for _ in range(count)] for device, count in spec)


def devices(batch: list[list[OutboxItem]]) -> list[tuple[str, int]]:
    """(device_id, events) of each chunk in a batch."""
    return [(chunk[0].device_id, len(chunk)) for chunk in batch]


def permanent(name: str = "odoo.exceptions.ValidationError") -> DeliveryError:
    """A per-event error that makes the event dead."""
    return DeliveryError(f"Odoo error {name}", permanent=True)


def transient(name: str = "odoo.exceptions.AccessError") -> DeliveryError:
    """A per-event error that is retried."""
    return DeliveryError(f"Odoo error {name}", permanent=False)


# -- filling a call --------------------------------------------------------------------


def test_a_single_event_makes_a_call_of_one() -> None:
    """Nothing waits to fill a call: one due event is a batch of one."""
    queue = chunks_of(("a", 1))
    assert devices(take_batch(queue, set())) == [("a", 1)]
    assert not queue


def test_chunks_go_in_queue_order_until_500_events() -> None:
    """Whole chunks in queue order; the chunk that crosses 500 is split, its rest dropped."""
    queue = chunks_of(*((f"d{n}", 16) for n in range(40)))
    batch = take_batch(queue, set())
    assert sum(len(chunk) for chunk in batch) == MAX_BATCH_EVENTS
    assert devices(batch) == [(f"d{n}", 16) for n in range(31)] + [("d31", 4)]
    assert [chunk[0].device_id for chunk in queue] == [f"d{n}" for n in range(32, 40)]


def test_a_split_chunk_keeps_the_device_oldest_events() -> None:
    """The part of a split chunk that goes is its head: the device's order holds."""
    queue = chunks_of(("a", 600))
    first = list(queue[0])
    batch = take_batch(queue, set())
    assert batch == [first[:MAX_BATCH_EVENTS]]
    assert not queue  # the rest is read again once this call is answered


def test_one_mebibyte_bounds_the_body() -> None:
    """Events of 10 KB: a call holds as many as fit in 1 MiB with the envelope."""
    queue = chunks_of(*((f"d{n}", 16) for n in range(10)), size=10_000)
    batch = take_batch(queue, set())
    size = ENVELOPE_BYTES + sum(event_bytes(i) for chunk in batch for i in chunk)
    assert size <= MAX_BATCH_BYTES
    assert sum(len(chunk) for chunk in batch) == (MAX_BATCH_BYTES - ENVELOPE_BYTES) // 10_001


def test_an_event_larger_than_the_limit_goes_alone() -> None:
    """A 2 MiB event at the front goes in a call of its own, then the others follow."""
    big = item("big", size=2 * MAX_BATCH_BYTES)
    queue: deque[list[OutboxItem]] = deque([[big, item("big")], [item("b")]])
    assert take_batch(queue, set()) == [[big]]
    assert devices(take_batch(queue, set())) == [("b", 1)]


def test_a_large_event_behind_others_waits_for_the_next_call() -> None:
    """A 2 MiB event never joins a call that already holds events."""
    big = item("big", size=2 * MAX_BATCH_BYTES)
    queue: deque[list[OutboxItem]] = deque([[item("a")], [big]])
    assert devices(take_batch(queue, set())) == [("a", 1)]
    assert take_batch(queue, set()) == [[big]]


def test_devices_in_a_call_are_left_out() -> None:
    """A chunk of a device already in a call (busy) is dropped, never sent beside it."""
    queue = chunks_of(("a", 3), ("b", 2))
    assert devices(take_batch(queue, {"a"})) == [("b", 2)]
    assert not queue


def test_a_device_appears_once_in_a_call() -> None:
    """A second chunk of a device in the same queue is dropped, not sent twice."""
    queue = chunks_of(("a", 2), ("a", 2), ("b", 1))
    assert devices(take_batch(queue, set())) == [("a", 2), ("b", 1)]


def test_an_empty_queue_gives_no_call() -> None:
    """Nothing queued, or only busy devices: no call."""
    assert take_batch(deque(), set()) == []
    assert take_batch(chunks_of(("a", 1)), {"a"}) == []


@given(
    st.lists(
        st.tuples(st.integers(0, 30), st.integers(1, 600), st.integers(1, 40_000)),
        min_size=1,
        max_size=60,
    )
)
def test_calls_respect_the_limits_and_each_device_order(
    spec: list[tuple[int, int, int]],
) -> None:
    """Whatever is queued: every call holds at most 500 events and 1 MiB (or one event),
    each device at most once, and each device's events in order."""
    queue: deque[list[OutboxItem]] = deque()
    seen: set[str] = set()
    for device, count, size in spec:
        name = f"d{device}"
        if name in seen:
            continue
        seen.add(name)
        queue.append([item(name, size) for _ in range(count)])
    while queue:
        batch = take_batch(queue, set())
        events = [i for chunk in batch for i in chunk]
        assert events
        size = ENVELOPE_BYTES + sum(event_bytes(i) for i in events)
        assert len(events) <= MAX_BATCH_EVENTS
        assert size <= MAX_BATCH_BYTES or len(events) == 1
        assert len({chunk[0].device_id for chunk in batch}) == len(batch)
        for chunk in batch:
            assert {i.device_id for i in chunk} == {chunk[0].device_id}
            assert [i.seq for i in chunk] == sorted(i.seq for i in chunk)


def test_a_full_call_is_500_events_or_1_mebibyte() -> None:
    """Queued chunks fill a call at 500 events, or at 1 MiB of body, whichever comes first."""
    assert fills_a_call(chunks_of(*((f"d{n}", 1) for n in range(500))))
    assert not fills_a_call(chunks_of(*((f"d{n}", 1) for n in range(499))))
    assert fills_a_call(chunks_of(("a", 60), size=20_000))
    assert not fills_a_call(chunks_of(("a", 40), size=20_000))
    assert not fills_a_call(deque())


def test_few_devices_are_read_deep_enough_to_fill_a_call() -> None:
    """One due device is read 500 deep; many, 16 each."""
    assert device_chunk_limit(1) == MAX_BATCH_EVENTS
    assert device_chunk_limit(0) == MAX_BATCH_EVENTS
    assert device_chunk_limit(4) == 125
    assert device_chunk_limit(256) == MIN_DEVICE_CHUNK


# -- what the results mean -------------------------------------------------------------


def test_ok_and_duplicate_are_delivered() -> None:
    """Every result a success: every event delivered."""
    items = [item("a"), item("b"), item("a")]
    outcome = sort_outcomes(items, [None, None, None])
    assert outcome.delivered == items
    assert (outcome.dead, outcome.retry, outcome.held) == ([], [], [])


def test_a_validation_error_in_the_middle_is_dead_and_the_device_goes_on() -> None:
    """A permanent error kills that event only; its device's later events are delivered."""
    items = [item("a"), item("a"), item("a")]
    error = permanent()
    outcome = sort_outcomes(items, [None, error, None])
    assert outcome.delivered == [items[0], items[2]]
    assert outcome.dead == [(items[1], error)]
    assert (outcome.retry, outcome.held) == ([], [])


def test_a_user_error_is_dead_too() -> None:
    """UserError is permanent like ValidationError (the sender sets ``permanent``)."""
    items = [item("a")]
    error = permanent("odoo.exceptions.UserError")
    assert sort_outcomes(items, [error]).dead == [(items[0], error)]


def test_a_transient_error_holds_the_device_later_events() -> None:
    """A transient error is retried; the device's later events are held (not delivered,
    even if Odoo answered ok for them), other devices go on."""
    items = [item("a"), item("b"), item("a"), item("b"), item("a")]
    error = transient()
    skipped = transient("Skipped")
    outcome = sort_outcomes(items, [error, None, skipped, None, None])
    assert outcome.retry == [(items[0], error)]
    assert outcome.held == [items[2], items[4]]
    assert outcome.delivered == [items[1], items[3]]
    assert outcome.dead == []


def test_a_permanent_error_after_a_transient_one_is_held() -> None:
    """After a device's transient failure nothing of it is decided, not even a death."""
    items = [item("a"), item("a")]
    outcome = sort_outcomes(items, [transient(), permanent()])
    assert outcome.held == [items[1]]
    assert outcome.dead == []


def test_a_skipped_without_an_earlier_failure_is_retried() -> None:
    """``Skipped`` is transient for its event: retried like any other."""
    items = [item("a"), item("a")]
    skipped = transient("Skipped")
    outcome = sort_outcomes(items, [skipped, skipped])
    assert outcome.retry == [(items[0], skipped)]
    assert outcome.held == [items[1]]


def test_results_of_another_count_are_refused() -> None:
    """A result list of another length is an error, not a guess."""
    with pytest.raises(ValueError, match="1 results for 2 events"):
        sort_outcomes([item("a"), item("a")], [None])
