"""Odoo 18 (real) benchmark (issue 18, item 8): the addon's event route and its config push.

    python3 benchmarks/odoo.py [--events 1200] [--batch-events 4000] [--backlog 10000]
                               [--devices 1000] [--rows ...] [--no-db-filter]

Odoo comes from ``ODOO_SRC``/``ODOO_PY``/``ODOO_DB_ARGS`` (your own Odoo 18) or,
when unset, from ``../shared/odoo/setup.sh``.

A real Odoo 18 with the addon installed from its wheel (tests/odoo/kit.py) in a
fresh database, run as production runs it with one HTTP worker
(``--workers=1``: one request at a time, a new connection per request), a real
``iot-bridge run`` connected to it from the settings (Connect), and mosquitto.

Rows (names for ``--rows``):

- ``accept``: events accepted per second by ``POST /ows/iot/event``, one event
  per request, sent by the bridge's own sender (``OdooSender``, the API key of
  the bridge's user) on 1 connection and on 8 (8 machines, each one's events in
  order, as the bridge's delivery lanes send them): ``session_started``,
  heartbeats, ``session_stopped`` per machine. Target >= 100/s.
- ``batch``: the same through ``POST /ows/iot/events`` (contract §6's
  ``request_format: batch``), 100 and 500 events a call from one client, 8
  machines interleaved in the bridge's order (the bridge of this branch
  does not send batches yet: a plain HTTP client plays it).
- ``drain``: a backlog of ``--backlog`` events (100 machines' sessions) left in
  a bridge's outbox as an Odoo outage leaves it; the bridge starts with Odoo
  up: seconds until every event is delivered (its ``/health`` outbox empty,
  and Odoo holding them all). Target: 10,000 in under two minutes.
- ``push``: ``--devices`` machines created in Odoo in one call (one
  transaction, so one push after commit): seconds until the bridge runs them
  all; then ``mqtt.device.action_push_config()`` (the button) with all of them:
  seconds for the call, which returns once the bridge has applied the document
  and answered. Target <= 2 s.

``--no-db-filter`` starts Odoo with ``-d`` alone instead of ``-d`` and ``--db-filter``: Odoo
then stops asking PostgreSQL for the database list at every request without a session cookie.

"CPU per event" is the CPU time of Odoo's process group and of PostgreSQL's backends for the
database, read from /proc: it moves much less with other load than the wall time. The machine
may be shared: the 1-minute load average is printed next to each figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.odoo.kit import (  # noqa: E402
    OdooKit,
    OdooServer,
    installed_database,
    load_odoo_env,
    prepare_kit,
)
from tests.odoo.site import MACHINE_TIMINGS, OdooSite  # noqa: E402
from tests.support.bridge_process import BridgeProcess, wait_until  # noqa: E402
from tests.support.mosquitto import MosquittoBroker  # noqa: E402

from iot_bridge.adapters.odoo import OdooSender  # noqa: E402
from iot_bridge.domain.events import Event, EventType, iso_utc  # noqa: E402

ROWS = ("accept", "batch", "drain", "push")


def load() -> str:
    """The 1-minute load average, for the figures' context."""
    return f"load {os.getloadavg()[0]:.2f}"


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _processes() -> Iterator[tuple[int, list[str], int, float]]:
    """(pid, cmdline, process group, CPU seconds) of every process we may read."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command name: state ppid pgrp ... utime (14th field) stime (15th).
        yield (
            int(entry.name),
            cmdline,
            int(fields[2]),
            (int(fields[11]) + int(fields[12])) / CLK_TCK,
        )


class CpuMeter:
    """CPU seconds spent by Odoo (its process group) and by PostgreSQL for its database.

    CPU time moves little with other load on the machine, unlike wall time: it
    tells what one event costs, whatever the helpers next door are doing.
    """

    def __init__(self, server: OdooServer) -> None:
        assert server.process is not None
        self.group = server.process.pid
        self.db = server.db

    def sample(self) -> dict[int, tuple[str, float]]:
        """pid -> (``odoo`` or ``postgres``, CPU seconds so far)."""
        found = {}
        for pid, cmdline, group, cpu in _processes():
            if group == self.group:
                found[pid] = ("odoo", cpu)
            elif cmdline[0].startswith("postgres:") and f" {self.db} " in cmdline[0]:
                found[pid] = ("postgres", cpu)
        return found

    @staticmethod
    def spent(
        before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
    ) -> dict[str, float]:
        """CPU seconds per side between two samples (a process born meanwhile counts whole)."""
        totals = {"odoo": 0.0, "postgres": 0.0}
        for pid, (side, cpu) in after.items():
            totals[side] += cpu - before.get(pid, (side, 0.0))[1]
        return totals


def session_events(device_id: str, count: int, start: float) -> list[Event]:
    """One machine's session as the detector emits it: started, heartbeats, stopped."""
    session = str(uuid.uuid4())
    events = []
    for n in range(count):
        at = start + 10.0 * n
        if n == 0:
            kind = EventType.SESSION_STARTED
            data: dict[str, Any] = {"started_at": iso_utc(at), "state": "working", "power_w": 812.4}
        elif n == count - 1:
            kind = EventType.SESSION_STOPPED
            data = {
                "started_at": iso_utc(start), "ended_at": iso_utc(at), "duration_s": at - start,
                "working_s": (at - start) * 0.9, "standby_s": (at - start) * 0.1,
                "avg_power_w": 790.1, "peak_power_w": 1204.0, "energy_wh": 812.7,
                "reason": "power_off",
            }  # fmt: skip
        else:
            kind = EventType.SESSION_HEARTBEAT
            data = {
                "state": "working", "power_w": 812.4, "interval_s": 10.0,
                "interval_avg_power_w": 790.1, "interval_working_s": 9.0,
                "interval_standby_s": 1.0, "session_duration_s": at - start,
                "session_working_s": (at - start) * 0.9, "session_standby_s": (at - start) * 0.1,
                "session_energy_wh": 2.2 * n,
            }  # fmt: skip
        events.append(
            Event(
                event_uid=str(uuid.uuid4()),
                event_type=kind,
                device_id=device_id,
                machine_name=f"Machine {device_id}",
                session_id=session,
                timestamp=at,
                data=data,
            )
        )
    return events


