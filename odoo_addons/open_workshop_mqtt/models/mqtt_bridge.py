# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import functools
import logging
import zlib
from datetime import UTC, datetime

from odoo import SUPERUSER_ID, api, fields, models
from odoo.modules.registry import Registry

from ..bridge import client

_logger = logging.getLogger(__name__)

PARAM_BRIDGE_URL = "open_workshop_mqtt.bridge_url"
PARAM_BRIDGE_TOKEN = "open_workshop_mqtt.bridge_token"  # noqa: S105 - a parameter name
PARAM_ODOO_URL = "open_workshop_mqtt.odoo_url"
PARAM_API_KEY = "open_workshop_mqtt.bridge_api_key"
PARAM_RETENTION_DAYS = "open_workshop_mqtt.event_retention_days"
PARAM_LAST_PUSH_AT = "open_workshop_mqtt.last_push_at"
PARAM_LAST_PUSH_RESULT = "open_workshop_mqtt.last_push_result"
PARAM_PUSH_PENDING = "open_workshop_mqtt.push_pending"
PARAM_LAST_HEALTH = "open_workshop_mqtt.last_health"
PARAM_STATE_OUT = "open_workshop_mqtt.state_out"
# Settings whose change is pushed to the bridge at once.
PUSHED_PARAMS = (PARAM_BRIDGE_URL, PARAM_BRIDGE_TOKEN, PARAM_ODOO_URL, PARAM_STATE_OUT)
BRIDGE_LOGIN = "iot_bridge"
DOCUMENT_VERSION = "1.0"

# One transaction schedules at most one push, whatever it changed.
_POSTCOMMIT_KEY = "open_workshop_mqtt.push_config"
# Pushes are serialized, so the last one to reach the bridge read the last commit.
_PUSH_LOCK = zlib.crc32(b"open_workshop_mqtt.push_config")
_MAX_RESULT_LINES = 20


XMLRPC_INT_MIN, XMLRPC_INT_MAX = -(2**31), 2**31 - 1


