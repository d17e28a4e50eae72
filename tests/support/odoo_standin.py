"""A stand-in for Odoo's ``POST /ows/iot/event`` and ``/ows/iot/events`` routes (CONTRACT §6).

A real HTTP/1.1 server (keep-alive) on 127.0.0.1 in a background thread. It
speaks JSON-RPC 2.0 like an Odoo ``type="json"`` route, dedupes by
``event_uid`` and records what it received. Failure modes are switched with
``set_mode`` (for every request) or ``add_rule`` (for one event_uid or device,
optionally a number of times):

====================  ==========================================================
mode                  reply
====================  ==========================================================
``ok``                200 + ``result`` (the default)
``down``              503 HTML (``retry_after=`` adds a ``Retry-After`` header)
``refused``           stop listening and drop open connections; any other mode
                      listens again on the SAME port (``set_mode`` only)
``slow``              wait ``delay_s`` (default 30) then process normally, so a
                      client that timed out may still have been recorded
``rate_limited``      429 with ``Retry-After: <retry_after>`` (default "30";
                      seconds or an HTTP date)
``unauthorized``      401 whatever the key (as a wrong key gets)
``status``            ``status=`` with ``body=`` / ``content_type=`` / ``headers=``
``validation_error``  200 + JSON-RPC error ``odoo.exceptions.ValidationError``
``user_error``        200 + JSON-RPC error ``odoo.exceptions.UserError``
``rpc_error``         200 + JSON-RPC error named ``name=`` (default
                      ``odoo.exceptions.AccessError``: transient)
====================  ==========================================================

Whatever the mode, a configured ``database`` must match ``?db=`` (else 404,
as Odoo answers for an unknown database), a configured ``api_key`` must come
as ``Authorization: Bearer <key>`` (else 401), the body must be
``application/json`` (else 415) and a well-formed envelope with every EVENT
field (else 400, listed in ``invalid``).

``request_format="json"`` plays a ``type="http"`` controller instead: the body
must be the EVENT object alone, and a success is 200 with a small JSON body
(no JSON-RPC ``result``); the JSON-RPC error modes then answer 400 (a
``ValidationError`` / ``UserError`` raised in such a controller) or 500.

The batch route ``/ows/iot/events`` (``request_format: batch`` of the bridge;
served unless ``request_format="json"``) takes ``{"jsonrpc": "2.0", "method":
"call", "id": ..., "params": {"events": [EVENT, ...]}}`` and answers
``{"results": [{"event_uid", "status": "ok"|"duplicate"|"error", "error":
{"name", "message"}}, ...]}``, one per event in order, as §6 says:

- the whole call fails (as on the single route) in the global mode, or when a
  rule of mode ``down``, ``slow``, ``rate_limited``, ``unauthorized`` or
  ``status`` matches any event in it, or a rule made with ``whole_call=True``
  (a JSON-RPC error of the whole call, e.g. a ``ValidationError``);
- otherwise each event gets its own result: a ``validation_error`` /
  ``user_error`` / ``rpc_error`` rule matching it answers that error for the
  event alone; after a transient one (``rpc_error``) the device's later events
  in the call are answered ``Skipped``; a malformed event gets a
  ``ValidationError`` (and is listed in ``invalid``).
- A rule made with ``min_events=N`` matches only calls of at least N events
  (e.g. a 413 for batches, while calls of one event go through).
- More than 500 events, or more than 1 MiB of body with more than one event,
  is answered 413 and listed in ``invalid`` (the bridge must not send that).

Run alone for benchmarks: ``python3 -m tests.support.odoo_standin --port 8999``;
``GET /_standin/stats`` returns the counts as JSON, ``GET /_standin/arrivals``
every accepted event's ``[device_id, event_type, monotonic time]``, and
``POST /_standin/mode`` with ``{"mode": ..., **params}`` switches the mode.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import json
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

EVENT_PATH = "/ows/iot/event"
EVENTS_PATH = "/ows/iot/events"
MAX_BATCH_EVENTS = 500
MAX_BATCH_BYTES = 1024 * 1024
SKIPPED = "Skipped"
EARLY_MODES = frozenset({"down", "slow", "rate_limited", "unauthorized", "status"})
ERROR_NAMES = {
    "validation_error": "odoo.exceptions.ValidationError",
    "user_error": "odoo.exceptions.UserError",
}
EVENT_FIELDS = frozenset(
    {"event_uid", "event_type", "device_id", "machine_name", "session_id", "timestamp", "data"}
)
MODES = frozenset(
    {
        "ok",
        "down",
        "refused",
        "slow",
        "rate_limited",
        "unauthorized",
        "status",
        "validation_error",
        "user_error",
        "rpc_error",
    }
)


@dataclass
class Rule:
    """A failure for matching requests; ``times`` None = forever."""

    mode: str
    params: dict[str, Any]
    event_uid: str | None = None
    device_id: str | None = None
    times: int | None = None
    min_events: int = 1  # only calls carrying at least this many events
    whole_call: bool = False  # a JSON-RPC error mode failing a whole batch call

    def matches(self, event_uid: str | None, device_id: str | None, events: int = 1) -> bool:
        """Whether this rule applies to that event in a call of ``events`` events."""
        if self.times is not None and self.times <= 0:
            return False
        if events < self.min_events:
            return False
        if self.event_uid is not None and self.event_uid != event_uid:
            return False
        return self.device_id is None or self.device_id == device_id


@dataclass(frozen=True)
class RequestRecord:
    """One request that reached the route, and how it was answered."""

    event_uid: str | None
    device_id: str | None
    status: int
    outcome: str  # "accepted", "duplicate", "batch", or the failure mode / reason
    at: float = field(default_factory=time.monotonic)
    path: str = EVENT_PATH
    # A call to the batch route: (event_uid, device_id, result status) of each event,
    # or (..., "") when the call failed as a whole.
    batch: tuple[tuple[str | None, str | None, str], ...] = ()
    body_bytes: int = 0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog is 5: a sender opening 8 connections at once had
    # some SYNs dropped and retried a second later, as no real Odoo front would do.
    request_queue_size = 128
    standin: OdooStandin

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: connections cut by ``stop()`` are expected."""


