# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models
from odoo.exceptions import ValidationError

from ..bridge import rules

# The fields of the document's mqtt section: writing one pushes the config.
PUSHED_FIELDS = frozenset(
    {
        "host",
        "port",
        "username",
        "password",
        "use_tls",
        "client_id",
        "keepalive",
        "ca_file",
        "tls_insecure",
        "active",
        "sequence",
    }
)

# The mqtt section's names that differ from the fields'.
BRIDGE_TO_FIELD = {"broker": "host"}


class MqttBroker(models.Model):
    """The MQTT broker the bridge connects to (the pushed document's ``mqtt`` section).

    The bridge holds one broker connection, so one broker is active at a time;
    an archived broker is kept for the record and pushes nothing.
    """

    _name = "mqtt.broker"
    _description = "MQTT Broker"
    _inherit = ["mqtt.pushed.mixin"]
    _push_fields = PUSHED_FIELDS
    _order = "sequence, id"

    name = fields.Char(required=True)
    sequence = fields.Integer(default=10)
    active = fields.Boolean(default=True)
    host = fields.Char(required=True, default="localhost", help="Host name or IP address.")
    port = fields.Integer(required=True, default=1883)
    username = fields.Char()
    password = fields.Char(
        groups="open_workshop_mqtt.group_iot_manager",
        copy=False,
        help="Sent to the bridge in the config push; readable by IoT managers only.",
    )
    use_tls = fields.Boolean(string="Use TLS")
    ca_file = fields.Char(
        string="CA File",
        help="Path of a PEM file on the bridge's host that signs the broker's certificate "
        "(empty: the system's trusted authorities).",
    )
    tls_insecure = fields.Boolean(
        string="Skip Certificate Check",
        help="Accept any certificate: for tests only, never on a network you do not control.",
    )
    client_id = fields.Char(
        string="Client ID",
        required=True,
        default="iot_bridge",
        help="The bridge's MQTT client id: stable, so its persistent session survives restarts.",
    )
    keepalive = fields.Integer(required=True, default=60, help="Seconds, from 5 to 3600.")
    device_ids = fields.One2many("mqtt.device", "broker_id", string="Machines")
    device_count = fields.Integer(compute="_compute_device_count", string="Machine Count")

    def _compute_device_count(self):
        groups = self.env["mqtt.device"]._read_group(
            [("broker_id", "in", self.ids)], ["broker_id"], ["__count"]
        )
        counts = {broker.id: count for broker, count in groups}
        for broker in self:
            broker.device_count = counts.get(broker.id, 0)

    def _mqtt_section(self):
        """The document's ``mqtt`` section for this broker."""
        self.ensure_one()
        broker = self.sudo()
        section = {
            "broker": (broker.host or "").strip(),
            "port": broker.port,
            # The bridge is strict about types: an empty Char is False in Odoo.
            "username": broker.username or "",
            "password": broker.password or "",
            "client_id": broker.client_id or "iot_bridge",
            "keepalive": broker.keepalive,
            "use_tls": bool(broker.use_tls),
            "tls_insecure": bool(broker.tls_insecure),
        }
        if broker.ca_file:
            section["ca_file"] = broker.ca_file
        return section

    @api.model
    def _active_broker(self):
        """The broker whose settings are pushed, or an empty recordset."""
        return self.sudo().search([], limit=1)

    @api.constrains(*PUSHED_FIELDS)
    def _check_bridge_rules(self):
        for broker in self:
            problems = rules.broker_problems(broker._mqtt_section())
            if problems:
                path, message = problems[0]
                field = broker._fields[BRIDGE_TO_FIELD.get(path, path)]
                raise ValidationError(
                    self.env._(
                        "Broker %(broker)s: %(field)s %(message)s.",
                        broker=broker.name,
                        field=field.string,
                        message=message,
                    )
                )

    @api.constrains("active")
    def _check_one_active(self):
        if self.sudo().search_count([]) > 1:
            raise ValidationError(
                self.env._(
                    "The bridge connects to one MQTT broker: archive the other broker "
                    "before activating or creating this one."
                )
            )
