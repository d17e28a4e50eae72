"""DeliveryWorker with a real store, the real OdooSender and the Odoo stand-in; time is faked."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from iot_bridge.adapters.odoo import OdooSender
from iot_bridge.adapters.store import EventStore
from iot_bridge.domain.events import Event, EventType
from iot_bridge.service.delivery.retry import BACKOFF_CAP_S, backoff_delay
from iot_bridge.service.delivery.worker import DeliveryWorker
from iot_bridge.service.ports import EventSender
from tests.support.odoo_standin import OdooStandin

T0 = 1_770_000_000.0
RACE_LANES = 16  # lanes failing at once in each round of the race test
RACE_ROUNDS = 60


class FakeClock:
    """Time that moves only when the test says so; records who sleeps until when."""

    def __init__(self, start: float = T0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        """The fake unix time."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Wait until the test advances the clock past now + seconds."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        entry = (self._now + seconds, asyncio.get_running_loop().create_future())
        self._sleepers.append(entry)
        try:
            await entry[1]
        finally:
            self._sleepers.remove(entry)

    @property
    def wake_times(self) -> list[float]:
        """When the current sleepers want to wake."""
        return sorted(due for due, _ in self._sleepers)

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper that is due."""
        self._now += seconds
        for due, future in list(self._sleepers):
            if due <= self._now and not future.done():
                future.set_result(None)


def make_event(device_id: str, n: int = 0) -> Event:
    """An event of ``device_id``; ``n`` orders a device's events in the tests."""
    return Event(
        event_uid=str(uuid.uuid4()),
        event_type=EventType.SESSION_HEARTBEAT,
        device_id=device_id,
        machine_name=f"Machine {device_id}",
        session_id="5b0c7c9e-0000-4000-8000-000000000001",
        timestamp=T0 + n,
        data={"n": n},
    )


async def until(predicate: Callable[[], bool], timeout_s: float = 10.0, what: str = "") -> None:
    """Poll a condition of real threads/sockets with a deadline."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.002)


class Harness:
    """A store, a fake clock, a worker on the stand-in, and the results it reported."""

    def __init__(self, store: EventStore, standin: OdooStandin, **worker_kwargs: Any) -> None:
        self.store = store
        self.standin = standin
        self.clock = FakeClock()
        self.results: list[str] = []
        self.sender = OdooSender(base_url=standin.url, timeout_s=2.0)
        self.worker = DeliveryWorker(
            store=store,
            sender=worker_kwargs.pop("sender", self.sender),
            clock=self.clock,
            on_result=self.results.append,
            rng=random.Random(7),
            **worker_kwargs,
        )
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the worker in the background."""
        self.task = asyncio.create_task(self.worker.run())

    def commit(self, events: list[Event]) -> None:
        """Commit events and tell the worker, as the ingestor does."""
        self.store.commit(events, now=self.clock.now())
        self.worker.wake()

    def _asleep_until_next_attempt(self) -> bool:
        """The worker waits for the clock, exactly until the next retry (or probe) is due."""
        if self.worker.in_flight:
            return False
        endpoint = self.worker.endpoint
        if not endpoint.up:
            due = endpoint.probe_due
            return due is not None and any(abs(t - due) < 1e-6 for t in self.clock.wake_times)
        due = self.store.next_attempt_time()
        if due is None:
            return True
        return due > self.clock.now() and any(abs(t - due) < 1e-6 for t in self.clock.wake_times)

    async def settled(self, results: int, timeout_s: float = 10.0) -> None:
        """Wait until ``results`` attempts finished and the worker sleeps until the next due."""
        await until(
            lambda: len(self.results) >= results and self._asleep_until_next_attempt(),
            timeout_s,
            f"{results} delivery results (got {self.results})",
        )

    async def probe(self) -> None:
        """Let the next probe go out (time jumps to it) and wait until its answer is handled."""
        due = self.worker.endpoint.probe_due
        assert due is not None
        before = len(self.results)
        self.clock.advance(due - self.clock.now())
        await self.settled(before + 1)

    async def stop(self) -> None:
        """Close the worker and check it ended cleanly."""
        await self.worker.close()
        if self.task is not None:
            await asyncio.wait_for(self.task, 10)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    """A real store in tmp_path."""
    opened = EventStore.open(tmp_path / "data")
    yield opened
    opened.close()


