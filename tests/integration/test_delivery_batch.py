"""DeliveryWorker with ``request_format: batch``: a real store, the real OdooBatchSender and
the stand-in's ``/ows/iot/events`` on loopback; time is faked (CONTRACT §6)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from iot_bridge.adapters.odoo import OdooSender
from iot_bridge.adapters.odoo_batch import EVENTS_PATH, OdooBatchSender
from iot_bridge.adapters.store import EventStore
from iot_bridge.domain.events import Event, EventType
from tests.integration.test_delivery import T0, Harness, by_device, make_event, store, until
from tests.support.odoo_standin import MAX_BATCH_BYTES, MAX_BATCH_EVENTS, OdooStandin

__all__ = ["store"]  # the fixture, shared with test_delivery.py


def padded_event(device_id: str, n: int, pad_bytes: int) -> Event:
    """An event of ``device_id`` whose JSON is about ``pad_bytes`` longer than usual."""
    return Event(
        event_uid=str(uuid.uuid4()),
        event_type=EventType.SESSION_HEARTBEAT,
        device_id=device_id,
        machine_name=f"Machine {device_id}",
        session_id="5b0c7c9e-0000-4000-8000-000000000001",
        timestamp=T0 + n,
        data={"n": n, "pad": "x" * pad_bytes},
    )


def batch_harness(store: EventStore, standin: OdooStandin, **kwargs: Any) -> Harness:
    """A Harness whose worker sends through an OdooBatchSender."""
    sender = OdooBatchSender(base_url=standin.url, timeout_s=2.0)
    harness = Harness(store, standin, sender=sender, **kwargs)
    harness.sender = sender
    return harness


@pytest.fixture
async def harness(store: EventStore, odoo_standin: OdooStandin) -> AsyncIterator[Harness]:
    """A running worker delivering to the stand-in's batch route."""
    running = batch_harness(store, odoo_standin)
    running.start()
    yield running
    await running.stop()
    await running.sender.aclose()


def call_sizes(standin: OdooStandin) -> list[int]:
    """Events per call to the batch route, in order."""
    return [len(record.batch) for record in standin.batches]


def assert_calls_keep_device_order(standin: OdooStandin) -> None:
    """No call holds a device twice... unless in order; every request went to the batch route."""
    assert all(record.path == EVENTS_PATH for record in standin.requests)
    for record in standin.batches:
        devices = [device for _, device, _ in record.batch]
        assert len(devices) <= MAX_BATCH_EVENTS
        for device in set(devices):  # a device's events sit together, in one run
            first = devices.index(device)
            assert devices[first : first + devices.count(device)] == [device] * devices.count(
                device
            )


def statuses(store: EventStore) -> dict[str, tuple[str, int]]:
    """event_uid -> (status, attempts) of every event in the store."""
    return {e.event_uid: (e.status, e.attempts) for e in store.recent_events(100_000)}


# -- the happy path ------------------------------------------------------------------


async def test_due_events_go_in_one_call_in_per_device_order(harness: Harness) -> None:
    """120 events of 12 devices, committed together, go in one call, each device's in order."""
    harness.commit([make_event(f"dev-{d}", n) for n in range(10) for d in range(12)])
    events = await harness.standin.wait_for_events_async(120)
    assert by_device(events) == {f"dev-{d}": list(range(10)) for d in range(12)}
    assert call_sizes(harness.standin) == [120]
    assert_calls_keep_device_order(harness.standin)
    await harness.settled(120)
    assert harness.results == ["ok"] * 120
    assert set(statuses(harness.store).values()) == {("delivered", 0)}
    assert harness.standin.duplicates == [] and harness.standin.invalid == []


async def test_a_single_new_event_goes_at_once(harness: Harness) -> None:
    """With the clock standing still, one new event is sent at once, in a call of its own."""
    harness.commit([make_event("a", 0), make_event("b", 0)])
    await harness.standin.wait_for_events_async(2)
    await harness.settled(2)
    harness.commit([make_event("a", 1)])
    events = await harness.standin.wait_for_events_async(3)
    assert by_device(events) == {"a": [0, 1], "b": [0]}
    assert call_sizes(harness.standin) == [2, 1]
    assert harness.clock.now() == T0


