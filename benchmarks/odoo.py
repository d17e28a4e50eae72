"""Odoo 18 (real) benchmark (issues 18 and 23): the addon's event routes and its config push.

    python3 benchmarks/odoo.py [--events 1200] [--batch-events 10000] [--backlog 10000]
                               [--devices 1000] [--rows ...] [--no-db-filter]

Odoo comes from ``ODOO_SRC``/``ODOO_PY``/``ODOO_DB_ARGS`` (your own Odoo 18) or,
when unset, from ``../shared/odoo/setup.sh``.

A real Odoo 18 with the addon installed from its wheel (tests/odoo/kit.py) in a
fresh database, run as production runs it with one HTTP worker
(``--workers=1``: one request at a time), a real ``iot-bridge run`` connected
to it from the settings (Connect, which pushes ``request_format: batch``), and
mosquitto.

Rows (names for ``--rows``):

- ``accept``: events accepted per second by ``POST /ows/iot/event``, one event
  per request, sent by the bridge's own sender (``OdooSender``, the API key of
  the bridge's user) on 1 connection and on 8 (8 machines, each one's events in
  order, as the bridge's delivery lanes send them): ``session_started``,
  heartbeats, ``session_stopped`` per machine. Target >= 100/s (issue 18).
- ``batch``: the same through ``POST /ows/iot/events`` (contract §6's
  ``request_format: batch``) with the bridge's own batch sender
  (``OdooBatchSender``): one event a call (``--events`` of them), then calls of
  100 and of 500 (``--batch-events``), 8 machines interleaved as the bridge
  orders them. Target >= 1,000/s in batches (issue 23).
- ``drain``: a backlog of ``--backlog`` events (100 machines' sessions) in a
  bridge's outbox while Odoo is down: the bridge runs (and finds Odoo down),
  then Odoo starts; seconds from Odoo answering again until every event is
  delivered (the bridge's outbox empty), split into the wait for the bridge's
  next probe and the drain itself. Checked: Odoo holds every event once, each
  machine's in the order the bridge made them. Target <= 10 s (issue 23).
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
from tests.odoo.site import MACHINE_TIMINGS, OdooSite, bridge_config  # noqa: E402
from tests.support.bridge_process import BridgeProcess, wait_until  # noqa: E402
from tests.support.mosquitto import MosquittoBroker  # noqa: E402

from iot_bridge.adapters.odoo import OdooSender  # noqa: E402
from iot_bridge.adapters.odoo_batch import OdooBatchSender  # noqa: E402
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


async def _send_calls(sender: OdooBatchSender, calls: list[list[dict[str, Any]]]) -> None:
    try:
        for call in calls:
            outcomes = await sender.send_batch(call)
            failed = [outcome for outcome in outcomes if outcome is not None]
            assert not failed, failed[:3]
    finally:
        await sender.aclose()


def row_batch(bench: Bench, single_events: int, events: int) -> list[str]:
    """Events/s through ``POST /ows/iot/events`` (contract §6's batch): 1, 100, 500 a call."""
    lines = []
    for size in (1, 100, 500):
        prefix = f"batch{size}-"
        bench.clear()
        machines = 8
        bench.machines(prefix, machines)
        count = single_events if size == 1 else events
        start = time.time() - 86_400
        lanes = [
            session_events(f"{prefix}{n:05d}", count // machines, start) for n in range(machines)
        ]
        # The bridge's order: each machine's events in order, machines interleaved.
        ordered = [lane[i].to_dict() for i in range(len(lanes[0])) for lane in lanes]
        calls = [ordered[first : first + size] for first in range(0, len(ordered), size)]
        sender = OdooBatchSender(
            base_url=bench.server.url, database=bench.server.db, api_key=bench.api_key
        )
        meter = CpuMeter(bench.server)
        cpu_before = meter.sample()
        before = load()
        began = time.perf_counter()
        asyncio.run(_send_calls(sender, calls))
        elapsed = time.perf_counter() - began
        cpu = meter.spent(cpu_before, meter.sample())
        sent = len(ordered)
        assert bench.stored(prefix) == sent
        lines.append(
            f"batch   {size} event(s) a call (OdooBatchSender): {sent} events in {elapsed:.1f} s = "
            f"{sent / elapsed:.0f} events/s  ({before}, after {load()}); CPU per event: "
            f"Odoo {1000 * cpu['odoo'] / sent:.2f} ms + PostgreSQL "
            f"{1000 * cpu['postgres'] / sent:.2f} ms"
        )
        print(lines[-1], flush=True)
    return lines


def row_drain(bench: Bench, backlog: int) -> list[str]:
    """A backlog left by an outage, drained by a real bridge (batch format) once Odoo is back."""
    from iot_bridge.adapters.store import EventStore

    assert bridge_config(bench.bridge)["odoo"]["request_format"] == "batch"  # as Connect pushed
    bench.clear()
    devices = 100
    per_device = backlog // devices
    bench.machines("drain-", devices)
    wait_until(lambda: bench.bridge.health()["devices"] == devices, timeout_s=60)
    port = bench.bridge.port
    assert bench.bridge.stop() == 0
    start = time.time() - 86_400
    lanes = [session_events(f"drain-{n:05d}", per_device, start) for n in range(devices)]
    store = EventStore.open(bench.bridge.data_dir)
    try:
        for lane in lanes:
            store.commit(lane, now=time.time())
    finally:
        store.close()
    total = per_device * devices
    bench.server.stop()
    bench.bridge = bench.new_bridge("bridge", port=port)  # same data dir and port
    wait_until(lambda: bench.bridge.health()["odoo"]["available"] is False, timeout_s=60)
    before = load()
    bench.server.start()  # returns once Odoo answers /web/login
    up = time.perf_counter()
    meter = CpuMeter(bench.server)
    cpu_before = meter.sample()
    wait_until(
        lambda: bench.bridge.health()["outbox"]["pending"] < total, timeout_s=600, interval_s=0.05
    )
    first = time.perf_counter() - up
    wait_until(
        lambda: bench.bridge.health()["outbox"]["pending"] == 0, timeout_s=1800, interval_s=0.05
    )
    elapsed = time.perf_counter() - up
    cpu = meter.spent(cpu_before, meter.sample())
    health = bench.bridge.health()
    assert health["outbox"]["dead"] == 0, health
    received = bench.odoo.rpc.search_read(
        "mqtt.event", [("device_ident", "=like", "drain-%")], ["event_uid", "device_ident"],
        order="id",
    )  # fmt: skip
    assert len(received) == total, f"Odoo holds {len(received)} of {total} events"
    assert len({row["event_uid"] for row in received}) == total, "an event is in Odoo twice"
    taken: dict[str, list[str]] = {}
    for row in received:
        taken.setdefault(row["device_ident"], []).append(row["event_uid"])
    made = {lane[0].device_id: [event.event_uid for event in lane] for lane in lanes}
    assert taken == made, "a machine's events reached Odoo out of the bridge's order"
    line = (
        f"drain   {total} events of {devices} machines, Odoo down then up: all delivered "
        f"{elapsed:.1f} s after Odoo answered (the bridge's next probe {first:.1f} s, then the "
        f"drain {elapsed - first:.1f} s = {total / (elapsed - first):.0f} events/s); nothing "
        f"lost or doubled, each machine in order  ({before}, after {load()}); CPU per event: "
        f"Odoo {1000 * cpu['odoo'] / total:.2f} ms + PostgreSQL "
        f"{1000 * cpu['postgres'] / total:.2f} ms"
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
    parser.add_argument(
        "--events", type=int, default=1200, help="events per run of one event a call"
    )
    parser.add_argument(
        "--batch-events", type=int, default=10_000, help="events per run of 100 or 500 a call"
    )
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
                lines += row_batch(bench, args.events, args.batch_events)
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
