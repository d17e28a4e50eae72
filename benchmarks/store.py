"""Store and delivery benchmark: group commits per second, deliveries per second.

    python3 benchmarks/store.py [--events N] [--devices N] [--quick]

1. **Group commit** (``EventStore.commit``): realistic session_heartbeat events
   plus one detector snapshot per device touched, in commits of 1 to 1,000
   events, with ``synchronous=FULL`` (what the bridge uses: durable against
   power loss) and ``NORMAL`` (durable against kill -9 only) for comparison.
   Target (issue 3): >= 20,000 events/s in group commits of realistic size.
2. **Delivery** (``DeliveryWorker`` + ``OdooSender``) to the Odoo stand-in
   running as a separate process on loopback (keep-alive): a backlog of
   events over many devices, and one device alone (strictly sequential).
   The bare sender (8 concurrent ``send`` calls, no store) shows what the HTTP client
   itself costs. Target (issue 3): >= 1,000 events/s.

The machine is shared: the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import structlog

from iot_bridge.adapters.odoo import OdooSender
from iot_bridge.adapters.store import EventStore
from iot_bridge.adapters.store import database as store_module
from iot_bridge.domain.events import Event, EventType
from iot_bridge.runtime.clock import SystemClock
from iot_bridge.service.delivery.worker import DeliveryWorker

REPO = Path(__file__).resolve().parent.parent
T0 = 1_770_000_000.0


def heartbeat(device: int, n: int) -> Event:
    """A session_heartbeat as the detector emits it (CONTRACT §6 data fields)."""
    return Event(
        event_uid=str(uuid.uuid4()),
        event_type=EventType.SESSION_HEARTBEAT,
        device_id=f"shelly-pm-{device:04d}",
        machine_name=f"CNC Mill {device}",
        session_id="5b0c7c9e-7a51-4d3e-9a77-3d2b1c0e9f12",
        timestamp=T0 + n,
        data={
            "state": "working",
            "power_w": 812.4,
            "interval_s": 300.0,
            "interval_avg_power_w": 790.1,
            "interval_working_s": 280.0,
            "interval_standby_s": 20.0,
            "session_duration_s": 3600.0 + n,
            "session_working_s": 3300.0,
            "session_standby_s": 300.0,
            "session_energy_wh": 812.7,
        },
    )


def snapshot(device: int, n: int) -> dict[str, object]:
    """A detector snapshot of about the size the session detector writes."""
    return {
        "state": "working",
        "session_id": "5b0c7c9e-7a51-4d3e-9a77-3d2b1c0e9f12",
        "session_start": T0,
        "state_since": T0 + n,
        "last_message_at": T0 + n,
        "last_power_w": 812.4,
        "online": True,
        "pending_since": None,
        "resume_state": None,
        "working_s": 3300.0,
        "standby_s": 300.0,
        "energy_start_wh": 1234.5,
        "energy_last_wh": 2047.2,
        "peak_power_w": 1500.0,
        "power_integral_ws": 2_843_000.0,
        "last_heartbeat_at": T0 + n - 300,
        "device": device,
    }


def bench_commit(total: int, batch: int, devices: int, synchronous: str) -> tuple[float, float]:
    """(events/s, commits/s) for ``total`` events in commits of ``batch``."""
    store_module.COMMIT_SYNCHRONOUS = synchronous
    events = [heartbeat(i % devices, i) for i in range(total)]
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore.open(Path(tmp))
        try:
            started = time.perf_counter()
            for start in range(0, total, batch):
                chunk = events[start : start + batch]
                touched = {int(e.device_id[-4:]) for e in chunk}
                store.commit(
                    chunk, {f"shelly-pm-{d:04d}": snapshot(d, start) for d in touched}, now=T0
                )
            elapsed = time.perf_counter() - started
        finally:
            store.close()
    store_module.COMMIT_SYNCHRONOUS = "FULL"
    return total / elapsed, (total / batch) / elapsed


def start_standin() -> tuple[subprocess.Popen[str], str]:
    """The Odoo stand-in in its own process (so it does not share our GIL)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.odoo_standin", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        raise SystemExit(f"stand-in did not start: {url!r}")
    return proc, url


def standin_stats(url: str) -> dict[str, int]:
    """Counts from the stand-in's /_standin/stats."""
    with urllib.request.urlopen(f"{url}/_standin/stats", timeout=5) as reply:
        stats: dict[str, int] = json.load(reply)
        return stats


async def bench_delivery(url: str, total: int, devices: int) -> tuple[float, float]:
    """(events/s, bridge CPU µs per event) for a backlog of ``total`` events."""
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore.open(Path(tmp))
        store.commit([heartbeat(i % devices, i) for i in range(total)], now=time.time())
        worker = DeliveryWorker(
            store=store, sender=OdooSender(base_url=url), clock=SystemClock(), max_in_flight=8
        )
        cpu, started = time.process_time(), time.perf_counter()
        task = asyncio.create_task(worker.run())
        while store.outbox_stats(time.time()).pending:  # noqa: ASYNC110 - SQLite has no await
            await asyncio.sleep(0.005)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        await worker.close()
        await task
        store.close()
    return total / elapsed, cpu / total * 1e6


async def bench_sender(url: str, total: int) -> float:
    """Events/s of 8 concurrent bare ``send`` loops (no store): the HTTP client's ceiling."""
    sender = OdooSender(base_url=url)

    async def loop(lane: int) -> None:
        for n in range(total // 8):
            await sender.send(heartbeat(lane, n).to_dict())

    started = time.perf_counter()
    await asyncio.gather(*(loop(lane) for lane in range(8)))
    elapsed = time.perf_counter() - started
    await sender.aclose()
    return (total // 8 * 8) / elapsed


def main() -> None:
    """Run both benchmarks and print markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per commit run")
    parser.add_argument("--deliveries", type=int, default=4_000, help="events per delivery run")
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    args = parser.parse_args()
    if args.quick:
        args.events, args.deliveries = 5_000, 1_000
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores, shared)\n")
    print("| commit size | synchronous | events/s | commits/s |")
    print("| ---: | --- | ---: | ---: |")
    for batch in (1, 10, 100, 500, 1000):
        total = min(args.events, 2_000) if batch == 1 else args.events
        for synchronous in ("FULL", "NORMAL"):
            per_event, per_commit = bench_commit(total, batch, args.devices, synchronous)
            print(f"| {batch} | {synchronous} | {per_event:,.0f} | {per_commit:,.0f} |")

    proc, url = start_standin()
    try:
        print("\n| delivery | events | events/s | bridge CPU µs/event |")
        print("| --- | ---: | ---: | ---: |")
        rate, cpu_us = asyncio.run(bench_delivery(url, args.deliveries, args.devices))
        print(
            f"| worker, {args.devices} devices, 8 in flight | {args.deliveries} "
            f"| {rate:,.0f} | {cpu_us:,.0f} |"
        )
        single = args.deliveries // 4
        rate, cpu_us = asyncio.run(bench_delivery(url, single, 1))
        print(f"| worker, 1 device (sequential) | {single} | {rate:,.0f} | {cpu_us:,.0f} |")
        rate = asyncio.run(bench_sender(url, args.deliveries))
        print(f"| bare OdooSender, 8 concurrent | {args.deliveries} | {rate:,.0f} | - |")
        stats = standin_stats(url)
        expected = args.deliveries + single + args.deliveries // 8 * 8
        print(
            f"\nstand-in: {stats['events']} unique events (expected {expected}), "
            f"{stats['duplicates']} duplicates, {stats['connections_opened']} connections"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
