# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import xmlrpc.client
from datetime import timedelta

from odoo import fields
from odoo.exceptions import AccessError, ValidationError
from odoo.tests import tagged
from odoo.tests.common import new_test_user

from .common import IotCase, event


@tagged("post_install", "-at_install")
class TestSettings(IotCase):
    """Settings > IoT Bridge: Connect, the last push, the event retention."""

    def connect(self, **values):
        settings = self.env["res.config.settings"].create(values)
        settings.execute()
        return settings.action_bridge_connect()

    def test_connect_makes_the_user_and_key_and_pushes_the_odoo_section(self):
        """Connect creates iot_bridge with a working key, pushes it, and shows /health."""
        self.make_device("lathe-1")
        action = self.connect(iot_odoo_url="http://odoo:8069")
        user = self.env["res.users"].search([("login", "=", "iot_bridge")])
        self.assertEqual(user.groups_id, self.env.ref("open_workshop_mqtt.group_iot_bridge"))
        key = self.env["ir.config_parameter"].get_param("open_workshop_mqtt.bridge_api_key")
        apikeys = self.env["res.users.apikeys"]
        self.assertEqual(apikeys._check_credentials(scope="rpc", key=key), user.id)
        odoo = self.receiver.pushes[-1][1]["odoo"]
        self.assertEqual(odoo["api_key"], key)
        self.assertEqual(odoo["username"], "iot_bridge")
        self.assertEqual(odoo["database"], self.env.cr.dbname)
        self.assertEqual(odoo["base_url"], "http://odoo:8069")
        params = action["params"]
        self.assertEqual(params["type"], "success")
        self.assertIn("MQTT connected (127.0.0.1:1883)", params["message"])
        self.assertIn("0 pending / 0 dead", params["message"])
        self.assertEqual(params["health"]["last_config_update"], False)
        # the action goes back over XML-RPC too (Odoo's external API, the tests/odoo suite):
        # None and the disk's byte counts past 32 bits must marshal
        xmlrpc.client.dumps((action,), allow_none=False)
        self.assertEqual(params["health"]["store"]["disk_free_bytes"], 57_982_058_496)
        settings = self.env["res.config.settings"].create({})
        self.assertIn("devices configured", settings.iot_last_push_result)
        self.assertTrue(settings.iot_last_push_at)
        self.assertEqual(settings.iot_bridge_user_id, user)
        self.assertIn("Bridge ok", settings.iot_bridge_health)

    def test_connect_twice_keeps_the_key_and_replaces_a_revoked_one(self):
        """A second Connect reuses the key; a revoked key is replaced by a new one."""
        self.connect()
        params = self.env["ir.config_parameter"]
        key = params.get_param("open_workshop_mqtt.bridge_api_key")
        self.connect()
        self.assertEqual(params.get_param("open_workshop_mqtt.bridge_api_key"), key)
        user = self.env["res.users"].search([("login", "=", "iot_bridge")])
        self.env["res.users.apikeys"].search([("user_id", "=", user.id)]).unlink()
        self.connect()
        new_key = params.get_param("open_workshop_mqtt.bridge_api_key")
        self.assertNotEqual(new_key, key)
        self.assertEqual(
            self.env["res.users.apikeys"]._check_credentials(scope="rpc", key=new_key), user.id
        )

    def test_odoo_url_defaults_to_web_base_url(self):
        """Without an Odoo URL setting, the pushed base_url is web.base.url."""
        params = self.env["ir.config_parameter"]
        params.set_param("web.base.url", "http://erp.example:8069")
        params.set_param("open_workshop_mqtt.odoo_url", False)
        self.connect(iot_odoo_url=False)
        self.assertEqual(self.receiver.pushes[-1][1]["odoo"]["base_url"], "http://erp.example:8069")

    def test_connect_with_the_bridge_down_reports_it(self):
        """Connect to a bridge that is not there says so and keeps the user and key."""
        self.env["ir.config_parameter"].set_param(
            "open_workshop_mqtt.bridge_url", "http://127.0.0.1:9"
        )
        action = self.connect()
        self.assertEqual(action["params"]["type"], "danger")
        self.assertIn("unreachable", action["params"]["message"])
        self.assertTrue(self.env["res.users"].search([("login", "=", "iot_bridge")]))

    def test_a_bad_bridge_url_is_refused(self):
        """A bridge URL that is not http(s) is refused on save."""
        with self.assertRaises(ValidationError):
            self.env["res.config.settings"].create({"iot_bridge_url": "iot-bridge:8080"})

    def test_old_events_are_pruned_after_the_retention(self):
        """The prune cron deletes events received before the retention, keeps the others."""
        self.make_device()
        old_uid = self.process(event("device_online"))["event_uid"]
        old = self.Event.search([("event_uid", "=", old_uid)])
        self.env.cr.execute(
            "UPDATE mqtt_event SET create_date = %s WHERE id = %s",
            [fields.Datetime.now() - timedelta(days=91), old.id],
        )
        new_uid = self.process(event("device_offline"))["event_uid"]
        self.env["ir.config_parameter"].set_param("open_workshop_mqtt.event_retention_days", 90)
        self.env.ref("open_workshop_mqtt.ir_cron_prune_events").method_direct_trigger()
        self.env.invalidate_all()
        self.assertFalse(old.exists())
        self.assertTrue(self.Event.search([("event_uid", "=", new_uid)]))

    def test_connect_is_for_administrators(self):
        """An IoT manager who is not an administrator cannot press Connect."""
        manager = new_test_user(
            self.env, "iot-manager-connect", groups="open_workshop_mqtt.group_iot_manager"
        )
        settings = self.env["res.config.settings"].create({})
        with self.assertRaises(AccessError):
            settings.with_user(manager).action_bridge_connect()
        self.assertFalse(
            self.env["ir.config_parameter"].get_param("open_workshop_mqtt.bridge_api_key")
        )