@pytest.fixture
async def harness(store: EventStore, odoo_standin: OdooStandin) -> AsyncIterator[Harness]:
    """A running worker delivering to the stand-in."""
    running = Harness(store, odoo_standin)
    running.start()
    yield running
    await running.stop()


def by_device(events: list[dict[str, Any]]) -> dict[str, list[int]]:
    """The ``data.n`` of each device's events, in arrival order."""
    result: dict[str, list[int]] = {}
    for event in events:
        result.setdefault(event["device_id"], []).append(event["data"]["n"])
    return result


# -- the happy path ------------------------------------------------------------------


async def test_delivers_everything_in_per_device_order(harness: Harness) -> None:
    """Interleaved events of many devices all arrive, each device's in commit order."""
    for n in range(10):
        harness.commit([make_event(f"dev-{d}", n) for d in range(12)])
    events = await harness.standin.wait_for_events_async(120)
    assert by_device(events) == {f"dev-{d}": list(range(10)) for d in range(12)}
    assert harness.standin.duplicates == []
    assert harness.standin.invalid == []
    await harness.settled(120)
    assert harness.results == ["ok"] * 120
    stats = harness.store.outbox_stats(harness.clock.now())
    assert (stats.pending, stats.dead, stats.flagged) == (0, 0, 0)
    assert {e.status for e in harness.store.recent_events(200)} == {"delivered"}


async def test_events_committed_before_start_are_delivered(
    store: EventStore, odoo_standin: OdooStandin
) -> None:
    """The outbox left by a previous run is delivered on start."""
    store.commit([make_event("a", n) for n in range(5)], now=T0 - 60)
    harness = Harness(store, odoo_standin)
    harness.start()
    try:
        events = await odoo_standin.wait_for_events_async(5)
        assert by_device(events) == {"a": [0, 1, 2, 3, 4]}
    finally:
        await harness.stop()


# -- outages and retries -------------------------------------------------------------


async def test_outage_is_probed_one_request_at_a_time_and_loses_nothing(
    harness: Harness,
) -> None:
    """Odoo down (503, then refusing connections) for an hour: one probe at a time on
    capped jittered backoff, at most 1 request/s after the first minute; when it returns
    every device resumes at once, in order, nothing lost, nothing twice."""
    standin, store, clock, worker = harness.standin, harness.store, harness.clock, harness.worker
    standin.set_mode("down")
    devices = [f"dev-{d}" for d in range(20)]
    with capture_logs() as logs:
        harness.commit([make_event(d, 0) for d in devices])
        await until(lambda: not worker.endpoint.up, what="endpoint down")
        await until(harness._asleep_until_next_attempt, what="worker waiting for the probe")
        at_outage = len(harness.results)  # one result per request (or connection refused)
        assert at_outage == standin.received_count <= 8  # sends under way at the first answer
        assert worker.endpoint.changed_at == T0
        probes: list[float] = []
        n = 1
        while clock.now() < T0 + 3600:
            await harness.probe()
            probes.append(clock.now())
            assert len(harness.results) == at_outage + len(probes)  # one request per probe
            assert standin.received_count <= at_outage + len(probes)
            if len(probes) == 6:
                standin.set_mode("refused")
            harness.commit([make_event(d, n) for d in devices])  # the outage goes on filling
            n += 1
        for k, (before, after) in enumerate(itertools.pairwise(probes), start=2):
            nominal = min(BACKOFF_CAP_S, 2.0 ** (k - 1))
            assert 0.8 * nominal - 1e-6 <= after - before <= nominal + 1e-6
        after_first_minute = [t for t in probes if t > T0 + 60]
        assert len(after_first_minute) <= (probes[-1] - (T0 + 60))  # <= 1 request/s
        assert standin.events == []
        standin.set_mode("ok")
        await harness.probe()
        events = await standin.wait_for_events_async(len(devices) * n, timeout_s=20)
    assert by_device(events) == {d: list(range(n)) for d in devices}
    assert standin.duplicates == []
    assert worker.endpoint.up
    await harness.settled(len(harness.results))
    stats = store.outbox_stats(clock.now())
    assert (stats.pending, stats.dead) == (0, 0)
    names = [entry["event"] for entry in logs]
    assert names.count("odoo_unavailable") == 1
    assert names.count("odoo_available") == 1
    assert "odoo_send_failed" not in [e["event"] for e in logs if e["log_level"] != "debug"]


