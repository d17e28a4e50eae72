# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import threading
import time
from contextlib import contextmanager

from odoo import SUPERUSER_ID, api
from odoo.tests import TransactionCase, tagged
from odoo.tools.misc import dumpstacks

from .common import started, stopped

PREFIX = "conc-"
DEADLINE_S = 30.0
# later than the other tests' events: a device's live state follows its newest event
LATER = "2026-03-01T10:00:03+00:00"


@tagged("post_install", "-at_install")
class TestConcurrentDeliveries(TransactionCase):
    """Deliveries in concurrent transactions (the bridge sends up to 8 devices at once)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.addClassCleanup(cls.clean_up)
        with cls.committed() as env:
            env["mqtt.device"].create(
                [
                    {
                        "name": f"Machine {n}",
                        "device_id": f"{PREFIX}{n}",
                        "mqtt_topic": f"shelly-{PREFIX}{n}/status/pm1:0",
                    }
                    for n in ("a", "b")
                ]
            )

    @classmethod
    @contextmanager
    def committed(cls):
        """An environment in a new cursor, committed at the end of the block.

        The transaction is given its registry directly: ``Registry(db)`` waits
        for the registry lock, which the test runner holds while tests run.
        """
        with cls.registry.cursor() as cr:
            cr.transaction = api.Transaction(cls.registry)
            yield api.Environment(cr, SUPERUSER_ID, {})

    @classmethod
    def clean_up(cls):
        with cls.committed() as env:
            domain = [("device_ident", "=like", f"{PREFIX}%")]
            env["mqtt.event"].search(domain).unlink()
            env["mqtt.session"].search(domain).unlink()
            env["mqtt.device"].with_context(active_test=False).search(
                [("device_id", "=like", f"{PREFIX}%")]
            ).unlink()

    def deliver_in_thread(self, payload):
        """Process ``payload`` in its own transaction on a thread; (thread, outcome dict)."""
        outcome = {}

        def run():
            try:
                with self.committed() as env:
                    outcome["backend"] = env.cr.connection.get_backend_pid()
                    outcome["reply"] = env["mqtt.event"]._process_bridge_event(payload)
            except Exception as err:  # reported to the test below
                outcome["error"] = err

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread, outcome

    def wait_until_blocked(self, env, outcome):
        """Poll pg_locks until the thread's backend waits for a lock (or fail at the deadline)."""
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            backend = outcome.get("backend")
            if backend:
                env.cr.execute(
                    "SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", [backend]
                )
                if env.cr.fetchone()[0]:
                    return
            time.sleep(0.01)
        self.fail("the second delivery never waited for the first")

    def test_different_devices_do_not_wait_for_each_other(self):
        """An uncommitted delivery for one device does not hold up another device's."""
        with self.committed() as env:
            env["mqtt.event"]._process_bridge_event(
                started("conc-s-a", device_id=f"{PREFIX}a", at=LATER)
            )
            thread, outcome = self.deliver_in_thread(
                started("conc-s-b", device_id=f"{PREFIX}b", at=LATER)
            )
            thread.join(DEADLINE_S)
            if thread.is_alive():
                dumpstacks()
            self.assertFalse(thread.is_alive(), "device b waited for device a's transaction")
            self.assertNotIn("error", outcome)
            self.assertFalse(outcome["reply"]["duplicate"])
        with self.committed() as env:
            sessions = env["mqtt.session"].search(
                [("session_uuid", "in", ["conc-s-a", "conc-s-b"])]
            )
            self.assertEqual(sessions.mapped("status"), ["running", "running"])
            self.assertEqual(sessions.device_id.mapped("state"), ["working", "working"])

    def test_a_concurrent_copy_of_one_event_is_a_duplicate(self):
        """The same event delivered twice at once: one stores it, the other answers duplicate."""
        payload = started("conc-s-dup", device_id=f"{PREFIX}a")
        with self.committed() as env:
            first = env["mqtt.event"]._process_bridge_event(payload)
            thread, outcome = self.deliver_in_thread(payload)
            with self.committed() as watcher:
                self.wait_until_blocked(watcher, outcome)
        thread.join(DEADLINE_S)
        self.assertFalse(thread.is_alive())
        self.assertNotIn("error", outcome)
        self.assertFalse(first["duplicate"])
        self.assertTrue(outcome["reply"]["duplicate"])
        with self.committed() as env:
            uid = payload["event_uid"]
            self.assertEqual(env["mqtt.event"].search_count([("event_uid", "=", uid)]), 1)

    def test_a_batch_holds_back_a_device_whose_event_failed(self):
        """In a batch, a transient failure skips that device's later events, not the others'."""
        locked_id = None
        with self.committed() as holder:
            device_a = holder["mqtt.device"].search([("device_id", "=", f"{PREFIX}a")])
            locked_id = device_a.id
            holder.cr.execute("SELECT id FROM mqtt_device WHERE id = %s FOR UPDATE", [locked_id])
            with self.committed() as env:
                env.cr.execute("SET LOCAL lock_timeout = '200ms'")
                batch = [
                    started("conc-s-b1", device_id=f"{PREFIX}b"),
                    started("conc-s-a1", device_id=f"{PREFIX}a"),
                    stopped("conc-s-a1", device_id=f"{PREFIX}a"),
                    stopped("conc-s-b1", device_id=f"{PREFIX}b"),
                    {**started("conc-s-b2", device_id=f"{PREFIX}b"), "event_type": "bogus"},
                ]
                results = env["mqtt.event"]._process_bridge_events(batch)["results"]
        statuses = [(result["status"], result.get("error", {}).get("name")) for result in results]
        self.assertEqual(statuses[0], ("ok", None))
        self.assertEqual(statuses[1][0], "error")
        self.assertIn("LockNotAvailable", statuses[1][1])
        self.assertEqual(statuses[2], ("error", "Skipped"))
        self.assertEqual(statuses[3], ("ok", None))
        self.assertEqual(statuses[4], ("error", "odoo.exceptions.ValidationError"))
        self.assertEqual([r["event_uid"] for r in results], [e["event_uid"] for e in batch])
        with self.committed() as env:
            sessions = env["mqtt.session"].search(
                [("session_uuid", "in", ["conc-s-a1", "conc-s-b1"])]
            )
            self.assertEqual(sessions.mapped("session_uuid"), ["conc-s-b1"])
            self.assertEqual(sessions.status, "stopped")
