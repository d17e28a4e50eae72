# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo.exceptions import ValidationError
from odoo.tests import tagged
from odoo.tools import mute_logger
from psycopg2 import IntegrityError

from .common import IotCase


@tagged("post_install", "-at_install")
class TestDeviceRules(IotCase):
    """A machine is checked on save with the bridge's own rules (CONTRACT sections 2, 4)."""

    def assertRefused(self, values, *fragments, device=None):
        """Saving ``values`` raises a ValidationError whose message holds every fragment."""
        with self.assertRaises(ValidationError) as caught, self.env.cr.savepoint():
            if device:
                device.write(values)
            else:
                self.make_device(**values)
        message = str(caught.exception)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message

    def test_defaults_are_the_contract_example(self):
        """A new machine has the thresholds of CONTRACT section 2's example."""
        device = self.make_device()
        self.assertEqual(
            [
                device.standby_threshold_w,
                device.working_threshold_w,
                device.start_debounce_s,
                device.stop_debounce_s,
                device.message_timeout_s,
                device.heartbeat_interval_s,
            ],
            [5.0, 50.0, 3.0, 15.0, 20.0, 300.0],
        )
        self.assertEqual(device.parser_type, "shelly_pm")
        self.assertEqual(device.state, "idle")
        self.assertEqual(device.company_id, self.env.company)

    def test_every_parser_accepts_its_own_topic_layout(self):
        """One valid meter of each parser_type saves."""
        valid = [
            ("shelly_pm", "shellypro3em-1/status/em1:0", '{"channels": [0, 1, 2]}'),
            ("shelly_rpc", "shellyplus1pm-1/events/rpc", '{"component": "switch:0"}'),
            ("shelly_gen1", "shellies/shelly1pm-1/relay/0/power", ""),
            ("tasmota", "tele/plug-1/SENSOR", '{"channel": 1}'),
            ("zigbee2mqtt", "zigbee2mqtt/Lathe Plug", '{"power_paths": ["power", "power_b"]}'),
            ("generic_json", "meters/lathe", '{"power_path": "ENERGY.Power", "energy_unit": null}'),
        ]
        for index, (parser_type, topic, options) in enumerate(valid):
            device = self.make_device(
                f"dev-{index}", parser_type=parser_type, mqtt_topic=topic, parser_options=options
            )
            self.assertEqual(device.parser_type, parser_type)
        pushed = device._bridge_device()
        self.assertEqual(pushed["parser_options"], {"power_path": "ENERGY.Power"})

    def test_device_id_follows_the_bridge_rule(self):
        """A device_id outside [A-Za-z0-9_.:-]{1,64} is refused, naming the field."""
        self.assertRefused({"device_id": "cnc mill"}, "Device ID", "1 to 64 characters")
        self.assertRefused({"device_id": "x" * 65}, "Device ID")
        self.assertRefused({"device_id": "wörk"}, "Device ID")
        self.make_device("a.b:c_d-1")

    def test_device_id_is_unique_archived_included(self):
        """A second machine with the same device_id, even next to an archived one, is refused."""
        first = self.make_device("lathe")
        first.active = False
        with self.assertRaises(IntegrityError), mute_logger("odoo.sql_db"):
            self.make_device("lathe")

    def test_topic_filter_rules(self):
        """Whitespace, control characters, misplaced wildcards and $share/ are refused."""
        cases = [
            (" shelly-1/status/pm1:0", "whitespace"),
            ("shelly-1/status/pm1:0\n", "control characters"),
            ("shelly-1/#/pm1:0", "'#' only as the whole last level"),
            ("shelly-1+/status/pm1:0", "'+' only as a whole level"),
            ("$share/g/shelly-1/status/pm1:0", "shared subscription"),
        ]
        for topic, fragment in cases:
            self.assertRefused({"mqtt_topic": topic}, "MQTT Topic", fragment)

    def test_topic_must_fit_the_parser(self):
        """Each parser_type refuses a topic of another layout, saying what it expects."""
        cases = [
            ("shelly_pm", "shelly-1/events/rpc", "<prefix>/status/<component>"),
            ("shelly_rpc", "shelly-1/status/pm1:0", "<prefix>/events/rpc"),
            ("shelly_gen1", "shellies/x/relay/a/power", "relay/N/power"),
            ("tasmota", "tele/plug/STATE", "SENSOR"),
            ("zigbee2mqtt", "zigbee2mqtt/bridge/state", "<friendly_name>"),
        ]
        for parser_type, topic, fragment in cases:
            self.assertRefused(
                {"parser_type": parser_type, "mqtt_topic": topic}, "MQTT Topic", fragment
            )

    def test_parser_options_are_checked(self):
        """Options must be a JSON object with only the parser's keys and valid values."""
        self.assertRefused(
            {"parser_options": "{channels: [0]}"}, "Parser Options", "not valid JSON"
        )
        self.assertRefused({"parser_options": "[0, 1]"}, "Parser Options", "JSON object")
        self.assertRefused(
            {"parser_options": '{"component": "pm1:0"}'},
            "Parser Options (component)",
            "not an option of shelly_pm",
        )
        self.assertRefused(
            {"mqtt_topic": "pro4pm-1/status/switch:1", "parser_options": '{"channels": [0, 1]}'},
            "must start with channel 1",
        )
        self.assertRefused(
            {"mqtt_topic": "pro4pm-1/status/switch:0", "parser_options": '{"channels": [0, 0]}'},
            "listed twice",
        )
        self.assertRefused({"parser_options": '{"channels": [0, 1]}'}, "pm1:N has one channel")
        self.assertRefused(
            {"parser_type": "generic_json", "mqtt_topic": "meters/x"},
            "power_path",
            "required for generic_json",
        )
        self.assertRefused(
            {
                "parser_type": "generic_json",
                "mqtt_topic": "meters/x",
                "parser_options": '{"power_path": "a..b"}',
            },
            "non-empty keys",
        )
        self.assertRefused(
            {
                "parser_type": "tasmota",
                "mqtt_topic": "tele/x/SENSOR",
                "parser_options": '{"channel": 0, "channels": [0]}',
            },
            "set one",
        )

    def test_thresholds_in_range_and_in_order(self):
        """Thresholds and timings outside the bridge's ranges, or working < standby, are refused."""
        self.assertRefused(
            {"standby_threshold_w": 60.0, "working_threshold_w": 50.0},
            "Working Threshold (W)",
            "at least standby_threshold_w (60)",
        )
        self.assertRefused({"standby_threshold_w": 0.0}, "Standby Threshold (W)", "greater than 0")
        self.assertRefused({"working_threshold_w": 100_001.0}, "Working Threshold (W)")
        self.assertRefused({"start_debounce_s": -1.0}, "Start Debounce (s)")
        self.assertRefused({"stop_debounce_s": 3601.0}, "Stop Debounce (s)")
        self.assertRefused({"message_timeout_s": 0.5}, "Message Timeout (s)", "at least 1")
        self.assertRefused({"heartbeat_interval_s": 5.0}, "Heartbeat Interval (s)", "at least 10")
        self.assertRefused({"heartbeat_interval_s": float("nan")}, "finite")

    def test_a_refused_write_changes_nothing(self):
        """An invalid write leaves the machine as it was."""
        device = self.make_device()
        self.assertRefused({"mqtt_topic": "wrong"}, "MQTT Topic", device=device)
        self.assertEqual(device.mqtt_topic, "shelly-cnc-1/status/pm1:0")

    def test_machine_name_is_one_line(self):
        """A machine name with a newline is refused (the bridge wants one line)."""
        self.assertRefused({"name": "Lathe\nold"}, "Machine", "control characters")

    def test_broker_rules(self):
        """A broker with a scheme in its host, a bad port or client id is refused."""
        Broker = self.env["mqtt.broker"]
        for values, fragment in [
            ({"host": "mqtt://broker"}, "without a scheme"),
            ({"port": 0}, "Port"),
            ({"client_id": "iot bridge"}, "Client ID"),
            ({"keepalive": 2}, "Keepalive"),
        ]:
            with self.assertRaises(ValidationError) as caught, self.env.cr.savepoint():
                Broker.create({"name": "b", **values})
            self.assertIn(fragment, str(caught.exception))

    def test_one_active_broker(self):
        """A second active broker is refused; archiving the first allows it."""
        Broker = self.env["mqtt.broker"]
        first = Broker.create({"name": "one", "host": "mosquitto"})
        with self.assertRaises(ValidationError), self.env.cr.savepoint():
            Broker.create({"name": "two", "host": "other"})
        first.active = False
        second = Broker.create({"name": "two", "host": "other"})
        self.assertEqual(Broker._active_broker(), second)
        self.assertEqual(self.make_device().broker_id, second)