_REASONS = {status.value: status.phrase for status in HTTPStatus}
_DATE: list[Any] = [0, ""]  # (second, its HTTP date): formatted once a second


def _http_date() -> str:
    second = int(time.time())
    if _DATE[0] != second:
        _DATE[:] = [second, email.utils.formatdate(second, usegmt=True)]
    return str(_DATE[1])


class _Headers(dict[str, str]):
    """Header fields by name, looked up case-insensitively (as ``email.message`` does)."""

    def __setitem__(self, name: str, value: str) -> None:
        super().__setitem__(name.lower(), value)

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    raw_requestline: bytes
    wbufsize = 65536  # one write per reply (with TCP_NODELAY: no 40 ms delayed-ACK stalls)
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.standin._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.standin._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the records, not the log."""

    def parse_request(self) -> bool:
        """A lean parse of ``METHOD target HTTP/1.x`` and its header lines.

        ``http.server``'s own parse (the ``email`` package's header parser)
        cost about half of the stand-in's CPU per request, and the benchmarks
        run the stand-in on the bridge's machine. Anything else (no version,
        an unusual version) takes the standard parse.
        """
        words = self.raw_requestline.split()
        if len(words) != 3 or words[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
            return super().parse_request()
        self.requestline = self.raw_requestline.decode("latin-1").rstrip("\r\n")
        self.command, self.path, self.request_version = (w.decode("latin-1") for w in words)
        headers = _Headers()
        while True:
            line = self.rfile.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
            if len(headers) > 100 or len(line) > 65536:
                self.send_error(431)
                return False
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip()] = value.strip()
        self.headers = headers  # type: ignore[assignment]
        connection = headers.get("Connection", "").lower()
        self.close_connection = connection == "close" or (
            self.request_version == "HTTP/1.0" and connection != "keep-alive"
        )
        return True

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/_standin/stats":
            self._reply(200, json.dumps(self.server.standin.stats()).encode(), "application/json")
        elif path == "/_standin/arrivals":
            arrivals = self.server.standin.arrivals()
            self._reply(200, json.dumps(arrivals).encode(), "application/json")
        else:
            self._reply(404, b"<html>404: Not Found</html>", "text/html")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if len(body) < length:  # the client died mid-request: nothing to answer
            self.close_connection = True
            return
        if urlsplit(self.path).path == "/_standin/mode":
            self._switch_mode(body)
            return
        status, payload, content_type, headers = self.server.standin._handle(
            self.path, dict(self.headers.items()), body
        )
        if status == 0:  # the stand-in is stopping: drop the connection
            self.close_connection = True
            return
        self._reply(status, payload, content_type, headers)

    def _switch_mode(self, body: bytes) -> None:
        """``POST /_standin/mode``: the benchmarks' remote control (not for ``refused``)."""
        try:
            params = json.loads(body)
            mode = params.pop("mode")
            if mode == "refused":
                raise ValueError("refused cannot be set remotely")
            self.server.standin.set_mode(mode, **params)
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            self._reply(400, str(err).encode(), "text/plain")
            return
        self._reply(200, b'{"status": "ok"}', "application/json")

    def _reply(
        self,
        status: int,
        payload: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        lines = [
            f"HTTP/1.1 {status} {_REASONS.get(status, '')}",
            f"Server: {self.version_string()}",
            f"Date: {_http_date()}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(payload)}",
        ]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
        self.wfile.flush()


def _rpc_error(request_id: Any, name: str, message: str) -> bytes:
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "id": request_id,
            "error": {
                "code": 200,
                "message": "Odoo Server Error",
                "data": {"name": name, "debug": "Traceback...", "message": message},
            },
        }
    ).encode()


