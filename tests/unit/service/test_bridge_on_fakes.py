"""The bridge's service layer on in-memory fakes of its ports: ordering, atomicity, the feed."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from iot_bridge.errors import ConfigError, StoreError
from iot_bridge.service import bridge as bridge_module
from iot_bridge.service.feed import FeedBatch
from tests.unit.service.fakes import FakeOutbox, Rig, config, shelly


def _working(rig: Rig, device_id: str, first_packet: int) -> None:
    """A high reading: the device starts (the session starts after the debounce)."""
    rig.source.push(shelly(device_id, 500.0, first_packet))


async def _committed(rig: Rig, acks: int) -> None:
    await rig.until(lambda: len(rig.source.acked) >= acks, f"{acks} acknowledgements")


async def test_acknowledgements_follow_the_commit_in_order() -> None:
    """Each batch is committed, then acknowledged; batches in the order they came."""
    rig = await Rig(config("mill")).start()
    rig.source.push(shelly("mill", 500.0, 1), shelly("mill", 510.0, 2))
    await _committed(rig, 2)
    rig.clock.time += 10.0
    rig.source.push(shelly("mill", 520.0, 3))
    await _committed(rig, 3)
    await rig.stop()
    steps = [entry for entry in rig.journal if entry[0] in ("commit", "ack")]
    acks = [entry for entry in steps if entry[0] == "ack"]
    assert [a[2] for a in acks] == [[1, 2], [3]]
    for ack in acks:  # each acknowledgement comes right after the commit of its batch
        commit = steps[steps.index(ack) - 1]
        assert commit[0] == "commit"
        assert [fingerprint >> 32 for fingerprint in commit[2]] == ack[2]


async def test_a_failed_commit_acknowledges_nothing_and_keeps_the_durable_state() -> None:
    """A commit that fails stops the bridge with the StoreError, acks nothing, changes no state."""
    rig = await Rig(config("mill")).start()
    _working(rig, "mill", 1)
    await _committed(rig, 1)
    before_snapshots = rig.outbox.load_snapshots()
    before_events = list(rig.outbox.events)
    rig.outbox.fail_commits = True
    rig.clock.time += 10.0
    rig.source.push(shelly("mill", 600.0, 2))  # would start the session
    assert rig.task is not None
    with pytest.raises(StoreError):  # the bridge stops by itself
        await rig.task
    await rig.bridge.close()
    assert rig.source.acked == [1]
    assert rig.outbox.load_snapshots() == before_snapshots
    assert rig.outbox.events == before_events
    # A restart from the outbox continues from the durable state, not the lost batch.
    restarted = await Rig(config("mill"), outbox=_copy(rig.outbox)).start()
    detector = restarted.bridge.ingestor.detector("mill")
    assert detector is not None and detector.session_id is None
    await restarted.stop()


def _copy(outbox: FakeOutbox) -> FakeOutbox:
    return FakeOutbox(
        events=list(outbox.events), snapshots=dict(outbox.snapshots), batches=list(outbox.batches)
    )


async def test_a_config_push_that_fails_validation_changes_nothing() -> None:
    """A '***' for another broker and an unusable Odoo URL: ConfigError, nothing persisted or changed."""
    rig = await Rig(config("mill")).start()
    masked_other_broker = config("mill", "lathe", broker="broker-b").model_copy(
        update={"mqtt": config("x", broker="broker-b").mqtt.model_copy(update={"password": "***"})}  # type: ignore[union-attr]
    )
    for bad in (masked_other_broker, config("mill", "lathe", odoo="http://invalid.example")):
        with pytest.raises(ConfigError):
            await rig.bridge.configs.apply(bad)
    assert rig.repository.persisted == []
    assert rig.bridge.ingestor.device_ids == ["mill"]
    assert len(rig.sources) == 1 and rig.source.section.broker == "broker-a"
    assert rig.bridge.configs.config.devices[0].device_id == "mill"
    assert len(rig.bridge.configs.config.devices) == 1
    await rig.stop()


async def test_a_broker_switch_keeps_the_outbox_and_the_sessions() -> None:
    """Switching brokers keeps the running session and every committed event; the old source closes."""
    rig = await Rig(config("mill")).start()
    _working(rig, "mill", 1)
    await _committed(rig, 1)
    rig.clock.time += 10.0
    rig.source.push(shelly("mill", 600.0, 2))
    await _committed(rig, 2)
    detector = rig.bridge.ingestor.detector("mill")
    assert detector is not None and detector.session_id is not None
    session, events = detector.session_id, list(rig.outbox.events)
    old = rig.source
    applied = await rig.bridge.configs.apply(config("mill", broker="broker-b"))
    assert applied.mqtt_reconnected
    await rig.until(lambda: old.closed, "the old source closed")
    assert rig.source is not old and rig.source.section.broker == "broker-b"
    assert rig.source.subscriptions == old.subscriptions
    rig.clock.time += 1.0
    rig.source.push(shelly("mill", 610.0, 1))
    await _committed(rig, 1)
    assert rig.bridge.ingestor.detector("mill") is detector
    assert detector.session_id == session
    assert rig.outbox.events[: len(events)] == events
    await rig.stop()


async def test_a_stop_right_after_a_broker_switch_ends_the_run() -> None:
    """A stop while the pipeline still waits for the replaced source's receive to end stops it."""
    rig = await Rig(config("mill")).start()
    old = rig.source
    old.hold_cancel = asyncio.Event()
    await rig.until(lambda: old.receiving, "the pipeline receiving from the first source")
    await rig.bridge.configs.apply(config("mill", broker="broker-b"))
    await rig.until(old.receive_cancelled.is_set, "the switch cancelling that receive")
    pipeline = next(task for task in asyncio.all_tasks() if task.get_name() == "pipeline")
    rig.bridge.stop()
    await rig.until(pipeline.cancelling, "the stop cancelling the pipeline")
    old.hold_cancel.set()  # the old receive ends only now, after the stop's cancel
    async with asyncio.timeout(5.0):  # a deadline for the failure, not a timing bound
        await rig.stop()
    assert pipeline.cancelled()
    assert old.closed and rig.source.closed