async def test_probes_wait_as_long_as_retry_after_says(harness: Harness) -> None:
    """A down Odoo answering 503 with Retry-After: 30 is probed every 30 s, no sooner."""
    standin, clock = harness.standin, harness.clock
    standin.set_mode("down", retry_after="30")
    harness.commit([make_event(f"d{d}", 0) for d in range(5)])
    await until(lambda: not harness.worker.endpoint.up, what="endpoint down")
    await until(harness._asleep_until_next_attempt, what="worker waiting for the probe")
    for _ in range(4):
        assert harness.worker.endpoint.probe_due == pytest.approx(clock.now() + 30)
        before = standin.received_count
        clock.advance(29.9)
        await asyncio.sleep(0.05)
        assert standin.received_count == before
        await harness.probe()
        assert standin.received_count == before + 1


async def test_lanes_failing_together_always_leave_the_worker_asleep_until_its_probe(
    store: EventStore, odoo_standin: OdooStandin
) -> None:
    """Many lanes ending at once as Odoo goes down: every time, the worker sleeps until its probe.

    The race it pins: a lane woke the loop in its ``finally`` but left the set
    of running lanes only in its task's done callback, a turn later. A loop
    already woken by another lane could clear that wake-up, still count the
    lane, and wait for a wake-up that never came: no sleep until the probe,
    nothing ever sent again. Before the fix, a run of these rounds hung in
    about half of the runs (one round in 50 to 100); each round is a fresh worker.
    """
    odoo_standin.set_mode("down", retry_after="30")
    for round_ in range(RACE_ROUNDS):
        harness = Harness(store, odoo_standin, max_in_flight=RACE_LANES)
        harness.start()
        harness.commit([make_event(f"r{round_}-d{d}", 0) for d in range(RACE_LANES)])
        await until(lambda h=harness: not h.worker.endpoint.up, what="endpoint down")
        await until(harness._asleep_until_next_attempt, what=f"round {round_}: asleep")
        await harness.stop()


async def test_probe_rotates_over_devices(harness: Harness) -> None:
    """One device's event answered with 503 forever does not keep the others from Odoo."""
    harness.standin.add_rule("down", device_id="broken")
    harness.commit([make_event("broken", n) for n in range(3)])
    await until(lambda: not harness.worker.endpoint.up, what="endpoint down")
    harness.commit([make_event(f"ok-{d}", n) for n in range(5) for d in range(3)])
    await until(harness._asleep_until_next_attempt, what="worker waiting for the probe")
    # Each probe takes the most overdue device's event, so another device's: Odoo
    # answers, everyone resumes, until the broken event's own (doubling) backoff is
    # due again and it marks Odoo down once more.
    probes = 0
    while len(harness.standin.events) < 15:
        await until(harness._asleep_until_next_attempt, what="worker asleep")
        if harness.worker.endpoint.up:
            due = harness.store.next_attempt_time()
            assert due is not None
            harness.clock.advance(due - harness.clock.now())
        else:
            await harness.probe()
            probes += 1
    assert by_device(harness.standin.events) == {f"ok-{d}": list(range(5)) for d in range(3)}
    assert probes <= 5
    broken = [r for r in harness.standin.requests if r.device_id == "broken"]
    assert len(broken) <= probes + 1


async def test_outage_counts_and_health_are_visible(harness: Harness) -> None:
    """While down the endpoint says so with the error and since when; up again after."""
    harness.standin.set_mode("down")
    harness.commit([make_event("a", 0)])
    await until(lambda: not harness.worker.endpoint.up, what="endpoint down")
    endpoint = harness.worker.endpoint
    assert endpoint.changed_at == T0
    assert "503" in (endpoint.last_error or "")
    harness.standin.set_mode("ok")
    harness.clock.advance(5)
    await harness.standin.wait_for_events_async(1)
    await until(lambda: harness.worker.endpoint.up, what="endpoint up")
    assert harness.worker.endpoint.changed_at == T0 + 5


