"""Shared fixtures: real brokers and HTTP servers live in tests/support."""

import pathlib

import pytest

pytest_plugins = [
    "tests.support.mosquitto",
    "tests.support.amqtt_broker",
    "tests.support.odoo_standin",
    "tests.support.bridge_process",
    "tests.support.small_fs",
]

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_DIR = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_fixtures_dir() -> pathlib.Path:
    """The read-only folder of real device messages beside the checkout."""
    return SHARED_DIR / "fixtures"


@pytest.fixture(autouse=True)
def _reset_logging() -> object:
    """Each test starts with structlog's defaults (a test may have configured a closed stream)."""
    import structlog

    yield
    structlog.reset_defaults()
