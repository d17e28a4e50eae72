"""Sends one event to Odoo's ``/ows/iot/event`` route and classifies the reply (CONTRACT §6).

Two request formats (``odoo.request_format``) here; the third, ``batch``
(several events a call to ``/ows/iot/events``), is ``adapters/odoo_batch.py``'s
``OdooBatchSender``, built on this class:

- ``jsonrpc`` (default, a ``type="json"`` route): the body is the JSON-RPC 2.0
  call ``{"jsonrpc": "2.0", "method": "call", "id": <event_uid>, "params":
  {"event": EVENT}}``; success is HTTP 200 whose body carries ``result`` and
  no ``error``.
- ``json`` (a ``type="http"`` route reading the raw body): the body is the
  EVENT object alone; success is any HTTP 2xx.

Permanent (the event goes dead): HTTP 400, 409, 413, 415, 422, and a JSON-RPC
``error`` whose ``data.name`` ends in ``ValidationError`` or ``UserError``.
Everything else is transient and retried. Of those, the failures of Odoo as a
whole are marked ``endpoint`` (no answer: refused, timeout, a cut connection;
or 5xx, 401/403/404, 408, 429; or a JSON-RPC ``error`` named
``werkzeug.exceptions.Unauthorized`` or ``Forbidden``, which is how Odoo 18
answers a wrong bearer key on a ``type="json"`` route: HTTP 200, not 401): the
delivery worker then stops every device and probes. Other 2xx/3xx/4xx, other
JSON-RPC errors and bodies that are not JSON-RPC are this event's own
transient failures.

HTTP/1.1 is spoken by ``net/http1.py`` over asyncio streams, on a few
keep-alive connections (one per concurrent send): httpx's (and h11's)
per-request machinery cost most of the CPU of a delivery
(benchmarks/RESULTS.md). Proxy
environment variables are not used; Odoo is reached directly.

The API key only ever goes into the ``Authorization`` header; it is scrubbed
from every error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import ssl
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import orjson

from iot_bridge.domain.events import EncodedEvent
from iot_bridge.errors import DeliveryError
from iot_bridge.net.http1 import (
    MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
    HttpProtocolError,
    StaleConnectionError,
    exchange,
    request_head,
)

EVENT_PATH = "/ows/iot/event"
PERMANENT_STATUSES = frozenset({400, 409, 413, 415, 422})
PERMANENT_ERROR_SUFFIXES = ("ValidationError", "UserError")
RETRY_AFTER_STATUSES = frozenset({429, 503})
# Answers about Odoo as a whole rather than about one event (see the module doc).
ENDPOINT_STATUSES = frozenset({401, 403, 404, 408, 429})
# JSON-RPC errors that are a 401/403 in Odoo's words (a wrong key): about Odoo as a whole.
ENDPOINT_ERROR_NAMES = frozenset(
    {"werkzeug.exceptions.Unauthorized", "werkzeug.exceptions.Forbidden"}
)
REQUEST_FORMATS = ("jsonrpc", "json")
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


class _Connection:
    """One keep-alive HTTP/1.1 connection."""

    __slots__ = ("reader", "used", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.used = False  # a reused connection may have been closed by the server meanwhile

    def close(self) -> None:
        self.writer.close()


class OdooSender:
    """POSTs events to Odoo over a few keep-alive HTTP/1.1 connections.

    One connection per concurrent ``send`` (reused); ``timeout_s`` bounds the
    connection set-up and, again, the whole exchange of one request.
    """

    path = EVENT_PATH
    request_formats: tuple[str, ...] = REQUEST_FORMATS
    max_reply_bytes = MAX_BODY_BYTES

    def __init__(
        self,
        *,
        base_url: str,
        database: str = "",
        api_key: str = "",
        timeout_s: float = 10.0,
        request_format: str = "jsonrpc",
    ) -> None:
        """Prepare the URL and headers; no connection is made until ``send``.

        Raises ``ValueError`` for a URL that is not http(s) with a host, or an
        unknown ``request_format``.
        """
        if request_format not in self.request_formats:
            raise ValueError(
                f"request_format must be one of {self.request_formats}, not {request_format!r}"
            )
        self.url = base_url.rstrip("/") + self.path
        self.database = database
        self.request_format = request_format
        self._api_key = api_key
        split = urlsplit(self.url)
        if split.scheme not in {"http", "https"} or not split.hostname:
            raise ValueError(f"not an http(s) URL with a host: {base_url!r}")
        self._host = split.hostname
        self._port = split.port or (443 if split.scheme == "https" else 80)
        self._tls = split.scheme == "https"
        query = [split.query] if split.query else []
        if database:
            query.append(urlencode({"db": database}))
        target = quote(split.path, safe="/%:@!$&'()*+,;=-._~") or "/"
        self._target = (target + ("?" + "&".join(query) if query else "")).encode("ascii")
        host_header = self._host.encode("idna") if not self._host.isascii() else self._host.encode()
        if ":" in self._host:  # an IPv6 literal
            host_header = b"[" + host_header + b"]"
        if split.port is not None:
            host_header += b":%d" % split.port
        headers = [
            (b"Host", host_header),
            (b"Content-Type", b"application/json"),
            (b"Accept", b"application/json"),
            (b"User-Agent", b"iot-bridge"),
        ]
        if api_key:
            headers.append((b"Authorization", f"Bearer {api_key}".encode()))
        self._head = request_head("POST", self._target, headers)  # ValueError for CR/LF
        self._timeout_s = timeout_s
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._ssl_context: ssl.SSLContext | None = None  # loaded once, shared by them

    def body(self, event: Mapping[str, Any]) -> bytes:
        """The request body for one EVENT object, in this sender's ``request_format``."""
        event_uid: Any
        if isinstance(event, EncodedEvent):
            event_json, event_uid = event.json, event.event_uid
        else:
            event_json, event_uid = orjson.dumps(dict(event)), event.get("event_uid")
        if self.request_format == "json":
            return event_json
        return (
            b'{"jsonrpc":"2.0","method":"call","id":'
            + orjson.dumps(event_uid)
            + b',"params":{"event":'
            + event_json
            + b"}}"
        )

    async def send(self, event: Mapping[str, Any]) -> None:
        """Deliver one EVENT object; returns on success.

        Raises ``DeliveryError`` with ``permanent``, ``endpoint`` and
        ``retry_after_s`` set per CONTRACT §6.
        """
        await self._post(self.body(event))

    async def _post(self, body: bytes) -> Any:
        """POST ``body``; the JSON-RPC ``result`` of a success (None with ``json``).

        Raises ``DeliveryError`` for every failure of the call (CONTRACT §6).
        """
        try:
            try:
                status, headers, content = await self._exchange(body)
            except StaleConnectionError:
                status, headers, content = await self._exchange(body)
        except StaleConnectionError as err:
            raise self._error("Odoo closed the connection without a reply", endpoint=True) from err
        except TimeoutError as err:
            raise self._error(
                f"timeout talking to Odoo (no full reply within {self._timeout_s:g} s)",
                endpoint=True,
            ) from err
        except HttpProtocolError as err:
            raise self._error(f"HTTP error talking to Odoo: {err}", endpoint=True) from err
        except ssl.SSLError as err:
            raise self._error(f"TLS error talking to Odoo: {err}", endpoint=True) from err
        except OSError as err:
            raise self._error(
                f"cannot connect to Odoo: {err.strerror or err}", endpoint=True
            ) from err
        return self._classify(status, headers, content)

    async def _exchange(self, body: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        """One request and its whole reply, on an idle connection or a new one."""
        conn = self._idle.pop() if self._idle else None
        async with asyncio.timeout(self._timeout_s):
            if conn is None:
                conn = await self._connect()
            reusable = False
            try:
                result, reusable = await self._roundtrip(conn, body)
            finally:
                if reusable:
                    conn.used = True
                    self._idle.append(conn)
                else:
                    self._open.discard(conn)
                    conn.close()
        return result

    async def _connect(self) -> _Connection:
        ssl_context: ssl.SSLContext | None = None
        if self._tls:
            if self._ssl_context is None:
                self._ssl_context = ssl.create_default_context()
            ssl_context = self._ssl_context
        reader, writer = await asyncio.open_connection(
            self._host,
            self._port,
            ssl=ssl_context,
            server_hostname=self._host if ssl_context else None,
            limit=MAX_HEAD_BYTES,
        )
        conn = _Connection(reader, writer)
        self._open.add(conn)
        return conn

    async def _roundtrip(
        self, conn: _Connection, body: bytes
    ) -> tuple[tuple[int, dict[bytes, bytes], bytes], bool]:
        reply = await exchange(
            conn.reader,
            conn.writer,
            self._head,
            body,
            reused=conn.used,
            max_body_bytes=self.max_reply_bytes,
        )
        return (reply.status, reply.headers, reply.body), reply.keep_alive

    def _classify(self, status: int, headers: dict[bytes, bytes], content: bytes) -> Any:
        if self.request_format == "json" and 200 <= status < 300:
            return None
        if status != 200:
            retry_after = None
            if status in RETRY_AFTER_STATUSES:
                value = headers.get(b"retry-after")
                retry_after = parse_retry_after(value.decode("latin-1") if value else None)
            raise self._error(
                f"HTTP {status} from Odoo: {_snippet(_text(content))}",
                permanent=status in PERMANENT_STATUSES,
                retry_after_s=retry_after,
                endpoint=status >= 500 or status in ENDPOINT_STATUSES,
            )
        try:
            reply = orjson.loads(content)
        except orjson.JSONDecodeError as err:
            raise self._error(
                f"HTTP 200 from Odoo without JSON: {_snippet(_text(content))}"
            ) from err
        if not isinstance(reply, dict):
            raise self._error(
                f"HTTP 200 from Odoo, not a JSON-RPC reply: {_snippet(_text(content))}"
            )
        error = reply.get("error")
        if error is not None:
            name, message = _rpc_error_parts(error)
            raise self._error(
                f"Odoo error {name or 'unknown'}: {message}",
                permanent=bool(name) and name.endswith(PERMANENT_ERROR_SUFFIXES),
                endpoint=name in ENDPOINT_ERROR_NAMES,
            )
        if "result" not in reply:
            raise self._error(f"HTTP 200 from Odoo without result: {_snippet(_text(content))}")
        return reply["result"]

    def _error(
        self,
        message: str,
        *,
        permanent: bool = False,
        retry_after_s: float | None = None,
        endpoint: bool = False,
    ) -> DeliveryError:
        return DeliveryError(
            self._scrub(message),
            permanent=permanent,
            retry_after_s=retry_after_s,
            endpoint=endpoint,
        )

    def _scrub(self, message: str) -> str:
        """``message`` without the API key (raw or escaped) in it."""
        if self._api_key:
            for form in (self._api_key, repr(self._api_key)[1:-1]):
                message = message.replace(form, "***")
        return message

    @property
    def connections_open(self) -> int:
        """Connections this sender holds open (idle or in use)."""
        return len(self._open)

    async def aclose(self) -> None:
        """Close every connection this sender opened."""
        connections, self._open, self._idle = list(self._open), set(), []
        for conn in connections:
            conn.close()
        for conn in connections:
            with contextlib.suppress(OSError, ssl.SSLError):  # already broken: nothing to close
                await conn.writer.wait_closed()


def _text(content: bytes) -> str:
    return content.decode("utf-8", errors="replace")


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
