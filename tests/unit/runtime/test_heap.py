"""``heap.settle``: collect, freeze what lives, and let a later settle collect what was dropped."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from iot_bridge.runtime import heap


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


@pytest.fixture(autouse=True)
def _unfreeze() -> Iterator[None]:
    yield
    gc.unfreeze()  # the rest of the test session runs with an ordinary collector


def test_settle_collects_dropped_cycles_and_freezes_the_living() -> None:
    dropped = _Node()
    gone = weakref.ref(dropped)
    del dropped
    kept = _Node()
    heap.settle()
    assert gone() is None
    assert gc.get_freeze_count() > 0
    assert kept.me is kept


def test_what_a_settle_froze_and_was_dropped_since_goes_at_the_next() -> None:
    node = _Node()
    gone = weakref.ref(node)
    heap.settle()  # frozen: a full collection would not look at it now
    del node
    gc.collect()
    assert gone() is not None
    heap.settle()
    assert gone() is None


def test_the_c_heap_calls_are_there_on_glibc() -> None:
    assert heap._glibc() is not None  # this machine's Python (and the image's) run on glibc
    heap.share_one_arena()
    heap.settle()


def test_a_settle_without_collection_freezes_and_the_next_collects() -> None:
    dropped = _Node()
    gone = weakref.ref(dropped)
    del dropped
    heap.settle(collect=False)  # frozen with the rest, garbage or not
    gc.collect()
    assert gone() is not None
    heap.settle()
    assert gone() is None
