# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import http
from odoo.exceptions import AccessError
from odoo.http import request

BRIDGE_GROUP = "open_workshop_mqtt.group_iot_bridge"
EVENT_ROUTE = "/ows/iot/event"
BATCH_ROUTE = "/ows/iot/events"


class IotEventController(http.Controller):
    """The bridge's event delivery (CONTRACT sections 6 and 9).

    Thin on purpose: the bearer API key authenticates the user, the group
    check keeps every other user out, and ``mqtt.event._process_bridge_event``
    does the rest (it validates the event and answers duplicates).
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
        """Up to 500 events a call (``request_format: batch``); one result each, in order."""
        self._check_bridge_user()
        return request.env["mqtt.event"].sudo()._process_bridge_events(events)

    def _check_bridge_user(self):
        if not request.env.user.has_group(BRIDGE_GROUP):
            # Transient for the bridge (not a ValidationError): fixing the user's groups heals it.
            raise AccessError(request.env._("Only the IoT bridge's user may post IoT events."))