class Bench:
    """Odoo (one worker) with the addon, a mosquitto and a bridge connected from the settings."""

    def __init__(self, kit: OdooKit, db: str, work: Path, *, db_filter: bool = True) -> None:
        self.work = work
        self.server = OdooServer(kit, db, workers=1, cron_threads=1, db_filter=db_filter)
        self.server.start()
        self.odoo = OdooSite(self.server)
        self.broker = MosquittoBroker(work / "mosquitto").start()
        self.token = secrets.token_urlsafe(24)
        self.bridge = self.new_bridge("bridge")
        self.odoo.connect(self.bridge.url, self.token)
        self.broker_id = self.odoo.create(
            "mqtt.broker", {"name": "bench", "host": self.broker.host, "port": self.broker.port}
        )
        self.api_key = str(self.odoo.param("open_workshop_mqtt.bridge_api_key"))

    def new_bridge(self, name: str, port: int | None = None) -> BridgeProcess:
        """A bridge with INFO logs (DEBUG would log every delivery)."""
        return BridgeProcess(
            data_dir=self.work / name, token=self.token, port=port, env={"LOG_LEVEL": "INFO"}
        ).start()

    def machines(self, prefix: str, count: int) -> list[int]:
        """``count`` machines created in one call (one transaction, one push)."""
        values = [
            {
                "name": f"Machine {prefix}{n:05d}",
                "device_id": f"{prefix}{n:05d}",
                "broker_id": self.broker_id,
                "mqtt_topic": f"{prefix}{n:05d}/status/pm1:0",
                "parser_type": "shelly_pm",
                **MACHINE_TIMINGS,
            }
            for n in range(count)
        ]
        return list(self.odoo.call("mqtt.device", "create", values))

    def stored(self, prefix: str) -> int:
        """How many events Odoo holds for the machines whose id starts with ``prefix``."""
        domain = [("device_ident", "=like", f"{prefix}%")]
        return int(self.odoo.call("mqtt.event", "search_count", domain))

    def clear(self) -> None:
        """No machine left (each row starts from an empty workshop)."""
        ids = self.odoo.call("mqtt.device", "search", [("active", "in", [True, False])])
        if ids:
            self.odoo.call("mqtt.device", "unlink", ids)

    def close(self) -> None:
        """Stop everything started here."""
        self.bridge.kill()
        self.broker.stop()
        self.server.stop()


