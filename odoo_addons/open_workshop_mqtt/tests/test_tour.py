# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo.tests import HttpCase, tagged

from .common import BRIDGE_TOKEN, BridgeReceiver


@tagged("post_install", "-at_install")
class TestMachineTour(HttpCase):
    """In the browser: a manager creates a machine and pushes it to the bridge."""

    def test_create_a_machine_and_push_it(self):
        """The tour's machine reaches the bridge with the values typed in the form."""
        receiver = BridgeReceiver()
        self.addCleanup(receiver.stop)
        params = self.env["ir.config_parameter"].sudo()
        params.set_param("open_workshop_mqtt.bridge_url", receiver.url)
        params.set_param("open_workshop_mqtt.bridge_token", BRIDGE_TOKEN)
        self.start_tour(
            "/odoo/action-open_workshop_mqtt.action_mqtt_device",
            "open_workshop_mqtt_create_machine",
            login="admin",
        )
        device = self.env["mqtt.device"].search([("device_id", "=", "tour-lathe")])
        self.assertEqual(device.name, "Tour Lathe")
        pushed = {d["device_id"]: d for d in receiver.pushes[-1][1]["devices"]}
        self.assertEqual(pushed["tour-lathe"]["mqtt_topic"], "shellyplus1pm-tour/status/switch:0")
        self.assertEqual(pushed["tour-lathe"]["machine_name"], "Tour Lathe")

    def test_connect_in_the_settings(self):
        """Pressing Connect makes the bridge user and key and pushes them to the bridge."""
        receiver = BridgeReceiver()
        self.addCleanup(receiver.stop)
        params = self.env["ir.config_parameter"].sudo()
        params.set_param("open_workshop_mqtt.bridge_url", receiver.url)
        self.start_tour(
            "/odoo/action-open_workshop_mqtt.action_iot_bridge_settings",
            "open_workshop_mqtt_connect",
            login="admin",
        )
        key = params.get_param("open_workshop_mqtt.bridge_api_key")
        self.assertTrue(key)
        self.assertEqual(receiver.pushes[-1][1]["odoo"]["api_key"], key)
