"""Fixtures of the whole-system tests: one real Odoo for the session, a workshop per test.

Collected only when ``OWE_ODOO_E2E`` is set (``scripts/odoo-test`` does it, with
``ODOO_SRC``/``ODOO_DB_ARGS`` and ``OWE_ODOO_PY``, the python that has the addon's
wheel; without ``OWE_ODOO_PY`` the wheel is built here).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.odoo.kit import (
    OdooKit,
    OdooServer,
    addon_test_report,
    installed_database,
    prepare_kit,
)
from tests.odoo.site import OdooSite, Workshop
from tests.support.bridge_process import BridgeProcess, wait_until
from tests.support.mosquitto import MosquittoBroker


@pytest.fixture(scope="session")
def odoo_kit(tmp_path_factory: pytest.TempPathFactory) -> OdooKit:
    """Odoo's source and the python with the addon's wheel (built here when not given)."""
    given = os.environ.get("OWE_ODOO_WORK")
    work = Path(given) if given else tmp_path_factory.mktemp("odoo")
    if not os.environ.get("OWE_ODOO_PY"):
        os.environ["OWE_ODOO_PY"] = str(prepare_kit(work))
    return OdooKit.from_env(work)


@pytest.fixture(scope="session")
def odoo(odoo_kit: OdooKit) -> Iterator[OdooSite]:
    """Odoo 18 with the addon in a fresh database, one HTTP worker, on free ports."""
    with installed_database(odoo_kit, "e2e") as db:
        server = OdooServer(odoo_kit, db, workers=1)
        server.start()
        try:
            yield OdooSite(server)
        finally:
            server.stop()


@pytest.fixture
def bare_workshop(
    odoo: OdooSite,
    mosquitto_factory: Callable[..., MosquittoBroker],
    bridge_factory: Callable[..., BridgeProcess],
    tmp_path: Path,
) -> Iterator[Workshop]:
    """A mosquitto and a bridge with a token and no config at all; Odoo not yet connected."""
    if not odoo.server.is_running():
        odoo.restart()  # a test that stopped Odoo and failed before starting it again
    odoo.clear_workshop()
    log_start = len(odoo.server.log_text())
    token = secrets.token_urlsafe(24)
    broker = mosquitto_factory()
    bridge = bridge_factory(token=token).start()
    workshop = Workshop(odoo=odoo, broker=broker, bridge=bridge, token=token, tmp_path=tmp_path)
    try:
        yield workshop
    finally:
        workshop.stop()
        if odoo.server.is_running():
            odoo.clear_workshop()
    # Whatever the bridge sent, Odoo answered without a traceback (bad input is a
    # ValidationError, which Odoo logs as a warning at most).
    errors = addon_test_report(odoo.server.log_text()[log_start:], 0).error_lines
    assert not errors, "Odoo logged errors during the test:\n" + "\n".join(errors[:20])


@pytest.fixture
def workshop(bare_workshop: Workshop) -> Workshop:
    """``bare_workshop`` connected from Odoo's settings, with its broker recorded in Odoo."""
    bare_workshop.connect()
    wait_until(lambda: bare_workshop.bridge.health()["odoo"]["configured"])
    bare_workshop.add_broker()
    return bare_workshop
