"""The board's HTTP side against the ``iot-bridge run`` process: page, JSON, stream, tuning, token."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import config, device, power, write_config
from tests.support.bridge_process import BridgeProcess, wait_until
from tests.support.mosquitto import MosquittoBroker, publish, publish_many
from tests.support.sse import collect

TOKEN = "b0ard-t0ken-XYZ"
PROTECTED = ("/board", "/stream", "/board/devices/mill/tuning")


@pytest.fixture
def board_bridge(
    mosquitto_factory, bridge_factory, tmp_path: Path
) -> tuple[MosquittoBroker, BridgeProcess]:
    """A bridge with a token and one device "mill" (thresholds 5/50 W), connected."""
    broker: MosquittoBroker = mosquitto_factory()
    cfg = write_config(tmp_path / "c.yaml", config(broker, device("mill")))
    bridge: BridgeProcess = bridge_factory(config_file=cfg, token=TOKEN).start()
    wait_until(lambda: bridge.health()["mqtt"]["connected"])
    return broker, bridge


def test_the_page_is_static_needs_no_token_and_holds_no_data(board_bridge) -> None:
    """GET / and its files answer without a token and contain no device; a strict CSP."""
    _, bridge = board_bridge
    page = httpx.get(f"{bridge.url}/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "mill" not in page.text
    for name in ("app.js", "chart.js", "board.css"):
        asset = httpx.get(f"{bridge.url}/board/static/{name}")
        assert asset.status_code == 200 and "mill" not in asset.text
    assert httpx.get(f"{bridge.url}/board/static/../../bridge.py").status_code == 404
    assert httpx.get(f"{bridge.url}/board/auth").json() == {"token_required": True}


def test_the_board_data_needs_the_token(board_bridge) -> None:
    """Without the token, or with a wrong one, every data route is 401 and shows no machine."""
    _, bridge = board_bridge
    for path in PROTECTED:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            reply = httpx.get(f"{bridge.url}{path}", headers=headers, timeout=5)
            assert reply.status_code == 401, (path, headers)
            assert "mill" not in reply.text
    assert httpx.get(f"{bridge.url}/stream?token=wrong", timeout=5).status_code == 401
    # ?token= is for EventSource only: the JSON routes take the header.
    assert httpx.get(f"{bridge.url}/board?token={TOKEN}", timeout=5).status_code == 401
    board = bridge.get("/board").json()
    assert [m["device_id"] for m in board["machines"]] == ["mill"]
    assert board["machines"][0]["thresholds"] == {
        "standby_threshold_w": 5.0,
        "working_threshold_w": 50.0,
    }


def test_the_stream_starts_with_a_snapshot_then_sends_state_changes(board_bridge) -> None:
    """A snapshot first, then the state change and the session event of a reading."""
    broker, bridge = board_bridge
    got = collect(
        f"{bridge.url}/stream?token={TOKEN}",
        on_open=lambda: publish(broker, "mill/status/pm1:0", power(200.0, 1.0)),
        until=lambda evs: any(
            e.name == "event" and e.data["event_type"] == "session_started" for e in evs
        ),
    )
    assert got[0].name == "snapshot"
    assert [m["device_id"] for m in got[0].data["machines"]] == ["mill"]
    states = [e.data["state"] for e in got if e.name == "state"]
    assert states[:2] == ["starting", "working"]
    assert len({e.event_id for e in got}) == len(got)


def test_the_stream_sends_at_most_a_few_readings_a_second_per_machine(board_bridge) -> None:
    """A device reporting hundreds of times a second shows at most 4 readings a second."""
    broker, bridge = board_bridge
    done = threading.Event()

    def flood() -> None:
        # Hundreds of QoS 1 messages a second for 3 s (one PUBACK at a time), in a thread.
        def run() -> None:
            until = time.monotonic() + 3.0
            while time.monotonic() < until:
                publish_many(
                    broker, [("mill/status/pm1:0", power(100.0 + i % 50)) for i in range(200)]
                )
            done.set()

        threading.Thread(target=run, daemon=True).start()

    opened = time.monotonic()  # before the server can send anything
    got = collect(
        f"{bridge.url}/stream",
        headers={"Authorization": f"Bearer {TOKEN}"},
        on_open=flood,
        until=lambda evs: done.is_set() and sum(e.name == "reading" for e in evs) >= 3,
        timeout_s=60,
    )
    readings = [e for e in got if e.name == "reading"]
    # Flushes are at least 0.25 s apart, each with at most one reading of the machine:
    # n readings need (n - 1) / 4 s between the first send (after ``opened``) and the
    # last arrival (after its send).
    assert len(readings) <= 4 * (readings[-1].at - opened) + 1


def test_tuning_replays_without_changing_anything_and_refuses_bad_input(board_bridge) -> None:
    """Current vs proposed over the kept readings; 404 and 422 say why; the config is unchanged."""
    broker, bridge = board_bridge
    for count, watts in enumerate((200.0, 201.0, 20.0, 200.0, 0.0), start=1):
        publish(broker, "mill/status/pm1:0", power(watts))
        wait_until(lambda n=count: len(bridge.get("/board").json()["machines"][0]["readings"]) >= n)
    before = bridge.get("/config").json()
    result = bridge.get("/board/devices/mill/tuning", params={"standby_threshold_w": 30}).json()
    assert result["proposed"]["session_config"]["standby_threshold_w"] == 30
    assert result["current"]["session_config"]["standby_threshold_w"] == 5.0
    assert result["readings"] >= 5
    assert bridge.get("/config").json() == before
    missing = bridge.get("/board/devices/nope/tuning")
    assert missing.status_code == 404 and "nope" in missing.json()["message"]
    bad = bridge.get("/board/devices/mill/tuning", params={"working_threshold_w": 1})
    assert bad.status_code == 422
    assert "working_threshold_w" in bad.json()["message"]
    negative = bridge.get("/board/devices/mill/tuning", params={"stop_debounce_s": -1})
    assert negative.status_code == 422 and "stop_debounce_s" in negative.json()["message"]


def test_the_stream_token_never_reaches_the_logs(board_bridge) -> None:
    """After streams with ?token=, right and wrong, the log holds neither token nor query string."""
    _, bridge = board_bridge
    collect(f"{bridge.url}/stream?token={TOKEN}", until=lambda evs: evs[0].name == "snapshot")
    httpx.get(f"{bridge.url}/stream?token=wr0ng-guess", timeout=5)
    bridge.get("/board/devices/mill/tuning", params={"standby_threshold_w": 9})
    wait_until(lambda: bridge.log_events("request_rejected"))
    log = bridge.log()
    assert TOKEN not in log
    assert "wr0ng-guess" not in log
    assert "token=" not in log
    assert "standby_threshold_w=9" not in log
