# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import json

from odoo.tests import HttpCase, tagged

from .common import event, heartbeat, started, stopped


@tagged("post_install", "-at_install")
class TestEventRoute(HttpCase):
    """POST /ows/iot/event over real HTTP with the bridge user's API key (CONTRACT section 6)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["res.config.settings"]._iot_ensure_bridge_user()
        cls.key = (
            cls.env["ir.config_parameter"].sudo().get_param("open_workshop_mqtt.bridge_api_key")
        )
        cls.device = cls.env["mqtt.device"].create(
            {"name": "CNC Mill", "device_id": "cnc-1", "mqtt_topic": "shelly-cnc/status/pm1:0"}
        )

    def post(self, payload, key=None, raw=None):
        """Post one event as the bridge does; (HTTP status, decoded JSON body)."""
        body = raw or json.dumps(
            {"jsonrpc": "2.0", "method": "call", "id": "e-1", "params": {"event": payload}}
        )
        response = self.url_open(
            f"/ows/iot/event?db={self.env.cr.dbname}",
            data=body.encode() if isinstance(body, str) else body,
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {key or self.key}",
            },
        )
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None

    def assertResult(self, payload, duplicate=False):
        status, body = self.post(payload)
        self.assertEqual(status, 200)
        self.assertNotIn("error", body)
        self.assertEqual(
            body["result"],
            {"status": "ok", "event_uid": payload["event_uid"], "duplicate": duplicate},
        )

    def assertError(self, payload, name, key=None):
        status, body = self.post(payload, key=key)
        self.assertNotIn("result", body)
        self.assertEqual(body["error"]["data"]["name"], name)
        return status, body["error"]["data"]["message"]

    def test_every_event_type(self):
        """Each of the six event types is accepted and applied."""
        self.assertResult(event("device_online", last_seen="2026-02-12T09:59:59+00:00"))
        self.assertResult(started("http-1"))
        self.assertResult(heartbeat("http-1"))
        self.assertResult(stopped("http-1"))
        self.assertResult(started("http-2", at="2026-02-12T11:00:00+00:00"))
        self.assertResult(
            stopped(
                "http-2",
                event_type="session_timeout",
                reason="timeout",
                at="2026-02-12T11:30:00+00:00",
            )
        )
        self.assertResult(
            event(
                "device_offline",
                timestamp="2026-02-12T11:30:01+00:00",
                last_seen="2026-02-12T11:29:00+00:00",
            )
        )
        sessions = self.env["mqtt.session"].search([("device_id", "=", self.device.id)])
        self.assertEqual(sorted(sessions.mapped("status")), ["stopped", "timeout"])
        self.assertEqual(self.device.state, "offline")
        self.assertEqual(
            self.env["mqtt.event"].search_count([("device_id", "=", self.device.id)]), 7
        )

    def test_a_replayed_event_uid_is_a_duplicate(self):
        """The same event twice: both succeed, the second says duplicate."""
        payload = started("http-3")
        self.assertResult(payload)
        self.assertResult(payload, duplicate=True)

    def test_a_stop_without_its_start(self):
        """A stop whose start never arrived creates the closed session."""
        self.assertResult(stopped("http-4"))
        session = self.env["mqtt.session"].search([("session_uuid", "=", "http-4")])
        self.assertEqual(session.status, "stopped")

    def test_an_unknown_device(self):
        """An event of a device Odoo does not know succeeds and is kept."""
        self.assertResult(started("http-5", device_id="nobody-1"))
        self.assertEqual(
            self.env["mqtt.event"].search_count([("device_ident", "=", "nobody-1")]), 1
        )

    def test_malformed_events_are_validation_errors(self):
        """A malformed event is a JSON-RPC ValidationError naming the field, never a 500."""
        cases = [
            ({**started("http-6"), "event_type": "session_paused"}, "event_type"),
            ({**started("http-6"), "timestamp": 5}, "timestamp"),
            ({**started("http-6"), "data": {}}, "data.started_at"),
            (None, "event"),
        ]
        for payload, field in cases:
            status, message = self.assertError(payload, "odoo.exceptions.ValidationError")
            self.assertEqual(status, 200)
            self.assertIn(f"{field}:", message)
        status, _body = self.post(None, raw=b"{not json")
        self.assertEqual(status, 400, "a body that is not JSON is refused (permanent)")

    def test_a_wrong_key(self):
        """A wrong API key is refused as Unauthorized (the bridge retries it)."""
        _status, message = self.assertError(
            started("http-7"), "werkzeug.exceptions.Unauthorized", key="0" * 40
        )
        self.assertIn("Invalid apikey", message)
        self.assertFalse(self.env["mqtt.session"].search([("session_uuid", "=", "http-7")]))

    def test_another_users_key_is_refused(self):
        """A valid key of a user outside group_iot_bridge gets an AccessError (not permanent)."""
        admin_key = (
            self.env["res.users.apikeys"]
            .with_user(self.env.ref("base.user_admin"))
            .sudo()
            ._generate(None, "not the bridge", None)
        )
        self.assertError(started("http-8"), "odoo.exceptions.AccessError", key=admin_key)
        self.assertFalse(self.env["mqtt.session"].search([("session_uuid", "=", "http-8")]))

    def test_a_batch_of_events(self):
        """POST /ows/iot/events answers each event in order: ok, duplicate or error."""
        first = started("http-9")
        batch = [first, heartbeat("http-9"), first, {**stopped("http-9"), "data": {}}]
        response = self.url_open(
            "/ows/iot/events",
            data=json.dumps(
                {"jsonrpc": "2.0", "method": "call", "id": "b-1", "params": {"events": batch}}
            ).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.key}"},
        )
        results = response.json()["result"]["results"]
        self.assertEqual(
            [result["status"] for result in results], ["ok", "ok", "duplicate", "error"]
        )
        self.assertEqual(results[3]["error"]["name"], "odoo.exceptions.ValidationError")
        self.assertIn("data.started_at", results[3]["error"]["message"])
        session = self.env["mqtt.session"].search([("session_uuid", "=", "http-9")])
        self.assertEqual(session.status, "running")

    def post_batch(self, events, raw=None):
        """A call of the batch route; (HTTP status, decoded JSON body or None)."""
        body = raw or json.dumps(
            {"jsonrpc": "2.0", "method": "call", "id": "b-2", "params": {"events": events}}
        )
        response = self.url_open(
            f"/ows/iot/events?db={self.env.cr.dbname}",
            data=body.encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.key}"},
        )
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None

    def test_a_batch_the_bridge_must_not_send_is_refused_whole(self):
        """Over 500 events or (several events) over 1 MiB: 413; no list: 400; nothing stored."""
        too_many = [started(f"http-413-{n}") for n in range(501)]
        padded = [{**started(f"http-big-{n}"), "machine_name": "x" * 600_000} for n in range(2)]
        cases = [
            (too_many, 413, "at most 500"),
            (padded, 413, "at most 1048576 bytes"),
            ({"not": "a list"}, 400, "must be a list"),
            (None, 400, "must be a list"),
        ]
        for events, status, text in cases:
            code, body = self.post_batch(events)
            self.assertEqual(code, status)
            self.assertIn(text, body["error"]["message"])
            self.assertTrue(body["error"]["data"]["name"].startswith("werkzeug.exceptions."))
        uids = [e["event_uid"] for e in too_many + padded]
        self.assertEqual(self.env["mqtt.event"].search_count([("event_uid", "in", uids)]), 0)
        # one event alone goes through whatever its size, as on /ows/iot/event
        code, body = self.post_batch(padded[:1])
        self.assertEqual((code, body["result"]["results"][0]["status"]), (200, "ok"))

    def test_a_wrong_key_on_the_batch_route(self):
        """A wrong key on the batch route: Unauthorized (HTTP 200, JSON-RPC error), nothing stored."""
        payload = started("http-key-b")
        response = self.url_open(
            "/ows/iot/events",
            data=json.dumps(
                {"jsonrpc": "2.0", "method": "call", "id": 1, "params": {"events": [payload]}}
            ).encode(),
            headers={"Content-Type": "application/json", "Authorization": "Bearer " + "0" * 40},
        )
        self.assertEqual(response.status_code, 200)
        self.assertEqual(
            response.json()["error"]["data"]["name"], "werkzeug.exceptions.Unauthorized"
        )
        self.assertFalse(self.env["mqtt.session"].search([("session_uuid", "=", "http-key-b")]))