async def test_429_waits_exactly_as_told(harness: Harness) -> None:
    """429 with Retry-After: 30 waits 30 s (not the 1 s backoff); other devices go on."""
    standin, clock = harness.standin, harness.clock
    first = make_event("limited", 0)
    standin.add_rule("rate_limited", event_uid=first.event_uid, times=1, retry_after="30")
    harness.commit([first, make_event("limited", 1), make_event("other", 0)])
    await standin.wait_for_events_async(1)
    await harness.settled(2)
    assert sorted(harness.results) == ["ok", "transient"]
    assert clock.wake_times == [T0 + 30]
    assert by_device(standin.events) == {"other": [0]}
    clock.advance(29.999)
    assert clock.wake_times == [T0 + 30]
    assert standin.received_count == 2
    clock.advance(0.001)
    events = await standin.wait_for_events_async(3)
    assert by_device(events) == {"other": [0], "limited": [0, 1]}


async def test_retry_after_zero_does_not_spin(harness: Harness) -> None:
    """A Retry-After of 0 still waits a second, so a confused Odoo is not hammered."""
    event = make_event("a")
    harness.standin.add_rule("rate_limited", event_uid=event.event_uid, retry_after="0")
    harness.commit([event])
    await harness.settled(1)
    assert harness.clock.wake_times == [T0 + 1]
    assert harness.standin.received_count == 1


async def test_permanent_failure_goes_dead_and_later_events_flow(harness: Harness) -> None:
    """A ValidationError makes an event dead at once; the device's next events still go."""
    standin, store = harness.standin, harness.store
    events = [make_event("a", n) for n in range(3)]
    standin.add_rule("validation_error", event_uid=events[1].event_uid, times=1)
    harness.commit(events)
    await standin.wait_for_events_async(2)
    assert by_device(standin.events) == {"a": [0, 2]}
    await harness.settled(3)
    assert sorted(harness.results) == ["ok", "ok", "permanent"]
    dead = [e for e in store.recent_events() if e.status == "dead"]
    assert [e.event_uid for e in dead] == [events[1].event_uid]
    assert "ValidationError" in (dead[0].last_error or "")
    assert store.outbox_stats(harness.clock.now()).dead == 1

    assert store.retry_dead(harness.clock.now()) == 1
    harness.worker.wake()
    await standin.wait_for_events_async(3)
    assert by_device(standin.events) == {"a": [0, 2, 1]}
    await harness.settled(4)
    assert store.outbox_stats(harness.clock.now()).dead == 0


async def test_a_failing_device_does_not_stall_others(harness: Harness) -> None:
    """One device's events failing forever (with a JSON-RPC error) leave the others untouched."""
    harness.standin.add_rule("rpc_error", device_id="broken")
    harness.commit([make_event("broken", n) for n in range(5)])
    harness.commit([make_event(f"ok-{d}", n) for n in range(5) for d in range(3)])
    events = await harness.standin.wait_for_events_async(15)
    assert by_device(events) == {f"ok-{d}": list(range(5)) for d in range(3)}
    await harness.settled(16)
    assert harness.store.outbox_stats(harness.clock.now()).pending == 5
    assert harness.worker.endpoint.up


async def test_a_slow_device_does_not_stall_others(
    store: EventStore, odoo_standin: OdooStandin
) -> None:
    """With 2 slots and one device timing out, the other devices are still served."""
    harness = Harness(store, odoo_standin, max_in_flight=2)
    harness.sender = OdooSender(base_url=odoo_standin.url, timeout_s=0.3)
    harness.worker.set_sender(harness.sender)
    odoo_standin.add_rule("slow", device_id="slow", delay_s=10.0)
    harness.start()
    try:
        harness.commit([make_event("slow", 0)])
        harness.commit([make_event(d, n) for n in range(10) for d in ("x", "y")])
        # the timeout marks Odoo down; the next probe takes another device, which answers
        await until(lambda: not harness.worker.endpoint.up, what="endpoint down")
        await until(harness._asleep_until_next_attempt, what="worker waiting for the probe")
        harness.clock.advance(1.0)
        events = await odoo_standin.wait_for_events_async(20)
        assert by_device(events) == {"x": list(range(10)), "y": list(range(10))}
        await harness.settled(21)
        assert "transient" in harness.results
    finally:
        await harness.stop()