async def test_one_device_backlog_goes_in_calls_of_500_in_order(harness: Harness) -> None:
    """1,200 events of one device: calls of 500, 500 and 200, the device's order kept."""
    harness.commit([make_event("a", n) for n in range(1200)])
    events = await harness.standin.wait_for_events_async(1200, timeout_s=30)
    assert by_device(events) == {"a": list(range(1200))}
    assert call_sizes(harness.standin) == [500, 500, 200]
    await harness.settled(1200)
    assert harness.standin.duplicates == []


async def test_many_devices_stay_in_order_across_calls(harness: Harness) -> None:
    """2,000 events of 1,000 devices: no call over 500 events, each device in order."""
    harness.commit([make_event(f"d{d:04d}", n) for n in range(2) for d in range(1000)])
    events = await harness.standin.wait_for_events_async(2000, timeout_s=30)
    assert by_device(events) == {f"d{d:04d}": [0, 1] for d in range(1000)}
    sizes = call_sizes(harness.standin)
    assert max(sizes) <= MAX_BATCH_EVENTS and sum(sizes) == 2000 and len(sizes) >= 4
    assert_calls_keep_device_order(harness.standin)
    assert harness.standin.invalid == [] and harness.standin.duplicates == []
    await harness.settled(2000)


async def test_many_devices_with_one_event_each_fill_their_calls(harness: Harness) -> None:
    """1,200 devices with one event each (a restart): calls of 500, 500 and 200, not
    of whatever one read of the store happened to hold."""
    harness.commit([make_event(f"d{d:04d}", 0) for d in range(1200)])
    await harness.standin.wait_for_events_async(1200, timeout_s=30)
    # Two calls may be in flight at once (BATCHES_IN_FLIGHT): the second and the third can
    # reach the stand-in in either order, so the sizes are compared, not their arrival order.
    assert sorted(call_sizes(harness.standin), reverse=True) == [500, 500, 200]
    await harness.settled(1200)


async def test_calls_stay_within_one_mebibyte(harness: Harness) -> None:
    """100 events of about 20 KB (2 MB): calls of at most 1 MiB of body, in order."""
    harness.commit([padded_event(f"d{d}", n, 20_000) for n in range(10) for d in range(10)])
    events = await harness.standin.wait_for_events_async(100, timeout_s=30)
    assert by_device(events) == {f"d{d}": list(range(10)) for d in range(10)}
    calls = harness.standin.batches
    assert len(calls) >= 2
    assert all(record.body_bytes <= MAX_BATCH_BYTES for record in calls)
    assert harness.standin.invalid == []
    await harness.settled(100)


async def test_an_event_over_the_limit_goes_alone(harness: Harness) -> None:
    """A 1.5 MiB event goes in a call of its own; its device's order holds around it."""
    huge = padded_event("x", 1, int(1.5 * MAX_BATCH_BYTES))
    harness.commit([padded_event("x", 0, 10), huge, padded_event("x", 2, 10)])
    events = await harness.standin.wait_for_events_async(3, timeout_s=30)
    assert by_device(events) == {"x": [0, 1, 2]}
    alone = [r for r in harness.standin.batches if r.body_bytes > MAX_BATCH_BYTES]
    assert [[uid for uid, _, _ in r.batch] for r in alone] == [[huge.event_uid]]
    assert harness.standin.invalid == []
    await harness.settled(3)


# -- per-event failures --------------------------------------------------------------


async def test_a_validation_error_in_the_middle_kills_that_event_only(harness: Harness) -> None:
    """One event of a call refused with ValidationError is dead; the rest, its device's
    later events too, are delivered from the same call."""
    events = [make_event("a", n) for n in range(5)] + [make_event("b", n) for n in range(3)]
    harness.standin.add_rule("validation_error", event_uid=events[2].event_uid, times=1)
    harness.commit(events)
    await harness.standin.wait_for_events_async(7)
    await harness.settled(8)
    assert by_device(harness.standin.events) == {"a": [0, 1, 3, 4], "b": [0, 1, 2]}
    assert call_sizes(harness.standin) == [8]
    assert sorted(harness.results) == ["ok"] * 7 + ["permanent"]
    dead = [e for e in harness.store.recent_events() if e.status == "dead"]
    assert [e.event_uid for e in dead] == [events[2].event_uid]
    assert "ValidationError" in (dead[0].last_error or "")


