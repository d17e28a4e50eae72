# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from contextlib import contextmanager

from odoo import SUPERUSER_ID, api
from odoo.exceptions import AccessError
from odoo.tests import TransactionCase, tagged
from odoo.tests.common import new_test_user

from .common import BRIDGE_TOKEN, BridgeReceiver, IotCase

PREFIX = "commit-"


@tagged("post_install", "-at_install")
class TestPushAfterCommit(TransactionCase):
    """The config push runs after a real COMMIT, once per transaction, never after a rollback.

    These tests commit in cursors of their own (the test's transaction never
    commits) and remove what they made at the end.
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.receiver = BridgeReceiver()
        cls.addClassCleanup(cls.receiver.stop)
        with cls.committed() as env:
            cls.saved_params = {
                key: env["ir.config_parameter"].get_param(key)
                for key in (
                    "open_workshop_mqtt.bridge_url",
                    "open_workshop_mqtt.bridge_token",
                    "open_workshop_mqtt.push_pending",
                    "open_workshop_mqtt.last_push_result",
                    "open_workshop_mqtt.last_push_at",
                    "open_workshop_mqtt.state_out",
                    "open_workshop_mqtt.odoo_url",
                    "open_workshop_mqtt.event_retention_days",
                )
            }
        cls.addClassCleanup(cls.clean_up)
        cls.point_at(cls.receiver.url)

    @classmethod
    @contextmanager
    def committed(cls):
        """An environment in a new cursor; leaving the block commits (and runs post-commit)."""
        with cls.registry.cursor() as cr:
            yield api.Environment(cr, SUPERUSER_ID, {})

    @classmethod
    def point_at(cls, url):
        with cls.committed() as env:
            params = env["ir.config_parameter"]
            params.set_param("open_workshop_mqtt.bridge_url", url)
            params.set_param("open_workshop_mqtt.bridge_token", BRIDGE_TOKEN)
            params.set_param("open_workshop_mqtt.push_pending", False)

    @classmethod
    def clean_up(cls):
        with cls.committed() as env:
            domain = [("device_id", "=like", f"{PREFIX}%")]
            env["mqtt.device"].with_context(active_test=False).search(domain).unlink()
            env["mqtt.broker"].with_context(active_test=False).search(
                [("name", "=like", f"{PREFIX}%")]
            ).unlink()
            for key, value in cls.saved_params.items():
                env["ir.config_parameter"].set_param(key, value or False)

    def setUp(self):
        super().setUp()
        self.pushes_before = len(self.receiver.pushes)

    def new_pushes(self):
        return self.receiver.pushes[self.pushes_before :]

    def devices(self, env, count, start=0):
        return env["mqtt.device"].create(
            [
                {
                    "name": f"Machine {number}",
                    "device_id": f"{PREFIX}{number}",
                    "mqtt_topic": f"shelly-{number}/status/pm1:0",
                }
                for number in range(start, start + count)
            ]
        )

    def test_500_devices_in_one_transaction_are_one_push_after_commit(self):
        """Importing 500 machines and editing them in one transaction pushes once, after COMMIT."""
        with self.committed() as env:
            devices = self.devices(env, 500)
            devices[:10].write({"standby_threshold_w": 6.0})
            devices[10:20].write({"name": "Renamed"})
            self.assertEqual(self.new_pushes(), [], "nothing is pushed before the commit")
        pushes = self.new_pushes()
        self.assertEqual(len(pushes), 1)
        headers, document = pushes[0]
        self.assertEqual(headers["Authorization"], f"Bearer {BRIDGE_TOKEN}")
        pushed = [
            device for device in document["devices"] if device["device_id"].startswith(PREFIX)
        ]
        self.assertEqual(len(pushed), 500)
        self.assertEqual(pushed[0]["session_config"]["standby_threshold_w"], 6.0)
        self.assertEqual(document["version"], "1.0")
        with self.committed() as env:
            params = env["ir.config_parameter"]
            self.assertIn(
                "devices configured", params.get_param("open_workshop_mqtt.last_push_result")
            )
            self.assertTrue(params.get_param("open_workshop_mqtt.last_push_at"))
            self.assertFalse(params.get_param("open_workshop_mqtt.push_pending"))
            env["mqtt.device"].search([("device_id", "=like", f"{PREFIX}%")]).unlink()

    def test_a_rolled_back_transaction_pushes_nothing(self):
        """A change that is rolled back never reaches the bridge."""
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            self.devices(env, 2, start=600)
            cr.rollback()
        self.assertEqual(self.new_pushes(), [])

    def test_only_fields_the_bridge_uses_push(self):
        """Live state written by events pushes nothing; a threshold, archiving and deleting do."""
        with self.committed() as env:
            device = self.devices(env, 1, start=700)
        self.assertEqual(len(self.new_pushes()), 1)
        with self.committed() as env:
            device = env["mqtt.device"].browse(device.id)
            device.write({"power_w": 30.0, "state": "working", "online": True})
        self.assertEqual(len(self.new_pushes()), 1)
        with self.committed() as env:
            env["mqtt.device"].browse(device.id).write({"working_threshold_w": 80.0})
        self.assertEqual(len(self.new_pushes()), 2)
        with self.committed() as env:
            env["mqtt.device"].browse(device.id).action_archive()
        self.assertEqual(len(self.new_pushes()), 3)
        self.assertNotIn(f"{PREFIX}700", self.receiver.device_ids())
        with self.committed() as env:
            env["mqtt.device"].browse(device.id).action_unarchive()
        self.assertIn(f"{PREFIX}700", self.receiver.device_ids())
        with self.committed() as env:
            env["mqtt.device"].browse(device.id).unlink()
        self.assertEqual(len(self.new_pushes()), 5)
        self.assertNotIn(f"{PREFIX}700", self.receiver.device_ids())

    def test_writing_the_broker_pushes_its_section(self):
        """Creating and editing the broker pushes the mqtt section, empty texts as ''."""
        with self.committed() as env:
            env["mqtt.broker"].with_context(active_test=False).search([]).write({"active": False})
            broker = env["mqtt.broker"].create({"name": f"{PREFIX}broker", "host": "mosquitto"})
        self.assertEqual(
            self.receiver.pushes[-1][1]["mqtt"],
            {
                "broker": "mosquitto",
                "port": 1883,
                "username": "",
                "password": "",
                "client_id": "iot_bridge",
                "keepalive": 60,
                "use_tls": False,
                "tls_insecure": False,
            },
        )
        with self.committed() as env:
            env["mqtt.broker"].browse(broker.id).write({"port": 8883, "use_tls": True})
        self.assertEqual(self.receiver.pushes[-1][1]["mqtt"]["port"], 8883)
        self.assertEqual(len(self.new_pushes()), 2)

    def test_saving_changed_settings_pushes(self):
        """Saving the settings with a change the bridge uses (state out) pushes after commit."""
        with self.committed() as env:
            settings = env["res.config.settings"].create({"iot_state_out": True})
            settings.execute()
        self.assertEqual(len(self.new_pushes()), 1)
        self.assertEqual(self.receiver.pushes[-1][1]["state_out"], {"enabled": True})
        with self.committed() as env:
            env["res.config.settings"].create({"iot_event_retention_days": 30}).execute()
        self.assertEqual(len(self.new_pushes()), 1, "the retention is not the bridge's")
        with self.committed() as env:
            env["res.config.settings"].create({"iot_state_out": False}).execute()
        self.assertEqual(len(self.new_pushes()), 2)
        self.assertNotIn("state_out", self.receiver.pushes[-1][1])

    def test_a_bridge_that_is_down_is_retried_by_the_cron(self):
        """The save succeeds while the bridge is down; the cron pushes once it is back."""
        down = BridgeReceiver()
        down.stop()
        self.point_at(down.url)
        with self.committed() as env:
            device = self.devices(env, 1, start=800)
        with self.committed() as env:
            params = env["ir.config_parameter"]
            self.assertTrue(env["mqtt.device"].browse(device.id).exists(), "the save committed")
            self.assertEqual(params.get_param("open_workshop_mqtt.push_pending"), "1")
            self.assertIn("unreachable", params.get_param("open_workshop_mqtt.last_push_result"))
            cron = env.ref("open_workshop_mqtt.ir_cron_push_config_retry")
            cron.method_direct_trigger()  # still down: stays pending
            self.assertEqual(params.get_param("open_workshop_mqtt.push_pending"), "1")
        self.point_at(self.receiver.url)
        with self.committed() as env:
            env["ir.config_parameter"].set_param("open_workshop_mqtt.push_pending", "1")
        with self.committed() as env:
            env.ref("open_workshop_mqtt.ir_cron_push_config_retry").method_direct_trigger()
        self.assertEqual(len(self.new_pushes()), 1)
        self.assertIn(f"{PREFIX}800", self.receiver.device_ids())
        with self.committed() as env:
            params = env["ir.config_parameter"]
            self.assertFalse(params.get_param("open_workshop_mqtt.push_pending"))
            env.ref("open_workshop_mqtt.ir_cron_push_config_retry").method_direct_trigger()
        self.assertEqual(len(self.new_pushes()), 1, "nothing pending: the cron does not push")


@tagged("post_install", "-at_install")
class TestPushButton(IotCase):
    """The "Push Config to Bridge" button pushes at once and shows the bridge's answer."""

    def test_the_button_shows_devices_configured(self):
        """The notification says how many devices the bridge configured."""
        self.make_device("lathe-1")
        action = self.Device.action_push_config()
        document = self.receiver.pushes[-1][1]
        self.assertEqual(action["params"]["type"], "success")
        outcome = action["params"]["outcome"]
        self.assertEqual(outcome["devices_configured"], len(document["devices"]))
        self.assertIn("lathe-1", self.receiver.device_ids())
        self.assertIn("devices configured", action["params"]["message"])

    def test_a_422_is_mapped_back_to_the_machines(self):
        """The bridge's errors at devices.N name the machine at that position of the push."""
        self.make_device("lathe-1", name="Lathe")
        drill = self.make_device("drill-1", name="Drill")
        _document, devices = self.env["mqtt.bridge"]._document()
        index = list(devices).index(drill)
        self.receiver.refuse_next(
            [
                (f"devices.{index}.mqtt_topic", "no such topic on this broker"),
                ("mqtt.username", "must be a string (got true/false)"),
            ]
        )
        action = self.Device.action_push_config()
        outcome = action["params"]["outcome"]
        self.assertEqual(action["params"]["type"], "danger")
        self.assertFalse(outcome["ok"])
        self.assertEqual(outcome["status_code"], 422)
        first, second = outcome["errors"]
        self.assertEqual(
            (first["device_id"], first["machine"], first["record_id"]),
            ("drill-1", "Drill", drill.id),
        )
        self.assertIn("Drill (drill-1): mqtt_topic: no such topic", action["params"]["message"])
        self.assertEqual(second["device_id"], "")
        self.assertIn("Broker: username", action["params"]["message"])
        self.assertIn("no such topic", drill.message_ids[0].body)
        params = self.env["ir.config_parameter"]
        self.assertFalse(
            params.get_param("open_workshop_mqtt.push_pending"),
            "a refused document waits for a change, not for the cron",
        )

    def test_the_document_carries_the_odoo_section_once_connected(self):
        """Without the bridge's key no odoo section is pushed; with it, the whole section."""
        self.Device.action_push_config()
        self.assertNotIn("odoo", self.receiver.pushes[-1][1])
        params = self.env["ir.config_parameter"]
        params.set_param("open_workshop_mqtt.bridge_api_key", "k" * 40)
        params.set_param("open_workshop_mqtt.odoo_url", "http://odoo:8069/")
        self.Device.action_push_config()
        self.assertEqual(
            self.receiver.pushes[-1][1]["odoo"],
            {
                "base_url": "http://odoo:8069",
                "database": self.env.cr.dbname,
                "username": "iot_bridge",
                "api_key": "k" * 40,
                "request_format": "batch",
            },
        )

    def test_only_managers_push(self):
        """A plain IoT user cannot push."""
        user = new_test_user(self.env, "operator-push", groups="open_workshop_mqtt.group_iot_user")
        with self.assertRaises(AccessError):
            self.Device.with_user(user).action_push_config()
