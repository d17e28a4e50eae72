"""The board's banner when the disk holding the data dir is full, in headless chromium."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.e2e.conftest import config, device, power, write_config
from tests.support.bridge_process import BridgeProcess, wait_until
from tests.support.mosquitto import publish
from tests.support.small_fs import SmallFilesystem

TOKEN = "d1sk-t0ken"


def test_a_full_disk_shows_a_banner_until_space_is_freed(
    browser: Any, small_fs, mosquitto_factory, bridge_factory, tmp_path: Path
) -> None:
    """Red banner "disk ... is full" while commits wait for space; gone once they go on."""
    card: SmallFilesystem = small_fs(size_mb=16)
    broker = mosquitto_factory()
    cfg = write_config(tmp_path / "c.yaml", config(broker, device("mill")))
    bridge: BridgeProcess = bridge_factory(
        data_dir=card.path / "data", config_file=cfg, token=TOKEN, log_path=tmp_path / "b.log"
    ).start()
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{bridge.url}/#token={TOKEN}")
    page.wait_for_selector("#link[data-status=live]", timeout=10_000)
    banner = page.locator("#store-banner")
    expect(banner).to_be_hidden()
    card.fill()
    deadline = time.monotonic() + 60.0
    watts = 100.0
    while not bridge.health()["store"]["disk_full"]:
        assert time.monotonic() < deadline, "the bridge never hit the full disk"
        watts = 200.0 if watts == 100.0 else 100.0
        publish(broker, "mill/status/pm1:0", power(watts))
        time.sleep(0.05)
    expect(banner).to_be_visible(timeout=10_000)  # the stream's health comes every 5 s
    expect(banner).to_contain_text("disk holding the bridge's data is full")
    card.free()
    wait_until(lambda: not bridge.health()["store"]["disk_full"], timeout_s=30)
    expect(banner).to_be_hidden(timeout=10_000)
    assert errors == []
    page.close()