async def test_a_transient_error_holds_one_device_and_not_the_others(harness: Harness) -> None:
    """A transient error for one device's event: Odoo skips its later events, the other
    devices are delivered; after the backoff that device goes on, in order, once each."""
    standin, store, clock = harness.standin, harness.store, harness.clock
    events = {d: [make_event(d, n) for n in range(4)] for d in ("a", "b", "c")}
    standin.add_rule("rpc_error", event_uid=events["a"][1].event_uid, times=1)
    harness.commit([events[d][n] for n in range(4) for d in ("a", "b", "c")])
    await standin.wait_for_events_async(9)
    await harness.settled(10)
    assert by_device(standin.events) == {"a": [0], "b": [0, 1, 2, 3], "c": [0, 1, 2, 3]}
    assert [s for _, d, s in standin.batches[0].batch if d == "a"] == ["ok", "error"] + [
        "error"
    ] * 2
    assert sorted(harness.results) == ["ok"] * 9 + ["transient"]
    state = statuses(store)
    assert [state[e.event_uid] for e in events["a"]] == [
        ("delivered", 0),
        ("pending", 1),  # the failure is counted once, on the event that failed
        ("pending", 0),
        ("pending", 0),
    ]
    due = store.next_attempt_time()
    assert due is not None and 0.8 <= due - T0 <= 1.0  # the 1 s backoff, jittered
    clock.advance(due - clock.now())
    await standin.wait_for_events_async(12)
    await harness.settled(13)
    assert by_device(standin.events)["a"] == [0, 1, 2, 3]
    assert call_sizes(standin) == [12, 3]
    assert standin.duplicates == []


async def test_a_device_failing_forever_does_not_stall_the_others(harness: Harness) -> None:
    """One device's events failing transiently in every call (Odoo skips the rest of it):
    the other devices are delivered; only its oldest event counts the tries."""
    standin, store, clock = harness.standin, harness.store, harness.clock
    standin.add_rule("rpc_error", device_id="broken")
    broken = [make_event("broken", n) for n in range(5)]
    harness.commit(broken + [make_event(f"ok-{d}", n) for n in range(5) for d in range(3)])
    await standin.wait_for_events_async(15)
    await harness.settled(16)
    for _ in range(3):  # three more tries of the broken device, on its backoff
        due = store.next_attempt_time()
        assert due is not None
        clock.advance(due - clock.now())
        await harness.settled(len(harness.results) + 1)
    assert by_device(standin.events) == {f"ok-{d}": list(range(5)) for d in range(3)}
    state = statuses(store)
    assert [state[e.event_uid] for e in broken] == [("pending", 4)] + [("pending", 0)] * 4
    assert harness.worker.endpoint.up


async def test_duplicates_are_delivered(harness: Harness) -> None:
    """Events Odoo already has are answered duplicate: delivered, nothing doubled in Odoo."""
    events = [make_event("a", n) for n in range(4)]
    direct = OdooSender(base_url=harness.standin.url)
    try:
        for event in events[:2]:
            await direct.send(event.to_dict())
    finally:
        await direct.aclose()
    harness.commit(events)
    await harness.settled(4)
    assert [s for _, _, s in harness.standin.batches[0].batch] == ["duplicate"] * 2 + ["ok"] * 2
    assert by_device(harness.standin.events) == {"a": [0, 1, 2, 3]}
    assert len(harness.standin.duplicates) == 2
    assert set(statuses(harness.store).values()) == {("delivered", 0)}


# -- whole-call failures -------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "params"),
    [
        ("status", {"status": 413}),
        ("status", {"status": 400}),
        ("validation_error", {"whole_call": True}),
    ],
    ids=["413", "400", "ValidationError"],
)
async def test_a_refused_batch_is_sent_again_one_event_at_a_time(
    harness: Harness, mode: str, params: dict[str, Any]
) -> None:
    """A whole call refused permanently makes nothing dead: its events go again one per call
    (to the batch route), each device in order, and are delivered."""
    standin = harness.standin
    standin.add_rule(mode, min_events=2, times=1, **params)
    events = [make_event(d, n) for n in range(3) for d in ("a", "b")]
    with capture_logs() as logs:
        harness.commit(events)
        await standin.wait_for_events_async(6)
        await harness.settled(6)
    assert call_sizes(standin) == [6, 1, 1, 1, 1, 1, 1]
    assert standin.batches[0].outcome == mode
    assert by_device(standin.events) == {"a": [0, 1, 2], "b": [0, 1, 2]}
    assert harness.results == ["ok"] * 6
    assert set(statuses(harness.store).values()) == {("delivered", 0)}
    refused = [entry for entry in logs if entry["event"] == "odoo_batch_refused"]
    assert [(r["events"], r["devices"]) for r in refused] == [(6, 2)]


