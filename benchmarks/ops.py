"""Operations benchmark (issue 12): every row of its table, black box.

    python3 benchmarks/ops.py [--runs 3] [--rows ROW ...] [--quick]

Each row spawns what an installation runs: ``iot-bridge run`` (its own data
dir, LOG_LEVEL=INFO), a mosquitto on a free port of 127.0.0.1 and the Odoo
stand-in (tests/support/odoo_standin.py) as its own process, switched between
``ok`` and ``down`` (503, with or without ``Retry-After``) through its
``POST /_standin/mode``. Figures are the bridge process's own CPU (utime +
stime from /proc, so other load on the machine moves them little), its RSS,
and what the stand-in and the broker saw. Each row is run ``--runs`` times
(default 3) and the median printed, with the spread.

An outbox "pending when the bridge starts" is seeded with the project's own
``EventStore`` in the data dir before the bridge starts (a restart after an
outage or a shift start looks exactly so to the bridge).

``--quick`` shortens every measuring window (and means one run unless
``--runs`` says otherwise); its numbers are rougher.

Rows (names for ``--rows``): down1000, down50, down_ra, backlog, backlog_batch,
restart10k, restart10k_batch, trickle, idle, rss_idle, rss10k, config, latency, ingest.
The ``_batch`` rows are their namesakes with ``odoo.request_format: batch`` (up to
500 events a call to the stand-in's ``/ows/iot/events``).
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import importlib.util
import json
import os
import pathlib
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import mqtt5

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.bridge_process import BridgeProcess, free_port, wait_until  # noqa: E402
from tests.support.mosquitto import MosquittoBroker  # noqa: E402

TOPIC_ROOT = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
T0 = 1_770_000_000.0


# --- measuring another process -----------------------------------------------------------


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def sys_cpu_s(pid: int) -> float:
    """System (kernel) CPU seconds of a process: syscalls, loopback TCP, fsync."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[12]) / CLK_TCK


def rss_mib(pid: int) -> float:
    """Resident set size in MiB."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wakeups(pid: int) -> int:
    """Context switches of every thread so far: each one is a wake-up (or a preemption)."""
    total = 0
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except OSError:
            continue  # a thread that just ended
        for line in text.splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def metric(bridge: BridgeProcess, name: str, labels: str = "") -> float:
    """One sample of the bridge's /metrics (0 when absent)."""
    try:
        text = httpx.get(f"{bridge.url}/metrics", timeout=60).text
    except httpx.HTTPError:
        return 0.0  # busy: ask again
    key = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.split()[-1])
    return 0.0


# --- the parts ----------------------------------------------------------------------------


class Standin:
    """The Odoo stand-in as its own process, remote-controlled over HTTP."""

    def __init__(self, request_format: str = "jsonrpc") -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.odoo_standin",
                "--port",
                str(self.port),
                "--request-format",
                request_format,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        self.process.stdout.readline()  # its URL: listening
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def mode(self, mode: str, **params: Any) -> None:
        self.http.post("/_standin/mode", json={"mode": mode, **params}).raise_for_status()

    def stats(self) -> dict[str, int]:
        return dict(self.http.get("/_standin/stats").json())

    def arrivals(self) -> list[tuple[str, str, float]]:
        return [tuple(a) for a in self.http.get("/_standin/arrivals").json()]  # type: ignore[misc]

    def stop(self) -> None:
        self.http.close()
        self.process.terminate()
        self.process.wait(10)


def broker(directory: pathlib.Path) -> MosquittoBroker:
    return MosquittoBroker(
        directory,
        persistence=False,
        log_types=("error", "warning"),
        extra_config=["max_queued_messages 0"],
    ).start()


def device_topic(index: int) -> str:
    return f"{TOPIC_ROOT}/shellypmminig3-{index:06d}/status/pm1:0"


def device_entry(index: int, **session: float) -> dict[str, Any]:
    return {
        "device_id": f"dev{index:06d}",
        "machine_name": f"Machine {index}",
        "mqtt_topic": device_topic(index),
        "parser_type": "shelly_pm",
        "session_config": {
            "standby_threshold_w": 5.0,
            "working_threshold_w": 50.0,
            "start_debounce_s": 3.0,
            "stop_debounce_s": 15.0,
            "message_timeout_s": 600.0,
            "heartbeat_interval_s": 300.0,
            **session,
        },
    }


