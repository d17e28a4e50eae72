"""Thousands of clients at once: the cap holds, /health answers within 100 ms (issue 20's
bound), dripping clients are cut at their deadline, killed streams leave nothing behind.

The clients run in a process of their own (tests/support/http_crowd.py); the server and
the health checks run here, on this test's event loop.
"""

from __future__ import annotations

import asyncio
import os
import time

from iot_bridge.net.http.server import HEALTH_RESERVE, MAX_CONNECTIONS, HttpServer
from tests.integration.http_edge.conftest import edge_app
from tests.support.http_crowd import CrowdProcess
from tests.support.raw_http import Serve, connect, read_reply, request, wait_for_condition

CROWD = 2_000
HEALTH_BOUND_S = 0.100  # issue 20: /health answers within 100 ms while the cap is reached
PROBES = 20


async def health_latencies(server: HttpServer, port: int) -> list[float]:
    """``PROBES`` health checks as a monitor makes them (a new connection each), 20 ms
    apart, each timed from its connect to the end of its answer; the cap is full at each."""
    latencies = []
    for _ in range(PROBES):
        assert server.connections >= server.max_connections
        began = time.monotonic()
        reader, writer = await connect(port)
        writer.write(request("GET", "/health"))
        reply = await read_reply(reader, timeout_s=5.0)
        latencies.append(time.monotonic() - began)
        writer.close()
        assert reply.status == 200
        await asyncio.sleep(0.02)
    return latencies


async def test_2000_idle_clients_leave_health_answering(serve: Serve) -> None:
    """2,000 clients that connect and say nothing: the default cap (512) holds, the rest are
    answered 503, and every health check is answered within 100 ms."""
    server, port = await serve(edge_app, keep_alive_timeout_s=30.0)
    async with CrowdProcess(port, CROWD, "idle") as crowd:
        assert crowd.ready["connected"] == CROWD
        await wait_for_condition(lambda: server.connections >= MAX_CONNECTIONS)
        latencies = await health_latencies(server, port)
    assert max(latencies) <= HEALTH_BOUND_S, latencies
    outcomes = crowd.done["outcomes"]
    assert outcomes.get("503", 0) >= CROWD - MAX_CONNECTIONS - HEALTH_RESERVE
    assert outcomes.get("open", 0) >= MAX_CONNECTIONS
    assert set(outcomes) <= {"503", "open"}
    await wait_for_condition(lambda: server.connections == 0)


async def test_2000_dripping_clients_leave_health_answering_and_are_cut_at_the_deadline(
    serve: Serve,
) -> None:
    """2,000 clients dripping a head one byte per 0.2 s: health checks answered within
    100 ms; those under the cap get 408 at the head's deadline (3 s), the rest 503, and
    none is held past the deadline."""
    head_timeout_s = 3.0
    # The clients connect first, silent (a long keep-alive time), then all start dripping.
    server, port = await serve(edge_app, head_timeout_s=head_timeout_s, keep_alive_timeout_s=30.0)
    async with CrowdProcess(port, CROWD, "drip", "--drip-interval", "0.2") as crowd:
        assert crowd.ready["connected"] == CROWD
        await wait_for_condition(lambda: server.connections >= MAX_CONNECTIONS)
        latencies = await health_latencies(server, port)
        await crowd.ended(timeout_s=head_timeout_s + 10)
    assert max(latencies) <= HEALTH_BOUND_S, latencies
    outcomes = crowd.done["outcomes"]
    assert outcomes["408"] == MAX_CONNECTIONS
    # Over the cap: 503, or a reset when a drip byte hit the closed socket before the
    # client read its 503.
    assert outcomes.get("503", 0) + outcomes.get("reset", 0) == CROWD - MAX_CONNECTIONS
    assert crowd.done["ended"] == CROWD
    # The 408s came at the deadline (each byte had restarted a 30 s stall timer before);
    # the 503s at once, when a newer client took a reserve slot, or at the deadline.
    assert crowd.done["ended_after_s"][1] < head_timeout_s + 2.0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_200_streams_killed_at_once_leave_no_task_and_no_fd(serve: Serve) -> None:
    """200 clients of an event stream, their process killed: the server's connections,
    the apps' tasks and this process's file descriptors go back to where they were."""
    server, port = await serve(edge_app)
    await asyncio.sleep(0)
    tasks_before, fds_before = len(asyncio.all_tasks()), open_fds()
    crowd = CrowdProcess(port, 200, "sse")
    await crowd.__aenter__()
    await wait_for_condition(lambda: server.requests == 200 and server.connections == 200)
    assert len(asyncio.all_tasks()) > tasks_before + 200
    await crowd.kill()
    await wait_for_condition(lambda: server.requests == 0 and server.connections == 0)
    await wait_for_condition(lambda: len(asyncio.all_tasks()) == tasks_before)
    await wait_for_condition(lambda: open_fds() == fds_before)
