"""Where ``adapters/odoo.py`` finds the HTTP/1.1 client, which now lives in ``net/http1.py``.

Kept only until odoo.py imports ``iot_bridge.net.http1`` itself (odoo.py is being
changed on another branch; this file goes once that is merged).
"""

from iot_bridge.net.http1 import (
    MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
    HttpProtocolError,
    StaleConnectionError,
    exchange,
    request_head,
)

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_HEAD_BYTES",
    "HttpProtocolError",
    "StaleConnectionError",
    "exchange",
    "request_head",
]
