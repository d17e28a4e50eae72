"""Disk use of the data dir (issue 22): what a workshop writes a day, and a budget that holds.

    python3 benchmarks/disk.py [--part day|budget|both] [--machines 100] [--budget-mb 32]

Both parts run the bridge's own code (the parsers, the session detectors, the
``EventStore``, the ``Housekeeping``) in this process, on a fake clock, on a tmpfs
the benchmark mounts (root; otherwise a temporary directory, said in the output:
the bytes are the same, only slower).

1. **day**: a simulated workshop day. ``--machines`` Shelly PM Gen3 plugs
   (``status/pm1:0``), each with 4 sessions of 90 minutes (6 hours of use,
   power changing between working and standby), 5-minute heartbeats
   (``heartbeat_interval_s: 300``), a reading every 10 s in a session (the
   Gen3 reports on a >= 5 % change) and every 60 s idle (its energy update),
   ``device_online`` at the start. One commit per message, as the trickle of a
   workshop is committed; events marked delivered once a minute (Odoo up).
   Measured: events a day, bytes an event in ``bridge.db``, what the data dir
   keeps a day (times the retention: its steady size), what is written to the
   card a day (``write()`` bytes of the process: WAL frames and checkpoint
   copies; the page cache and the card's own write amplification come on top).
   The day's commits run back to back, so checkpoints never find a quiet
   moment and the WAL grows to the writer's backstop; its size under a paced
   trickle (a commit every 10 ms, 25 times a workshop's rate) is measured apart.
2. **budget**: events written three times past ``--budget-mb`` (delivered as
   they come), the housekeeping's pass woken as the bridge wakes it (every
   64th of the budget in events): the data dir's largest size after any
   commit, against the budget. Then Odoo down: events stay pending, which are
   never pruned; when the warning comes, and how far past the budget the data
   dir then goes.

The machine is shared: the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from iot_bridge.adapters.store import EventStore
from iot_bridge.config.sources import StoreLimits
from iot_bridge.domain.events import Event, EventType
from iot_bridge.domain.session_config import SessionConfig
from iot_bridge.service.housekeeping import Housekeeping
from iot_bridge.service.ingest.ingestor import DeviceSpec, Ingestor
from iot_bridge.service.ingest.redelivery import fingerprint
from iot_bridge.service.ports import StoreUsage
from iot_bridge.service.views.metrics import Metrics

T0 = 1_770_000_000.0  # a midnight, more or less
DAY = 86400.0
MB = 1024 * 1024
SESSIONS_A_DAY = 4
SESSION_S = 90 * 60.0
IN_SESSION_EVERY_S = 10.0
IDLE_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class Message:
    """An MQTT message as the ingestor reads it."""

    topic: str
    payload: bytes
    retain: bool = False


@contextlib.contextmanager
def scratch_dir(size_mb: int) -> Iterator[tuple[Path, str]]:
    """A tmpfs of ``size_mb`` (mounted here, root), else a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="disk-bench-") as name:
        path = Path(name) / "card"
        path.mkdir()
        mounted = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
                capture_output=True,
                check=False,
            ).returncode
            == 0
        )
        try:
            yield path, f"tmpfs of {size_mb} MiB" if mounted else f"{name} (no tmpfs: not root?)"
        finally:
            if mounted:
                subprocess.run(["umount", "-l", str(path)], check=False)


