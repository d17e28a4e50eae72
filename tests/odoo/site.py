"""The whole system as a workshop runs it: Odoo with the addon, the bridge, mosquitto, meters.

``OdooSite`` is one running Odoo (``OdooServer``) driven over XML-RPC as its
administrator, the way the tests outside the project drive it (contract §9's
names). ``Workshop`` adds a mosquitto, an ``iot-bridge run`` with a token and
the simulated meters of one test, and connects Odoo to that bridge from the
settings ("Connect").
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import power
from tests.odoo.kit import ADDON, OdooRpc, OdooServer
from tests.support.bridge_process import BridgeProcess, wait_until
from tests.support.mosquitto import MosquittoBroker, publish

# A meter reports every 10 simulated seconds; these timings (real seconds) suit the
# simulator at --speed 1.5 to 10 and give a heartbeat every 10 s, the smallest the bridge takes.
MACHINE_TIMINGS: dict[str, float] = {
    "standby_threshold_w": 5.0,
    "working_threshold_w": 50.0,
    "start_debounce_s": 1.0,
    "stop_debounce_s": 2.0,
    "message_timeout_s": 20.0,
    "heartbeat_interval_s": 10.0,
}
SESSION_FIELDS = [
    "device_id", "session_uuid", "status", "started_at", "ended_at", "duration_s", "working_s",
    "standby_s", "energy_wh", "avg_power_w", "peak_power_w", "end_reason",
]  # fmt: skip
EVENT_FIELDS = ["event_uid", "event_type", "device_ident", "device_id", "session_id", "payload"]


def odoo_time(iso: str) -> str:
    """A bridge timestamp as Odoo keeps a Datetime: naive UTC, whole seconds."""
    moment = datetime.fromisoformat(iso).astimezone(UTC).replace(microsecond=0, tzinfo=None)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class OdooSite:
    """A running Odoo with the addon in database ``server.db``, and its admin over XML-RPC."""

    server: OdooServer
    rpc: OdooRpc = field(init=False)

    def __post_init__(self) -> None:
        self.rpc = OdooRpc(self.server.url, self.server.db)

    @property
    def url(self) -> str:
        """Odoo's URL as the bridge reaches it."""
        return self.server.url

    @property
    def db(self) -> str:
        """The database."""
        return self.server.db

    def call(self, model: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """``execute_kw`` as the administrator."""
        return self.rpc.call(model, method, *args, **kwargs)

    def param(self, key: str) -> Any:
        """A system parameter (``ir.config_parameter``)."""
        return self.call("ir.config_parameter", "get_param", key)

    def restart(self) -> None:
        """Start the server again after ``server.stop()``, on the same port."""
        self.server.start()

    # -- Settings -> IoT Bridge -> Connect -------------------------------------------

    def connect(self, bridge_url: str, token: str) -> Any:
        """Fill in the settings, save them, press Connect; what the button returned."""
        settings = self.call(
            "res.config.settings",
            "create",
            {
                "iot_bridge_url": bridge_url,
                "iot_bridge_token": token,
                "iot_odoo_url": self.url,
            },
        )
        self.call("res.config.settings", "execute", [settings])
        return self.call("res.config.settings", "action_bridge_connect", [settings])

    # -- records -----------------------------------------------------------------------

    def create(self, model: str, values: dict[str, Any]) -> int:
        """Create one record; its id."""
        return int(self.call(model, "create", values))

    def read_one(self, model: str, record_id: int, fields: list[str]) -> dict[str, Any]:
        """One record's fields."""
        found = self.call(model, "read", [record_id], fields)
        assert found, f"{model}({record_id}) does not exist"
        return dict(found[0])

    def events(self, device_ident: str) -> list[dict[str, Any]]:
        """``mqtt.event`` records received for a device id (known or not)."""
        return self.rpc.search_read(
            "mqtt.event", [("device_ident", "=", device_ident)], EVENT_FIELDS, order="id"
        )

    def sessions(self, domain: list[Any]) -> list[dict[str, Any]]:
        """``mqtt.session`` records (archived or not) matching ``domain``."""
        return self.rpc.search_read("mqtt.session", domain, SESSION_FIELDS, order="id")

    def session(self, session_uuid: str) -> dict[str, Any] | None:
        """The session the bridge calls ``session_uuid``, or None."""
        found = self.sessions([("session_uuid", "=", session_uuid)])
        assert len(found) <= 1, f"{len(found)} sessions for {session_uuid}"
        return found[0] if found else None

    def clear_workshop(self) -> None:
        """Delete every machine and broker (a test's leftovers), archived ones too."""
        for model in ("mqtt.device", "mqtt.broker"):
            ids = self.call(model, "search", [("active", "in", [True, False])])
            if ids:
                self.call(model, "unlink", ids)


@dataclass
class Workshop:
    """One test's mosquitto, bridge and meters, connected to the shared Odoo."""

    odoo: OdooSite
    broker: MosquittoBroker
    bridge: BridgeProcess
    token: str
    tmp_path: Path
    broker_id: int | None = None
    simulators: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def connect(self) -> Any:
        """Settings -> Connect against this test's bridge."""
        return self.odoo.connect(self.bridge.url, self.token)

    def add_broker(self) -> int:
        """The ``mqtt.broker`` record of this test's mosquitto."""
        self.broker_id = self.odoo.create(
            "mqtt.broker",
            {
                "name": f"mosquitto {self.broker.port}",
                "host": self.broker.host,
                "port": self.broker.port,
                "use_tls": False,
                "client_id": f"owe-{self.broker.port}",
            },
        )
        return self.broker_id

    def add_machine(self, device_id: str, **values: Any) -> int:
        """A machine with a simulated Shelly PM on ``<device_id>/status/pm1:0``."""
        if self.broker_id is None:
            self.add_broker()
        return self.odoo.create(
            "mqtt.device",
            {
                "name": f"Machine {device_id}",
                "device_id": device_id,
                "broker_id": self.broker_id,
                "mqtt_topic": f"{device_id}/status/pm1:0",
                "parser_type": "shelly_pm",
                **MACHINE_TIMINGS,
                **values,
            },
        )

    def subscribed(self, device_id: str) -> bool:
        """The bridge runs the device and is connected to this test's broker."""
        health = self.bridge.health()
        devices = {d["device_id"] for d in self.bridge.get("/devices").json()}
        return (
            device_id in devices
            and health["mqtt"]["connected"]
            and health["mqtt"]["broker"] == self.broker.address
        )

    def simulate(self, device_id: str, *args: str) -> subprocess.Popen[bytes]:
        """``iot-bridge simulate`` for the device against this test's broker."""
        command = [
            sys.executable, "-m", "iot_bridge", "simulate",
            "--broker", self.broker.host, "--port", str(self.broker.port), "--no-tls",
            "--device-id", device_id, *args,
        ]  # fmt: skip
        with (self.tmp_path / f"simulate-{device_id}.log").open("ab") as output:
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        self.simulators.append(process)
        return process

    def end_session(self, device_id: str) -> None:
        """The machine is switched off: its meter reports 0 W, then goes away.

        The simulator is frozen (SIGSTOP) so that it publishes nothing more, one 0 W
        reading ends the session by power (after the stop debounce), and the simulator
        is then killed, so the broker publishes its will (online false): the device
        goes offline as a meter that lost power does.
        """
        process = self.simulators[-1]
        process.send_signal(signal.SIGSTOP)
        publish(self.broker, f"{device_id}/status/pm1:0", power(0.0))
        wait_until(lambda: self.bridge.device(device_id)["session_id"] is None, timeout_s=30)
        process.kill()
        process.wait()

    def bridge_events(self, device_id: str) -> list[dict[str, Any]]:
        """The bridge's events of the device, oldest first, with their delivery status."""
        return [e for e in self.bridge.events() if e["device_id"] == device_id]

    def all_delivered(self, device_id: str, last_type: str) -> list[dict[str, Any]] | None:
        """The device's events once the last is ``last_type`` and every one is delivered."""
        events = self.bridge_events(device_id)
        done = events and events[-1]["event_type"] == last_type
        return events if done and all(e["status"] == "delivered" for e in events) else None

    def wait_odoo_session(
        self, predicate: Callable[[dict[str, Any]], bool], device_id: str, timeout_s: float = 60
    ) -> dict[str, Any]:
        """Poll Odoo until a session of the device satisfies ``predicate``; that session."""

        def found() -> dict[str, Any] | None:
            for session in self.odoo.sessions([("device_id.device_id", "=", device_id)]):
                if predicate(session):
                    return session
            return None

        return dict(wait_until(found, timeout_s=timeout_s, interval_s=0.3))

    def stop(self) -> None:
        """Stop meters and the bridge (the broker is the fixture's)."""
        for process in self.simulators:
            if process.poll() is None:
                process.kill()
                process.wait()
        self.bridge.kill()


def assert_odoo_has_exactly(workshop: Workshop, device_id: str) -> list[dict[str, Any]]:
    """Odoo's ``mqtt.event`` records of the device are the bridge's events, each once."""
    bridge_uids = [e["event_uid"] for e in workshop.bridge_events(device_id)]
    received = workshop.odoo.events(device_id)
    odoo_uids = [e["event_uid"] for e in received]
    assert len(odoo_uids) == len(set(odoo_uids)), "an event_uid is in Odoo twice"
    assert sorted(odoo_uids) == sorted(bridge_uids), (
        f"Odoo has {len(odoo_uids)} events, the bridge {len(bridge_uids)}: "
        f"missing {set(bridge_uids) - set(odoo_uids)}, extra {set(odoo_uids) - set(bridge_uids)}"
    )
    for record in received:
        assert json.loads(record["payload"])["event_uid"] == record["event_uid"]
    return received


def bridge_config(bridge: BridgeProcess) -> dict[str, Any]:
    """``GET /config`` with the token."""
    reply = bridge.get("/config")
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def post_event(odoo: OdooSite, api_key: str, event: dict[str, Any]) -> dict[str, Any]:
    """One event to ``/ows/iot/event`` as the bridge sends it; the JSON-RPC reply."""
    reply = httpx.post(
        f"{odoo.url}/ows/iot/event",
        params={"db": odoo.db},
        headers={"Authorization": f"Bearer {api_key}"},
        json={
            "jsonrpc": "2.0",
            "method": "call",
            "id": event["event_uid"],
            "params": {"event": event},
        },
        timeout=30,
    )
    return dict(reply.json())


GROUP_BRIDGE = f"{ADDON}.group_iot_bridge"
