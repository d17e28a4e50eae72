"""One persistent thread for the pipeline's commits, instead of ``asyncio.to_thread`` each.

A commit blocks on the WAL's fsync, so it must leave the event loop; the
default executor's hop costs a work item, a ``concurrent.futures.Future`` with
its condition, a semaphore and a wrapping asyncio future per call (about 19
futex calls per message of a trickle). Here a call is one ``SimpleQueue.put``
(waking the thread) and one ``call_soon_threadsafe`` (waking the loop).

Jobs run one at a time in the order they were submitted, so commits reach the
disk in pipeline order. A job's exception is raised in the awaiting task; a
job whose awaiting task was cancelled still runs to its end (like
``to_thread``: a commit is never torn), its result is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


class StoreThread:
    """Runs blocking store calls on one thread, in order; started on first use."""

    def __init__(self, name: str = "store-commit") -> None:
        """``name`` names the thread (as seen in py-spy, /proc)."""
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` on the thread and return (or raise) what it did."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name} thread is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._thread.start()
            self._jobs.put((loop, future, fn))
        return await future

    def close(self, timeout_s: float = 30.0) -> None:
        """Let the submitted jobs finish, then end the thread (blocks; idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            self._jobs.put(None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def _work(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            loop, future, fn = job
            try:
                result = fn()
            except BaseException as err:  # handed to the awaiting task, whatever it is
                _settle(loop, future, None, err)
            else:
                _settle(loop, future, result, None)


def _settle(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    def settle() -> None:
        if future.done():  # the awaiting task was cancelled
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(settle)
