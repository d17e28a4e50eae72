# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import http
from odoo.exceptions import AccessError
from odoo.http import request

BRIDGE_GROUP = "open_workshop_mqtt.group_iot_bridge"
EVENT_ROUTE = "/ows/iot/event"


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
        if not request.env.user.has_group(BRIDGE_GROUP):
            # Transient for the bridge (not a ValidationError): fixing the user's groups heals it.
            raise AccessError(request.env._("Only the IoT bridge's user may post IoT events."))
        return request.env["mqtt.event"]._process_bridge_event(event)