class OdooStandin:
    """The Odoo route on loopback. ``start()``, point a sender at ``.url``, ``stop()``."""

    def __init__(
        self,
        *,
        port: int = 0,
        api_key: str = "",
        database: str = "",
        host: str = "127.0.0.1",
        request_format: str = "jsonrpc",
    ) -> None:
        """``api_key``/``database``: when set, requests must carry them.

        ``request_format``: ``jsonrpc`` (a ``type="json"`` route) or ``json`` (a
        ``type="http"`` route reading the EVENT object alone from the body).
        """
        if request_format not in {"jsonrpc", "json"}:
            raise ValueError(f"unknown request_format {request_format!r}")
        self.request_format = request_format
        self.host = host
        self.port = port
        self.api_key = api_key
        self.database = database
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._mode = "ok"
        self._mode_params: dict[str, Any] = {}
        self._rules: list[Rule] = []
        self._events: list[dict[str, Any]] = []
        self._uids: set[str] = set()
        self._duplicates: list[dict[str, Any]] = []
        self._requests: list[RequestRecord] = []
        self._arrivals: list[tuple[str, str, float]] = []
        self._invalid: list[str] = []
        self._connections: set[socket.socket] = set()
        self._connections_opened = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- lifecycle -----------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (the port is fixed once started)."""
        return f"http://{self.host}:{self.port}"

    @property
    def listening(self) -> bool:
        """Whether the server socket is open."""
        return self._server is not None

    def start(self) -> OdooStandin:
        """Listen (on the same port as before, after a ``refused`` period)."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((self.host, self.port), _Handler)
        server.standin = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop every open connection (slow replies are cut short)."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> OdooStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- behaviour -----------------------------------------------------------------

    def set_mode(self, mode: str, **params: Any) -> None:
        """Answer every request in ``mode`` (see the module doc); ``refused`` stops listening."""
        if mode not in MODES:
            raise ValueError(f"unknown stand-in mode {mode!r}; known: {sorted(MODES)}")
        with self._lock:
            self._mode, self._mode_params = mode, params
        if mode == "refused":
            self.stop()
        elif self._server is None:
            self.start()

    def add_rule(
        self,
        mode: str,
        *,
        event_uid: str | None = None,
        device_id: str | None = None,
        times: int | None = None,
        min_events: int = 1,
        whole_call: bool = False,
        **params: Any,
    ) -> Rule:
        """Answer matching requests in ``mode`` (before the global mode); ``times`` caps it.

        ``min_events`` and ``whole_call`` shape rules for the batch route (module doc).
        """
        if mode not in MODES - {"refused"}:
            raise ValueError(f"mode {mode!r} cannot be a rule")
        if whole_call and mode in EARLY_MODES:
            raise ValueError(f"mode {mode!r} always fails the whole call")
        rule = Rule(
            mode,
            params,
            event_uid=event_uid,
            device_id=device_id,
            times=times,
            min_events=min_events,
            whole_call=whole_call,
        )
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear_rules(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    # -- what was received ---------------------------------------------------------

    @property
    def events(self) -> list[dict[str, Any]]:
        """Unique accepted events (first copy of each event_uid), in arrival order."""
        with self._lock:
            return list(self._events)

    @property
    def event_uids(self) -> list[str]:
        """``event_uid`` of ``events``, in arrival order."""
        with self._lock:
            return [event["event_uid"] for event in self._events]

    @property
    def duplicates(self) -> list[dict[str, Any]]:
        """Accepted events whose event_uid had been accepted before."""
        with self._lock:
            return list(self._duplicates)

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request that reached the route, in order."""
        with self._lock:
            return list(self._requests)

    @property
    def batches(self) -> list[RequestRecord]:
        """The calls to the batch route, in order (whatever the answer)."""
        with self._lock:
            return [record for record in self._requests if record.path == EVENTS_PATH]

    @property
    def received_count(self) -> int:
        """Requests that reached the route, whatever the answer."""
        with self._lock:
            return len(self._requests)

    @property
    def connections_opened(self) -> int:
        """TCP connections accepted so far (keep-alive keeps this low)."""
        with self._lock:
            return self._connections_opened

    @property
    def invalid(self) -> list[str]:
        """Why malformed requests were refused (should stay empty)."""
        with self._lock:
            return list(self._invalid)

    def events_for(self, device_id: str) -> list[dict[str, Any]]:
        """Unique events of one device, in arrival order."""
        return [event for event in self.events if event["device_id"] == device_id]

    def stats(self) -> dict[str, int]:
        """Counts, also served at ``GET /_standin/stats``."""
        with self._lock:
            return {
                "events": len(self._events),
                "duplicates": len(self._duplicates),
                "received": len(self._requests),
                "invalid": len(self._invalid),
                "connections_opened": self._connections_opened,
                "batches": sum(1 for r in self._requests if r.path == EVENTS_PATH),
                "batch_events": sum(len(r.batch) for r in self._requests),
            }

    def arrivals(self) -> list[tuple[str, str, float]]:
        """``(device_id, event_type, time.monotonic())`` of each accepted unique event."""
        with self._lock:
            return list(self._arrivals)

    def wait_for_events(self, count: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        """Block until ``count`` unique events arrived; AssertionError after the deadline."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while len(self._events) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"stand-in got {len(self._events)} of {count} events in {timeout_s} s"
                    )
                self._changed.wait(left)
            return list(self._events)

    async def wait_for_events_async(
        self, count: int, timeout_s: float = 10.0
    ) -> list[dict[str, Any]]:
        """``wait_for_events`` without blocking the event loop (polls with a deadline)."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                if len(self._events) >= count:
                    return list(self._events)
                got = len(self._events)
            if time.monotonic() >= deadline:
                raise AssertionError(f"stand-in got {got} of {count} events in {timeout_s} s")
            await asyncio.sleep(0.005)

    async def wait_for_requests_async(self, count: int, timeout_s: float = 10.0) -> None:
        """Wait until ``count`` requests reached the route (any answer), with a deadline."""
        deadline = time.monotonic() + timeout_s
        while self.received_count < count:
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"stand-in got {self.received_count} of {count} requests in {timeout_s} s"
                )
            await asyncio.sleep(0.005)

    # -- internals -----------------------------------------------------------------

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
                self._connections_opened += 1
            else:
                self._connections.discard(conn)

    def _record(self, uid: str | None, device: str | None, status: int, outcome: str) -> None:
        with self._lock:
            self._requests.append(RequestRecord(uid, device, status, outcome))

    def _failure_for(self, uid: str | None, device: str | None) -> tuple[str, dict[str, Any]]:
        with self._lock:
            for rule in self._rules:
                if rule.matches(uid, device):
                    if rule.times is not None:
                        rule.times -= 1
                    return rule.mode, rule.params
            return self._mode, self._mode_params

    def _call_failure_for(
        self, keys: list[tuple[str | None, str | None]]
    ) -> tuple[str, dict[str, Any]]:
        """The batch route: a rule failing the whole call, else the global mode."""
        with self._lock:
            for rule in self._rules:
                if not (rule.mode in EARLY_MODES or rule.whole_call):
                    continue
                if any(rule.matches(uid, device, len(keys)) for uid, device in keys):
                    if rule.times is not None:
                        rule.times -= 1
                    return rule.mode, rule.params
            return self._mode, self._mode_params

    def _event_failure_for(
        self, uid: str | None, device: str | None, events: int
    ) -> tuple[str, dict[str, Any]] | None:
        """The batch route: a rule answering this one event with an error, if any."""
        with self._lock:
            for rule in self._rules:
                if rule.mode in EARLY_MODES or rule.whole_call:
                    continue
                if rule.matches(uid, device, events):
                    if rule.times is not None:
                        rule.times -= 1
                    return rule.mode, rule.params
        return None

    def _handle(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, str, dict[str, str]]:
        """Answer one POST: (status, body, content type, extra headers); 0 = drop."""
        split = urlsplit(path)
        if split.path == EVENTS_PATH and self.request_format == "jsonrpc":
            return self._handle_batch(split.query, headers, body)
        if split.path != EVENT_PATH:
            return 404, b"<html>404: Not Found</html>", "text/html", {}
        try:
            envelope = json.loads(body)
        except ValueError:
            envelope = None
        plain = self.request_format == "json"
        if plain:
            event = envelope
        else:
            event = (
                envelope.get("params", {}).get("event")
                if isinstance(envelope, dict) and isinstance(envelope.get("params"), dict)
                else None
            )
        uid = event.get("event_uid") if isinstance(event, dict) else None
        device = event.get("device_id") if isinstance(event, dict) else None
        request_id = envelope.get("id") if isinstance(envelope, dict) and not plain else None
        mode, params = self._failure_for(uid, device)

        early = self._early_failure(mode, params)
        if early is not None:
            self._record(uid, device, early[0], mode)
            return early
        if mode == "slow" and self._stopping.wait(float(params.get("delay_s", 30.0))):
            return 0, b"", "", {}

        refused = self._gate(split.query, headers, request_id)
        if refused is not None:
            self._record(uid, device, refused[0], refused[1])
            return refused[2]
        problem = _event_problem(envelope) if plain else _envelope_problem(envelope)
        if problem is not None:
            with self._lock:
                self._invalid.append(problem)
            self._record(uid, device, 400, "invalid")
            return 400, f"<html>400: {problem}</html>".encode(), "text/html", {}

        error_name = {
            "validation_error": "odoo.exceptions.ValidationError",
            "user_error": "odoo.exceptions.UserError",
            "rpc_error": str(params.get("name", "odoo.exceptions.AccessError")),
        }.get(mode)
        if error_name is not None:
            message = str(params.get("message", f"{error_name} for {uid}"))
            if plain:  # an http controller's exception: Odoo answers 400 or 500
                status = 400 if mode in {"validation_error", "user_error"} else 500
                self._record(uid, device, status, mode)
                return status, f"<html>{error_name}: {message}</html>".encode(), "text/html", {}
            self._record(uid, device, 200, mode)
            return 200, _rpc_error(request_id, error_name, message), "application/json", {}

        assert isinstance(event, dict)
        assert isinstance(uid, str)
        with self._changed:
            duplicate = uid in self._uids
            if duplicate:
                self._duplicates.append(event)
            else:
                self._uids.add(uid)
                self._events.append(event)
            self._requests.append(
                RequestRecord(uid, device, 200, "duplicate" if duplicate else "accepted")
            )
            if not duplicate:
                self._arrivals.append((str(device), str(event.get("event_type")), time.monotonic()))
            self._changed.notify_all()
        if plain:
            reply = {"status": "ok", "event_uid": uid, "duplicate": duplicate}
            return 200, json.dumps(reply).encode(), "application/json", {}
        result = {
            "jsonrpc": "2.0",
            "id": request_id,
            "result": {"status": "ok", "event_uid": uid, "duplicate": duplicate},
        }
        return 200, json.dumps(result).encode(), "application/json", {}

    def _gate(
        self, query_text: str, headers: dict[str, str], request_id: Any
    ) -> tuple[int, str, tuple[int, bytes, str, dict[str, str]]] | None:
        """Odoo's checks before a controller runs: database, API key, content type.

        None when they pass, else (status, outcome, reply).
        """
        query = parse_qs(query_text)
        if self.database and query.get("db") != [self.database]:
            return (
                404,
                "unknown_database",
                (404, b"<html>database not found</html>", "text/html", {}),
            )
        lower = {name.lower(): value for name, value in headers.items()}
        if self.api_key and lower.get("authorization") != f"Bearer {self.api_key}":
            reply = _rpc_error(request_id, "werkzeug.exceptions.Unauthorized", "Invalid apikey")
            return (
                401,
                "bad_api_key",
                (401, reply, "application/json", {"WWW-Authenticate": "Bearer"}),
            )
        if lower.get("content-type", "").split(";")[0].strip() != "application/json":
            reply415 = (415, b"<html>415: Unsupported Media Type</html>", "text/html", {})
            return 415, "bad_content_type", reply415
        return None

    def _handle_batch(
        self, query_text: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, str, dict[str, str]]:
        """``/ows/iot/events``: per-event results, or a failure of the whole call."""
        try:
            envelope = json.loads(body)
        except ValueError:
            envelope = None
        params = envelope.get("params") if isinstance(envelope, dict) else None
        listed = params.get("events") if isinstance(params, dict) else None
        events: list[Any] = listed if isinstance(listed, list) else []
        keys = [
            (event.get("event_uid"), event.get("device_id"))
            if isinstance(event, dict)
            else (None, None)
            for event in events
        ]
        request_id = envelope.get("id") if isinstance(envelope, dict) else None

        def failed(status: int, outcome: str) -> None:
            with self._lock:
                self._requests.append(
                    RequestRecord(
                        None,
                        None,
                        status,
                        outcome,
                        path=EVENTS_PATH,
                        batch=tuple((uid, device, "") for uid, device in keys),
                        body_bytes=len(body),
                    )
                )

        mode, mode_params = self._call_failure_for(keys)
        early = self._early_failure(mode, mode_params)
        if early is not None:
            failed(early[0], mode)
            return early
        if mode == "slow" and self._stopping.wait(float(mode_params.get("delay_s", 30.0))):
            return 0, b"", "", {}
        refused = self._gate(query_text, headers, request_id)
        if refused is not None:
            failed(refused[0], refused[1])
            return refused[2]
        problem = _batch_problem(envelope, len(body))
        if problem is not None:
            status = 413 if problem.startswith("too large") else 400
            with self._lock:
                self._invalid.append(problem)
            failed(status, "invalid")
            return status, f"<html>{status}: {problem}</html>".encode(), "text/html", {}
        if mode in ERROR_NAMES or mode == "rpc_error":
            name = ERROR_NAMES.get(mode) or str(
                mode_params.get("name", "odoo.exceptions.AccessError")
            )
            message = str(mode_params.get("message", f"{name} for the whole call"))
            failed(200, mode)
            return 200, _rpc_error(request_id, name, message), "application/json", {}

        blocked: set[Any] = set()
        results = [self._batch_event(event, len(events), blocked) for event in events]
        with self._changed:
            self._requests.append(
                RequestRecord(
                    None,
                    None,
                    200,
                    "batch",
                    path=EVENTS_PATH,
                    batch=tuple(
                        (uid, device, str(result["status"]))
                        for (uid, device), result in zip(keys, results, strict=True)
                    ),
                    body_bytes=len(body),
                )
            )
            self._changed.notify_all()
        reply = {"jsonrpc": "2.0", "id": request_id, "result": {"results": results}}
        return 200, json.dumps(reply).encode(), "application/json", {}

    def _batch_event(self, event: Any, events: int, blocked: set[Any]) -> dict[str, Any]:
        """One event of a batch call: its result; ``blocked`` holds devices to skip."""
        uid = event.get("event_uid") if isinstance(event, dict) else None
        device = event.get("device_id") if isinstance(event, dict) else None
        problem = _event_problem(event)
        if problem is not None:
            with self._lock:
                self._invalid.append(problem)
            return _event_error(uid, "odoo.exceptions.ValidationError", problem)
        if device in blocked:
            return _event_error(
                uid, SKIPPED, "not processed: an earlier event of this device failed"
            )
        failure = self._event_failure_for(uid, device, events)
        if failure is not None:
            mode, params = failure
            name = ERROR_NAMES.get(mode) or str(params.get("name", "odoo.exceptions.AccessError"))
            if mode not in ERROR_NAMES:
                blocked.add(device)  # transient: this device's later events wait
            return _event_error(uid, name, str(params.get("message", f"{name} for {uid}")))
        assert isinstance(event, dict)
        with self._changed:
            duplicate = uid in self._uids
            if duplicate:
                self._duplicates.append(event)
            else:
                self._uids.add(str(uid))
                self._events.append(event)
                self._arrivals.append((str(device), str(event.get("event_type")), time.monotonic()))
        return {"event_uid": uid, "status": "duplicate" if duplicate else "ok"}

    @staticmethod
    def _early_failure(
        mode: str, params: dict[str, Any]
    ) -> tuple[int, bytes, str, dict[str, str]] | None:
        """Failures a proxy or Odoo's dispatcher gives before the controller runs."""
        if mode == "down":
            extra = {"Retry-After": str(params["retry_after"])} if "retry_after" in params else {}
            return 503, b"<html>503 Service Unavailable</html>", "text/html", extra
        if mode == "rate_limited":
            extra = {"Retry-After": str(params.get("retry_after", "30"))}
            return 429, b"<html>429 Too Many Requests</html>", "text/html", extra
        if mode == "unauthorized":
            reply = _rpc_error(None, "werkzeug.exceptions.Unauthorized", "Invalid apikey")
            return 401, reply, "application/json", {"WWW-Authenticate": "Bearer"}
        if mode == "status":
            status = int(params["status"])
            body = params.get("body", f"<html>{status}</html>")
            payload = body if isinstance(body, bytes) else str(body).encode()
            content_type = str(params.get("content_type", "text/html"))
            return status, payload, content_type, dict(params.get("headers", {}))
        return None