def config_doc(
    mq: MosquittoBroker | None,
    devices: list[dict[str, Any]],
    standin: Standin | None = None,
    request_format: str | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {"devices": devices}
    if mq is not None:
        doc["mqtt"] = {"broker": mq.host, "port": mq.port, "client_id": f"ops-{uuid.uuid4().hex}"}
    if standin is not None:
        doc["odoo"] = {"base_url": standin.url, "database": "", "api_key": ""}
        if request_format:
            doc["odoo"]["request_format"] = request_format
    return doc


STARTED: list[BridgeProcess] = []  # killed after each row, so a failing row leaves none behind


def start_bridge(directory: pathlib.Path, name: str, doc: dict[str, Any]) -> BridgeProcess:
    config_file = directory / f"{name}.json"
    config_file.write_text(json.dumps(doc))
    bridge = BridgeProcess(
        data_dir=directory / name,
        config_file=config_file,
        env={"LOG_LEVEL": "INFO"},
    )
    STARTED.append(bridge)
    bridge.start()
    if "mqtt" in doc:
        wait_until(lambda: bridge.health()["mqtt"]["connected"], timeout_s=120)
        time.sleep(0.5)  # its SUBSCRIBE goes out right after the CONNACK
    return bridge


def seed_outbox(data_dir: pathlib.Path, devices: int, per_device: int) -> None:
    """Pending events in the data dir, as an outage (or a restart) leaves them."""
    from iot_bridge.adapters.store import EventStore
    from iot_bridge.domain.events import Event, EventType

    store = EventStore.open(data_dir)
    try:
        batch: list[Event] = []
        for n in range(per_device):
            for device in range(devices):
                kind = EventType.SESSION_STARTED if per_device == 1 else EventType.SESSION_HEARTBEAT
                batch.append(
                    Event(
                        event_uid=str(uuid.uuid4()),
                        event_type=kind,
                        device_id=f"dev{device:06d}",
                        machine_name=f"Machine {device}",
                        session_id="5b0c7c9e-7a51-4d3e-9a77-3d2b1c0e9f12",
                        timestamp=T0 + n,
                        data=_heartbeat_data(n),
                    )
                )
                if len(batch) >= 5000:
                    store.commit(batch, now=time.time())
                    batch = []
        store.commit(batch, now=time.time())
    finally:
        store.close()


def _heartbeat_data(n: int) -> dict[str, Any]:
    """The data of a realistic session_heartbeat (the one benchmarks/store.py sends)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from store import heartbeat

    return dict(heartbeat(0, n).data)


def shelly_payload(power_w: float, index: int = 0) -> bytes:
    return json.dumps(
        {
            "id": 0,
            "voltage": 229.8,
            "current": round(power_w / 229.8, 3),
            "apower": power_w,
            "freq": 50.0,
            "aenergy": {"total": 1234.5 + index / 1000, "by_minute": [0, 0, 0], "minute_ts": 1},
        },
        separators=(",", ":"),
    ).encode()


class Publisher:
    """One MQTT connection publishing QoS 1 from this process; PUBACKs are read and dropped."""

    def __init__(self, mq: MosquittoBroker) -> None:
        self.sock = socket.create_connection((mq.host, mq.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client_id = f"ops-pub-{uuid.uuid4().hex[:8]}"
        self.sock.sendall(mqtt5.ConnectPacket(client_id, clean_start=True, keep_alive=600).write())
        mqtt5.read(memoryview(self.sock.recv(4096)))
        self._packet_id = 0
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        try:
            while self.sock.recv(65536):
                pass
        except OSError:
            pass

    def publish(self, messages: list[tuple[str, bytes]]) -> None:
        with self._lock:
            packets = []
            for topic, payload in messages:
                self._packet_id = self._packet_id % 65535 + 1
                packets.append(
                    mqtt5.PublishPacket(
                        topic, payload, qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=self._packet_id
                    ).write()
                )
            self.sock.sendall(b"".join(packets))

    def close(self) -> None:
        try:
            self.sock.sendall(mqtt5.DisconnectPacket().write())
        finally:
            self.sock.close()


def flood_process(port: int, devices: int, messages: int, rate: float) -> subprocess.Popen[bytes]:
    """A publisher process: ``messages`` readings of 800-900 W round-robin; rate 0 = flood."""
    return subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--publisher",
            str(port),
            str(devices),
            str(messages),
            str(rate),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )


def run_publisher(port: int, devices: int, messages: int, rate: float) -> None:
    packets = [
        mqtt5.PublishPacket(
            device_topic(i % devices),
            shelly_payload(850.0 + (i % 97) / 10, i),
            qos=mqtt5.QoS.AT_LEAST_ONCE,
            packet_id=i % 65535 + 1,
        ).write()
        for i in range(messages)
    ]
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(mqtt5.ConnectPacket(f"ops-flood-{os.getpid()}", clean_start=True).write())
    connack, _ = mqtt5.read(memoryview(sock.recv(4096)))
    window = connack.receive_max  # type: ignore[attr-defined]
    print("ready", flush=True)
    sys.stdin.readline()
    sent = acked = 0
    pending = b""
    start = time.monotonic()
    chunk = 2000 if rate <= 0 else max(1, int(rate / 100))
    while sent < messages or acked < messages:
        room = min(window - (sent - acked), chunk, messages - sent)
        if rate > 0:
            ahead = sent / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
        if room > 0:
            sock.sendall(b"".join(packets[sent : sent + room]))
            sent += room
        sock.setblocking(sent >= messages or room <= 0)
        with contextlib.suppress(BlockingIOError):
            pending += sock.recv(65536)
        sock.setblocking(True)
        acked += len(pending) // 4
        pending = pending[len(pending) // 4 * 4 :]
    sock.sendall(mqtt5.DisconnectPacket().write())
    sock.close()


def start_flood(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    assert proc.stdin is not None
    if proc.stdout.readline().strip() != b"ready":
        raise RuntimeError("publisher failed")
    proc.stdin.write(b"go\n")
    proc.stdin.flush()


def run_paho(port: int, messages: int) -> None:
    """The reference: a bare paho subscriber that does json.loads per message, QoS 1."""
    import paho.mqtt.client as paho

    count = 0
    first_cpu = 0.0
    done = threading.Event()

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        nonlocal count, first_cpu
        json.loads(message.payload)
        count += 1
        if count == 1:
            first_cpu = time.process_time()
        if count == messages:
            print(f"done {time.process_time() - first_cpu:.4f}", flush=True)
            done.set()

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"paho-{os.getpid()}")
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe(f"{TOPIC_ROOT}/+/status/pm1:0", qos=1)
    client.loop_start()
    time.sleep(0.5)
    print("ready", flush=True)
    done.wait(600)
    client.loop_stop()


# --- rows ---------------------------------------------------------------------------------


@dataclass
class Figures:
    """One run's named values."""

    values: dict[str, float] = field(default_factory=dict)


Row = Callable[[pathlib.Path, argparse.Namespace], dict[str, float]]


def _outage(
    directory: pathlib.Path, args: argparse.Namespace, devices: int, per_device: int, **down: Any
) -> dict[str, float]:
    standin = Standin()
    mq = broker(directory / "mq")
    try:
        standin.mode("down", **down)
        seed_outbox(directory / "bridge", devices, per_device)
        doc = config_doc(mq, [device_entry(i) for i in range(devices)], standin)
        bridge = start_bridge(directory, "bridge", doc)
        assert bridge.process is not None
        pid = bridge.process.pid
        started = time.monotonic()
        first_minute = 15.0 if args.quick else 60.0
        after = 10.0 if args.quick else 30.0
        time.sleep(2.0)  # start-up done
        cpu0, t0 = cpu_s(pid), time.monotonic()
        time.sleep(max(0.0, started + first_minute - time.monotonic()))
        requests_first = standin.stats()["received"]
        cpu1, t1 = cpu_s(pid), time.monotonic()
        time.sleep(after)
        requests_total = standin.stats()["received"]
        cpu2, t2 = cpu_s(pid), time.monotonic()
        bridge.stop()
        return {
            "cpu_pct": (cpu2 - cpu0) / (t2 - t0) * 100,
            "cpu_pct_after_1st_min": (cpu2 - cpu1) / (t2 - t1) * 100,
            "req_per_s_1st_min": requests_first / first_minute,
            "req_per_s_after": (requests_total - requests_first) / (t2 - t1),
        }
    finally:
        mq.stop()
        standin.stop()


def row_down1000(directory: pathlib.Path, args: argparse.Namespace) -> dict[str, float]:
    return _outage(directory, args, 1000, 20)


def row_down50(directory: pathlib.Path, args: argparse.Namespace) -> dict[str, float]:
    return _outage(directory, args, 50, 20)


def row_down_ra(directory: pathlib.Path, args: argparse.Namespace) -> dict[str, float]:
    return _outage(directory, args, 1000, 20, retry_after=10)


def _profile(
    pid: int, args: argparse.Namespace, name: str, rate: int = 200
) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the bridge (``--profile DIR``): collapsed stacks in DIR/<row>.txt."""
    if args.profile is None:
        return None
    args.profile.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate),
         "--output", str(args.profile / f"{name}.txt"), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _drain(
    directory: pathlib.Path,
    args: argparse.Namespace,
    name: str,
    devices: int,
    per_device: int,
    *,
    outage_first: bool,
    request_format: str | None = None,
) -> dict[str, float]:
    standin = Standin()
    mq = broker(directory / "mq")
    total = devices * per_device
    try:
        if outage_first:
            standin.mode("down")
        seed_outbox(directory / "bridge", devices, per_device)
        doc = config_doc(mq, [device_entry(i) for i in range(devices)], standin, request_format)
        config_file = directory / "bridge.json"
        config_file.write_text(json.dumps(doc))
        bridge = BridgeProcess(
            data_dir=directory / "bridge", config_file=config_file, env={"LOG_LEVEL": "INFO"}
        )
        STARTED.append(bridge)
        launched = time.monotonic()
        bridge.start()
        healthy = time.monotonic()
        assert bridge.process is not None
        pid = bridge.process.pid
        cpu0, sys0, odoo0 = cpu_s(pid), sys_cpu_s(pid), cpu_s(standin.process.pid)
        profiler = _profile(pid, args, name)
        if outage_first:
            wait_until(lambda: standin.stats()["received"] > 0, timeout_s=60)
            cpu0, sys0, odoo0 = cpu_s(pid), sys_cpu_s(pid), cpu_s(standin.process.pid)
            returned = time.monotonic()
            standin.mode("ok")
        wait_until(lambda: standin.stats()["events"] >= total, timeout_s=900, interval_s=0.05)
        cpu1, sys1, odoo1 = cpu_s(pid), sys_cpu_s(pid), cpu_s(standin.process.pid)
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(60)
        arrivals = [at for _, _, at in standin.arrivals()]
        stats = standin.stats()
        bridge.stop()
        first, last = min(arrivals), max(arrivals)
        figures = {
            "events_per_s": total / max(1e-9, last - first),
            "cpu_s_per_1000": (cpu1 - cpu0) / total * 1000,
            "kernel_share": (sys1 - sys0) / max(1e-9, cpu1 - cpu0),
            "standin_cpu_s_per_1000": (odoo1 - odoo0) / total * 1000,
            "duplicates": float(stats["duplicates"]),
            "requests": float(stats["received"]),
        }
        if outage_first:
            figures["first_event_after_return_s"] = first - returned
        else:
            figures["last_event_after_start_s"] = last - launched
            figures["last_event_after_healthy_s"] = last - healthy
        return figures
    finally:
        mq.stop()
        standin.stop()


def row_backlog(directory: pathlib.Path, args: argparse.Namespace) -> dict[str, float]:
    return _drain(directory, args, "backlog", 1000, 20, outage_first=True)


def row_backlog_batch(directory: pathlib.Path, args: argparse.Namespace) -> dict[str, float]:
    return _drain(
        directory, args, "backlog_batch", 1000, 20, outage_first=True, request_format="batch"
    )


def row_restart10k(directory: pathlib.Path, args: argparse.Namespace) -> dict[str, float]:
    return _drain(directory, args, "restart10k", 10_000, 1, outage_first=False)


def row_restart10k_batch(directory: pathlib.Path, args: argparse.Namespace) -> dict[str, float]:
    return _drain(
        directory, args, "restart10k_batch", 10_000, 1, outage_first=False, request_format="batch"
    )


def row_trickle(directory: pathlib.Path, args: argparse.Namespace) -> dict[str, float]:
    standin = Standin()
    mq = broker(directory / "mq")
    try:
        bridge = start_bridge(
            directory, "bridge", config_doc(mq, [device_entry(i) for i in range(10)], standin)
        )
        assert bridge.process is not None
        pid = bridge.process.pid
        publisher = Publisher(mq)
        stop = threading.Event()

        def trickle() -> None:
            n = 0
            next_at = time.monotonic()
            while not stop.is_set():
                n += 1
                # one message per device per second, spread over the second
                for i in range(10):
                    publisher.publish([(device_topic(i), shelly_payload(800.0 + n % 7, n))])
                    next_at += 0.1
                    stop.wait(max(0.0, next_at - time.monotonic()))

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        wait_until(lambda: standin.stats()["events"] >= 20, timeout_s=30)  # online + started x10
        time.sleep(1.0)
        window = 10.0 if args.quick else 30.0
        profiler = _profile(pid, args, "trickle", rate=2000)  # little CPU: sample often
        cpu0, sys0, w0, t0 = cpu_s(pid), sys_cpu_s(pid), wakeups(pid), time.monotonic()
        time.sleep(window)
        cpu1, sys1, w1, t1 = cpu_s(pid), sys_cpu_s(pid), wakeups(pid), time.monotonic()
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(60)
        stop.set()
        thread.join()
        publisher.close()
        bridge.stop()
        return {
            "cpu_pct": (cpu1 - cpu0) / (t1 - t0) * 100,
            "kernel_share": (sys1 - sys0) / max(1e-9, cpu1 - cpu0),
            "wakeups_per_s": (w1 - w0) / (t1 - t0),
        }
    finally:
        mq.stop()
        standin.stop()


def row_idle(directory: pathlib.Path, args: argparse.Namespace) -> dict[str, float]:
    standin = Standin()
    mq = broker(directory / "mq")
    try:
        hour = {"message_timeout_s": 3600.0, "heartbeat_interval_s": 3600.0}
        bridge = start_bridge(
            directory,
            "bridge",
            config_doc(mq, [device_entry(i, **hour) for i in range(10)], standin),
        )
        assert bridge.process is not None
        pid = bridge.process.pid
        publisher = Publisher(mq)
        publisher.publish([(device_topic(i), shelly_payload(0.0)) for i in range(10)])
        wait_until(lambda: standin.stats()["events"] >= 10, timeout_s=30)  # device_online x10
        publisher.close()
        time.sleep(2.0)
        window = 15.0 if args.quick else 60.0
        cpu0, w0, t0 = cpu_s(pid), wakeups(pid), time.monotonic()
        time.sleep(window)
        cpu1, w1, t1 = cpu_s(pid), wakeups(pid), time.monotonic()
        bridge.stop()
        return {"cpu_pct": (cpu1 - cpu0) / (t1 - t0) * 100, "wakeups_per_s": (w1 - w0) / (t1 - t0)}
    finally:
        mq.stop()
        standin.stop()


def row_rss_idle(directory: pathlib.Path, args: argparse.Namespace) -> dict[str, float]:
    mq = broker(directory / "mq")
    try:
        bridge = start_bridge(directory, "bridge", config_doc(mq, []))
        assert bridge.process is not None
        time.sleep(3.0)
        rss = rss_mib(bridge.process.pid)
        bridge.stop()
        return {"rss_mib": rss}
    finally:
        mq.stop()


def row_rss10k(directory: pathlib.Path, args: argparse.Namespace) -> dict[str, float]:
    mq = broker(directory / "mq")
    devices = 10_000
    try:
        entries = [device_entry(i, start_debounce_s=1.0) for i in range(devices)]
        bridge = start_bridge(directory, "bridge", config_doc(mq, entries))
        assert bridge.process is not None
        publisher = Publisher(mq)
        for start in range(0, devices, 500):
            publisher.publish(
                [(device_topic(i), shelly_payload(800.0, i)) for i in range(start, start + 500)]
            )
        wait_until(
            lambda: (
                metric(bridge, "iot_bridge_events_emitted_total", 'type="session_started"')
                >= devices
            ),
            timeout_s=120,
            interval_s=0.5,
        )
        publisher.close()
        time.sleep(3.0)
        rss = rss_mib(bridge.process.pid)
        bridge.stop()
        return {"rss_mib": rss}
    finally:
        mq.stop()


def _push(bridge: BridgeProcess, doc: dict[str, Any]) -> tuple[int, float, float, int]:
    assert bridge.process is not None
    body = json.dumps(doc).encode()
    cpu0, t0 = cpu_s(bridge.process.pid), time.monotonic()
    response = httpx.post(
        f"{bridge.url}/config",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=120,
    )
    elapsed = time.monotonic() - t0
    cpu = cpu_s(bridge.process.pid) - cpu0
    return response.status_code, elapsed, cpu, len(body)


def row_config(directory: pathlib.Path, args: argparse.Namespace) -> dict[str, float]:
    mq = broker(directory / "mq")
    figures: dict[str, float] = {}
    try:
        for devices in (1000, 10_000):
            bridge = start_bridge(directory, f"bridge{devices}", config_doc(mq, []))
            doc = config_doc(mq, [device_entry(i) for i in range(devices)])
            doc["mqtt"] = json.loads((directory / f"bridge{devices}.json").read_text())["mqtt"]
            status, elapsed, cpu, size = _push(bridge, doc)
            subscriptions = bridge.health()["subscriptions"]
            bridge.stop()
            figures[f"status_{devices}"] = float(status)
            figures[f"seconds_{devices}"] = elapsed if status == 200 else float("nan")
            figures[f"cpu_s_{devices}"] = cpu
            figures[f"body_mb_{devices}"] = size / 1e6
            figures[f"subscribed_{devices}"] = float(subscriptions)
        return figures
    finally:
        mq.stop()


def row_latency(directory: pathlib.Path, args: argparse.Namespace) -> dict[str, float]:
    standin = Standin()
    mq = broker(directory / "mq")
    flood_devices, probes = 1000, 100 if args.quick else 200
    rate = 5000.0
    try:
        entries = [device_entry(i) for i in range(flood_devices)]
        probe_topics = [f"{TOPIC_ROOT}/probe-{p:04d}/status/pm1:0" for p in range(probes)]
        entries += [
            {
                "device_id": f"probe{p:04d}",
                "machine_name": f"Probe {p}",
                "mqtt_topic": probe_topics[p],
                "parser_type": "shelly_pm",
                "session_config": {"start_debounce_s": 0.0, "message_timeout_s": 600.0},
            }
            for p in range(probes)
        ]
        bridge = start_bridge(directory, "bridge", config_doc(mq, entries, standin))
        publisher = Publisher(mq)
        publisher.publish([(topic, shelly_payload(0.0)) for topic in probe_topics])  # online, idle
        wait_until(lambda: standin.stats()["events"] >= probes, timeout_s=30)
        # The flood's first readings start 1,000 sessions (2,000 events): wait until
        # they are delivered, then probe while the flood goes on at its steady rate.
        duration_s = (30.0 if args.quick else 60.0) + probes * 0.05
        flood = flood_process(mq.port, flood_devices, int(rate * duration_s), rate)
        start_flood(flood)
        wait_until(
            lambda: standin.stats()["events"] >= probes + 2 * flood_devices,
            timeout_s=55,
            interval_s=0.2,
        )
        time.sleep(1.0)
        sent: dict[str, float] = {}
        for p in range(probes):
            sent[f"probe{p:04d}"] = time.monotonic()
            publisher.publish([(probe_topics[p], shelly_payload(900.0))])
            time.sleep(0.05)
        flood.kill()
        flood.wait(30)
        wait_until(
            lambda: sum(1 for d, kind, _ in standin.arrivals() if kind == "session_started"
                        and d.startswith("probe")) >= probes,
            timeout_s=60,
        )  # fmt: skip
        latencies = sorted(
            (at - sent[device]) * 1000
            for device, kind, at in standin.arrivals()
            if kind == "session_started" and device in sent
        )
        publisher.close()
        bridge.stop()
        return {
            "p50_ms": statistics.median(latencies),
            "p99_ms": latencies[max(0, int(len(latencies) * 0.99) - 1)],
            "max_ms": latencies[-1],
        }
    finally:
        mq.stop()
        standin.stop()


def row_ingest(directory: pathlib.Path, args: argparse.Namespace) -> dict[str, float]:
    mq = broker(directory / "mq")
    devices, messages = 1000, 50_000 if args.quick else 200_000
    try:
        bridge = start_bridge(
            directory, "bridge", config_doc(mq, [device_entry(i) for i in range(devices)])
        )
        assert bridge.process is not None
        pid = bridge.process.pid
        paho = subprocess.Popen(
            [sys.executable, __file__, "--paho", str(mq.port), str(messages)],
            stdout=subprocess.PIPE,
        )
        assert paho.stdout is not None
        if paho.stdout.readline().strip() != b"ready":
            raise RuntimeError("paho subscriber failed")
        before = metric(bridge, "iot_bridge_messages_received_total", 'parser="shelly_pm"')
        flood = flood_process(mq.port, devices, messages, 0)
        cpu0 = cpu_s(pid)
        start_flood(flood)
        wait_until(
            lambda: (
                metric(bridge, "iot_bridge_messages_received_total", 'parser="shelly_pm"')
                >= before + messages
            ),
            timeout_s=300,
            interval_s=0.2,
        )
        bridge_cpu = cpu_s(pid) - cpu0
        line = paho.stdout.readline().decode().split()
        paho_cpu = float(line[1])
        flood.wait(60)
        paho.wait(60)
        bridge.stop()
        return {
            "bridge_us_per_msg": bridge_cpu / messages * 1e6,
            "paho_us_per_msg": paho_cpu / messages * 1e6,
            "ratio": paho_cpu / bridge_cpu,
        }
    finally:
        mq.stop()


ROWS: dict[str, tuple[str, Row]] = {
    "down1000": ("Odoo down (503), 1,000 devices, 20,000 pending", row_down1000),
    "down50": ("Odoo down (503), 50 devices, 1,000 pending", row_down50),
    "down_ra": ("Odoo down (503 + Retry-After: 10), 1,000 devices", row_down_ra),
    "backlog": ("20,000-event backlog (1,000 devices) when Odoo returns", row_backlog),
    "backlog_batch": ("the same backlog, request_format batch", row_backlog_batch),
    "restart10k": ("10,000 devices, one pending event each", row_restart10k),
    "restart10k_batch": ("the same restart, request_format batch", row_restart10k_batch),
    "trickle": ("10 devices x 1 message/s, sessions running", row_trickle),
    "idle": ("no traffic, 10 devices, timers an hour away", row_idle),
    "rss_idle": ("RSS idle, no devices", row_rss_idle),
    "rss10k": ("RSS, 10,000 devices each with a running session", row_rss10k),
    "config": ("POST /config of 1,000 and 10,000 devices", row_config),
    "latency": ("reading that completes a start -> Odoo, under 5,000 msgs/s", row_latency),
    "ingest": ("burst ingest CPU per message vs bare paho + json.loads", row_ingest),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, help="runs per row (default 3; 1 with --quick)")
    parser.add_argument("--rows", nargs="+", choices=sorted(ROWS), default=list(ROWS))
    parser.add_argument("--quick", action="store_true", help="short windows (and one run)")
    parser.add_argument("--json", type=pathlib.Path, help="also write every run's figures here")
    parser.add_argument(
        "--profile", type=pathlib.Path, help="py-spy the drain and trickle rows into this directory"
    )
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    # As installed (a wheel, the image): the bridge's modules compiled once, not at every
    # start. An editable install under PYTHONDONTWRITEBYTECODE=1 (this machine) would
    # compile them in each spawned bridge: 0.3 s of its start, 1 MiB of its RSS.
    spec = importlib.util.find_spec("iot_bridge")
    if spec is not None and spec.origin is not None:
        compileall.compile_dir(str(pathlib.Path(spec.origin).parent), quiet=1)
    print(f"load average at start: {os.getloadavg()}", flush=True)
    results: dict[str, list[dict[str, float]]] = {}
    for name in args.rows:
        title, row = ROWS[name]
        results[name] = []
        for run in range(runs):
            with tempfile.TemporaryDirectory(prefix=f"ops-{name}-") as directory:
                try:
                    figures = row(pathlib.Path(directory), args)
                finally:
                    while STARTED:
                        STARTED.pop().kill()
            results[name].append(figures)
            shown = ", ".join(f"{k}={v:.4g}" for k, v in figures.items())
            print(f"  {name} run {run + 1}: {shown}", flush=True)
        print(f"{title}:", flush=True)
    print(f"load average at end: {os.getloadavg()}\n")
    print("| row | figure | median | min - max |")
    print("| --- | --- | ---: | --- |")
    for name, runs_figures in results.items():
        for key in runs_figures[0]:
            values = [figures[key] for figures in runs_figures]
            print(
                f"| {name} | {key} | {statistics.median(values):.4g} |"
                f" {min(values):.4g} - {max(values):.4g} |"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--publisher":
        run_publisher(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--paho":
        run_paho(int(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