# -- senders and modes ---------------------------------------------------------------


async def test_local_only_mode_keeps_events_pending(
    store: EventStore, odoo_standin: OdooStandin
) -> None:
    """Without a sender nothing is sent; setting one delivers the backlog."""
    harness = Harness(store, odoo_standin, sender=None)
    harness.start()
    try:
        assert harness.worker.local_only
        harness.commit([make_event("a", n) for n in range(3)])
        await asyncio.sleep(0)
        assert store.outbox_stats(T0).pending == 3
        assert odoo_standin.received_count == 0
        harness.worker.set_sender(harness.sender)
        assert not harness.worker.local_only
        events = await odoo_standin.wait_for_events_async(3)
        assert by_device(events) == {"a": [0, 1, 2]}
        await harness.settled(3)
        harness.worker.set_sender(None)
        harness.commit([make_event("a", 3)])
        await asyncio.sleep(0.05)
        assert odoo_standin.received_count == 3
        assert store.outbox_stats(T0).pending == 1
    finally:
        await harness.stop()


async def test_new_sender_retries_at_once(
    store: EventStore, odoo_standin: OdooStandin, tmp_path: Path
) -> None:
    """A config push with the right key sends the waiting events without waiting out the backoff."""
    odoo_standin.api_key = "right"
    wrong = OdooSender(base_url=odoo_standin.url, api_key="wrong")
    harness = Harness(store, odoo_standin, sender=wrong)
    harness.start()
    try:
        harness.commit([make_event("a", 0)])
        for tries in range(1, 4):
            await harness.settled(tries)
            harness.clock.advance(BACKOFF_CAP_S)
        await harness.settled(4)
        assert harness.clock.wake_times[0] > harness.clock.now()
        harness.worker.set_sender(OdooSender(base_url=odoo_standin.url, api_key="right"))
        events = await odoo_standin.wait_for_events_async(1)
        assert by_device(events) == {"a": [0]}
    finally:
        await harness.stop()
        await harness.sender.aclose()


class RecordingSender:
    """A sender that forwards to another and records that it was closed."""

    def __init__(self, inner: EventSender, fail_first: int = 0) -> None:
        self.inner = inner
        self.fail_first = fail_first
        self.closed = False

    async def send(self, event: Mapping[str, Any]) -> None:
        """Raise a non-DeliveryError bug for the first ``fail_first`` calls, then forward."""
        if self.fail_first > 0:
            self.fail_first -= 1
            raise RuntimeError("bug in a sender")
        await self.inner.send(event)

    async def aclose(self) -> None:
        """Remember the close."""
        self.closed = True


async def test_worker_closes_replaced_and_final_senders(
    store: EventStore, odoo_standin: OdooStandin
) -> None:
    """A replaced sender is closed once idle, the current one at close()."""
    harness = Harness(store, odoo_standin, sender=None)
    first, second = RecordingSender(harness.sender), RecordingSender(harness.sender)
    harness.worker.set_sender(first)
    harness.start()
    try:
        harness.commit([make_event("a", 0)])
        await odoo_standin.wait_for_events_async(1)
        harness.worker.set_sender(second)
        await until(lambda: first.closed, what="first sender closed")
        assert not second.closed
    finally:
        await harness.stop()
        await harness.sender.aclose()
    assert second.closed


async def test_unexpected_sender_error_is_retried(
    store: EventStore, odoo_standin: OdooStandin
) -> None:
    """A sender raising something other than DeliveryError is a transient failure."""
    harness = Harness(store, odoo_standin, sender=None)
    harness.worker.set_sender(RecordingSender(harness.sender, fail_first=1))
    harness.start()
    try:
        harness.commit([make_event("a", 0)])
        await harness.settled(1)
        assert harness.results == ["transient"]
        assert "RuntimeError" in (store.recent_events()[0].last_error or "")
        harness.clock.advance(1)
        await odoo_standin.wait_for_events_async(1)
    finally:
        await harness.stop()
        await harness.sender.aclose()


