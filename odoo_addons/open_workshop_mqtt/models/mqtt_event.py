# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import json
import logging
from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError
from odoo.tools import mute_logger
from psycopg2 import errors as pg_errors

from ..bridge.effects import LIVE_FIELDS, live_changes, session_changes
from ..bridge.events import EVENT_TYPES, EventError, parse_event
from .mqtt_bridge import PARAM_RETENTION_DAYS

_logger = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 90
PRUNE_BATCH = 10_000
MAX_BATCH_EVENTS = 500
DEVICE_FIELDS = ["name", "company_id", *LIVE_FIELDS]


def _error_name(error):
    return f"{type(error).__module__}.{type(error).__qualname__}"


def _set_error(result, error):
    result.update(status="error", error={"name": _error_name(error), "message": str(error)})


def _shared_sessions(groups):
    """True when one session_uuid comes with the events of two machines."""
    owners = {}
    for group in groups:
        for _index, parsed in group:
            if parsed.is_session_event:
                owner = owners.setdefault(parsed.session_uuid, parsed.device_ident)
                if owner != parsed.device_ident:
                    return True
    return False


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
        parsed = self._parse_bridge_event(event)
        reply = {"status": "ok", "event_uid": parsed.uid, "duplicate": True}
        try:
            # A copy delivered concurrently (the bridge re-sends after a timeout)
            # waits on the unique index and fails the insert once the first commits.
            with self.env.cr.savepoint():
                (stored,) = self.sudo()._store_events([parsed])
        except pg_errors.UniqueViolation:
            return reply
        reply["duplicate"] = not stored
        return reply

    @api.model
    def _parse_bridge_event(self, event):
        try:
            return parse_event(event)
        except EventError as err:
            raise ValidationError(self.env._("Invalid IoT bridge event: %s", err)) from None

    @api.model
    def _process_bridge_events(self, events):
        """A batch of EVENTs (CONTRACT section 6, ``request_format: batch``), in order.

        Each event is answered ``ok``, ``duplicate`` or ``error``. A
        ValidationError concerns that event only (the bridge makes it dead);
        any other failure is transient, and the same device's later events
        in the batch are left unprocessed (``Skipped``) so that each device's
        order holds.

        Fast on purpose (the bridge drains a backlog this way): the events are
        checked first, then all of them are stored and applied together in one
        savepoint (``_store_events``: the records read once, the events
        inserted in one statement, each session and machine written once).
        Only when that fails is it done again machine by machine, each in a
        savepoint, and for a machine whose savepoint fails too, one event at a
        time, each in a savepoint of its own: one bad event rolls back nothing
        but itself, and answers for itself.
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
        checked = []  # (index, parsed event), in the call's order
        for index, event in enumerate(events):
            uid = event.get("event_uid") if isinstance(event, dict) else None
            results.append({"event_uid": uid if isinstance(uid, str) else ""})
            try:
                checked.append((index, self._parse_bridge_event(event)))
            except ValidationError as err:
                _set_error(results[index], err)
        machines = {}  # device_id -> [(index, parsed event)], in order
        for item in checked:
            machines.setdefault(item[1].device_ident, []).append(item)
        groups = [checked] if len(machines) > 1 else []
        groups += list(machines.values())
        if _shared_sessions(machines.values()):
            # Two machines' events name one session: only the call's own order is right.
            groups = [[item] for item in checked]
        held = set()  # machines whose earlier event failed transiently
        done = set()  # indexes answered
        for group in groups:
            todo = [item for item in group if item[0] not in done]
            if not todo:
                continue
            if len(todo) == 1 or todo[0][1].device_ident in held:
                self._store_one_by_one(todo, results, held)
                done.update(index for index, _parsed in todo)
                continue
            try:
                with mute_logger("odoo.sql_db"), self.env.cr.savepoint():
                    stored = self._store_events([parsed for _index, parsed in todo])
            except Exception as err:  # smaller groups next: the answers say which event failed
                _logger.info("iot_event_batch events=%s again in parts after: %s", len(todo), err)
                if group is not checked:
                    self._store_one_by_one(todo, results, held)
                    done.update(index for index, _parsed in todo)
                continue
            for (index, _parsed), is_new in zip(todo, stored, strict=True):
                results[index]["status"] = "ok" if is_new else "duplicate"
                done.add(index)
        return {"results": results}

    @api.model
    def _store_one_by_one(self, group, results, held):
        """Each event of ``group`` in a savepoint of its own; its answer in ``results``."""
        for index, parsed in group:
            result = results[index]
            if parsed.device_ident in held:
                result.update(
                    status="error",
                    error={"name": "Skipped", "message": "an earlier event of this device failed"},
                )
                continue
            try:
                # A failure is answered and logged below: not as an ERROR (a lock timeout is
                # an everyday transient failure here).
                with mute_logger("odoo.sql_db"), self.env.cr.savepoint():
                    (stored,) = self._store_events([parsed])
            except pg_errors.UniqueViolation:
                result["status"] = "duplicate"  # stored meanwhile by a concurrent delivery
            except (ValidationError, UserError) as err:
                _set_error(result, err)
            except Exception as err:  # transient for the bridge: answered, never raised
                _logger.warning("iot_event_batch transient failure: %s", err)
                held.add(parsed.device_ident)
                _set_error(result, err)
            else:
                result["status"] = "ok" if stored else "duplicate"

    @api.model
    def _store_events(self, parsed_events):
        """Store and apply checked events in order; True for each one stored.

        An event already stored (or earlier in the list) is a duplicate: False,
        and it changes nothing. The events stored before, the machines and the
        sessions are read with one query each, the new events inserted in one
        statement, and each session and machine written once, with the values
        the rules of ``bridge.effects`` give after all the events in turn.

        Raises ``UniqueViolation`` when a concurrent delivery stored one of the
        events first, and ``SessionConflictError`` when it created one of the
        sessions first: the caller's savepoint rolls everything back then. A
        single event is inserted before its session is looked up, so that a
        concurrent copy of it waits on the event's unique index and is found
        a duplicate; several events are inserted after their sessions, with
        their session at once (no second write of each row).
        """
        uids = [parsed.uid for parsed in parsed_events]
        seen = set(
            self.search_fetch([("event_uid", "in", uids)], ["event_uid"]).mapped("event_uid")
        )
        stored = []
        new_events = []
        for parsed in parsed_events:
            stored.append(parsed.uid not in seen)
            if stored[-1]:
                new_events.append(parsed)
            seen.add(parsed.uid)
        if not new_events:
            return stored
        idents = list({parsed.device_ident: None for parsed in new_events})
        found = (
            self.env["mqtt.device"]
            .with_context(active_test=False)
            .search_fetch([("device_id", "in", idents)], DEVICE_FIELDS)
        )
        devices = dict.fromkeys(idents, found.browse())
        devices.update((device.device_id, device) for device in found)
        records = None
        if len(new_events) == 1:
            records = self._insert_bridge_events(new_events, devices, {})
        sessions = self.env["mqtt.session"]._for_bridge_events(new_events, devices)
        if records is None:
            records = self._insert_bridge_events(new_events, devices, sessions)
        elif new_events[0].is_session_event:
            records.session_id = sessions[new_events[0].session_uuid]["record"]
        self._apply_bridge_events(new_events, devices, sessions)
        return stored

    @api.model
    def _insert_bridge_events(self, parsed_events, devices, sessions):
        """The ``mqtt.event`` records of new events (one INSERT), linked to ``sessions``."""
        values = []
        for parsed in parsed_events:
            device = devices[parsed.device_ident]
            session = sessions.get(parsed.session_uuid)
            values.append(
                {
                    "event_uid": parsed.uid,
                    "event_type": parsed.event_type,
                    "device_ident": parsed.device_ident,
                    "machine_name": parsed.machine_name,
                    "device_id": device.id,
                    "session_id": session["record"].id if session else False,
                    "session_uuid": parsed.session_uuid,
                    "company_id": device.company_id.id,
                    "timestamp": parsed.at,
                    "payload": json.dumps(parsed.raw, ensure_ascii=False, sort_keys=True),
                }
            )
        with mute_logger("odoo.sql_db"):  # a concurrent copy's UniqueViolation is expected
            return self.create(values)

    @api.model
    def _apply_bridge_events(self, parsed_events, devices, sessions):
        """The events' effects on their sessions and machines, each record written once."""
        machines = {}  # device_id -> the machine's live values
        for ident, device in devices.items():
            if device:
                machines[ident] = {name: device[name] for name in LIVE_FIELDS}
                machines[ident]["current_session_id"] = (
                    device.current_session_id.session_uuid or False
                )
        session_changed = {}  # session_uuid -> names of the fields changed
        machine_changed = {}  # device_id -> names of the fields changed
        for parsed in parsed_events:
            session = None
            if parsed.is_session_event:
                session = sessions[parsed.session_uuid]
                changes = session_changes(parsed, session)
                session.update(changes)
                session_changed.setdefault(parsed.session_uuid, set()).update(changes)
            machine = machines.get(parsed.device_ident)
            if machine is not None:
                current = sessions.get(machine["current_session_id"])
                changes = live_changes(parsed, machine, session, current)
                machine.update(changes)
                machine_changed.setdefault(parsed.device_ident, set()).update(changes)
        for session_uuid, names in session_changed.items():
            if names:
                session = sessions[session_uuid]
                session["record"].write({name: session[name] for name in names})
        for ident, names in machine_changed.items():
            if names:
                machine = machines[ident]
                values = {name: machine[name] for name in names}
                if "current_session_id" in values:
                    current = sessions.get(values["current_session_id"])
                    values["current_session_id"] = current["record"].id if current else False
                devices[ident].with_context(tracking_disable=True).write(values)

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