def _event_problem(event: Any) -> str | None:
    if not isinstance(event, dict):
        return "body is not a JSON object"
    if "jsonrpc" in event or "params" in event:
        return "a JSON-RPC envelope where the EVENT object alone belongs"
    missing = EVENT_FIELDS - event.keys()
    if missing:
        return f"event lacks {sorted(missing)}"
    if not isinstance(event["event_uid"], str):
        return "event_uid must be a string"
    return None


def _event_error(uid: Any, name: str, message: str) -> dict[str, Any]:
    return {"event_uid": uid, "status": "error", "error": {"name": name, "message": message}}


def _batch_problem(envelope: Any, body_bytes: int) -> str | None:
    if not isinstance(envelope, dict):
        return "body is not a JSON object"
    if envelope.get("jsonrpc") != "2.0" or envelope.get("method") != "call":
        return "not a JSON-RPC 2.0 call"
    params = envelope.get("params")
    events = params.get("events") if isinstance(params, dict) else None
    if not isinstance(events, list) or not events:
        return "params.events must be a non-empty list"
    if len(events) > MAX_BATCH_EVENTS:
        return f"too large: {len(events)} events in one call (at most {MAX_BATCH_EVENTS})"
    if len(events) > 1 and body_bytes > MAX_BATCH_BYTES:
        return f"too large: {body_bytes} bytes with {len(events)} events (at most 1 MiB)"
    return None


