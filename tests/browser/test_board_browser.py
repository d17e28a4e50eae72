"""The live board in headless chromium, against ``iot-bridge run`` fed by the simulator."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import power, write_config
from tests.support.bridge_process import BridgeProcess, wait_until
from tests.support.mosquitto import MosquittoBroker, publish

TOKEN = "br0wser-t0ken"
# Timings of the demo at speed 10 (simulated machines), and a device the tests drive.
FAST = {
    "standby_threshold_w": 10.0,
    "working_threshold_w": 100.0,
    "start_debounce_s": 0.5,
    "stop_debounce_s": 2.0,
    "message_timeout_s": 3.5,
    "heartbeat_interval_s": 12.0,
}
MANUAL = {
    "standby_threshold_w": 5.0,
    "working_threshold_w": 50.0,
    "start_debounce_s": 0.3,
    "stop_debounce_s": 2.0,
    "message_timeout_s": 600.0,
    "heartbeat_interval_s": 300.0,
}
MACHINES = {"cnc-mill": "CNC Mill", "laser": "Laser Cutter", "manual": "Hand Press"}


class Rig:
    """A broker, a bridge with a token and two simulated machines plus one driven by hand."""

    def __init__(self, broker: MosquittoBroker, directory: Path) -> None:
        self.broker = broker
        devices = [
            {
                "device_id": device_id,
                "machine_name": name,
                "mqtt_topic": f"{device_id}/status/pm1:0",
                "parser_type": "shelly_pm",
                "session_config": MANUAL if device_id == "manual" else FAST,
            }
            for device_id, name in MACHINES.items()
        ]
        document = {
            "mqtt": {"broker": broker.host, "port": broker.port, "client_id": "bridge-browser"},
            "devices": devices,
        }
        self.bridge = BridgeProcess(
            data_dir=directory / "data",
            config_file=write_config(directory / "c.yaml", document),
            token=TOKEN,
        )
        self.simulators: list[subprocess.Popen[bytes]] = []
        self.log_dir = directory

    def start(self) -> Rig:
        self.bridge.start()
        wait_until(lambda: self.bridge.health()["mqtt"]["connected"])
        for device_id, scenario in (("cnc-mill", "full_session"), ("laser", "working")):
            log = (self.log_dir / f"sim-{device_id}.log").open("ab")
            args = [sys.executable, "-m", "iot_bridge", "simulate", "--no-tls", "--speed", "10"]
            args += ["--broker", self.broker.host, "--port", str(self.broker.port)]
            args += ["--scenario", scenario, "--duration", "3600", "--device-id", device_id]
            self.simulators.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT))
            log.close()
        return self

    def stop(self) -> None:
        for simulator in self.simulators:
            simulator.terminate()
        for simulator in self.simulators:
            try:
                simulator.wait(timeout=10)
            except subprocess.TimeoutExpired:
                simulator.kill()
        self.bridge.kill()

    def drive(self, watts: float) -> None:
        """Publish one reading of the hand-driven machine and wait until the board holds it."""
        before = self.readings("manual")
        publish(self.broker, "manual/status/pm1:0", power(watts))
        wait_until(lambda: self.readings("manual") > before)

    def readings(self, device_id: str) -> int:
        board = self.bridge.get("/board").json()
        return next(len(m["readings"]) for m in board["machines"] if m["device_id"] == device_id)

    def state(self, device_id: str) -> str:
        return str(self.bridge.device(device_id)["state"])


@pytest.fixture(scope="module")
def rig(mosquitto: MosquittoBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    started = Rig(mosquitto, tmp_path_factory.mktemp("browser")).start()
    try:
        yield started
    finally:
        started.stop()


class Page:
    """A browser tab on the board; console errors and page errors are collected."""

    def __init__(self, browser: Any, url: str) -> None:
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(url)

    def card(self, device_id: str) -> Any:
        return self.page.locator(f'article.card[data-device-id="{device_id}"]')


@pytest.fixture
def board(browser: Any, rig: Rig) -> Iterator[Page]:
    """The board opened from the link the demo prints (the token in the fragment)."""
    tab = Page(browser, f"{rig.bridge.url}/#token={TOKEN}")
    tab.page.wait_for_selector("#link[data-status=live]", timeout=10_000)
    yield tab
    tab.page.close()


def test_the_cards_show_the_configured_machines_and_no_console_errors(board: Page) -> None:
    """One card per configured machine, with its name; the fragment left the address bar."""
    page = board.page
    expect(page.locator("article.card")).to_have_count(3)
    ids = page.eval_on_selector_all("article.card", "cards => cards.map(c => c.dataset.deviceId)")
    assert ids == list(MACHINES)
    for device_id, name in MACHINES.items():
        assert board.card(device_id).locator(".name").inner_text() == name
    assert "token" not in page.url
    wait_until(
        lambda: (
            board.card("laser").get_attribute("data-state")
            in ("starting", "standby", "working", "stopping")
        )
    )
    assert board.errors == []


def test_a_state_change_shows_within_two_seconds(board: Page, rig: Rig) -> None:
    """A reading that starts a session turns the card out of idle within 2 s of its publish."""
    page = board.page
    wait_until(lambda: rig.state("manual") == "idle" or rig.drive(0.0))
    page.wait_for_selector('article[data-device-id="manual"][data-state="idle"]', timeout=5000)
    publish(rig.broker, "manual/status/pm1:0", power(200.0))
    page.wait_for_selector(
        'article[data-device-id="manual"]:is([data-state="starting"], [data-state="working"])',
        timeout=2000,
    )
    page.wait_for_selector('article[data-device-id="manual"][data-state="working"]', timeout=5000)
    assert board.card("manual").locator(".power .value").inner_text() == "200"
    rig.drive(0.0)
    page.wait_for_selector('article[data-device-id="manual"][data-state="idle"]', timeout=10_000)
    assert board.errors == []


def test_the_chart_draws_the_power_and_its_threshold_lines(board: Page) -> None:
    """The canvas has points, and the standby and working lines in their colours at their heights."""
    page = board.page
    canvas = board.card("cnc-mill").locator("canvas")
    wait_until(lambda: int(canvas.get_attribute("data-points") or 0) > 3)
    lines = json.loads(canvas.get_attribute("data-thresholds") or "[]")
    assert [line["value"] for line in lines] == [10.0, 100.0]
    distances = page.evaluate(
        """([lines, targets]) => {
            // For each line: the pixel on its row closest in colour to the line's colour.
            const canvas = document.querySelector('article[data-device-id="cnc-mill"] canvas');
            const ratio = canvas.width / canvas.clientWidth;
            const ctx = canvas.getContext('2d');
            return lines.map((line, index) => {
                const [r, g, b] = targets[index];
                let best = Infinity;
                for (const dy of [-1, 0]) {
                    const y = Math.floor(line.y * ratio) + dy;
                    const row = ctx.getImageData(0, y, canvas.width, 1).data;
                    for (let i = 0; i < row.length; i += 4) {
                        const d = Math.abs(row[i] - r) + Math.abs(row[i + 1] - g) + Math.abs(row[i + 2] - b);
                        if (d < best) best = d;
                    }
                }
                return best;
            });
        }""",
        [lines, [[76, 155, 245], [47, 191, 113]]],
    )
    assert all(distance < 30 for distance in distances), distances
    assert board.errors == []


def test_the_tuning_panel_shows_another_session_count_for_a_threshold_that_splits(
    board: Page, rig: Rig
) -> None:
    """A dip to 20 W inside a session: standby 30 W and no debounce splits it in two."""
    page = board.page
    rig.drive(0.0)
    wait_until(lambda: rig.state("manual") == "idle")
    rig.drive(200.0)
    wait_until(lambda: rig.state("manual") == "working")
    rig.drive(20.0)
    rig.drive(200.0)
    rig.drive(0.0)
    wait_until(lambda: rig.state("manual") == "idle")
    board.card("manual").locator("button.try").click()
    form = page.locator("#tuning-form")
    assert form.locator("[name=standby_threshold_w]").input_value() == "5"
    form.locator("[name=standby_threshold_w]").fill("30")
    form.locator("[name=start_debounce_s]").fill("0")
    form.locator("[name=stop_debounce_s]").fill("0")
    form.locator("button[type=submit]").click()
    expect(page.locator("#tuning-proposed-count")).not_to_have_text("\N{EN DASH}")
    current = int(page.locator("#tuning-current-count").inner_text())
    proposed = int(page.locator("#tuning-proposed-count").inner_text())
    assert proposed == current + 1
    assert page.locator("#tuning-proposed li").count() == proposed
    # Nothing changed on the bridge.
    settings = rig.bridge.get("/config").json()["devices"][2]["session_config"]
    assert settings["standby_threshold_w"] == 5.0
    assert board.errors == []


def test_a_wrong_token_shows_no_machine_data(browser: Any, rig: Rig) -> None:
    """A refused token: the token form with its error, no card, no machine name on the page."""
    tab = Page(browser, f"{rig.bridge.url}/#token=wrong")
    page = tab.page
    page.wait_for_selector("#token-error:not([hidden])", timeout=10_000)
    assert page.locator("article.card").count() == 0
    text = page.inner_text("body")
    for name in MACHINES.values():
        assert name not in text
    page.fill("#token-input", TOKEN)
    page.click("#token-entry button[type=submit]")
    page.wait_for_selector("#link[data-status=live]", timeout=10_000)
    assert page.locator("article.card").count() == 3
    page.close()


def test_the_page_recovers_by_itself_after_a_bridge_restart(browser: Any, rig: Rig) -> None:
    """The bridge stops and comes back on the same port: the page goes live again unaided."""
    tab = Page(browser, f"{rig.bridge.url}/#token={TOKEN}")
    page = tab.page
    page.wait_for_selector("#link[data-status=live]", timeout=10_000)
    assert rig.bridge.stop() == 0
    page.wait_for_selector("#link:not([data-status=live])", timeout=10_000)
    rig.bridge.start()
    page.wait_for_selector("#link[data-status=live]", timeout=20_000)
    started = time.monotonic()
    publish(rig.broker, "manual/status/pm1:0", power(300.0))
    page.wait_for_selector(
        'article[data-device-id="manual"] .power .value:text-is("300")', timeout=5000
    )
    assert time.monotonic() - started < 5
    rig.drive(0.0)
    page.close()
