# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from contextlib import contextmanager

from odoo import SUPERUSER_ID, api
from odoo.tests import TransactionCase, tagged

from ..bridge.effects import LIVE_FIELDS, SESSION_FIELDS
from .common import IotCase, event, heartbeat, started, stopped


def workshop_day(device_id, prefix):
    """One machine's events as the bridge sends them, with every rule of the addon in play.

    Two sessions (the second one's start lost, so its heartbeat creates it, and it
    times out), a heartbeat re-sent late (older than the last), a late heartbeat
    of a closed session, going offline and online again. Session ids begin with
    ``prefix``.
    """
    first, second = f"{prefix}-1", f"{prefix}-2"
    return [
        event(
            "device_online",
            device_id=device_id,
            timestamp="2026-02-12T09:59:59+00:00",
            last_seen="2026-02-12T09:59:59+00:00",
        ),
        started(first, device_id=device_id),
        heartbeat(first, device_id=device_id, at="2026-02-12T10:05:00+00:00"),
        heartbeat(
            first,
            device_id=device_id,
            at="2026-02-12T10:07:00+00:00",
            duration=420.0,
            working=360.0,
            energy=80.0,
            power=1500.0,
        ),
        heartbeat(first, device_id=device_id, at="2026-02-12T10:05:00+00:00"),  # re-sent late
        stopped(first, device_id=device_id),
        heartbeat(first, device_id=device_id, at="2026-02-12T10:09:00+00:00"),  # after the stop
        event(
            "device_offline",
            device_id=device_id,
            timestamp="2026-02-12T10:20:00+00:00",
            last_seen="2026-02-12T10:19:40+00:00",
        ),
        event(
            "device_online",
            device_id=device_id,
            timestamp="2026-02-12T11:00:00+00:00",
            last_seen="2026-02-12T11:00:00+00:00",
        ),
        heartbeat(second, device_id=device_id, at="2026-02-12T11:10:00+00:00", duration=300.0),
        stopped(
            second,
            device_id=device_id,
            event_type="session_timeout",
            reason="timeout",
            at="2026-02-12T11:30:00+00:00",
        ),
    ]


@tagged("post_install", "-at_install")
class TestEventBatches(IotCase):
    """mqtt.event._process_bridge_events: many events a call, the same outcome as one a call."""

    def statuses(self, results):
        return [(r["status"], r.get("error", {}).get("name")) for r in results]

    def outcome(self, device):
        """The machine's live state and its sessions, without ids or session names."""
        sessions = self.Session.search([("device_id", "=", device.id)], order="started_at, id")
        names = {session.id: n for n, session in enumerate(sessions)}
        live = {name: device[name] for name in LIVE_FIELDS if name != "current_session_id"}
        live["current"] = names.get(device.current_session_id.id)
        return live, [{name: session[name] for name in SESSION_FIELDS} for session in sessions]

    def test_a_batch_ends_where_one_event_a_call_ends(self):
        """The same events in batches (mixed with another machine's) or one a call: same state."""
        one_by_one = self.make_device("day-single")
        batched = self.make_device("day-batch")
        other = self.make_device("day-other")
        for payload in workshop_day("day-single", "day-s"):
            self.process(payload)
        mine = workshop_day("day-batch", "day-b")
        theirs = workshop_day("day-other", "day-o")
        mixed = [payload for pair in zip(mine, theirs, strict=True) for payload in pair]
        for first, last in ((0, 3), (3, 4), (4, 13), (13, len(mixed))):
            results = self.Event._process_bridge_events(mixed[first:last])["results"]
            self.assertEqual({r["status"] for r in results}, {"ok"})
        expected = self.outcome(one_by_one)
        self.assertEqual(self.outcome(batched), expected)
        self.assertEqual(self.outcome(other), expected)
        self.assertEqual(expected[0]["state"], "idle")
        self.assertEqual([s["status"] for s in expected[1]], ["stopped", "timeout"])
        stored = self.Event.search([("device_ident", "=", "day-batch")], order="id")
        self.assertEqual(stored.mapped("event_uid"), [p["event_uid"] for p in mine])
        self.assertEqual(
            [record.session_id.session_uuid for record in stored if record.session_id],
            [p["session_id"] for p in mine if p["session_id"]],
        )

    def test_a_validation_error_in_the_middle_concerns_that_event_only(self):
        """A malformed event is answered ValidationError; the events around it are applied."""
        self.make_device("val-1")
        batch = [
            started("val-s", device_id="val-1"),
            {**heartbeat("val-s", device_id="val-1"), "data": {}},
            {**started("val-x", device_id="val-1"), "timestamp": "yesterday"},
            stopped("val-s", device_id="val-1"),
        ]
        results = self.Event._process_bridge_events(batch)["results"]
        self.assertEqual(
            self.statuses(results),
            [
                ("ok", None),
                ("error", "odoo.exceptions.ValidationError"),
                ("error", "odoo.exceptions.ValidationError"),
                ("ok", None),
            ],
        )
        self.assertIn("data.session_duration_s", results[1]["error"]["message"])
        self.assertIn("timestamp", results[2]["error"]["message"])
        session = self.Session.search([("session_uuid", "=", "val-s")])
        self.assertEqual((session.status, session.duration_s), ("stopped", 510.0))
        self.assertFalse(self.Session.search([("session_uuid", "=", "val-x")]))
        uids = [p["event_uid"] for p in batch]
        self.assertEqual(len(self.Event.search([("event_uid", "in", uids)])), 2)

    def test_duplicates_in_the_call_and_from_earlier_calls(self):
        """An event stored before, or twice in one call, is a duplicate that changes nothing."""
        self.make_device("dup-1")
        start = started("dup-s", device_id="dup-1")
        stop = stopped("dup-s", device_id="dup-1")
        self.Event._process_bridge_events([start])
        batch = [start, stop, stop, start]
        results = self.Event._process_bridge_events(batch)["results"]
        self.assertEqual(
            [r["status"] for r in results], ["duplicate", "ok", "duplicate", "duplicate"]
        )
        self.assertEqual([r["event_uid"] for r in results], [p["event_uid"] for p in batch])
        self.assertEqual(self.Event.search_count([("device_ident", "=", "dup-1")]), 2)
        session = self.Session.search([("session_uuid", "=", "dup-s")])
        self.assertEqual(session.status, "stopped")

    def test_one_session_named_by_two_machines_keeps_the_calls_order(self):
        """Events of two machines naming one session are applied in the call's order."""
        self.make_device("share-1")
        self.make_device("share-2")
        batch = [
            started("share-s", device_id="share-1"),
            stopped("share-s", device_id="share-2"),
            heartbeat("share-s", device_id="share-1", at="2026-02-12T10:09:00+00:00"),
        ]
        results = self.Event._process_bridge_events(batch)["results"]
        self.assertEqual([r["status"] for r in results], ["ok", "ok", "ok"])
        session = self.Session.search([("session_uuid", "=", "share-s")])
        self.assertEqual((session.status, session.duration_s), ("stopped", 510.0))

    def test_unknown_machines_and_envelopes(self):
        """Events of an unknown machine are kept; a batch that is no list or too long is refused."""
        results = self.Event._process_bridge_events([started("nobody-s", device_id="nobody")])
        self.assertEqual(results["results"][0]["status"], "ok")
        self.assertFalse(self.Session.search([("session_uuid", "=", "nobody-s")]).device_id)
        with self.assertRaises(Exception) as refused:
            self.Event._process_bridge_events({"events": []})
        self.assertIn("must be a list", str(refused.exception))
        with self.assertRaises(Exception) as refused:
            self.Event._process_bridge_events([started(f"many-{n}") for n in range(501)])
        self.assertIn("at most 500", str(refused.exception))
        self.assertEqual(self.Event._process_bridge_events([]), {"results": []})


