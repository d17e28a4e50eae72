"""Shared fixtures: real brokers and HTTP servers live in tests/support."""

import os
import pathlib

import pytest

pytest_plugins = [
    "tests.support.mosquitto",
    "tests.support.amqtt_broker",
    "tests.support.odoo_standin",
    "tests.support.bridge_process",
    "tests.support.small_fs",
]

# tests/odoo/ runs the whole system against a real Odoo 18 and PostgreSQL; scripts/odoo-test
# (which `scripts/test` without arguments calls) sets up both and sets OWE_ODOO_E2E. A plain
# pytest run does not collect it.
collect_ignore = [] if os.environ.get("OWE_ODOO_E2E") else ["odoo"]

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
