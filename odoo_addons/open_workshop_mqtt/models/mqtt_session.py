# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models
from odoo.tools import mute_logger
from psycopg2 import errors as pg_errors

from ..bridge.effects import SESSION_FIELDS, session_started_at


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
    def _for_bridge_events(self, events, devices):
        """The sessions that ``events`` (checked events) name, by ``session_uuid``.

        ``devices``: each event's machine by its ``device_id`` (an empty record
        for a machine Odoo does not know). Each session is a dict of its values
        (``bridge.effects.SESSION_FIELDS``, ``session_uuid``) with the record under
        ``record``; the machines' current sessions are among them. A session not
        stored yet is created from the first of the events that names it: a stop
        or a heartbeat whose start never arrived makes the session too.
        """
        uuids = [event.session_uuid for event in events if event.is_session_event]
        uuids = list(dict.fromkeys(uuids))
        current = self.browse()
        for device in devices.values():
            current |= device.current_session_id
        if not uuids and not current:
            return {}
        domain = [("session_uuid", "in", uuids)]
        if current:
            domain = ["|", ("id", "in", current.ids), *domain]
        records = self.search_fetch(domain, ["session_uuid", *SESSION_FIELDS])
        known = set(records.mapped("session_uuid"))
        firsts = {}
        for event in events:
            if event.is_session_event and event.session_uuid not in known:
                firsts.setdefault(event.session_uuid, event)
        if firsts:
            records |= self._create_from_events(list(firsts.values()), devices)
        sessions = {}
        for record in records:
            values = {name: record[name] for name in SESSION_FIELDS}
            values.update(session_uuid=record.session_uuid, record=record)
            sessions[record.session_uuid] = values
        return sessions

    @api.model
    def _create_from_events(self, events, devices):
        values = []
        for event in events:
            device = devices[event.device_ident]
            values.append(
                {
                    "session_uuid": event.session_uuid,
                    "device_id": device.id,
                    "device_ident": event.device_ident,
                    "machine_name": event.machine_name or device.name,
                    "company_id": device.company_id.id,
                    "started_at": session_started_at(event),
                }
            )
        try:
            with mute_logger("odoo.sql_db"):
                return self.create(values)
        except pg_errors.UniqueViolation:
            raise SessionConflictError(
                self.env._(
                    "Session %s is being created by another delivery; retry.",
                    ", ".join(event.session_uuid for event in events),
                )
            ) from None
