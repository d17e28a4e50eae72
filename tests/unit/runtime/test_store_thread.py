"""The store thread: the pipeline's commits, one at a time, in order, off the loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from iot_bridge.errors import StoreError
from iot_bridge.runtime.store_thread import StoreThread
from iot_bridge.service.ingest import pipeline as pipeline_module
from tests.unit.service import test_bridge_on_fakes


async def test_jobs_run_on_one_thread_in_submission_order() -> None:
    """Concurrent callers: every job runs on the same (non-loop) thread, in submit order."""
    worker = StoreThread()
    ran: list[tuple[int, int]] = []

    def job(n: int) -> int:
        ran.append((n, threading.get_ident()))
        return n * 10

    results = await asyncio.gather(*(worker.call(lambda n=n: job(n)) for n in range(50)))
    worker.close()
    assert results == [n * 10 for n in range(50)]
    assert [n for n, _ in ran] == list(range(50))
    assert len({ident for _, ident in ran}) == 1
    assert ran[0][1] != threading.get_ident()


async def test_an_exception_reaches_the_caller_and_the_thread_goes_on() -> None:
    """A failed job (a StoreError) is raised in the awaiting task; the next job still runs."""
    worker = StoreThread()

    def fail() -> None:
        raise StoreError("disk full")

    with pytest.raises(StoreError, match="disk full"):
        await worker.call(fail)
    assert await worker.call(lambda: "next") == "next"
    worker.close()


async def test_a_cancelled_caller_does_not_tear_the_job() -> None:
    """Cancelling the awaiting task lets the running job finish; later jobs follow it."""
    worker = StoreThread()
    started, release = threading.Event(), threading.Event()
    done: list[str] = []

    def slow() -> None:
        started.set()
        release.wait(10)
        done.append("slow")

    task = asyncio.ensure_future(worker.call(slow))
    await asyncio.to_thread(started.wait, 10)  # the job is running
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    after = asyncio.ensure_future(worker.call(lambda: done.append("after")))
    release.set()
    await after
    worker.close()
    assert done == ["slow", "after"]


async def test_a_closed_thread_refuses_new_jobs() -> None:
    """After ``close`` (which lets submitted jobs finish) a call raises at once."""
    worker = StoreThread()
    assert await worker.call(lambda: 1) == 1
    worker.close()
    worker.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await worker.call(lambda: 2)


@pytest.fixture(params=["store thread", "inline (trickle)"])
def commit_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every commit through the store thread, or every small one on the loop thread."""
    if request.param == "store thread":
        monkeypatch.setattr(pipeline_module, "TRICKLE_GAP_S", float("inf"))
    else:
        monkeypatch.setattr(pipeline_module, "TRICKLE_GAP_S", 0.0)
    return str(request.param)


async def test_acknowledgements_follow_the_commit_on_either_path(commit_path: str) -> None:
    """Commit, then ack, batch after batch, whichever thread commits."""
    await test_bridge_on_fakes.test_acknowledgements_follow_the_commit_in_order()


async def test_a_failed_commit_is_fatal_and_acks_nothing_on_either_path(commit_path: str) -> None:
    """A failed commit stops the bridge with the StoreError and acknowledges nothing."""
    await (
        test_bridge_on_fakes.test_a_failed_commit_acknowledges_nothing_and_keeps_the_durable_state()
    )


async def test_a_slow_small_commit_sends_every_later_commit_to_the_store_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A slow disk (an SD card's fsync): after 3 slow loop-thread commits, none on the loop."""
    monkeypatch.setattr(pipeline_module, "TRICKLE_GAP_S", 0.0)
    rig = await test_bridge_on_fakes.Rig(test_bridge_on_fakes.config("mill")).start()
    ticks = iter(range(1_000_000))
    # From now on each reading of the duration clock is 10 ms after the last: commits look slow.
    monkeypatch.setattr(pipeline_module, "_elapsed_clock", lambda: next(ticks) * 0.010)
    threads: list[int] = []
    commit = rig.outbox.commit

    def recording_commit(*args: object, **kwargs: object) -> None:
        threads.append(threading.get_ident())
        commit(*args, **kwargs)  # type: ignore[arg-type]

    rig.outbox.commit = recording_commit  # type: ignore[method-assign]
    for packet in range(1, 6):
        rig.clock.time += 10.0
        rig.source.push(test_bridge_on_fakes.shelly("mill", 500.0 + packet, packet))
        await test_bridge_on_fakes._committed(rig, packet)
    await rig.stop()
    loop_thread = threading.get_ident()
    slow = pipeline_module.TRICKLE_SLOW_COMMITS
    assert threads[:slow] == [loop_thread] * slow  # small commits on the loop, each slow
    assert threads[slow:] and all(thread != loop_thread for thread in threads[slow:])