def _envelope_problem(envelope: Any) -> str | None:
    if not isinstance(envelope, dict):
        return "body is not a JSON object"
    if envelope.get("jsonrpc") != "2.0" or envelope.get("method") != "call":
        return "not a JSON-RPC 2.0 call"
    params = envelope.get("params")
    event = params.get("event") if isinstance(params, dict) else None
    if not isinstance(event, dict):
        return "params.event missing"
    missing = EVENT_FIELDS - event.keys()
    if missing:
        return f"event lacks {sorted(missing)}"
    if not isinstance(event["event_uid"], str) or envelope.get("id") != event["event_uid"]:
        return "id must be the event_uid"
    return None


@pytest.fixture
def odoo_standin() -> Iterator[OdooStandin]:
    """A started stand-in without API key or database; stopped after the test."""
    with OdooStandin() as standin:
        yield standin


@pytest.fixture
def odoo_standin_factory() -> Iterator[Callable[..., OdooStandin]]:
    """Makes started stand-ins (``api_key=``, ``database=``, ``port=``); all stopped after."""
    made: list[OdooStandin] = []

    def make(**kwargs: Any) -> OdooStandin:
        standin = OdooStandin(**kwargs).start()
        made.append(standin)
        return standin

    yield make
    for standin in made:
        standin.stop()


def main() -> None:
    """Serve until SIGTERM/SIGINT (for benchmarks and manual tries)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="")
    parser.add_argument("--database", default="")
    parser.add_argument("--request-format", choices=("jsonrpc", "json"), default="jsonrpc")
    args = parser.parse_args()
    standin = OdooStandin(
        port=args.port,
        api_key=args.api_key,
        database=args.database,
        request_format=args.request_format,
    ).start()
    print(standin.url, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    standin.stop()


if __name__ == "__main__":
    main()