def rpc_safe(value):
    """``value`` as XML-RPC can carry it: None as False, an int past 32 bits as a float.

    The bridge's ``/health`` holds byte counts (the disk's free space) that pass
    XML-RPC's 32-bit ``<int>``; a float keeps them exact up to 2**53.
    """
    if isinstance(value, dict):
        return {key: rpc_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [rpc_safe(item) for item in value]
    if value is None:
        return False
    big = isinstance(value, int) and not XMLRPC_INT_MIN <= value <= XMLRPC_INT_MAX
    if big and not isinstance(value, bool):
        return float(value)
    return value


def _push_after_commit(dbname):
    """Push the committed config in a cursor of its own; never raises into the commit."""
    try:
        with Registry(dbname).cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            env["mqtt.bridge"]._push("change")
    except Exception:  # the user's save is committed: log, and let the cron retry
        _logger.exception("push_bridge_config: the push after commit failed")
        try:
            with Registry(dbname).cursor() as cr:
                env = api.Environment(cr, SUPERUSER_ID, {})
                env["ir.config_parameter"].set_param(PARAM_PUSH_PENDING, "1")
        except Exception:
            _logger.exception("push_bridge_config: could not flag the push for a retry")


class MqttBridge(models.AbstractModel):
    """The link to iot-bridge: the config push of CONTRACT section 9 and its outcome.

    A change that the bridge must know schedules ``_schedule_push``: one push
    after the transaction commits, none when it rolls back. A push that does
    not reach the bridge sets a flag that the scheduled action
    ``ir_cron_push_config_retry`` clears by pushing again.
    """

    _name = "mqtt.bridge"
    _description = "IoT Bridge Link"

    @api.model
    def _schedule_push(self):
        """Push the whole config once this transaction commits (once however often called)."""
        postcommit = self.env.cr.postcommit
        if postcommit.data.get(_POSTCOMMIT_KEY):
            return
        postcommit.data[_POSTCOMMIT_KEY] = True
        postcommit.add(functools.partial(_push_after_commit, self.env.cr.dbname))

    @api.model
    def _params(self):
        return self.env["ir.config_parameter"].sudo()

    @api.model
    def _odoo_url(self):
        params = self._params()
        return (params.get_param(PARAM_ODOO_URL) or params.get_param("web.base.url") or "").rstrip(
            "/"
        )

    @api.model
    def _odoo_section(self):
        """The document's ``odoo`` section once Connect made the bridge's key, else None."""
        api_key = self._params().get_param(PARAM_API_KEY)
        if not api_key:
            return None
        return {
            "base_url": self._odoo_url(),
            "database": self.env.cr.dbname,
            "username": BRIDGE_LOGIN,
            "api_key": api_key,
            "request_format": "batch",
        }

    @api.model
    def _document(self):
        """The ``POST /config`` body and the devices in the order of its ``devices`` list."""
        devices = self.env["mqtt.device"].sudo().search([("active", "=", True)], order="id")
        document = {
            "devices": [device._bridge_device() for device in devices],
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "version": DOCUMENT_VERSION,
        }
        broker = self.env["mqtt.broker"]._active_broker()
        if broker:
            document["mqtt"] = broker._mqtt_section()
        odoo = self._odoo_section()
        if odoo:
            document["odoo"] = odoo
        if self._params().get_param(PARAM_STATE_OUT):
            # The bridge's own defaults for the topics and Home Assistant discovery.
            document["state_out"] = {"enabled": True}
        return document, devices

    @api.model
    def _push(self, trigger):
        """Push the whole config now, record the outcome, and return it (``_outcome``).

        Runs in the caller's transaction; holds a transaction lock so that
        concurrent pushes reach the bridge one after the other.
        """
        params = self._params()
        url = params.get_param(PARAM_BRIDGE_URL)
        if not url:
            return self._outcome(None, self.env["mqtt.device"], self.env._("No bridge URL is set."))
        self.env.cr.execute("SELECT pg_advisory_xact_lock(%s)", [_PUSH_LOCK])
        document, devices = self._document()
        reply = client.post_config(url, params.get_param(PARAM_BRIDGE_TOKEN), document)
        outcome = self._outcome(reply, devices)
        log = _logger.info if outcome["ok"] else _logger.warning
        log(
            "push_bridge_config trigger=%s devices=%s status=%s result=%s",
            trigger,
            len(devices),
            reply.status_code,
            outcome["message"],
        )
        params.set_param(PARAM_LAST_PUSH_AT, fields.Datetime.to_string(fields.Datetime.now()))
        params.set_param(PARAM_LAST_PUSH_RESULT, outcome["summary"])
        # A refused document waits for a change; anything else retries until it succeeds.
        retry = not outcome["ok"] and not reply.refused
        params.set_param(PARAM_PUSH_PENDING, "1" if retry else False)
        if reply.refused:
            self._note_refusal_on_devices(outcome["errors"], devices)
        return outcome

    @api.model
    def _outcome(self, reply, devices, message=None):
        """What a push gave, as plain data (XML-RPC safe): shown, logged and returned."""
        if reply is None:
            return {
                "ok": False,
                "status_code": 0,
                "devices_configured": 0,
                "message": message,
                "errors": [],
                "summary": message,
            }
        errors = [self._map_error(path, text, devices) for path, text in reply.errors]
        if reply.ok:
            count = reply.body.get("devices_configured", len(devices))
            message = self.env._("%(count)s devices configured on the bridge.", count=count)
        elif reply.refused:
            count = 0
            message = self.env._(
                "The bridge refused the configuration (HTTP %s).", reply.status_code
            )
        else:
            count = 0
            message = self.env._("The push failed: %s", reply.summary())
        lines = [message] + [error["text"] for error in errors[:_MAX_RESULT_LINES]]
        if len(errors) > _MAX_RESULT_LINES:
            lines.append(self.env._("... and %s more errors.", len(errors) - _MAX_RESULT_LINES))
        return {
            "ok": reply.ok,
            "status_code": reply.status_code or 0,
            "devices_configured": count,
            "message": message,
            "errors": errors,
            "summary": "\n".join(lines),
        }

    @api.model
    def _map_error(self, path, text, devices):
        """A 422 error with the machine its ``devices.N`` path names (N: position in the push)."""
        parts = path.split(".", 2)
        error = {"path": path, "message": text, "device_id": "", "machine": "", "record_id": 0}
        where = path
        if parts[0] == "devices" and len(parts) > 1 and parts[1].isdigit():
            index = int(parts[1])
            if index < len(devices):
                device = devices[index]
                error.update(device_id=device.device_id, machine=device.name, record_id=device.id)
                field = parts[2] if len(parts) > 2 else ""
                where = f"{device.name} ({device.device_id})" + (f": {field}" if field else "")
        elif parts[0] == "mqtt":
            where = self.env._("Broker: %s", path.partition(".")[2] or path)
        error["text"] = f"{where}: {text}"
        return error

    @api.model
    def _note_refusal_on_devices(self, errors, devices):
        by_record = {}
        for error in errors:
            if error["record_id"]:
                by_record.setdefault(error["record_id"], []).append(error["text"])
        for device in devices.filtered(lambda record: record.id in by_record):
            device.message_post(
                body=self.env._(
                    "The bridge refused the configuration because of this machine: %s",
                    "; ".join(by_record[device.id]),
                )
            )

    @api.model
    def _cron_retry_push(self):
        """Scheduled action: push again while the last push did not reach the bridge."""
        if self._params().get_param(PARAM_PUSH_PENDING):
            self._push("retry")

    @api.model
    def _health(self):
        """The bridge's ``GET /health`` as a short text, kept for the settings; and its body."""
        url = self._params().get_param(PARAM_BRIDGE_URL)
        if not url:
            return self.env._("No bridge URL is set."), {}
        reply = client.get_health(url)
        if not reply.ok:
            text = self.env._("Health check failed: %s", reply.summary())
            body = {}
        else:
            body = reply.body
            mqtt = body.get("mqtt") or {}
            outbox = body.get("outbox") or {}
            text = self.env._(
                "Bridge %(status)s: %(devices)s devices, MQTT %(mqtt)s (%(broker)s), "
                "outbox %(pending)s pending / %(dead)s dead.",
                status=body.get("status", "?"),
                devices=body.get("devices", "?"),
                mqtt=self.env._("connected")
                if mqtt.get("connected")
                else self.env._("not connected"),
                broker=mqtt.get("broker", "?"),
                pending=outbox.get("pending", "?"),
                dead=outbox.get("dead", "?"),
            )
        self._params().set_param(PARAM_LAST_HEALTH, text)
        return text, body