def written_bytes() -> int:
    """Bytes this process passed to write() so far (the store's WAL and checkpoints)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def day_messages(machines: int, rng: random.Random) -> list[tuple[float, str, bytes]]:
    """(time, topic, payload) of every message of the day, in time order."""
    messages: list[tuple[float, str, bytes]] = []
    for m in range(machines):
        prefix = f"shellypmminig3-{m:04d}"
        topic = f"{prefix}/status/pm1:0"
        messages.append((T0 + rng.uniform(0, 5), f"{prefix}/online", b"true"))
        starts = [T0 + 7 * 3600 + k * 2.5 * 3600 + rng.uniform(0, 1800) for k in range(4)]
        energy = 1000.0 * m
        t = T0 + rng.uniform(5, IDLE_EVERY_S)
        while t < T0 + DAY:
            running = any(start <= t < start + SESSION_S for start in starts)
            if running:
                watts = rng.choice((820.0, 790.0, 35.0)) + rng.uniform(-5, 5)
                every = IN_SESSION_EVERY_S
            else:
                watts = 0.0
                every = IDLE_EVERY_S
            energy += watts * every / 3600.0
            body = {
                "id": 0,
                "voltage": round(229 + rng.uniform(0, 3), 1),
                "current": round(watts / 230, 3),
                "apower": round(watts, 1),
                "freq": 50.0,
                "aenergy": {"total": round(energy, 3), "by_minute": [0, 0, 0], "minute_ts": int(t)},
                "ret_aenergy": {"total": 0.0, "by_minute": [0, 0, 0], "minute_ts": int(t)},
            }
            messages.append((t, topic, json.dumps(body).encode()))
            t += every
    messages.sort(key=lambda item: item[0])
    return messages


def run_day(machines: int) -> dict[str, float]:
    """The workshop day: events, bytes an event, kept and written a day, the WAL."""
    rng = random.Random(22)
    messages = day_messages(machines, rng)
    size_mb = max(256, machines * 2)
    with scratch_dir(size_mb) as (card, where):
        store = EventStore.open(card / "data")
        ingestor = Ingestor()
        config = SessionConfig(message_timeout_s=180.0, heartbeat_interval_s=300.0)
        specs = [
            DeviceSpec(
                device_id=f"machine-{m:04d}",
                machine_name=f"Machine {m} (workshop)",
                mqtt_topic=f"shellypmminig3-{m:04d}/status/pm1:0",
                parser_type="shelly_pm",
                parser_options={},
                session_config=config,
            )
            for m in range(machines)
        ]
        store.commit(ingestor.apply_devices(specs, T0), ingestor.take_changes(), now=T0)
        kinds: Counter[str] = Counter()
        written = written_bytes()
        largest_wal = 0
        last_mark = T0
        started = time.perf_counter()
        for n, (at, topic, payload) in enumerate(messages):
            events = ingestor.handle([Message(topic, payload)], at)
            kinds.update(str(event.event_type) for event in events)
            store.commit(
                events, ingestor.take_changes(), now=at, batch=[fingerprint(n & 0xFFFF, payload)]
            )
            if at - last_mark >= 60.0:  # delivery marks its successes in batches
                pending = [e.seq for e in store.recent_events(5000) if e.status == "pending"]
                store.mark_delivered_many(pending, at)
                last_mark = at
            if n % 500 == 0:
                largest_wal = max(largest_wal, store.usage().wal_bytes)
        elapsed = time.perf_counter() - started
        written = written_bytes() - written
        usage = store.usage()
        rows = store._db.query(
            "bench",
            "SELECT (SELECT page_count FROM pragma_page_count()) -"
            " (SELECT freelist_count FROM pragma_freelist_count()),"
            " (SELECT page_size FROM pragma_page_size()),"
            " (SELECT COUNT(*) FROM events), (SELECT AVG(length(payload)) FROM events)",
        )
        live_pages, page_size, stored_events, average_payload = rows[0]
        store.close()
    emitted = sum(kinds.values())
    db_bytes = live_pages * page_size
    print(f"  where: {where}; {len(messages):,} messages in {elapsed:.1f} s")
    by_type = ", ".join(f"{k} {v:,}" for k, v in kinds.most_common())
    print(f"  events a day: {emitted:,} ({by_type})")
    return {
        "machines": machines,
        "messages_a_day": len(messages),
        "events_a_day": emitted,
        "bytes_an_event_in_db": round(db_bytes / stored_events),
        "average_payload_bytes": round(average_payload),
        "kept_mb_a_day": round(db_bytes / MB, 2),
        "kept_mb_30_days": round(db_bytes * 30 / MB, 1),
        "data_dir_mb_after_a_day": round(usage.data_dir_bytes / MB, 2),
        "written_mb_a_day": round(written / MB, 1),
        "written_kb_a_message": round(written / len(messages) / 1024, 1),
        "largest_wal_mb": round(largest_wal / MB, 2),
    }


def budget_event(n: int, rng: random.Random) -> Event:
    """A session_heartbeat as the detector writes it (the commonest event)."""
    return Event(
        event_uid=str(uuid.uuid4()),
        event_type=EventType.SESSION_HEARTBEAT,
        device_id=f"machine-{n % 100:04d}",
        machine_name=f"Machine {n % 100} (workshop)",
        session_id="5b0c7c9e-7a51-4d3e-9a77-3d2b1c0e9f12",
        timestamp=T0 + n,
        data={
            "state": "working",
            "power_w": round(rng.uniform(30, 900), 1),
            "interval_s": 300.0,
            "interval_avg_power_w": round(rng.uniform(30, 900), 3),
            "interval_working_s": 281.2,
            "interval_standby_s": 18.8,
            "session_duration_s": 3600.0 + n,
            "session_working_s": 3300.0,
            "session_standby_s": 300.0 + n,
            "session_energy_wh": round(rng.uniform(100, 5000), 3),
        },
    )


class FakeClock:
    """The housekeeping's clock: the benchmark calls its pass itself."""

    def __init__(self) -> None:
        self.time = T0

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(3600)


