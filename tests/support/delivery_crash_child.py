"""A process that commits a fixed stream of events and delivers them, to be killed with -9.

Run: ``python3 tests/support/delivery_crash_child.py --data-dir D --url U``.
Every run commits the same events (deterministic ``event_uid``s, so a commit
repeated after a crash stores nothing twice) in random-sized group commits
while a ``DeliveryWorker`` sends them to ``--url``. Prints ``ready`` once the
store is open and ``done`` when every event is committed and delivered, then
exits 0. The test kills it at random moments and restarts it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from pathlib import Path

from iot_bridge.adapters.odoo import OdooSender
from iot_bridge.adapters.store import EventStore
from iot_bridge.domain.events import Event, EventType
from iot_bridge.logs import configure_logging
from iot_bridge.runtime.clock import SystemClock
from iot_bridge.service.delivery.worker import DeliveryWorker

NAMESPACE = uuid.UUID("6f1d8a52-4c1b-4f7e-9a8e-0d5c3b2a1f00")


def event_uid(device_id: str, n: int) -> str:
    """The fixed uid of the n-th event of a device."""
    return str(uuid.uuid5(NAMESPACE, f"{device_id}/{n}"))


def planned_events(devices: int, per_device: int) -> list[Event]:
    """Every device's events, interleaved across devices, in commit order."""
    return [
        Event(
            event_uid=event_uid(f"dev-{d}", n),
            event_type=EventType.SESSION_HEARTBEAT,
            device_id=f"dev-{d}",
            machine_name=f"Machine {d}",
            session_id=None,
            timestamp=1_770_000_000.0 + n,
            data={"n": n},
        )
        for n in range(per_device)
        for d in range(devices)
    ]


async def run(args: argparse.Namespace) -> None:
    """Commit the planned events in random group commits while delivering them."""
    store = EventStore.open(Path(args.data_dir))
    print("ready", flush=True)
    worker = DeliveryWorker(
        store=store, sender=OdooSender(base_url=args.url, timeout_s=2.0), clock=SystemClock()
    )
    delivering = asyncio.create_task(worker.run())
    rng = random.Random()
    events = planned_events(args.devices, args.per_device)
    index = 0
    while index < len(events):
        batch = events[index : index + rng.randint(1, 20)]
        snapshots = {event.device_id: {"last_n": event.data["n"]} for event in batch}
        await asyncio.to_thread(store.commit, batch, snapshots, now=time.time())
        worker.wake()
        index += len(batch)
        await asyncio.sleep(0.002)
    while store.outbox_stats(time.time()).pending:  # noqa: ASYNC110 - SQLite has no await
        await asyncio.sleep(0.01)
    await worker.close()
    await delivering
    store.close()
    print("done", flush=True)


def main() -> None:
    """Parse the arguments and run until done (or killed)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--per-device", type=int, default=150)
    args = parser.parse_args()
    configure_logging(level="WARNING", stream=sys.stderr)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
