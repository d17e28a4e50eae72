"""Sends one event to Odoo's ``/ows/iot/event`` route and classifies the reply (CONTRACT §6).

Success: HTTP 200 whose JSON-RPC body carries ``result`` and no ``error``.
Permanent (the event goes dead): HTTP 400, 409, 413, 415, 422, and a JSON-RPC
``error`` whose ``data.name`` ends in ``ValidationError`` or ``UserError``.
Everything else is transient and retried: 5xx, 401/403/404, 408, 429 (with
``Retry-After``), other 2xx/3xx/4xx, other JSON-RPC errors, bodies that are
not JSON-RPC, timeouts and refused connections.

The API key only ever goes into the ``Authorization`` header; it is scrubbed
from every error message.
"""

from __future__ import annotations

import asyncio
import email.utils
import ssl
import time
from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from iot_bridge.errors import DeliveryError

EVENT_PATH = "/ows/iot/event"
PERMANENT_STATUSES = frozenset({400, 409, 413, 415, 422})
PERMANENT_ERROR_SUFFIXES = ("ValidationError", "UserError")
RETRY_AFTER_STATUSES = frozenset({429, 503})
MAX_RETRY_AFTER_S = 3600.0
_SNIPPET_CHARS = 200


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date).

    Returns None when absent or unreadable; never negative; at most one hour,
    so a garbled header cannot park the outbox for days.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():  # "²".isdigit() is True too
        return min(float(text), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        return None
    current = time.time() if now is None else now
    return min(max(0.0, when.timestamp() - current), MAX_RETRY_AFTER_S)


class OdooSender:
    """POSTs events to Odoo as JSON-RPC 2.0 calls over one keep-alive connection pool.

    Pass ``client`` to share an ``httpx.AsyncClient`` (then ``aclose`` leaves it
    open); otherwise the sender opens its own keep-alive connections, one per
    concurrent send, with ``timeout_s`` for every phase.
    """

    def __init__(
        self,
        *,
        base_url: str,
        database: str = "",
        api_key: str = "",
        timeout_s: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        """Prepare the URL and headers; no connection is made until ``send``."""
        self.url = base_url.rstrip("/") + EVENT_PATH
        self.database = database
        self._api_key = api_key
        # URL and headers are built once: per-request merging is a good part of
        # httpx's cost at a thousand events a second.
        try:
            self._target = httpx.URL(self.url, params={"db": database} if database else None)
        except httpx.InvalidURL as err:
            raise ValueError(f"invalid Odoo URL {self.url!r}: {err}") from err
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._shared = client
        self._headers = headers
        self._timeout = httpx.Timeout(timeout_s)
        self._request_deadline_s = 3 * timeout_s
        # Without a shared client: one single-connection client per concurrent
        # send, reused (keep-alive). httpcore scans every pooled connection on
        # each request, so small pools cost less CPU than one pool of many.
        self._idle: list[httpx.AsyncClient] = []
        self._all: list[httpx.AsyncClient] = []
        self._ssl_context: ssl.SSLContext | None = None  # loaded once, shared by them

    def _take_client(self) -> httpx.AsyncClient:
        if self._shared is not None:
            return self._shared
        if self._idle:
            return self._idle.pop()
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        client = httpx.AsyncClient(
            verify=self._ssl_context,
            headers=self._headers,
            timeout=self._timeout,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            follow_redirects=False,
        )
        self._all.append(client)
        return client

    def _give_back(self, client: httpx.AsyncClient) -> None:
        if client is not self._shared:
            self._idle.append(client)

    async def send(self, event: Mapping[str, Any]) -> None:
        """Deliver one EVENT object; returns on success.

        Raises ``DeliveryError`` with ``permanent`` and ``retry_after_s`` set
        per CONTRACT §6.
        """
        event_uid = event.get("event_uid")
        body = orjson.dumps(
            {"jsonrpc": "2.0", "method": "call", "id": event_uid, "params": {"event": event}}
        )
        client = self._take_client()
        headers = self._headers if client is self._shared else None
        try:
            # httpx times each read; a reply trickling in must not hold the device's lane.
            async with asyncio.timeout(self._request_deadline_s):
                response = await client.post(self._target, content=body, headers=headers)
        except TimeoutError as err:
            raise self._error(
                f"timeout talking to Odoo (no full reply within {self._request_deadline_s:g} s)"
            ) from err
        except httpx.TimeoutException as err:
            raise self._error(f"timeout talking to Odoo ({type(err).__name__})") from err
        except httpx.ConnectError as err:
            raise self._error(f"cannot connect to Odoo: {err}") from err
        except httpx.LocalProtocolError as err:
            # Its text can quote our own request headers, the API key included.
            raise self._error(f"could not send the request to Odoo ({type(err).__name__})") from err
        except httpx.HTTPError as err:  # remote protocol errors, closed connections, bad URLs
            raise self._error(f"HTTP error talking to Odoo: {type(err).__name__}: {err}") from err
        finally:
            self._give_back(client)
        self._classify(response)

    def _classify(self, response: httpx.Response) -> None:
        status = response.status_code
        if status != 200:
            retry_after = None
            if status in RETRY_AFTER_STATUSES:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise self._error(
                f"HTTP {status} from Odoo: {_snippet(response.text)}",
                permanent=status in PERMANENT_STATUSES,
                retry_after_s=retry_after,
            )
        try:
            reply = orjson.loads(response.content)
        except orjson.JSONDecodeError as err:
            raise self._error(
                f"HTTP 200 from Odoo without JSON: {_snippet(response.text)}"
            ) from err
        if not isinstance(reply, dict):
            raise self._error(
                f"HTTP 200 from Odoo, not a JSON-RPC reply: {_snippet(response.text)}"
            )
        error = reply.get("error")
        if error is not None:
            name, message = _rpc_error_parts(error)
            raise self._error(
                f"Odoo error {name or 'unknown'}: {message}",
                permanent=bool(name) and name.endswith(PERMANENT_ERROR_SUFFIXES),
            )
        if "result" not in reply:
            raise self._error(f"HTTP 200 from Odoo without result: {_snippet(response.text)}")

    def _error(
        self, message: str, *, permanent: bool = False, retry_after_s: float | None = None
    ) -> DeliveryError:
        if self._api_key:
            for form in (self._api_key, repr(self._api_key)[1:-1]):  # raw and escaped
                message = message.replace(form, "***")
        return DeliveryError(message, permanent=permanent, retry_after_s=retry_after_s)

    async def aclose(self) -> None:
        """Close the connections this sender opened (a shared client stays open)."""
        clients, self._all, self._idle = self._all, [], []
        for client in clients:
            await client.aclose()


def _rpc_error_parts(error: Any) -> tuple[str, str]:
    """(data.name, a short message) of a JSON-RPC error object, tolerant of odd shapes."""
    if not isinstance(error, dict):
        return "", _snippet(str(error))
    data = error.get("data")
    name = data.get("name") if isinstance(data, dict) else None
    message = data.get("message") if isinstance(data, dict) else None
    message = message or error.get("message") or ""
    return (name if isinstance(name, str) else ""), _snippet(str(message))


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SNIPPET_CHARS else text[:_SNIPPET_CHARS] + "..."