async def run_budget(budget_mb: int) -> dict[str, float]:
    """Three budgets of events, delivered as they come; then Odoo down."""
    rng = random.Random(7)
    budget = budget_mb * MB
    with scratch_dir(budget_mb * 4) as (card, where):
        store = EventStore.open(card / "data")
        clock = FakeClock()
        metrics = Metrics()
        keeper = Housekeeping(
            outbox=store,
            limits=lambda: StoreLimits(disk_budget_mb=budget_mb),
            now=clock.now,
            clock=clock,
            metrics=metrics,
            on_fatal=lambda err: None,
        )
        await keeper.check()  # the task's first pass, at the start
        feed = Feeder(store, keeper, clock, rng)
        started = time.perf_counter()
        largest = largest_wal = 0
        while feed.written < 3 * budget:
            usage = await feed.commit(delivered=True)
            largest = max(largest, usage.data_dir_bytes)
            largest_wal = max(largest_wal, usage.wal_bytes)
        delivered_phase_s = time.perf_counter() - started
        written_delivered = feed.written
        pruned = metrics.events_pruned.labels(reason="disk_budget").value
        # Odoo down: nothing is delivered any more, pending events are never pruned.
        pending_largest = 0
        while feed.warned_at is None or pending_largest < 1.05 * budget:
            usage = await feed.commit(delivered=False)
            pending_largest = max(pending_largest, usage.data_dir_bytes)
        store.close()
    print(f"  where: {where}; {feed.n:,} events, the delivered phase in {delivered_phase_s:.1f} s")
    return {
        "budget_mb": budget_mb,
        "written_mb_delivered": round(written_delivered / MB, 1),
        "largest_data_dir_mb": round(largest / MB, 2),
        "largest_wal_mb": round(largest_wal / MB, 2),
        "events_pruned": int(pruned),
        "held": largest <= budget,
        "odoo_down_first_warning_at_pending_mb": round(feed.over_budget_at or 0.0, 1),
        "odoo_down_pending_warning_at_pending_mb": round(feed.warned_at or 0.0, 1),
        "odoo_down_data_dir_mb_at_end": round(pending_largest / MB, 1),
    }


class Feeder:
    """Commits groups of events as the soak's pipeline does, and wakes the housekeeping's
    pass as the bridge does (``events_committed``)."""

    BATCH = 16

    def __init__(
        self, store: EventStore, keeper: Housekeeping, clock: FakeClock, rng: random.Random
    ) -> None:
        self.store = store
        self.keeper = keeper
        self.clock = clock
        self.rng = rng
        self.n = 0
        self.written = 0
        self.warned_at: float | None = None
        self.over_budget_at: float | None = None

    async def commit(self, *, delivered: bool) -> StoreUsage:
        events = [budget_event(self.n + i, self.rng) for i in range(self.BATCH)]
        self.n += self.BATCH
        self.store.commit(events, None, now=self.clock.time)
        if delivered:
            seqs = [e.seq for e in self.store.recent_events(self.BATCH)]
            self.store.mark_delivered_many(seqs, self.clock.time)
        self.written += sum(len(json.dumps(e.to_dict())) for e in events)
        self.clock.time += 1.0
        self.keeper.events_committed(self.BATCH)
        if self.keeper._wake.is_set():  # what wakes the task
            self.keeper._wake.clear()
            report = await self.keeper.check()
            warning = report.warning or ""
            kept_mb = (report.kept_bytes or 0) / MB
            if warning and self.over_budget_at is None:
                self.over_budget_at = kept_mb  # the first warning: nothing left to prune
            if "pending and dead" in warning and self.warned_at is None:
                self.warned_at = kept_mb
        return self.store.usage()


def run_paced_wal(commits: int, gap_s: float) -> dict[str, float]:
    """The WAL under a trickle that leaves the checkpoints room: a commit per ``gap_s``."""
    snapshot = {"machine_name": "Machine", "detector": {"state": "working", "x": [1.5] * 40}}
    with scratch_dir(64) as (card, _):
        store = EventStore.open(card / "data")
        largest = 0
        for n in range(commits):
            store.commit([], {f"machine-{n % 100:04d}": snapshot}, now=T0 + n, batch=[n])
            largest = max(largest, store.usage().wal_bytes)
            time.sleep(gap_s)
        store.close()
    return {"commits": commits, "gap_s": gap_s, "largest_wal_mb": round(largest / MB, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("day", "budget", "both"), default="both")
    parser.add_argument("--machines", type=int, default=100)
    parser.add_argument("--budget-mb", type=int, default=32)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores, shared)\n")
    results: dict[str, dict[str, float]] = {}
    if args.part in ("day", "both"):
        print(f"day: {args.machines} machines")
        results["day"] = run_day(args.machines)
        print("  " + json.dumps(results["day"]))
        print("the WAL under a paced trickle (the day above commits back to back)")
        results["wal"] = run_paced_wal(3000, 0.01)
        print("  " + json.dumps(results["wal"]))
    if args.part in ("budget", "both"):
        print(f"budget: {args.budget_mb} MB")
        results["budget"] = asyncio.run(run_budget(args.budget_mb))
        print("  " + json.dumps(results["budget"]))
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    if "budget" in results and not results["budget"]["held"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
