"""The HTTP connection cap of ``iot-bridge run``: from BRIDGE_MAX_CONNECTIONS, changed by a
push's ``http.max_connections``, fitted under the process's open-file limit (raised to
its hard limit at start)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx

from iot_bridge.bootstrap import FD_HEADROOM
from iot_bridge.net.http.server import HEALTH_RESERVE
from tests.e2e.conftest import config, write_config
from tests.support.bridge_process import BridgeProcess, wait_until
from tests.support.http_crowd import CrowdProcess
from tests.support.mosquitto import MosquittoBroker


def idle_clients(port: int, count: int) -> list[socket.socket]:
    """``count`` connections that send nothing (the bridge keeps them 5 s)."""
    return [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]


def refused(port: int) -> bool:
    """Whether a new connection asking GET /devices is answered 503 (over the cap only
    /health is served)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /devices HTTP/1.1\r\nHost: bridge\r\n\r\n")
        return sock.recv(64).startswith(b"HTTP/1.1 503 ")


def soft_and_hard_fd_limits(pid: int) -> tuple[str, str]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return soft, hard
    raise AssertionError("no Max open files line")


def test_the_cap_follows_the_environment_then_a_push(tmp_path: Path) -> None:
    """BRIDGE_MAX_CONNECTIONS=2: a third client gets 503, /health still answers (the reserve);
    a push of http.max_connections: 4 lets four in; the soft open-file limit is the hard one."""
    broker = MosquittoBroker(tmp_path / "broker").start()
    bridge = BridgeProcess(
        data_dir=tmp_path / "data",
        config_file=write_config(tmp_path / "c.yaml", config(broker)),
        env={"BRIDGE_MAX_CONNECTIONS": "2"},
    )
    held: list[socket.socket] = []
    try:
        bridge.start()
        assert bridge.process is not None
        soft, hard = soft_and_hard_fd_limits(bridge.process.pid)
        assert soft == hard
        assert bridge.log_events("http_listening")[0]["max_connections"] == 2
        held = idle_clients(bridge.port, 2)
        wait_until(lambda: refused(bridge.port))
        assert httpx.get(f"{bridge.url}/health", timeout=5).status_code == 200
        for sock in held:
            sock.close()
        document = {**config(broker), "http": {"max_connections": 4}}
        wait_until(lambda: bridge.post("/config", json=document).status_code == 200)
        held = idle_clients(bridge.port, 4)
        wait_until(lambda: refused(bridge.port))
        assert bridge.log_events("http_connection_refused")
    finally:
        for sock in held:
            sock.close()
        bridge.stop()
        broker.stop()


async def test_a_low_open_file_limit_lowers_the_cap_and_health_still_answers(
    tmp_path: Path,
) -> None:
    """Hard limit 256 open files, 400 idle clients (issue 20 saw 2,000 take all 1,024): the
    cap is lowered to fit (logged), /health answers, the rest get 503, logged in two lines
    with their count, and no accept fails for want of descriptors."""
    broker = MosquittoBroker(tmp_path / "broker").start()
    bridge = BridgeProcess(
        data_dir=tmp_path / "data",
        config_file=write_config(tmp_path / "c.yaml", config(broker)),
        env={"LOG_LEVEL": "INFO"},
        open_files=256,
    )
    try:
        await asyncio.to_thread(bridge.start)
        (lowered,) = bridge.log_events("http_max_connections_lowered")
        cap = 256 - FD_HEADROOM - HEALTH_RESERVE
        assert (lowered["wanted"], lowered["allowed"]) == (512, cap)
        async with CrowdProcess(bridge.port, 400, "idle") as crowd:
            assert crowd.ready["connected"] == 400
            reply = await asyncio.to_thread(httpx.get, f"{bridge.url}/health", timeout=5)
            assert reply.status_code == 200
        assert crowd.done["outcomes"].get("503", 0) >= 400 - cap - HEALTH_RESERVE
        await asyncio.to_thread(bridge.stop)  # the count held back is logged at the stop
        refusals = bridge.log_events("http_connection_refused")
        assert sum(line["count"] for line in refusals) >= 400 - cap - HEALTH_RESERVE
        assert len(refusals) == 2  # the first at once, the count of the rest at the stop
        assert not bridge.log_events("http_accept_failed")
    finally:
        await asyncio.to_thread(bridge.stop)
        broker.stop()
