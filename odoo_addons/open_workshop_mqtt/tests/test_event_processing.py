# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from datetime import datetime

from odoo.exceptions import ValidationError
from odoo.tests import tagged

from .common import IotCase, event, heartbeat, started, stopped


@tagged("post_install", "-at_install")
class TestEventProcessing(IotCase):
    """mqtt.event._process_bridge_event turns the bridge's events into sessions and live state."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.device = cls.make_device("cnc-1", name="CNC Mill")

    def session(self, uuid):
        return self.Session.search([("session_uuid", "=", uuid)])

    def test_a_whole_session(self):
        """Start, heartbeat and stop make one session with the stop's final figures."""
        self.process(
            event(
                "device_online",
                timestamp="2026-02-12T09:59:59+00:00",
                last_seen="2026-02-12T09:59:59+00:00",
            )
        )
        self.assertTrue(self.device.online)
        self.process(started("s-1"))
        session = self.session("s-1")
        self.assertEqual(session.status, "running")
        self.assertEqual(session.started_at, datetime(2026, 2, 12, 10, 0, 0))
        self.assertEqual(session.device_id, self.device)
        self.assertEqual(self.device.current_session_id, session)
        self.assertEqual((self.device.state, self.device.power_w), ("working", 300.0))

        self.process(heartbeat("s-1"))
        self.assertEqual((session.duration_s, session.working_s, session.standby_s), (300, 240, 60))
        self.assertEqual(session.energy_wh, 50.0)
        self.assertEqual(self.device.power_w, 1200.0)

        self.process(stopped("s-1"))
        self.assertEqual(session.status, "stopped")
        self.assertEqual(session.end_reason, "power_off")
        self.assertEqual(session.ended_at, datetime(2026, 2, 12, 10, 8, 30))
        self.assertEqual(
            (session.duration_s, session.working_s, session.standby_s, session.energy_wh),
            (510.0, 420.0, 90.0, 110.333),
        )
        self.assertEqual((session.avg_power_w, session.peak_power_w), (827.5, 1200.0))
        self.assertAlmostEqual(session.working_h, 420 / 3600)
        self.assertFalse(self.device.current_session_id)
        self.assertEqual((self.device.state, self.device.power_w), ("idle", 0.0))
        self.assertEqual(self.Event.search_count([("device_id", "=", self.device.id)]), 4)
        self.assertEqual(self.device.session_count, 1)

    def test_timeout_then_offline(self):
        """A timeout closes the session as timed out; the following offline marks the machine."""
        self.process(started("s-2"))
        self.process(
            stopped(
                "s-2",
                event_type="session_timeout",
                reason="timeout",
                at="2026-02-12T10:09:00+00:00",
            )
        )
        session = self.session("s-2")
        self.assertEqual((session.status, session.end_reason), ("timeout", "timeout"))
        self.assertEqual(self.device.last_seen, datetime(2026, 2, 12, 10, 8, 30))
        self.process(
            event(
                "device_offline",
                timestamp="2026-02-12T10:09:00+00:00",
                last_seen="2026-02-12T10:08:30+00:00",
            )
        )
        self.assertFalse(self.device.online)
        self.assertEqual(self.device.state, "offline")
        self.process(
            event(
                "device_online",
                timestamp="2026-02-12T11:00:00+00:00",
                last_seen="2026-02-12T11:00:00+00:00",
            )
        )
        self.assertEqual((self.device.online, self.device.state), (True, "idle"))

    def test_a_replayed_event_changes_nothing(self):
        """The same event_uid twice: the second answers duplicate and changes nothing."""
        payload = started("s-3")
        self.assertEqual(
            self.process(payload),
            {"status": "ok", "event_uid": payload["event_uid"], "duplicate": False},
        )
        self.process(stopped("s-3"))
        reply = self.process(payload)
        self.assertTrue(reply["duplicate"])
        self.assertEqual(self.session("s-3").status, "stopped")
        self.assertEqual(self.Event.search_count([("event_uid", "=", payload["event_uid"])]), 1)

    def test_a_resent_heartbeat_writes_absolute_totals(self):
        """Two heartbeats of one session keep the later totals; nothing is added up."""
        self.process(started("s-4"))
        self.process(heartbeat("s-4", at="2026-02-12T10:05:00+00:00", duration=300.0))
        self.process(
            heartbeat(
                "s-4",
                at="2026-02-12T10:10:00+00:00",
                duration=600.0,
                working=500.0,
                standby=100.0,
                energy=90.0,
            )
        )
        session = self.session("s-4")
        self.assertEqual(
            (session.duration_s, session.working_s, session.energy_wh), (600.0, 500.0, 90.0)
        )
        # an older heartbeat re-sent late (a dead event retried) does not go back
        self.process(heartbeat("s-4", at="2026-02-12T10:05:00+00:00", duration=300.0))
        self.assertEqual(session.duration_s, 600.0)

    def test_a_stop_without_its_start_creates_the_session(self):
        """A stop whose start never arrived creates the closed session from its own figures."""
        self.process(stopped("s-5"))
        session = self.session("s-5")
        self.assertEqual(session.status, "stopped")
        self.assertEqual(session.started_at, datetime(2026, 2, 12, 10, 0, 0))
        self.assertEqual(session.duration_s, 510.0)
        self.assertFalse(self.device.current_session_id)

    def test_a_heartbeat_without_its_start_creates_the_session(self):
        """A heartbeat of an unknown session creates it, started duration seconds earlier."""
        self.process(heartbeat("s-6", at="2026-02-12T10:05:00+00:00", duration=300.0))
        session = self.session("s-6")
        self.assertEqual(session.status, "running")
        self.assertEqual(session.started_at, datetime(2026, 2, 12, 10, 0, 0))
        self.assertEqual(self.device.current_session_id, session)

    def test_a_closed_session_is_never_reopened(self):
        """A start or heartbeat arriving after the stop leaves the session closed."""
        late_start = started("s-7")
        self.process(stopped("s-7"))
        self.process(late_start)
        self.process(heartbeat("s-7"))
        session = self.session("s-7")
        self.assertEqual(session.status, "stopped")
        self.assertEqual(session.duration_s, 510.0)
        self.assertFalse(self.device.current_session_id)
        self.assertEqual(self.device.state, "idle")

    def test_an_older_event_does_not_overwrite_newer_live_state(self):
        """A status event older than the last applied one leaves the live state alone."""
        self.process(
            event(
                "device_offline",
                timestamp="2026-02-12T12:00:00.500000+00:00",
                last_seen="2026-02-12T11:59:40+00:00",
            )
        )
        self.process(
            event(
                "device_online",
                timestamp="2026-02-12T12:00:00.100000+00:00",
                last_seen="2026-02-12T12:00:00+00:00",
            )
        )
        self.assertFalse(self.device.online)
        self.assertEqual(self.device.state, "offline")

    def test_an_unknown_device_is_kept_without_a_machine(self):
        """Events of a device Odoo does not know are stored, answered ok, linked to nothing."""
        reply = self.process(started("s-8", device_id="ghost-1"))
        self.assertFalse(reply["duplicate"])
        stored = self.Event.search([("device_ident", "=", "ghost-1")])
        self.assertEqual(len(stored), 1)
        self.assertFalse(stored.device_id)
        self.assertEqual(stored.session_id.session_uuid, "s-8")
        self.assertFalse(stored.session_id.device_id)
        self.process(event("device_online", device_id="ghost-1"))
        self.assertEqual(self.Event.search_count([("device_ident", "=", "ghost-1")]), 2)

    def test_device_removed_after_the_machine_was_deleted(self):
        """The bridge's device_removed stop, after the machine is gone, closes the session."""
        device = self.make_device("saw-1")
        self.process(started("s-9", device_id="saw-1"))
        device.unlink()
        self.process(stopped("s-9", device_id="saw-1", reason="device_removed"))
        session = self.session("s-9")
        self.assertEqual((session.status, session.end_reason), ("stopped", "device_removed"))
        self.assertEqual(session.device_ident, "saw-1")

    def test_an_archived_machine_still_gets_its_events(self):
        """Events of an archived machine are linked to it."""
        self.device.active = False
        self.process(started("s-10"))
        self.assertEqual(self.session("s-10").device_id, self.device)

    def test_malformed_events_name_the_field(self):
        """A malformed event is a ValidationError naming the field, and nothing is stored."""
        good = started("s-11")
        cases = [
            (None, "event"),
            ("text", "event"),
            ({**good, "event_type": "session_paused"}, "event_type"),
            ({**good, "event_uid": ""}, "event_uid"),
            ({**good, "event_uid": 12}, "event_uid"),
            ({**good, "device_id": "bad id"}, "device_id"),
            ({**good, "session_id": None}, "session_id"),
            ({**good, "timestamp": "yesterday"}, "timestamp"),
            ({**good, "data": []}, "data"),
            ({**good, "data": {"state": "working"}}, "data.started_at"),
            ({**good, "data": {**good["data"], "power_w": "300"}}, "data.power_w"),
            ({**good, "data": {**good["data"], "power_w": True}}, "data.power_w"),
            ({**good, "data": {**good["data"], "state": "flying"}}, "data.state"),
            (heartbeat("s-11", duration=-1.0), "data.session_duration_s"),
            (
                {**stopped("s-11"), "data": {**stopped("s-11")["data"], "reason": "x"}},
                "data.reason",
            ),
            (
                {
                    **stopped("s-11"),
                    "data": {**stopped("s-11")["data"], "ended_at": "2026-02-12T09:00:00+00:00"},
                },
                "data.ended_at",
            ),
        ]
        before = self.Event.search_count([])
        for payload, field in cases:
            with self.assertRaises(ValidationError) as caught:
                self.process(payload)
            self.assertIn(f"{field}:", str(caught.exception))
        self.assertEqual(self.Event.search_count([]), before)
        self.assertFalse(self.session("s-11"))

    def test_unknown_fields_are_ignored(self):
        """A field the addon does not read (a newer bridge's) does not refuse the event."""
        payload = started("s-12")
        payload["data"]["something_new"] = 1
        payload["extra"] = "x"
        self.assertFalse(self.process(payload)["duplicate"])

    def test_null_energy_is_no_counter(self):
        """energy_wh null (no counter on the meter) is accepted and stored as 0."""
        payload = stopped("s-13")
        payload["data"]["energy_wh"] = None
        self.process(payload)
        self.assertEqual(self.session("s-13").energy_wh, 0.0)
