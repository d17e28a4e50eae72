"""The in-process feed: fan-out, bounded queues, drops counted, never blocking."""

import asyncio

import pytest

from iot_bridge.service.feed import Feed, FeedBatch, ReadingAccepted, StateChanged


def _batch(ts: float) -> FeedBatch:
    return FeedBatch(
        ts=ts,
        readings=(ReadingAccepted("cnc", ts, 120.0),),
        changes=(StateChanged("cnc", ts, "idle", "starting", None),),
    )


def test_every_subscriber_gets_every_batch_in_order() -> None:
    """Two subscribers both see each published batch, oldest first."""
    feed = Feed()
    a, b = feed.subscribe("a"), feed.subscribe("b")
    for ts in (1.0, 2.0, 3.0):
        feed.publish(_batch(ts))
    for sub in (a, b):
        assert [sub.get_nowait().ts for _ in range(3)] == [1.0, 2.0, 3.0]  # type: ignore[union-attr]
        assert sub.get_nowait() is None


def test_a_full_subscriber_drops_and_counts_without_blocking_others() -> None:
    """A slow subscriber misses batches past its bound; the others get all of them."""
    feed = Feed()
    slow = feed.subscribe("slow", max_batches=2)
    fast = feed.subscribe("fast", max_batches=100)
    for ts in range(10):
        feed.publish(_batch(float(ts)))
    assert slow.dropped == 8
    assert feed.dropped == 8
    assert fast.dropped == 0
    assert [slow.get_nowait().ts, slow.get_nowait().ts] == [0.0, 1.0]  # type: ignore[union-attr]


def test_publish_without_subscribers_is_a_no_op() -> None:
    """Nobody listening: publish does nothing and has_subscribers says so."""
    feed = Feed()
    assert not feed.has_subscribers
    feed.publish(_batch(1.0))
    assert feed.dropped == 0


def test_a_bound_below_one_is_refused() -> None:
    """A subscription must hold at least one batch."""
    with pytest.raises(ValueError, match="max_batches"):
        Feed().subscribe("x", max_batches=0)


async def test_get_waits_for_the_next_batch_and_close_ends_iteration() -> None:
    """An awaiting consumer wakes on publish; close ends ``async for`` cleanly."""
    feed = Feed()
    sub = feed.subscribe("consumer")
    seen: list[float] = []

    async def consume() -> None:
        async for batch in sub:
            seen.append(batch.ts)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    feed.publish(_batch(1.0))
    feed.publish(_batch(2.0))
    await asyncio.sleep(0)
    sub.close()
    await asyncio.wait_for(task, 1.0)
    assert seen == [1.0, 2.0]
    assert not feed.has_subscribers
    feed.publish(_batch(3.0))  # after close: not queued, not counted
    assert sub.get_nowait() is None and sub.dropped == 0