async def test_a_refused_batch_kills_only_the_event_odoo_refuses_alone(harness: Harness) -> None:
    """A batch answered 400 (one event in it is broken) goes one at a time: only the event
    refused in its own call is dead; once it is, the device's later events go in a batch."""
    standin = harness.standin
    events = [make_event("a", n) for n in range(4)]
    broken = events[1].event_uid
    standin.add_rule("status", event_uid=broken, min_events=2, status=400)
    standin.add_rule("validation_error", event_uid=broken)
    harness.commit(events)
    await standin.wait_for_events_async(3)
    await harness.settled(4)
    assert by_device(standin.events) == {"a": [0, 2, 3]}
    assert call_sizes(standin) == [4, 1, 1, 2]
    state = statuses(harness.store)
    assert [state[e.event_uid][0] for e in events] == [
        "delivered",
        "dead",
        "delivered",
        "delivered",
    ]


async def test_a_result_that_does_not_match_is_retried(harness: Harness) -> None:
    """A 200 whose result lists the wrong events: transient for every event (each device's
    first counted once), all delivered on the retry, in order, none twice."""
    standin, clock = harness.standin, harness.clock
    body = '{"jsonrpc": "2.0", "id": 1, "result": {"results": []}}'
    standin.add_rule(
        "status", min_events=2, times=1, status=200, body=body, content_type="application/json"
    )
    events = [make_event(d, n) for n in range(3) for d in ("a", "b")]
    harness.commit(events)
    await harness.settled(2)
    assert sorted(harness.results) == ["transient", "transient"]
    assert harness.worker.endpoint.up
    state = statuses(harness.store)
    assert sorted(state[e.event_uid][1] for e in events) == [0, 0, 0, 0, 1, 1]
    clock.advance(1.0)
    await standin.wait_for_events_async(6)
    await harness.settled(8)
    assert by_device(standin.events) == {"a": [0, 1, 2], "b": [0, 1, 2]}
    assert standin.duplicates == []


# -- Odoo as a whole: down, up, Retry-After ------------------------------------------


async def test_outage_probes_with_one_event_and_drains_in_batches_after(harness: Harness) -> None:
    """Odoo down: after the first failing call, one probe (a call of one event) at a time on
    the backoff; back up: every device drains in batches, in order, nothing lost or doubled."""
    standin, clock, worker = harness.standin, harness.clock, harness.worker
    standin.set_mode("down")
    devices = [f"dev-{d}" for d in range(20)]
    with capture_logs() as logs:
        harness.commit([make_event(d, 0) for d in devices])
        await until(lambda: not worker.endpoint.up, what="endpoint down")
        await until(harness._asleep_until_next_attempt, what="worker waiting for the probe")
        assert call_sizes(standin) == [20]
        n = 1
        for _ in range(6):
            before = standin.received_count
            await harness.probe()
            assert standin.received_count == before + 1
            assert call_sizes(standin)[-1] == 1
            harness.commit([make_event(d, n) for d in devices])
            n += 1
        assert standin.events == []
        standin.set_mode("ok")
        await harness.probe()
        events = await standin.wait_for_events_async(len(devices) * n, timeout_s=20)
    assert by_device(events) == {d: list(range(n)) for d in devices}
    assert standin.duplicates == []
    assert max(call_sizes(standin)) > 1  # after the probe, batches again
    assert worker.endpoint.up
    await harness.settled(len(harness.results))
    stats = harness.store.outbox_stats(clock.now())
    assert (stats.pending, stats.dead) == (0, 0)
    names = [entry["event"] for entry in logs]
    assert names.count("odoo_unavailable") == 1
    assert names.count("odoo_available") == 1


