# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo.exceptions import AccessError
from odoo.tests import tagged
from odoo.tests.common import new_test_user

from .common import IotCase, started


@tagged("post_install", "-at_install")
class TestAccess(IotCase):
    """What each group of CONTRACT section 9 may do, and the companies' walls."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.broker = cls.env["mqtt.broker"].create(
            {"name": "Workshop", "host": "mosquitto", "password": "s3cret"}
        )
        cls.device = cls.make_device("cnc-1")
        cls.env["mqtt.event"]._process_bridge_event(started("acc-1"))
        cls.user = new_test_user(cls.env, "iot-user", groups="open_workshop_mqtt.group_iot_user")
        cls.manager = new_test_user(
            cls.env, "iot-manager", groups="open_workshop_mqtt.group_iot_manager"
        )
        cls.env["res.config.settings"]._iot_ensure_bridge_user()
        cls.bridge = cls.env["res.users"].search([("login", "=", "iot_bridge")])

    def test_user_sees_machines_and_sessions_only(self):
        """An IoT user reads machines and sessions, changes nothing, sees no events."""
        Device = self.env["mqtt.device"].with_user(self.user)
        self.assertIn(self.device, Device.search([]))
        self.assertTrue(self.env["mqtt.session"].with_user(self.user).search([]))
        with self.assertRaises(AccessError):
            Device.browse(self.device.id).write({"name": "Renamed"})
        with self.assertRaises(AccessError):
            Device.create({"name": "x", "device_id": "x-1", "mqtt_topic": "x/status/pm1:0"})
        with self.assertRaises(AccessError):
            self.env["mqtt.event"].with_user(self.user).search([])

    def test_broker_password_is_for_managers(self):
        """The broker's password is readable by managers only."""
        broker = self.env["mqtt.broker"].with_user(self.user).browse(self.broker.id)
        self.assertEqual(broker.host, "mosquitto")
        with self.assertRaises(AccessError):
            broker.read(["password"])
        manager_broker = self.broker.with_user(self.manager)
        self.assertEqual(manager_broker.password, "s3cret")

    def test_manager_configures(self):
        """An IoT manager creates brokers and machines and reads events."""
        Device = self.env["mqtt.device"].with_user(self.manager)
        device = Device.create(
            {"name": "Saw", "device_id": "saw-1", "mqtt_topic": "shelly-saw/status/pm1:0"}
        )
        device.write({"standby_threshold_w": 8.0})
        self.assertTrue(self.env["mqtt.event"].with_user(self.manager).search([]))
        self.env["mqtt.broker"].with_user(self.manager).browse(self.broker.id).write({"port": 1884})

    def test_bridge_user_can_do_nothing_else(self):
        """The bridge's user is only in group_iot_bridge and can read none of the models."""
        self.assertEqual(self.bridge.groups_id, self.env.ref("open_workshop_mqtt.group_iot_bridge"))
        for model in ("mqtt.device", "mqtt.session", "mqtt.event", "mqtt.broker", "res.partner"):
            with self.assertRaises(AccessError):
                self.env[model].with_user(self.bridge).search([])

    def test_companies_see_only_their_machines(self):
        """A user of another company sees none of this company's machines, sessions or events."""
        other = self.env["res.company"].create({"name": "Other Workshop"})
        outsider = new_test_user(
            self.env,
            "iot-outsider",
            groups="open_workshop_mqtt.group_iot_manager",
            company_id=other.id,
            company_ids=[(6, 0, other.ids)],
        )
        theirs = self.make_device("other-1", company_id=other.id)
        self.assertEqual(self.env["mqtt.device"].with_user(outsider).search([]), theirs)
        sessions = self.env["mqtt.session"].with_user(outsider).search([])
        self.assertNotIn("acc-1", sessions.mapped("session_uuid"))
        events = self.env["mqtt.event"].with_user(outsider).search([])
        self.assertFalse(events.filtered(lambda e: e.device_ident == "cnc-1"))
        with self.assertRaises(AccessError):
            self.env["mqtt.device"].with_user(outsider).browse(self.device.id).read(["name"])