@tagged("post_install", "-at_install")
class TestBatchTransientFailure(TransactionCase):
    """A transient failure in the middle of a machine's events (a row locked by another
    transaction): the earlier events are applied, the later ones answered Skipped."""

    PREFIX = "lockb-"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.addClassCleanup(cls.clean_up)
        with cls.committed() as env:
            env["mqtt.device"].create(
                [
                    {
                        "name": f"Machine {n}",
                        "device_id": f"{cls.PREFIX}{n}",
                        "mqtt_topic": f"shelly-{cls.PREFIX}{n}/status/pm1:0",
                    }
                    for n in ("a", "b")
                ]
            )
            env["mqtt.event"]._process_bridge_event(
                started("lockb-old", device_id=f"{cls.PREFIX}a", at="2026-02-12T09:00:03+00:00")
            )

    @classmethod
    @contextmanager
    def committed(cls):
        """An environment in a new cursor, committed at the end (as in test_concurrency)."""
        with cls.registry.cursor() as cr:
            cr.transaction = api.Transaction(cls.registry)
            yield api.Environment(cr, SUPERUSER_ID, {})

    @classmethod
    def clean_up(cls):
        with cls.committed() as env:
            domain = [("device_ident", "=like", f"{cls.PREFIX}%")]
            env["mqtt.event"].search(domain).unlink()
            env["mqtt.session"].search(domain).unlink()
            env["mqtt.device"].with_context(active_test=False).search(
                [("device_id", "=like", f"{cls.PREFIX}%")]
            ).unlink()

    def test_a_locked_session_holds_back_the_rest_of_its_machine(self):
        """Machine a: its new session is applied, the locked old one fails, the rest Skipped."""
        with self.committed() as holder:
            holder.cr.execute(
                "SELECT id FROM mqtt_session WHERE session_uuid = 'lockb-old' FOR UPDATE"
            )
            with self.committed() as env:
                env.cr.execute("SET LOCAL lock_timeout = '200ms'")
                a, b = f"{self.PREFIX}a", f"{self.PREFIX}b"
                batch = [
                    started("lockb-new", device_id=a),
                    started("lockb-b", device_id=b),
                    stopped("lockb-new", device_id=a),
                    stopped("lockb-old", device_id=a, at="2026-02-12T10:09:00+00:00"),
                    stopped("lockb-b", device_id=b),
                    event("device_offline", device_id=a, timestamp="2026-02-12T10:10:00+00:00"),
                ]
                results = env["mqtt.event"]._process_bridge_events(batch)["results"]
        statuses = [(r["status"], r.get("error", {}).get("name")) for r in results]
        self.assertEqual(statuses[:3], [("ok", None)] * 3)
        self.assertEqual(statuses[3][0], "error")
        self.assertIn("LockNotAvailable", statuses[3][1])
        self.assertEqual(statuses[4:], [("ok", None), ("error", "Skipped")])
        with self.committed() as env:
            sessions = env["mqtt.session"].search(
                [("device_ident", "=like", f"{self.PREFIX}%")], order="session_uuid"
            )
            self.assertEqual(
                [(s.session_uuid, s.status) for s in sessions],
                [("lockb-b", "stopped"), ("lockb-new", "stopped"), ("lockb-old", "running")],
            )
            device_a = env["mqtt.device"].search([("device_id", "=", f"{self.PREFIX}a")])
            self.assertNotEqual(device_a.state, "offline")
            stored = env["mqtt.event"].search([("device_ident", "=", f"{self.PREFIX}a")])
            self.assertEqual(len(stored), 3)  # lockb-old's start, and the two applied