async def test_failing_result_callback_does_not_stop_delivery(
    store: EventStore, odoo_standin: OdooStandin
) -> None:
    """A metrics callback that raises never stops or repeats deliveries."""

    def broken(_result: str) -> None:
        raise ValueError("metrics down")

    sender = OdooSender(base_url=odoo_standin.url)
    worker = DeliveryWorker(store=store, sender=sender, clock=FakeClock(), on_result=broken)
    task = asyncio.create_task(worker.run())
    try:
        store.commit([make_event("a", n) for n in range(3)], now=T0)
        worker.wake()
        await odoo_standin.wait_for_events_async(3)
        assert odoo_standin.duplicates == []
    finally:
        await worker.close()
        await task


async def test_wake_from_another_thread(harness: Harness) -> None:
    """Committing and waking from a worker thread (as the ingestor does) is picked up."""

    def commit_in_thread() -> None:
        harness.store.commit([make_event("t", 0)], now=T0)
        harness.worker.wake()

    await asyncio.to_thread(commit_in_thread)
    await harness.standin.wait_for_events_async(1)


async def test_store_failure_pauses_but_does_not_kill_the_worker(
    tmp_path: Path, odoo_standin: OdooStandin
) -> None:
    """A broken store is logged and retried after a pause; the worker keeps running."""
    store = EventStore.open(tmp_path)
    harness = Harness(store, odoo_standin)
    harness.start()
    store.close()
    harness.worker.wake()
    await until(lambda: T0 + 1 in harness.clock.wake_times, what="store error pause")
    assert harness.task is not None
    assert not harness.task.done()
    await harness.stop()


async def test_close_finishes_the_delivery_in_flight(
    store: EventStore, odoo_standin: OdooStandin
) -> None:
    """close() lets a send in flight finish and mark it, then run() returns."""
    harness = Harness(store, odoo_standin)
    odoo_standin.add_rule("slow", device_id="a", delay_s=0.2, times=1)
    harness.start()
    harness.commit([make_event("a", 0)])
    await until(lambda: harness.worker.in_flight == 1, what="send in flight")
    await harness.stop()
    assert [e.status for e in store.recent_events()] == ["delivered"]
    assert harness.results == ["ok"]


def test_max_in_flight_must_be_positive(store: EventStore) -> None:
    """A worker without slots is refused at construction."""
    with pytest.raises(ValueError, match="max_in_flight"):
        DeliveryWorker(store=store, sender=None, clock=FakeClock(), max_in_flight=0)


async def test_run_twice_is_refused(harness: Harness) -> None:
    """A second concurrent run() is a programming error, reported clearly."""
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="already running"):
        await harness.worker.run()


def test_backoff_doubles_caps_and_jitters() -> None:
    """Backoff: 1, 2, 4 ... s, never above 300 s, each cut by at most 20 % at random."""
    rng = random.Random(1)
    for failures in range(1, 40):
        nominal = min(300.0, 2.0 ** (failures - 1))
        delays = {backoff_delay(failures, rng) for _ in range(50)}
        assert all(0.8 * nominal <= d <= nominal for d in delays)
        assert len(delays) > 1
    assert backoff_delay(0, rng) <= 1.0


async def test_restart_after_clean_close_sends_nothing_twice(
    store: EventStore, odoo_standin: OdooStandin
) -> None:
    """Chunked marks are flushed on close: a new worker on the same store re-sends nothing."""
    first = Harness(store, odoo_standin)
    first.start()
    first.commit([make_event("a", n) for n in range(40)])
    await odoo_standin.wait_for_events_async(40)
    await first.settled(40)
    await first.stop()
    second = Harness(store, odoo_standin)
    second.start()
    second.commit([make_event("a", 40)])
    await odoo_standin.wait_for_events_async(41)
    await second.settled(1)
    await second.stop()
    assert odoo_standin.duplicates == []
    assert by_device(odoo_standin.events) == {"a": list(range(41))}
