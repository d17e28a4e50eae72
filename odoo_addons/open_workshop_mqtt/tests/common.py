# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""What the addon's tests share: a real HTTP receiver playing the bridge, and events.

``BridgeReceiver`` is a small ``http.server`` on a free loopback port that
records every ``POST /config`` and answers as the bridge does (200 with
``devices_configured``, or whatever a test asks: a 422 with errors, a 500);
``stop()`` makes it refuse connections like a bridge that is down.
"""

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from odoo.tests.common import TransactionCase

BRIDGE_TOKEN = "test-bridge-token"


class BridgeReceiver:
    """A stand-in for the bridge's ``/config`` and ``/health`` on 127.0.0.1."""

    def __init__(self):
        self.pushes = []  # (headers dict, document) in arrival order
        self.replies = []  # queued (status, body) for the next pushes; then 200
        self.health = {
            "status": "ok",
            "devices": 0,
            "subscriptions": 0,
            "last_config_update": None,
            "mqtt": {"connected": True, "broker": "127.0.0.1:1883"},
            "outbox": {"pending": 0, "dead": 0},
            # byte counts as a real data dir on a real disk has them: past 32 bits
            "store": {
                "disk_full": False,
                "error": None,
                "data_dir_bytes": 2_150_400,
                "disk_free_bytes": 57_982_058_496,
                "retention_days": 30,
                "disk_budget_bytes": None,
            },
        }
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/health":
                    self._answer(200, receiver.health)
                else:
                    self._answer(404, {"detail": "not found"})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                document = json.loads(self.rfile.read(length) or b"null")
                if self.path != "/config":
                    self._answer(404, {"detail": "not found"})
                    return
                with receiver._lock:
                    receiver.pushes.append((dict(self.headers), document))
                    status, body = receiver.replies.pop(0) if receiver.replies else (None, None)
                if status is None:
                    status = 200
                    body = {
                        "status": "success",
                        "message": "Configuration applied",
                        "devices_configured": len(document.get("devices") or []),
                        "mqtt_reconnected": False,
                        "timestamp": "2026-01-01T00:00:00+00:00",
                    }
                receiver.health["devices"] = len(document.get("devices") or [])
                self._answer(status, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self):
        """Close the socket: from now on connections are refused, as by a bridge that is down."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def refuse_next(self, errors, status=422):
        """Answer the next push with ``status`` and these ``(path, message)`` errors."""
        self.replies.append(
            (
                status,
                {
                    "status": "error",
                    "message": "invalid config push",
                    "errors": [{"path": path, "message": message} for path, message in errors],
                },
            )
        )

    def device_ids(self, index=-1):
        """The device_ids of one recorded push (default: the last)."""
        return [device["device_id"] for device in self.pushes[index][1]["devices"]]


def event(
    event_type,
    *,
    device_id="cnc-1",
    session_id=None,
    timestamp="2026-02-12T10:00:00+00:00",
    uid=None,
    machine_name="CNC Mill",
    **data,
):
    """An EVENT of CONTRACT section 6 as the bridge sends it."""
    return {
        "event_uid": uid or str(uuid.uuid4()),
        "event_type": event_type,
        "device_id": device_id,
        "machine_name": machine_name,
        "session_id": session_id,
        "timestamp": timestamp,
        "data": data,
    }


def started(session_id, at="2026-02-12T10:00:03+00:00", **kwargs):
    """A session_started sent at ``at``, for a session that began at 10:00:00."""
    data = {"started_at": "2026-02-12T10:00:00+00:00", "state": "working", "power_w": 300.0}
    data.update(kwargs.pop("data", {}))
    return event("session_started", session_id=session_id, timestamp=at, **kwargs, **data)


def heartbeat(
    session_id,
    *,
    at="2026-02-12T10:05:00+00:00",
    duration=300.0,
    working=240.0,
    standby=60.0,
    energy=50.0,
    power=1200.0,
    **kwargs,
):
    """A session_heartbeat with the session's totals so far."""
    return event(
        "session_heartbeat",
        session_id=session_id,
        timestamp=at,
        state="working",
        power_w=power,
        interval_s=300.0,
        interval_avg_power_w=600.0,
        interval_working_s=working,
        interval_standby_s=standby,
        session_duration_s=duration,
        session_working_s=working,
        session_standby_s=standby,
        session_energy_wh=energy,
        **kwargs,
    )


def stopped(
    session_id,
    at="2026-02-12T10:08:45+00:00",
    reason="power_off",
    event_type="session_stopped",
    **kwargs,
):
    """A session_stopped (or session_timeout) with the final figures."""
    return event(
        event_type,
        session_id=session_id,
        timestamp=at,
        started_at="2026-02-12T10:00:00+00:00",
        ended_at="2026-02-12T10:08:30+00:00",
        duration_s=510.0,
        working_s=420.0,
        standby_s=90.0,
        avg_power_w=827.5,
        peak_power_w=1200.0,
        energy_wh=110.333,
        reason=reason,
        **kwargs,
    )


class IotCase(TransactionCase):
    """Machines and a bridge receiver, with the push's settings pointing at it."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.receiver = BridgeReceiver()
        cls.addClassCleanup(cls.receiver.stop)
        params = cls.env["ir.config_parameter"].sudo()
        params.set_param("open_workshop_mqtt.bridge_url", cls.receiver.url)
        params.set_param("open_workshop_mqtt.bridge_token", BRIDGE_TOKEN)
        # a database that was used before: no broker, no Connect yet
        for key in ("open_workshop_mqtt.bridge_api_key", "open_workshop_mqtt.odoo_url"):
            params.set_param(key, False)
        cls.env["mqtt.broker"].search([]).action_archive()
        cls.Device = cls.env["mqtt.device"]
        cls.Event = cls.env["mqtt.event"]
        cls.Session = cls.env["mqtt.session"]

    @classmethod
    def make_device(cls, device_id="cnc-1", **values):
        """A machine on a Shelly Plus PM topic, named after its device id."""
        return cls.env["mqtt.device"].create(
            {
                "name": values.pop("name", f"Machine {device_id}"),
                "device_id": device_id,
                "mqtt_topic": values.pop("mqtt_topic", f"shelly-{device_id}/status/pm1:0"),
                **values,
            }
        )

    def process(self, payload):
        """Hand one event to the addon as the controller does; the reply."""
        return self.env["mqtt.event"]._process_bridge_event(payload)
