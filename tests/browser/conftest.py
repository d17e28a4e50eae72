"""Real-browser tests: Debian's chromium, headless, driven by Playwright for Python.

``playwright install`` cannot download here, so the browser is the system's
(``/usr/bin/chromium``, or ``CHROMIUM``). A missing browser FAILS these tests
(never a silent skip): ``scripts/test`` installs it with apt-get.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def chromium_path() -> str:
    """The system chromium, or a clear failure that says how to install it."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "chromium is not installed: the board's browser tests need it "
        "(apt-get install -y chromium; scripts/test does this)",
        pytrace=False,
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless chromium for the module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def pytest_collection_modifyitems(items: list[Any]) -> None:
    """Browser tests run processes and a browser: ``slow`` and ``browser``."""
    for item in items:
        if "/tests/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.browser)
