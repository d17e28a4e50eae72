# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import json

from odoo import http
from odoo.exceptions import AccessError
from odoo.http import request
from werkzeug.exceptions import abort

from ..models.mqtt_event import MAX_BATCH_EVENTS

BRIDGE_GROUP = "open_workshop_mqtt.group_iot_bridge"
EVENT_ROUTE = "/ows/iot/event"
BATCH_ROUTE = "/ows/iot/events"
MAX_BATCH_BYTES = 1024 * 1024  # CONTRACT section 6: 1 MiB of body a call


class IotEventController(http.Controller):
    """The bridge's event delivery (CONTRACT sections 6 and 9).

    Thin on purpose: the bearer API key authenticates the user, the group
    check keeps every other user out, and ``mqtt.event._process_bridge_event``
    (or ``_process_bridge_events``) does the rest (it validates the events and
    answers duplicates).
    """

    @http.route(
        EVENT_ROUTE,
        type="json",
        auth="bearer",
        methods=["POST"],
        csrf=False,
        save_session=False,
    )
    def iot_event(self, event=None, **_params):
        """One event a call; ``params.event`` of the JSON-RPC body."""
        self._check_bridge_user()
        return request.env["mqtt.event"]._process_bridge_event(event)

    @http.route(
        BATCH_ROUTE,
        type="json",
        auth="bearer",
        methods=["POST"],
        csrf=False,
        save_session=False,
    )
    def iot_events(self, events=None, **_params):
        """Up to 500 events a call (``request_format: batch``); one result each, in order.

        A call the bridge must not send is refused as a whole before any event
        is looked at, with a real HTTP status (permanent for the bridge, which
        then sends the events one a call): 400 when ``params.events`` is not a
        list, 413 for more than 500 events or, with more than one event, a
        body over 1 MiB (a single event goes through whatever its size, as on
        ``/ows/iot/event``).
        """
        self._check_bridge_user()
        if not isinstance(events, list):
            self._refuse_call(
                400, "BadRequest", "params.events must be a list of events (CONTRACT section 6)"
            )
        if len(events) > MAX_BATCH_EVENTS:
            self._refuse_call(
                413,
                "RequestEntityTooLarge",
                f"{len(events)} events in one call: at most {MAX_BATCH_EVENTS}",
            )
        size = len(request.httprequest.get_data())  # read once already, for the JSON
        if len(events) > 1 and size > MAX_BATCH_BYTES:
            self._refuse_call(
                413,
                "RequestEntityTooLarge",
                f"a body of {size} bytes with {len(events)} events: at most "
                f"{MAX_BATCH_BYTES} bytes a call",
            )
        return request.env["mqtt.event"].sudo()._process_bridge_events(events)

    def _check_bridge_user(self):
        if not request.env.user.has_group(BRIDGE_GROUP):
            # Transient for the bridge (not a ValidationError): fixing the user's groups heals it.
            raise AccessError(request.env._("Only the IoT bridge's user may post IoT events."))

    def _refuse_call(self, status, name, message):
        """Answer the whole call with HTTP ``status`` and a JSON-RPC error naming why.

        ``abort`` with a response bypasses Odoo's JSON-RPC error handling (which
        answers HTTP 200): the status is what tells the bridge the call is
        refused for good. Nothing was written; the transaction is rolled back.
        """
        body = {
            "jsonrpc": "2.0",
            "id": getattr(request.dispatcher, "request_id", None),
            "error": {
                "code": status,
                "message": message,
                "data": {"name": f"werkzeug.exceptions.{name}", "message": message},
            },
        }
        abort(
            request.make_response(
                json.dumps(body), headers=[("Content-Type", "application/json")], status=status
            )
        )
