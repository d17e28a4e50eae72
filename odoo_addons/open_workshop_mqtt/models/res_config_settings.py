# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import logging

from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError, ValidationError

from ..bridge import rules
from .mqtt_bridge import (
    BRIDGE_LOGIN,
    PARAM_API_KEY,
    PARAM_BRIDGE_TOKEN,
    PARAM_BRIDGE_URL,
    PARAM_LAST_HEALTH,
    PARAM_LAST_PUSH_AT,
    PARAM_LAST_PUSH_RESULT,
    PARAM_ODOO_URL,
    PARAM_PUSH_PENDING,
    PARAM_RETENTION_DAYS,
    PARAM_STATE_OUT,
    PUSHED_PARAMS,
    rpc_safe,
)

_logger = logging.getLogger(__name__)

API_KEY_NAME = "iot-bridge (Connect)"


class ResConfigSettings(models.TransientModel):
    _inherit = "res.config.settings"

    iot_bridge_url = fields.Char(
        string="Bridge URL",
        config_parameter=PARAM_BRIDGE_URL,
        help="Where Odoo reaches the bridge's HTTP API, e.g. http://iot-bridge:8080.",
    )
    iot_bridge_token = fields.Char(
        string="Bridge Token",
        config_parameter=PARAM_BRIDGE_TOKEN,
        help="The bridge's BRIDGE_API_TOKEN, sent with every config push.",
    )
    iot_odoo_url = fields.Char(
        string="Odoo URL for the Bridge",
        config_parameter=PARAM_ODOO_URL,
        help="This Odoo as the bridge reaches it (inside a compose network often "
        "http://odoo:8069). Empty: web.base.url, as it is at each push.",
    )
    iot_event_retention_days = fields.Integer(
        string="Keep Events (Days)",
        config_parameter=PARAM_RETENTION_DAYS,
        default=90,
        help="Received bridge events older than this are deleted every day.",
    )
    iot_state_out = fields.Boolean(
        string="Publish Machine State on MQTT",
        config_parameter=PARAM_STATE_OUT,
        help="The bridge publishes each machine's state, retained, under iot-bridge/<device_id>/"
        "state, with Home Assistant discovery (its state_out section).",
    )
    # What the last push and health check gave: read-only, taken from the system
    # parameters when the settings open (defaults, since the web client computes
    # nothing on a new settings record).
    iot_last_push_at = fields.Datetime(
        string="Last Push",
        readonly=True,
        default=lambda self: self._iot_param(PARAM_LAST_PUSH_AT),
    )
    iot_last_push_result = fields.Text(
        string="Last Push Result",
        readonly=True,
        default=lambda self: self._iot_param(PARAM_LAST_PUSH_RESULT),
    )
    iot_push_pending = fields.Boolean(
        string="Push Pending",
        readonly=True,
        default=lambda self: bool(self._iot_param(PARAM_PUSH_PENDING)),
    )
    iot_bridge_health = fields.Char(
        string="Bridge Health",
        readonly=True,
        default=lambda self: self._iot_param(PARAM_LAST_HEALTH),
    )
    iot_bridge_user_id = fields.Many2one(
        "res.users",
        string="Bridge User",
        readonly=True,
        default=lambda self: self._iot_bridge_user(),
    )

    @api.model
    def _iot_param(self, key):
        return self.env["ir.config_parameter"].sudo().get_param(key) or False

    @api.constrains("iot_bridge_url", "iot_odoo_url")
    def _check_iot_urls(self):
        for settings in self:
            for name in ("iot_bridge_url", "iot_odoo_url"):
                value = settings[name]
                problem = value and rules.http_url_problem(value)
                if problem:
                    raise ValidationError(
                        self.env._(
                            "%(field)s %(problem)s.",
                            field=self._fields[name].string,
                            problem=problem,
                        )
                    )

    @api.constrains("iot_event_retention_days")
    def _check_iot_retention(self):
        for settings in self:
            if settings.iot_event_retention_days < 1:
                raise ValidationError(self.env._("Keep Events (Days) must be at least 1."))

    def set_values(self):
        params = self.env["ir.config_parameter"].sudo()
        before = [params.get_param(key) for key in PUSHED_PARAMS]
        result = super().set_values()
        if before != [params.get_param(key) for key in PUSHED_PARAMS]:
            self.env["mqtt.bridge"]._schedule_push()
        return result

    @api.model
    def _iot_bridge_user(self):
        return (
            self.env["res.users"]
            .sudo()
            .with_context(active_test=False)
            .search([("login", "=", BRIDGE_LOGIN)], limit=1)
        )

    @api.model
    def _iot_ensure_bridge_user(self):
        """The bridge's user (only in group_iot_bridge) and its API key, made when missing.

        Odoo keeps only a hash of a key, and the bridge needs the key itself in
        every push, so the raw key is kept in a system parameter.
        """
        group = self.env.ref("open_workshop_mqtt.group_iot_bridge")
        user = self._iot_bridge_user()
        if not user:
            user = (
                self.env["res.users"]
                .sudo()
                .with_context(no_reset_password=True)
                .create(
                    {
                        "name": self.env._("IoT Bridge"),
                        "login": BRIDGE_LOGIN,
                        "groups_id": [fields.Command.set(group.ids)],
                    }
                )
            )
            _logger.info("iot_bridge_connect created user %s (#%s)", BRIDGE_LOGIN, user.id)
        elif not user.active or group not in user.groups_id:
            user.write({"active": True, "groups_id": [fields.Command.link(group.id)]})
        params = self.env["ir.config_parameter"].sudo()
        key = params.get_param(PARAM_API_KEY)
        apikeys = self.env["res.users.apikeys"].sudo()
        if not key or apikeys._check_credentials(scope="rpc", key=key) != user.id:
            # a lost or revoked key: replace it (and the keys made for it before)
            apikeys.search([("user_id", "=", user.id), ("name", "=", API_KEY_NAME)]).unlink()
            key = apikeys.with_user(user).sudo()._generate(None, API_KEY_NAME, None)
            params.set_param(PARAM_API_KEY, key)
            _logger.info("iot_bridge_connect made an API key for %s", BRIDGE_LOGIN)
        return user

    def _iot_save_params(self):
        """Write this record's IoT Bridge settings (Connect may be pressed before Save)."""
        self.ensure_one()
        params = self.env["ir.config_parameter"].sudo()
        for name in ("iot_bridge_url", "iot_bridge_token", "iot_odoo_url"):
            field = self._fields[name]
            value = (self[name] or "").strip()
            if value != (params.get_param(field.config_parameter) or ""):
                params.set_param(field.config_parameter, value or False)

    def action_bridge_connect(self):
        """Connect Odoo and the bridge in one step, and show the bridge's answer.

        Makes the bridge's user and API key when missing, pushes the whole
        config with the ``odoo`` section (this Odoo's URL, database, user and
        key), and reads the bridge's ``/health``.
        """
        if not self.env.user.has_group("base.group_system"):
            # as every settings page of Odoo: saving settings is for administrators
            raise AccessError(self.env._("Only administrators can connect the bridge."))
        for settings in self[:1]:
            settings._iot_save_params()
        if not self.env["ir.config_parameter"].sudo().get_param(PARAM_BRIDGE_URL):
            raise UserError(self.env._("Set the bridge URL first."))
        self._iot_ensure_bridge_user()
        outcome = self.env["mqtt.bridge"]._push("connect")
        health, body = self.env["mqtt.bridge"]._health()
        message = "\n".join([outcome["summary"], health])
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": self.env._("Connect to IoT Bridge"),
                "message": message,
                "type": "success" if outcome["ok"] else "danger",
                "sticky": not outcome["ok"],
                "outcome": rpc_safe(
                    {key: value for key, value in outcome.items() if key != "summary"}
                ),
                "health": rpc_safe(body),
                "next": {"type": "ir.actions.client", "tag": "soft_reload"},
            },
        }

    def action_bridge_health(self):
        """Read the bridge's /health now and show it."""
        health, _body = self.env["mqtt.bridge"]._health()
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": self.env._("IoT Bridge Health"),
                "message": health,
                "type": "info",
                "next": {"type": "ir.actions.client", "tag": "soft_reload"},
            },
        }
