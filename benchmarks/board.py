"""The board's costs: feed batches per commit, the read model, the stream throttle, tuning.

Measures, on one core, with nothing but Python:

- ``Board.apply``: the board task's cost per reading;
- ``StreamThrottle``: one stream client's cost per reading;
- memory of the kept readings (16 bytes a reading in packed arrays);
- ``tuning.compare`` over a full hour of 7,200 readings (two replays).

Usage: python3 benchmarks/board.py
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable, Sequence
from datetime import date

from iot_bridge.domain.session_config import SessionConfig
from iot_bridge.service.feed import FeedBatch, ReadingAccepted
from iot_bridge.service.replay.tuning import compare
from iot_bridge.service.views.board import (
    MAX_POINTS_PER_DEVICE,
    Board,
    MachineStatus,
    StreamThrottle,
)


class Directory:
    def __init__(self, n: int) -> None:
        self.ids = [f"d{i}" for i in range(n)]

    def device_ids(self) -> Sequence[str]:
        return self.ids

    def status(self, device_id: str) -> MachineStatus | None:
        return MachineStatus(
            device_id, device_id, "idle", True, None, None, None, None, SessionConfig()
        )


def per_call_us(fn: Callable[[], object], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat * 1e6


def main() -> None:
    print("| what | cost |")
    print("| --- | ---: |")
    board = Board(Directory(100), day_of=lambda ts: date(2026, 1, 1))
    board.start(0.0)
    batches = [
        FeedBatch(
            ts=float(t),
            readings=tuple(ReadingAccepted(f"d{i}", float(t), 100.0) for i in range(100)),
        )
        for t in range(200)
    ]
    start = time.perf_counter()
    for batch in batches:
        board.apply(batch)
    us = (time.perf_counter() - start) / (200 * 100) * 1e6
    print(f"| Board.apply, per reading | {us:.2f} µs |")

    throttle = StreamThrottle()
    start = time.perf_counter()
    for batch in batches:
        throttle.add(batch)
    throttle.flush(1e9)
    us = (time.perf_counter() - start) / (200 * 100) * 1e6
    print(f"| StreamThrottle.add, per reading | {us:.2f} µs |")

    tracemalloc.start()
    big = Board(Directory(1), day_of=lambda ts: date(2026, 1, 1))
    big.start(0.0)
    before = tracemalloc.get_traced_memory()[0]
    for t in range(MAX_POINTS_PER_DEVICE):
        big.apply(FeedBatch(ts=t / 2, readings=(ReadingAccepted("d0", t / 2, 100.0 + t % 300),)))
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(
        f"| kept readings, one device full ({MAX_POINTS_PER_DEVICE}) "
        f"| {(after - before) / 1024:.0f} KiB |"
    )

    readings = big.readings("d0", MAX_POINTS_PER_DEVICE / 2)
    config = SessionConfig(standby_threshold_w=5.0, working_threshold_w=50.0)
    proposed = SessionConfig(
        standby_threshold_w=200.0, working_threshold_w=250.0, stop_debounce_s=1.0
    )
    start = time.perf_counter()
    result = compare(readings, config, proposed, now=readings[-1][0])
    ms = (time.perf_counter() - start) * 1e3
    print(
        f"| tuning.compare, {len(readings)} readings (2 replays, "
        f"{result['current']['count']} vs {result['proposed']['count']} sessions) | {ms:.1f} ms |"
    )


if __name__ == "__main__":
    main()
