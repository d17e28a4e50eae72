# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from datetime import timedelta

from odoo import api, fields, models
from odoo.tools import mute_logger
from psycopg2 import errors as pg_errors

from ..bridge.events import CLOSING_TYPES


class SessionConflictError(Exception):
    """Two deliveries created the same session at once; the later one is retried.

    Not a ValidationError on purpose: the bridge retries anything else, and
    the retry finds the session the other delivery committed.
    """


class MqttSession(models.Model):
    """One use of a machine, from the bridge's session events (CONTRACT section 6).

    Totals are absolute values from the last event (a re-sent heartbeat
    changes nothing); the stop or timeout writes the final figures; a closed
    session is never reopened.
    """

    _name = "mqtt.session"
    _description = "Machine Usage Session"
    _order = "started_at desc, id desc"

    device_id = fields.Many2one(
        "mqtt.device", string="Machine", index=True, ondelete="set null", readonly=True
    )
    device_ident = fields.Char(
        string="Device ID", index=True, readonly=True, help="The bridge's device_id, as received."
    )
    machine_name = fields.Char(readonly=True)
    company_id = fields.Many2one("res.company", index=True, readonly=True)
    session_uuid = fields.Char(
        string="Session UUID", required=True, index=True, readonly=True, copy=False
    )
    status = fields.Selection(
        [("running", "Running"), ("stopped", "Stopped"), ("timeout", "Timed Out")],
        required=True,
        default="running",
        readonly=True,
        index=True,
    )
    machine_state = fields.Selection(
        [
            ("idle", "Idle"),
            ("starting", "Starting"),
            ("standby", "Standby"),
            ("working", "Working"),
            ("stopping", "Stopping"),
        ],
        readonly=True,
        help="The machine's state at the last event of a running session.",
    )
    started_at = fields.Datetime(readonly=True, index=True)
    ended_at = fields.Datetime(readonly=True)
    duration_s = fields.Float(string="Duration (s)", readonly=True)
    working_s = fields.Float(string="Working (s)", readonly=True)
    standby_s = fields.Float(string="Standby (s)", readonly=True)
    energy_wh = fields.Float(string="Energy (Wh)", readonly=True)
    avg_power_w = fields.Float(string="Average Power (W)", readonly=True, aggregator="avg")
    peak_power_w = fields.Float(string="Peak Power (W)", readonly=True, aggregator="max")
    power_w = fields.Float(string="Last Power (W)", readonly=True, aggregator="avg")
    end_reason = fields.Selection(
        [("power_off", "Power Off"), ("timeout", "Timeout"), ("device_removed", "Device Removed")],
        readonly=True,
    )
    duration_h = fields.Float(
        string="Duration (h)", compute="_compute_hours", store=True, aggregator="sum"
    )
    working_h = fields.Float(
        string="Working Hours", compute="_compute_hours", store=True, aggregator="sum"
    )
    standby_h = fields.Float(
        string="Standby Hours", compute="_compute_hours", store=True, aggregator="sum"
    )
    energy_kwh = fields.Float(
        string="Energy (kWh)", compute="_compute_hours", store=True, aggregator="sum"
    )
    last_stamp = fields.Char(
        readonly=True,
        copy=False,
        help="Technical: UTC time of the event that wrote the totals, to the microsecond.",
    )

    _sql_constraints = [
        ("session_uuid_unique", "unique(session_uuid)", "A session is stored once."),
    ]

    @api.depends("duration_s", "working_s", "standby_s", "energy_wh")
    def _compute_hours(self):
        for session in self:
            session.duration_h = session.duration_s / 3600.0
            session.working_h = session.working_s / 3600.0
            session.standby_h = session.standby_s / 3600.0
            session.energy_kwh = session.energy_wh / 1000.0

    @api.depends("machine_name", "device_id", "started_at")
    def _compute_display_name(self):
        for session in self:
            machine = session.device_id.name or session.machine_name or session.device_ident
            started = (
                fields.Datetime.to_string(
                    fields.Datetime.context_timestamp(session, session.started_at)
                )
                if session.started_at
                else ""
            )
            session.display_name = f"{machine} {started}".strip()

    @api.model
    def _apply_bridge_event(self, event, device):
        """Create or update the session of a session_* ``BridgeEvent``; return it."""
        data = event.data
        session = self.search([("session_uuid", "=", event.session_uuid)], limit=1)
        if not session:
            session = self._create_from_event(event, device)
        if event.event_type in CLOSING_TYPES:
            # The final figures replace whatever the heartbeats wrote, even on a re-send.
            session.write(
                {
                    "status": "timeout" if event.event_type == "session_timeout" else "stopped",
                    "started_at": data["started_at"],
                    "ended_at": data["ended_at"],
                    "duration_s": data["duration_s"],
                    "working_s": data["working_s"],
                    "standby_s": data["standby_s"],
                    "avg_power_w": data.get("avg_power_w", 0.0),
                    "peak_power_w": data.get("peak_power_w", session.peak_power_w),
                    "energy_wh": data.get("energy_wh", session.energy_wh),
                    "end_reason": data["reason"],
                    "machine_state": False,
                    "power_w": 0.0,
                    "last_stamp": event.stamp,
                }
            )
            return session
        newer = not session.last_stamp or event.stamp >= session.last_stamp
        values = {}
        if event.event_type == "session_started":
            values["started_at"] = data["started_at"]
        if session.status == "running" and newer:
            values["last_stamp"] = event.stamp
            if "state" in data:
                values["machine_state"] = data["state"]
            if "power_w" in data:
                values["power_w"] = data["power_w"]
                values["peak_power_w"] = max(session.peak_power_w, data["power_w"])
            if event.event_type == "session_heartbeat":
                # absolute totals: a re-sent heartbeat writes the same values again
                values.update(
                    duration_s=data["session_duration_s"],
                    working_s=data["session_working_s"],
                    standby_s=data["session_standby_s"],
                )
                if "session_energy_wh" in data:
                    values["energy_wh"] = data["session_energy_wh"]
        elif session.status != "running" and session.started_at and "started_at" in values:
            # a late start of a closed session fills in only what is missing
            del values["started_at"]
        if values:
            session.write(values)
        return session

    @api.model
    def _create_from_event(self, event, device):
        data = event.data
        started_at = data.get("started_at") or (
            event.at - timedelta(seconds=data.get("session_duration_s", 0.0))
        )
        values = {
            "session_uuid": event.session_uuid,
            "device_id": device.id,
            "device_ident": event.device_ident,
            "machine_name": event.machine_name or device.name,
            "company_id": device.company_id.id,
            "started_at": started_at,
        }
        try:
            with mute_logger("odoo.sql_db"), self.env.cr.savepoint():
                return self.create(values)
        except pg_errors.UniqueViolation:
            raise SessionConflictError(
                self.env._(
                    "Session %s is being created by another delivery; retry.", event.session_uuid
                )
            ) from None
