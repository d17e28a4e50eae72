# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import json
import logging
from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import ValidationError
from odoo.tools import mute_logger
from psycopg2 import errors as pg_errors

from ..bridge.events import EVENT_TYPES, EventError, parse_event
from .mqtt_bridge import PARAM_RETENTION_DAYS

_logger = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 90
PRUNE_BATCH = 10_000
MAX_BATCH_EVENTS = 500


def _error_name(error):
    return f"{type(error).__module__}.{type(error).__qualname__}"


class MqttEvent(models.Model):
    """Every event the bridge delivered, once (deduplicated by ``event_uid``).

    Kept for the retention the settings set (``ir_cron_prune_events``); an
    event for a machine Odoo does not know is kept without a machine.
    """

    _name = "mqtt.event"
    _description = "IoT Bridge Event"
    _order = "id desc"
    _rec_name = "event_uid"

    event_uid = fields.Char(string="Event UID", required=True, readonly=True)
    event_type = fields.Selection(
        [(name, name.replace("_", " ").capitalize()) for name in EVENT_TYPES],
        required=True,
        readonly=True,
        index=True,
    )
    device_ident = fields.Char(
        string="Device ID", index=True, readonly=True, help="The bridge's device_id, as received."
    )
    machine_name = fields.Char(readonly=True)
    device_id = fields.Many2one(
        "mqtt.device", string="Machine", index=True, readonly=True, ondelete="set null"
    )
    session_id = fields.Many2one("mqtt.session", index=True, readonly=True, ondelete="set null")
    session_uuid = fields.Char(string="Session UUID", readonly=True)
    company_id = fields.Many2one("res.company", index=True, readonly=True)
    timestamp = fields.Datetime(readonly=True, index=True)
    payload = fields.Text(readonly=True, help="The event as the bridge sent it (JSON).")

    _sql_constraints = [
        ("event_uid_unique", "unique(event_uid)", "An event is stored once."),
    ]

    @api.model
    def _process_bridge_event(self, event):
        """Store and apply one EVENT of CONTRACT section 6; the reply for the bridge.

        Idempotent on ``event_uid``: an event already stored (also by a
        concurrent delivery of the same event) changes nothing and answers
        ``duplicate: true``. A malformed event raises ``ValidationError``
        naming the field (the bridge makes it dead). Runs as superuser: the
        caller (the controller) has checked that the user is the bridge.
        """
        events = self.sudo()
        try:
            parsed = parse_event(event)
        except EventError as err:
            raise ValidationError(self.env._("Invalid IoT bridge event: %s", err)) from None
        reply = {"status": "ok", "event_uid": parsed.uid, "duplicate": True}
        if events.search_count([("event_uid", "=", parsed.uid)], limit=1):
            return reply
        device = (
            events.env["mqtt.device"]
            .with_context(active_test=False)
            .search([("device_id", "=", parsed.device_ident)], limit=1)
        )
        values = {
            "event_uid": parsed.uid,
            "event_type": parsed.event_type,
            "device_ident": parsed.device_ident,
            "machine_name": parsed.machine_name,
            "device_id": device.id,
            "session_uuid": parsed.session_uuid,
            "company_id": device.company_id.id,
            "timestamp": parsed.at,
            "payload": json.dumps(parsed.raw, ensure_ascii=False, sort_keys=True),
        }
        try:
            # A copy delivered concurrently (the bridge re-sends after a timeout)
            # waits on the unique index and fails here once the first commits.
            # (the failed INSERT is expected then: keep it out of the error log)
            with mute_logger("odoo.sql_db"), events.env.cr.savepoint():
                record = events.create(values)
        except pg_errors.UniqueViolation:
            return reply
        record._apply(parsed, device)
        reply["duplicate"] = False
        return reply

    @api.model
    def _process_bridge_events(self, events):
        """A batch of EVENTs (CONTRACT section 6, ``request_format: batch``), in order.

        Each event is processed in a savepoint of its own and answered
        ``ok``, ``duplicate`` or ``error``. A ValidationError concerns that
        event only (the bridge makes it dead); any other failure is
        transient, and the same device's later events in the batch are
        left unprocessed (``Skipped``) so that each device's order holds.
        """
        if not isinstance(events, list):
            raise ValidationError(self.env._("Invalid IoT bridge batch: events: must be a list"))
        if len(events) > MAX_BATCH_EVENTS:
            raise ValidationError(
                self.env._(
                    "Invalid IoT bridge batch: events: at most %s events a call",
                    MAX_BATCH_EVENTS,
                )
            )
        results = []
        held = set()  # devices whose earlier event failed transiently
        for event in events:
            device = event.get("device_id") if isinstance(event, dict) else None
            uid = event.get("event_uid") if isinstance(event, dict) else None
            result = {"event_uid": uid if isinstance(uid, str) else ""}
            hashable_device = device if isinstance(device, str) else repr(device)
            if hashable_device in held:
                result.update(
                    status="error",
                    error={"name": "Skipped", "message": "an earlier event of this device failed"},
                )
                results.append(result)
                continue
            try:
                with self.env.cr.savepoint():
                    reply = self._process_bridge_event(event)
            except ValidationError as err:
                result.update(status="error", error={"name": _error_name(err), "message": str(err)})
            except Exception as err:  # transient for the bridge: answered, never raised
                _logger.warning("iot_event_batch transient failure: %s", err)
                held.add(hashable_device)
                result.update(status="error", error={"name": _error_name(err), "message": str(err)})
            else:
                result["status"] = "duplicate" if reply["duplicate"] else "ok"
            results.append(result)
        return {"results": results}

    def _apply(self, parsed, device):
        """Turn the stored event into session records and the machine's live state."""
        self.ensure_one()
        session = self.env["mqtt.session"]
        if parsed.is_session_event:
            session = session._apply_bridge_event(parsed, device)
            self.session_id = session
        if device:
            device._apply_bridge_event(parsed, session)

    @api.model
    def _cron_prune_events(self):
        """Scheduled action: delete events received longer ago than the retention (days)."""
        params = self.env["ir.config_parameter"].sudo()
        try:
            days = int(params.get_param(PARAM_RETENTION_DAYS, DEFAULT_RETENTION_DAYS))
        except ValueError:
            days = DEFAULT_RETENTION_DAYS
        if days <= 0:
            return
        limit = fields.Datetime.now() - timedelta(days=days)
        domain = [("create_date", "<", limit)]
        events = self.sudo().search(domain, limit=PRUNE_BATCH, order="id")
        events.unlink()
        remaining = self.sudo().search_count(domain)
        _logger.info("prune_events deleted=%s remaining=%s", len(events), remaining)
        self.env["ir.cron"]._notify_progress(done=len(events), remaining=remaining)
