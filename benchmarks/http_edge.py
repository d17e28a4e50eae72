"""HTTP edge benchmark (issue 20): 2,000 hostile clients against ``iot-bridge run``.

    python3 benchmarks/http_edge.py [--mode drip|idle] [--clients 2000] [--runs 1] [--quick]
    python3 benchmarks/http_edge.py --refusal-cost

What an installation runs: ``iot-bridge run`` (its own data dir, LOG_LEVEL=INFO, no
devices) and a mosquitto on a free port of 127.0.0.1. The clients are
``tests/support/http_crowd.py`` in a process of their own: ``drip`` clients send a
request head one byte every 10 s (issue 20's probe) and, once the server ends their
connection (408 at the head's deadline, or 503 over the cap), come back 10 s later;
``idle`` clients connect, say nothing, and come back 10 s after being closed.

After a warm-up, for the measuring window: the bridge's CPU (utime + stime from /proc,
so other load moves it little), a ``GET /health`` every 0.25 s on a new connection (as
a monitor asks) timed from the connect to the end of the answer, the log lines the
bridge wrote, and its open file descriptors. Issue 20's target: /health within 100 ms
and the bridge's CPU under 5 % with 2,000 dripping clients.

``--refusal-cost``: instead, the server's CPU per connection refused over the cap (an
``HttpServer`` in this process with a cap of 0; 5,000 silent clients), without and with
the health reserve.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ops import broker, config_doc, cpu_s, start_bridge, wakeups  # noqa: E402

PROBE_INTERVAL_S = 0.25
FAILURES: list[str] = []  # why health checks failed, printed at the end
HEALTH_REQUEST = b"GET /health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


def health_latency_s(port: int) -> float:
    """One health check on a new connection: connect, ask, read to the close; seconds
    (infinite when it is not answered 200 within 5 s)."""
    began = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
            sock.sendall(HEALTH_REQUEST)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
    except OSError as err:
        FAILURES.append(f"{type(err).__name__} after {time.monotonic() - began:.3f} s")
        return float("inf")
    if not reply.startswith(b"HTTP/1.1 200 "):
        FAILURES.append(reply[:12].decode(errors="replace") or "closed without an answer")
        return float("inf")
    return time.monotonic() - began


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def log_lines(path: pathlib.Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def run(directory: pathlib.Path, args: argparse.Namespace) -> dict[str, float]:
    mq = broker(directory / "mq")
    crowd: subprocess.Popen[bytes] | None = None
    try:
        bridge = start_bridge(directory, "bridge", config_doc(mq, []))
        assert bridge.process is not None
        pid = bridge.process.pid
        crowd = subprocess.Popen(
            [
                sys.executable, "-m", "tests.support.http_crowd",
                "--port", str(bridge.port), "--count", str(args.clients), "--mode", args.mode,
                "--drip-interval", "10", "--reconnect-after", "10",
            ],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        assert crowd.stdout is not None
        ready = json.loads(crowd.stdout.readline())["ready"]
        time.sleep(args.warmup)
        lines0 = len(log_lines(bridge.log_path))
        cpu0, w0, t0 = cpu_s(pid), wakeups(pid), time.monotonic()
        latencies: list[float] = []
        fds: list[int] = []
        while time.monotonic() - t0 < args.window:
            latencies.append(health_latency_s(bridge.port))
            fds.append(open_fds(pid))
            time.sleep(PROBE_INTERVAL_S)
        cpu1, w1, t1 = cpu_s(pid), wakeups(pid), time.monotonic()
        written = log_lines(bridge.log_path)[lines0:]
        refusal_lines = [line for line in written if '"http_connection_refused"' in line]
        refused = sum(json.loads(line).get("count", 0) for line in refusal_lines)
        bridge.stop()
        latencies.sort()
        return {
            "connect_s": ready["seconds"],
            "cpu_pct": (cpu1 - cpu0) / (t1 - t0) * 100,
            "wakeups_per_s": (w1 - w0) / (t1 - t0),
            "health_p50_ms": statistics.median(latencies) * 1000,
            "health_p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
            "health_max_ms": latencies[-1] * 1000,
            "health_probes": len(latencies),
            "log_lines": len(written),
            "refusal_lines": len(refusal_lines),
            "refused": refused,
            "fds_max": max(fds),
        }
    finally:
        if crowd is not None:
            crowd.kill()
            crowd.wait()
        mq.stop()


def refusal_cost(count: int = 5000) -> None:
    """Server CPU per refused connection, without and with the health reserve."""
    import asyncio
    import resource

    from tests.support.http_crowd import CrowdProcess

    from iot_bridge.bootstrap import bind_socket
    from iot_bridge.net.http.server import HEALTH_RESERVE, HttpServer

    async def app(scope: Any, receive: Any, send: Any) -> None:  # never reached: cap 0
        raise AssertionError(scope)

    async def measure(reserve: int) -> float:
        sock = bind_socket("127.0.0.1", 0, 1024)
        server = HttpServer(app, max_connections=0, health_reserve=reserve, backlog=1024)
        serving = asyncio.create_task(server.serve(sock))
        await asyncio.sleep(0)
        before = resource.getrusage(resource.RUSAGE_SELF)
        async with CrowdProcess(sock.getsockname()[1], count, "idle"):
            pass
        after = resource.getrusage(resource.RUSAGE_SELF)
        server.stop()
        await serving
        sock.close()
        spent = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return spent / count * 1e6

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"load average: {os.getloadavg()}")
    for reserve in (0, HEALTH_RESERVE):
        print(f"reserve {reserve}: {asyncio.run(measure(reserve)):.1f} µs of CPU per refusal")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("drip", "idle"), default="drip")
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="a 20 s window (else 60 s)")
    parser.add_argument(
        "--refusal-cost", action="store_true", help="CPU per connection refused over the cap"
    )
    args = parser.parse_args()
    if args.refusal_cost:
        refusal_cost()
        return
    args.window = 20.0 if args.quick else 60.0
    args.warmup = 5.0 if args.quick else 15.0
    print(f"load average at start: {os.getloadavg()}", flush=True)
    results: list[dict[str, Any]] = []
    for number in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="http-edge-") as directory:
            figures = run(pathlib.Path(directory), args)
        results.append(figures)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in figures.items())
        print(f"  {args.mode} run {number + 1}: {shown}", flush=True)
    print(f"load average at end: {os.getloadavg()}")
    print(f"failed health checks: {FAILURES or 'none'}\n")
    print(f"| {args.clients} {args.mode} clients | median | min - max |")
    print("| --- | ---: | --- |")
    for key in results[0]:
        values = [figures[key] for figures in results]
        median = statistics.median(values)
        print(f"| {key} | {median:.4g} | {min(values):.4g} - {max(values):.4g} |")


if __name__ == "__main__":
    main()
