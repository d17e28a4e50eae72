# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from datetime import datetime, time, timedelta

import pytz
from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError, ValidationError

from ..bridge import rules

MACHINE_STATES = [
    ("idle", "Idle"),
    ("starting", "Starting"),
    ("standby", "Standby"),
    ("working", "Working"),
    ("stopping", "Stopping"),
    ("offline", "Offline"),
]
# kanban colour index per state (Odoo's palette: 10 green, 3 yellow, 2 orange, 1 red)
STATE_COLORS = {"working": 10, "standby": 3, "starting": 2, "stopping": 2, "offline": 1}
# The fields the pushed document carries: writing one pushes the config.
BRIDGE_FIELDS = frozenset(
    {"name", "device_id", "mqtt_topic", "parser_type", "parser_options", "active"}
    | set(rules.SESSION_FIELDS)
)
# The bridge's name of a value -> the field that holds it
_PATH_FIELDS = {"machine_name": "name", "session_config": None, "parser_options": "parser_options"}


class MqttDevice(models.Model):
    """A machine and the power meter that tells when it is in use.

    The meter's settings are pushed to the bridge (``mqtt.bridge``); the live
    state (online, state, power, running session) is written by the bridge's
    events (``mqtt.event``).
    """

    _name = "mqtt.device"
    _description = "Machine Power Meter"
    _inherit = ["mail.thread", "mqtt.pushed.mixin"]
    _push_fields = BRIDGE_FIELDS
    _order = "name, id"
    _check_company_auto = True

    name = fields.Char(string="Machine", required=True, tracking=True)
    device_id = fields.Char(
        string="Device ID",
        required=True,
        copy=False,
        tracking=True,
        help="The bridge's name for this meter: 1 to 64 letters, digits, '_', '.', ':' or '-'.",
    )
    active = fields.Boolean(default=True, tracking=True)
    company_id = fields.Many2one(
        "res.company", required=True, index=True, default=lambda self: self.env.company
    )
    broker_id = fields.Many2one(
        "mqtt.broker",
        ondelete="set null",
        default=lambda self: self.env["mqtt.broker"]._active_broker(),
        help="The broker this meter publishes to; the bridge connects to the active broker.",
    )
    mqtt_topic = fields.Char(
        string="MQTT Topic",
        required=True,
        tracking=True,
        help="The meter's data topic, e.g. shellypmminig3-48f6eeb73a1c/status/pm1:0.",
    )
    parser_type = fields.Selection(
        rules.PARSER_TYPES, string="Parser", required=True, default="shelly_pm", tracking=True
    )
    parser_options = fields.Text(
        tracking=True,
        help='A JSON object, e.g. {"channels": [0, 1, 2]} for a three-phase meter, or '
        '{"power_path": "ENERGY.Power"} for generic_json. Empty: none.',
    )
    standby_threshold_w = fields.Float(
        string="Standby Threshold (W)",
        default=5.0,
        tracking=True,
        help="At or above this power the machine is on (standby).",
    )
    working_threshold_w = fields.Float(
        string="Working Threshold (W)",
        default=50.0,
        tracking=True,
        help="At or above this power the machine is working; at least the standby threshold.",
    )
    start_debounce_s = fields.Float(
        string="Start Debounce (s)",
        default=3.0,
        tracking=True,
        help="How long the power must stay above standby before a session starts.",
    )
    stop_debounce_s = fields.Float(
        string="Stop Debounce (s)",
        default=15.0,
        tracking=True,
        help="How long the power must stay below standby before the session stops.",
    )
    message_timeout_s = fields.Float(
        string="Message Timeout (s)",
        default=20.0,
        tracking=True,
        help="Silence after which the meter is offline and its session times out; "
        "longer than the meter's reporting interval (Tasmota: TelePeriod).",
    )
    heartbeat_interval_s = fields.Float(
        string="Heartbeat Interval (s)",
        default=300.0,
        tracking=True,
        help="How often a running session's totals are sent to Odoo.",
    )

    # live state, written by the bridge's events
    online = fields.Boolean(readonly=True)
    last_seen = fields.Datetime(readonly=True)
    state = fields.Selection(MACHINE_STATES, default="idle", readonly=True, required=True)
    power_w = fields.Float(string="Power (W)", readonly=True)
    current_session_id = fields.Many2one("mqtt.session", readonly=True, ondelete="set null")
    live_stamp = fields.Char(
        readonly=True,
        copy=False,
        help="Technical: UTC time of the event that set the live state, to the microsecond. "
        "An older event (re-sent late) does not overwrite it.",
    )
    session_ids = fields.One2many("mqtt.session", "device_id", string="Sessions")
    color = fields.Integer(compute="_compute_color")

    # totals
    session_count = fields.Integer(compute="_compute_totals", string="Sessions Count")
    working_hours_week = fields.Float(compute="_compute_totals", string="Working Hours (Week)")
    standby_hours_week = fields.Float(compute="_compute_totals", string="Standby Hours (Week)")
    energy_kwh_week = fields.Float(compute="_compute_totals", string="Energy (kWh, Week)")
    working_hours_month = fields.Float(compute="_compute_totals", string="Working Hours (Month)")
    standby_hours_month = fields.Float(compute="_compute_totals", string="Standby Hours (Month)")
    energy_kwh_month = fields.Float(compute="_compute_totals", string="Energy (kWh, Month)")

    _sql_constraints = [
        (
            "device_id_unique",
            "unique(device_id)",
            "Another machine already has this Device ID (archived machines count too).",
        ),
    ]

    @api.depends("state")
    def _compute_color(self):
        for device in self:
            device.color = STATE_COLORS.get(device.state, 0)

    def _period_starts(self):
        """This week's (Monday) and this month's first day at midnight in the user's zone, UTC."""
        zone = pytz.timezone(self.env.user.tz or "UTC")
        today = datetime.now(pytz.utc).astimezone(zone).date()

        def utc(day):
            local = zone.localize(datetime.combine(day, time.min))
            return local.astimezone(pytz.utc).replace(tzinfo=None)

        return utc(today - timedelta(days=today.weekday())), utc(today.replace(day=1))

    def _compute_totals(self):
        real = self.filtered("id")
        week_start, month_start = self._period_starts()
        sessions = self.env["mqtt.session"]
        counts = dict(
            sessions._read_group([("device_id", "in", real.ids)], ["device_id"], ["__count"])
        )
        aggregates = ["working_s:sum", "standby_s:sum", "energy_wh:sum"]
        totals = {}
        for period, start in (("week", week_start), ("month", month_start)):
            for device, working, standby, energy in sessions._read_group(
                [("device_id", "in", real.ids), ("started_at", ">=", start)],
                ["device_id"],
                aggregates,
            ):
                totals[device, period] = (working / 3600.0, standby / 3600.0, energy / 1000.0)
        for device in self:
            device.session_count = counts.get(device, 0)
            week = totals.get((device, "week"), (0.0, 0.0, 0.0))
            month = totals.get((device, "month"), (0.0, 0.0, 0.0))
            device.working_hours_week, device.standby_hours_week, device.energy_kwh_week = week
            (
                device.working_hours_month,
                device.standby_hours_month,
                device.energy_kwh_month,
            ) = month

    # -- the bridge's rules, on save ---------------------------------------------

    def _bridge_device(self):
        """This machine as the pushed document's ``devices`` item."""
        self.ensure_one()
        options, _problems = rules.options_from_text(self.parser_options)
        device = {
            "device_id": self.device_id or "",
            "machine_name": self.name or "",
            "mqtt_topic": self.mqtt_topic or "",
            "parser_type": self.parser_type,
            "session_config": {name: self[name] for name in rules.SESSION_FIELDS},
        }
        if options:
            device["parser_options"] = options
        return device

    def _field_label(self, path):
        head = path.split(".", 1)[0]
        name = path.split(".")[1] if head == "session_config" else _PATH_FIELDS.get(head, head)
        field = self._fields.get(name)
        return field.string if field else path

    @api.constrains(
        "device_id", "name", "mqtt_topic", "parser_type", "parser_options", *rules.SESSION_FIELDS
    )
    def _check_bridge_rules(self):
        for device in self:
            _options, problems = rules.options_from_text(device.parser_options)
            problems += rules.device_problems(device._bridge_device())
            if problems:
                lines = []
                for path, message in problems:
                    label = device._field_label(path)
                    detail = path.split(".", 1)[1] if path.startswith("parser_options.") else ""
                    detail = f" ({detail})" if detail else ""
                    lines.append(f"{label}{detail}: {message}")
                raise ValidationError(
                    self.env._(
                        "Machine %(name)s cannot be used by the bridge:\n%(lines)s",
                        name=device.name or device.device_id,
                        lines="\n".join(lines),
                    )
                )

    # -- pushing (the hooks on create, write and unlink: mqtt.pushed.mixin) --

    def action_push_config(self):
        """The "Push Config to Bridge" button: push every machine now and show the answer.

        Works on any recordset (empty too): the whole config is pushed. The
        notification's params carry the outcome (``outcome``) for RPC callers.
        """
        if not self.env.user.has_group("open_workshop_mqtt.group_iot_manager"):
            raise AccessError(
                self.env._("Only IoT managers can push the configuration to the bridge.")
            )
        if not self.env["ir.config_parameter"].sudo().get_param("open_workshop_mqtt.bridge_url"):
            raise UserError(
                self.env._("Set the bridge URL in Settings > IoT Bridge before pushing.")
            )
        outcome = self.env["mqtt.bridge"]._push("button")
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": self.env._("Push Config to Bridge"),
                "message": outcome["summary"],
                "type": "success" if outcome["ok"] else "danger",
                "sticky": not outcome["ok"],
                "outcome": {key: value for key, value in outcome.items() if key != "summary"},
            },
        }

    def action_view_sessions(self):
        """The machine's sessions."""
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "open_workshop_mqtt.action_mqtt_session"
        )
        action["domain"] = [("device_id", "=", self.id)]
        action["context"] = {"default_device_id": self.id}
        return action