async def test_a_task_that_swallows_its_cancel_is_logged_and_cancelled_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stop does not wait forever for a task that ignores a cancel: logged, cancelled again."""
    monkeypatch.setattr(bridge_module, "SHUTDOWN_STEP_TIMEOUT_S", 0.01)
    started, swallowed = asyncio.Event(), asyncio.Event()

    async def stubborn() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.set()
        await asyncio.Event().wait()  # only a second cancel ends it

    rig = Rig(config("mill"))
    rig.bridge.add_task("stubborn", stubborn)
    await rig.start()
    await rig.until(started.is_set, "the stubborn task running")
    with capture_logs() as logs:
        async with asyncio.timeout(5.0):  # a deadline for the failure, not a timing bound
            await rig.stop()
    assert swallowed.is_set()
    stuck = [entry for entry in logs if entry["event"] == "shutdown_task_stuck"]
    assert [entry["task"] for entry in stuck] == ["stubborn"]
    assert any("stubborn" in frame for frame in stuck[0]["stack"])


async def test_a_slow_feed_subscriber_does_not_slow_the_pipeline() -> None:
    """A subscriber that never reads misses batches (counted); the pipeline acks every batch."""
    rig = await Rig(config("mill")).start()
    slow = rig.bridge.feed.subscribe("slow", max_batches=1)
    for packet in range(1, 21):
        rig.source.push(shelly("mill", 5.0 + packet, packet))
        await _committed(rig, packet)
    assert rig.source.acked == list(range(1, 21))
    assert slow.dropped == 19 and rig.bridge.feed.dropped == 19
    assert b"iot_bridge_feed_dropped_batches 19.0" in rig.bridge.metrics.exposition()
    await rig.stop()


async def test_the_feed_gets_each_committed_batch_after_its_commit() -> None:
    """One FeedBatch per committed batch: readings, state changes and the events committed."""
    rig = await Rig(config("mill")).start()
    feed = rig.bridge.feed.subscribe("test")
    rig.source.push(shelly("mill", 500.0, 1), shelly("mill", 505.0, 2))
    first = await feed.get()
    assert first.events and all(e in rig.outbox.events for e in first.events)  # after the commit
    assert [(r.device_id, r.power_w) for r in first.readings] == [("mill", 500.0), ("mill", 505.0)]
    assert [(c.previous, c.state) for c in first.changes] == [("idle", "starting")]
    rig.clock.time += 10.0
    rig.source.push(shelly("mill", 600.0, 3))
    second = await feed.get()
    assert [str(e.event_type) for e in second.events] == ["session_started"]
    assert second.changes[0].session_id == second.events[0].session_id
    assert len(rig.outbox.events) >= 1 and rig.outbox.events[-1] == second.events[0]
    await rig.stop()


async def test_a_device_removed_by_a_push_reaches_the_feed() -> None:
    """The events a config push commits (device_removed) are published too."""
    rig = await Rig(config("mill", "lathe")).start()
    feed = rig.bridge.feed.subscribe("test")
    _working(rig, "mill", 1)
    await feed.get()
    rig.clock.time += 10.0
    rig.source.push(shelly("mill", 600.0, 2))
    await feed.get()
    await rig.bridge.configs.apply(config("lathe"))
    batch: FeedBatch = await feed.get()
    assert [e.data.get("reason") for e in batch.events] == ["device_removed"]
    assert rig.repository.persisted[-1].devices[0].device_id == "lathe"
    await rig.stop()


async def test_no_subscriber_means_no_readings_are_collected() -> None:
    """Without subscribers the ingestor keeps no readings or state changes for the feed."""
    rig = await Rig(config("mill")).start()
    rig.source.push(shelly("mill", 500.0, 1))
    await _committed(rig, 1)
    assert rig.bridge.ingestor.take_observations() == ([], [], [])
    await rig.stop()


async def test_turning_state_out_on_reconnects_with_the_will_and_off_without() -> None:
    """The will is part of the connection: a push that changes it builds a new source."""
    from iot_bridge.config.model import StateOutSection

    rig = await Rig(config("mill")).start()
    assert rig.source.will is None
    section = StateOutSection(enabled=True, topic_prefix="plant")
    on = config("mill").model_copy(update={"state_out": section})
    applied = await rig.bridge.configs.apply(on)
    assert applied.mqtt_reconnected
    will = rig.source.will
    assert will is not None
    assert (will.topic, will.payload) == ("plant/bridge/availability", b"offline")
    again = await rig.bridge.configs.apply(on)
    assert not again.mqtt_reconnected  # the same will: the same connection
    off = await rig.bridge.configs.apply(config("mill"))
    assert off.mqtt_reconnected and rig.source.will is None
    await rig.stop()
