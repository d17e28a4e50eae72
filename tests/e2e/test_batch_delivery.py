"""``iot-bridge run`` with ``odoo.request_format: batch``: sessions reach the stand-in's
``/ows/iot/events``, and kill -9 in the middle of a backlog's calls loses nothing."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from iot_bridge.adapters.store import EventStore
from iot_bridge.domain.events import Event, EventType
from tests.e2e.conftest import config, device, power, write_config
from tests.support.bridge_process import wait_until
from tests.support.mosquitto import MosquittoBroker, publish
from tests.support.odoo_standin import EVENTS_PATH, OdooStandin


def batch_config(broker: MosquittoBroker, standin: OdooStandin, *devices: dict[str, Any]) -> Any:
    """A config document delivering to ``standin`` with request_format batch."""
    document = config(broker, *devices)
    document["odoo"] = {
        "base_url": standin.url,
        "database": standin.database,
        "api_key": standin.api_key,
        "request_format": "batch",
    }
    return document


def test_a_session_flows_to_the_batch_route(
    mosquitto_factory: Any, odoo_standin_factory: Any, bridge_factory: Any, tmp_path: Path
) -> None:
    """With request_format batch, a session's events reach /ows/iot/events (key and ?db=
    checked), in order, and every event is delivered."""
    broker: MosquittoBroker = mosquitto_factory()
    standin: OdooStandin = odoo_standin_factory(api_key="k3y-batch", database="odoo")
    document = batch_config(broker, standin, device("mill"))
    bridge = bridge_factory(config_file=write_config(tmp_path / "c.yaml", document)).start()
    wait_until(lambda: bridge.health()["mqtt"]["connected"])
    publish(broker, "mill/status/pm1:0", power(200.0, 10.0))
    wait_until(lambda: "session_started" in bridge.event_types())
    publish(broker, "mill/status/pm1:0", power(0.0, 12.0))
    events = standin.wait_for_events(3, timeout_s=20)
    assert [e["event_type"] for e in events] == [
        "device_online",
        "session_started",
        "session_stopped",
    ]
    assert standin.requests and all(r.path == EVENTS_PATH for r in standin.requests)
    assert all(r.status == 200 for r in standin.requests)
    assert standin.invalid == []
    wait_until(lambda: bridge.health()["outbox"]["pending"] == 0)
    assert bridge.stop() == 0


def seed_backlog(data_dir: Path, devices: int, per_device: int) -> None:
    """Pending events in ``data_dir``'s outbox, as an Odoo outage leaves them."""
    store = EventStore.open(data_dir)
    try:
        store.commit(
            [
                Event(
                    event_uid=str(uuid.uuid4()),
                    event_type=EventType.SESSION_HEARTBEAT,
                    device_id=f"dev-{d:03d}",
                    machine_name=f"Machine {d}",
                    session_id="5b0c7c9e-0000-4000-8000-000000000001",
                    timestamp=1_770_000_000.0 + n,
                    data={"n": n},
                )
                for n in range(per_device)
                for d in range(devices)
            ],
            now=time.time(),
        )
    finally:
        store.close()


def test_kill_9_mid_batch_loses_nothing(
    mosquitto_factory: Any, odoo_standin: OdooStandin, bridge_factory: Any, tmp_path: Path
) -> None:
    """kill -9 while calls of a 6,000-event backlog are in Odoo: after the restart every
    event is in Odoo, each device's (first copies) in order; what was re-sent is only
    duplicates, which Odoo drops."""
    devices, per_device = 60, 100
    seed_backlog(tmp_path / "bridge", devices, per_device)
    odoo_standin.add_rule("slow", min_events=2, delay_s=0.5)  # calls stay in Odoo a while
    broker: MosquittoBroker = mosquitto_factory()
    document = batch_config(broker, odoo_standin)
    bridge = bridge_factory(config_file=write_config(tmp_path / "c.yaml", document)).start()
    wait_until(lambda: odoo_standin.stats()["batches"] >= 3, timeout_s=30)
    bridge.kill()
    assert 0 < len(odoo_standin.events) < devices * per_device
    odoo_standin.clear_rules()
    bridge.start()
    events = odoo_standin.wait_for_events(devices * per_device, timeout_s=60)
    order: dict[str, list[int]] = {}
    for event in events:
        order.setdefault(event["device_id"], []).append(event["data"]["n"])
    assert order == {f"dev-{d:03d}": list(range(per_device)) for d in range(devices)}
    assert len({e["event_uid"] for e in events}) == devices * per_device
    wait_until(lambda: bridge.health()["outbox"]["pending"] == 0, timeout_s=30)
    assert bridge.health()["outbox"]["dead"] == 0
    assert odoo_standin.invalid == []
    assert bridge.stop() == 0