# -- rows ----------------------------------------------------------------------------------------


async def _send_lanes(sender: OdooSender, lanes: list[list[Event]]) -> None:
    async def lane(events: list[Event]) -> None:
        for event in events:
            await sender.send(event.to_dict())

    try:
        async with asyncio.TaskGroup() as group:
            for events in lanes:
                group.create_task(lane(events))
    finally:
        await sender.aclose()


def row_accept(bench: Bench, events: int) -> list[str]:
    """Events/s accepted by the route on 1 and on 8 connections."""
    lines = []
    for connections in (1, 8):
        prefix = f"acc{connections}-"
        bench.clear()
        bench.machines(prefix, connections)
        per_lane = events // connections
        start = time.time() - 86_400
        lanes = [session_events(f"{prefix}{n:05d}", per_lane, start) for n in range(connections)]
        sender = OdooSender(
            base_url=bench.server.url, database=bench.server.db, api_key=bench.api_key
        )
        before = load()
        meter = CpuMeter(bench.server)
        cpu_before = meter.sample()
        began = time.perf_counter()
        asyncio.run(_send_lanes(sender, lanes))
        elapsed = time.perf_counter() - began
        cpu = meter.spent(cpu_before, meter.sample())
        sent = per_lane * connections
        stored = bench.stored(prefix)
        assert stored == sent, f"Odoo holds {stored} of {sent} events"
        lines.append(
            f"accept  {connections} connection(s): {sent} events in {elapsed:.1f} s = "
            f"{sent / elapsed:.0f} events/s  ({before}, after {load()}); CPU per event: "
            f"Odoo {1000 * cpu['odoo'] / sent:.1f} ms + PostgreSQL "
            f"{1000 * cpu['postgres'] / sent:.1f} ms"
        )
        print(lines[-1], flush=True)
    return lines