async def test_a_wrong_key_as_odoo_answers_it_is_an_outage_and_kills_nothing(
    harness: Harness,
) -> None:
    """Odoo 18's answer to a wrong bearer key (HTTP 200, JSON-RPC Unauthorized) marks Odoo
    down like a 401: one probe at a time, nothing dead; with the key right, each event once."""
    standin, worker = harness.standin, harness.worker
    standin.set_mode("rpc_error", name="werkzeug.exceptions.Unauthorized", message="Invalid apikey")
    devices = [f"dev-{d}" for d in range(10)]
    harness.commit([make_event(d, 0) for d in devices])
    await until(lambda: not worker.endpoint.up, what="endpoint down")
    await until(harness._asleep_until_next_attempt, what="worker waiting for the probe")
    assert call_sizes(standin) == [10]
    for _ in range(3):
        before = standin.received_count
        await harness.probe()
        assert standin.received_count == before + 1  # one probe, not one call per device
    stats = harness.store.outbox_stats(harness.clock.now())
    assert (stats.pending, stats.dead) == (10, 0)
    assert "Unauthorized" in (worker.endpoint.last_error or "")
    standin.set_mode("ok")
    await harness.probe()
    events = await standin.wait_for_events_async(len(devices), timeout_s=20)
    assert by_device(events) == {d: [0] for d in devices}
    assert standin.duplicates == []


async def test_a_batch_answered_429_waits_exactly_as_told(harness: Harness) -> None:
    """A call answered 429 with Retry-After: 30 marks Odoo down; the probe waits 30 s."""
    standin, clock = harness.standin, harness.clock
    standin.add_rule("rate_limited", min_events=2, times=1, retry_after="30")
    harness.commit([make_event(d, 0) for d in ("a", "b", "c")])
    await until(lambda: not harness.worker.endpoint.up, what="endpoint down")
    await until(harness._asleep_until_next_attempt, what="worker waiting for the probe")
    assert clock.wake_times == [T0 + 30]
    clock.advance(29.999)
    await asyncio.sleep(0.05)
    assert standin.received_count == 1
    clock.advance(0.001)
    events = await standin.wait_for_events_async(3)
    assert by_device(events) == {"a": [0], "b": [0], "c": [0]}


async def test_switching_to_the_batch_format_at_runtime(
    store: EventStore, odoo_standin: OdooStandin
) -> None:
    """A config push from jsonrpc to batch: the next events go to the batch route."""
    harness = Harness(store, odoo_standin)
    harness.start()
    batch_sender = OdooBatchSender(base_url=odoo_standin.url)
    try:
        harness.commit([make_event("a", 0)])
        await odoo_standin.wait_for_events_async(1)
        await harness.settled(1)
        harness.worker.set_sender(batch_sender)
        harness.commit([make_event("a", n) for n in range(1, 4)])
        events = await odoo_standin.wait_for_events_async(4)
        assert by_device(events) == {"a": [0, 1, 2, 3]}
        assert call_sizes(odoo_standin) == [3]
        assert odoo_standin.requests[0].path != EVENTS_PATH
    finally:
        await harness.stop()
        await harness.sender.aclose()


async def test_restart_after_clean_close_sends_nothing_twice(
    store: EventStore, odoo_standin: OdooStandin
) -> None:
    """Every call's successes are marked by close: a new worker re-sends nothing."""
    first = batch_harness(store, odoo_standin)
    first.start()
    first.commit([make_event("a", n) for n in range(700)])
    await odoo_standin.wait_for_events_async(700, timeout_s=30)
    await first.settled(700)
    await first.stop()
    await first.sender.aclose()
    second = batch_harness(store, odoo_standin)
    second.start()
    second.commit([make_event("a", 700)])
    await odoo_standin.wait_for_events_async(701)
    await second.settled(1)
    await second.stop()
    await second.sender.aclose()
    assert odoo_standin.duplicates == []
    assert by_device(odoo_standin.events) == {"a": list(range(701))}


def test_max_batches_in_flight_must_be_positive(store: EventStore) -> None:
    """A worker without room for a call is refused at construction."""
    from iot_bridge.service.delivery.worker import DeliveryWorker
    from tests.integration.test_delivery import FakeClock

    with pytest.raises(ValueError, match="max_batches_in_flight"):
        DeliveryWorker(store=store, sender=None, clock=FakeClock(), max_batches_in_flight=0)
