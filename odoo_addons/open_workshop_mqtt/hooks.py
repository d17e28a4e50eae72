# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Let the bridge name the database with ``?db=`` on the event route.

Odoo picks the database of a request without a session cookie from its
db filter only: with several databases and no filter, ``/ows/iot/event``
would answer 404 however the bridge sets ``odoo.database``. The bridge adds
``?db=<database>`` to its URL, and this hook, for the event route only,
takes that database when the request has none and the db filter allows it
for the host (so a filter still rules). Like OCA's queue_job, the hook must
be in place before the first request picks a database: it is, when the
module is loaded server wide (``--load=base,web,open_workshop_mqtt``) or
when the server starts with ``-d``/``db_name`` naming a database that has the
module installed (its registry is loaded at start-up).
"""

import logging

from odoo import http

_logger = logging.getLogger(__name__)

DB_ROUTES = ("/ows/iot/event", "/ows/iot/events")


def post_load():
    """Patch ``http.Request._get_session_and_dbname`` once per process."""
    original = http.Request._get_session_and_dbname
    if getattr(original, "_open_workshop_mqtt", False):
        return

    def _get_session_and_dbname(self):
        session, dbname = original(self)
        wanted = self.httprequest.args.get("db")
        if dbname or not wanted or self.httprequest.path not in DB_ROUTES:
            return session, dbname
        host = self.httprequest.environ.get("HTTP_HOST")
        if wanted in http.db_list(force=True, host=host):
            session.db = wanted
            return session, wanted
        return session, dbname

    _get_session_and_dbname._open_workshop_mqtt = True
    http.Request._get_session_and_dbname = _get_session_and_dbname
    _logger.debug("open_workshop_mqtt: ?db= honoured on %s", ", ".join(DB_ROUTES))