def row_batch(bench: Bench, events: int) -> list[str]:
    """Events/s through ``POST /ows/iot/events`` (contract §6's batch), calls of 100 and 500."""
    import httpx

    lines = []
    for size in (100, 500):
        prefix = f"batch{size}-"
        bench.clear()
        machines = 8
        bench.machines(prefix, machines)
        start = time.time() - 86_400
        lanes = [
            session_events(f"{prefix}{n:05d}", events // machines, start) for n in range(machines)
        ]
        # The bridge's order: each machine's events in order, machines interleaved.
        ordered = [lane[i].to_dict() for i in range(len(lanes[0])) for lane in lanes]
        url = f"{bench.server.url}/ows/iot/events"
        headers = {"Authorization": f"Bearer {bench.api_key}"}
        meter = CpuMeter(bench.server)
        cpu_before = meter.sample()
        before = load()
        began = time.perf_counter()
        with httpx.Client(timeout=120) as client:
            for first in range(0, len(ordered), size):
                chunk = ordered[first : first + size]
                body = {
                    "jsonrpc": "2.0",
                    "method": "call",
                    "id": first,
                    "params": {"events": chunk},
                }
                reply = client.post(url, params={"db": bench.server.db}, headers=headers, json=body)
                results = reply.json()["result"]["results"]
                assert all(r["status"] == "ok" for r in results), results[:3]
        elapsed = time.perf_counter() - began
        cpu = meter.spent(cpu_before, meter.sample())
        sent = len(ordered)
        assert bench.stored(prefix) == sent
        lines.append(
            f"batch   {size} events a call: {sent} events in {elapsed:.1f} s = "
            f"{sent / elapsed:.0f} events/s  ({before}, after {load()}); CPU per event: "
            f"Odoo {1000 * cpu['odoo'] / sent:.1f} ms + PostgreSQL "
            f"{1000 * cpu['postgres'] / sent:.1f} ms"
        )
        print(lines[-1], flush=True)
    return lines


def row_drain(bench: Bench, backlog: int) -> list[str]:
    """A backlog left by an outage, drained by a real bridge once Odoo is there."""
    from iot_bridge.adapters.store import EventStore

    bench.clear()
    devices = 100
    per_device = backlog // devices
    bench.machines("drain-", devices)
    wait_until(lambda: bench.bridge.health()["devices"] == devices, timeout_s=60)
    port = bench.bridge.port
    assert bench.bridge.stop() == 0
    start = time.time() - 86_400
    store = EventStore.open(bench.bridge.data_dir)
    try:
        for n in range(devices):
            store.commit(session_events(f"drain-{n:05d}", per_device, start), now=time.time())
    finally:
        store.close()
    total = per_device * devices
    before = load()
    meter = CpuMeter(bench.server)
    cpu_before = meter.sample()
    began = time.perf_counter()
    bench.bridge = bench.new_bridge("bridge", port=port)  # same data dir and port
    wait_until(
        lambda: bench.bridge.health()["outbox"]["pending"] == 0, timeout_s=1800, interval_s=0.5
    )
    elapsed = time.perf_counter() - began
    cpu = meter.spent(cpu_before, meter.sample())
    stored = bench.stored("drain-")
    health = bench.bridge.health()
    assert stored == total, f"Odoo holds {stored} of {total} events"
    assert health["outbox"]["dead"] == 0, health
    line = (
        f"drain   {total} events of {devices} machines: {elapsed:.1f} s from the bridge's start "
        f"= {total / elapsed:.0f} events/s  ({before}, after {load()}); CPU per event: "
        f"Odoo {1000 * cpu['odoo'] / total:.1f} ms + PostgreSQL "
        f"{1000 * cpu['postgres'] / total:.1f} ms"
    )
    print(line, flush=True)
    return [line]


def row_push(bench: Bench, devices: int) -> list[str]:
    """``devices`` machines: created in one transaction (one push), then the button."""
    bench.clear()
    wait_until(lambda: bench.bridge.health()["devices"] == 0, timeout_s=60)
    before = load()
    began = time.perf_counter()
    bench.machines("push-", devices)
    created = time.perf_counter() - began
    wait_until(lambda: bench.bridge.health()["devices"] == devices, timeout_s=120, interval_s=0.02)
    applied = time.perf_counter() - began
    lines = [
        f"push    {devices} machines created in one call: call {created:.2f} s, the bridge runs "
        f"them all {applied:.2f} s after the call began  ({before}, after {load()})"
    ]
    previous = bench.bridge.health()["last_config_update"]
    timings = []
    for _ in range(3):
        began = time.perf_counter()
        bench.odoo.call("mqtt.device", "action_push_config", [])
        timings.append(time.perf_counter() - began)
        health = bench.bridge.health()
        assert health["devices"] == devices, health
        assert health["last_config_update"] != previous, health
        previous = health["last_config_update"]
    lines.append(
        f"push    the button with {devices} machines (Odoo builds, POSTs, the bridge applies and "
        f"answers): {' / '.join(f'{t:.2f}' for t in timings)} s  ({load()})"
    )
    for line in lines:
        print(line, flush=True)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1200, help="events per accept run")
    parser.add_argument("--batch-events", type=int, default=4000, help="events per batch run")
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument(
        "--no-db-filter",
        action="store_true",
        help="serve the database by -d alone (no --db-filter): no database listing per request",
    )
    args = parser.parse_args()

    load_odoo_env()
    work = Path(tempfile.mkdtemp(prefix="owe-bench-"))
    python = os.environ.get("OWE_ODOO_PY") or str(prepare_kit(work))
    os.environ["OWE_ODOO_PY"] = python
    kit = OdooKit.from_env(work)
    mode = "-d only" if args.no_db_filter else "-d and --db-filter"
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {load()}, Odoo {mode}")
    lines: list[str] = []
    with installed_database(kit, "bench") as db:
        bench = Bench(kit, db, work, db_filter=not args.no_db_filter)
        try:
            if "accept" in args.rows:
                lines += row_accept(bench, args.events)
            if "batch" in args.rows:
                lines += row_batch(bench, args.batch_events)
            if "drain" in args.rows:
                lines += row_drain(bench, args.backlog)
            if "push" in args.rows:
                lines += row_push(bench, args.devices)
        finally:
            bench.close()
    errors = bench.server.error_lines()
    if errors:
        print(f"{len(errors)} ERROR line(s) in Odoo's log, first: {errors[0]} (logs in {work})")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
