"""A small asyncio HTTP/1.1 server for the bridge's ASGI app, on h11.

Why not uvicorn: importing it costs about 4 MiB of an idle bridge (its
``__init__`` loads click, multiprocessing, its supervisors), and its main loop
wakes every second to refresh the ``Date`` header. Here nothing runs while no
client is connected: each connection has at most one timer (its keep-alive
idle time, a stalled request, or the last moments of a lingering close), and
the ``Date`` string is computed when a response needs it, once per second at
most.

What it serves: the ASGI 3 ``http`` scope only (no lifespan, no WebSockets);
keep-alive and pipelining (answered in order), HTTP/1.0, ``Connection:
close``; request bodies (Content-Length or chunked) handed to the app through
``receive()`` as they arrive, with read back-pressure; ``Expect:
100-continue``; ``http.disconnect`` once the client is gone; responses with
the app's Content-Length or chunked, HEAD without a body, write back-pressure;
400/431 for requests h11 refuses, 408 for a stalled request, 500 when the app
fails before its response goes out; a graceful shutdown.

Query strings are never logged: the board's stream carries its token as
``?token=``.
"""

from __future__ import annotations

import asyncio
import http
import socket
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final, cast
from urllib.parse import unquote

import h11

from iot_bridge.logs import get_logger

__all__ = ["ASGIApp", "ClientDisconnected", "HttpServer"]

log = get_logger(__name__)

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

KEEP_ALIVE_TIMEOUT_S: Final = 5.0  # uvicorn's default
REQUEST_TIMEOUT_S: Final = 30.0  # no byte of a started request for this long: 408
GRACEFUL_SHUTDOWN_S: Final = 5.0
MAX_HEADER_BYTES: Final = 64 * 1024  # h11 answers a longer head with its 431 hint
# Unread request body held for the app before reading pauses (back-pressure on the client).
BODY_HIGH_WATER_BYTES: Final = 256 * 1024
# The rest of a body the app answered without reading (the 413 of a too large config) is
# read and dropped, so the client sees the answer instead of a reset; past this it is cut.
DISCARD_LIMIT_BYTES: Final = 64 * 1024 * 1024
# After an error answer the write side is shut and what the client still sends is dropped
# for this long, so the answer is not lost to a TCP reset.
LINGER_S: Final = 2.0
# Once the graceful time is over and the apps were told the clients are gone, how long
# they get to return before they are cancelled.
APP_CANCEL_GRACE_S: Final = 1.0

_NO_TIMER: Final = 0
_IDLE_TIMER: Final = 1
_STALL_TIMER: Final = 2
_LINGER_TIMER: Final = 3

_DISCONNECT: Final[dict[str, Any]] = {"type": "http.disconnect"}
_DAYS: Final = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
_MONTHS: Final = (
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun",
    b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
)  # fmt: skip


class ClientDisconnected(OSError):
    """``send()`` after the client went away (what ASGI asks servers to raise)."""


def http_date(unix_s: int) -> bytes:
    """The IMF-fixdate of ``unix_s`` (RFC 9110), independent of the locale."""
    t = time.gmtime(unix_s)
    return b"%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        _DAYS[t.tm_wday], t.tm_mday, _MONTHS[t.tm_mon - 1], t.tm_year,
        t.tm_hour, t.tm_min, t.tm_sec,
    )  # fmt: skip


class _DateHeader:
    """The ``Date`` value, computed on demand and kept for the rest of its second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def value(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second, self._value = now, http_date(now)
        return self._value


_date = _DateHeader()
_reasons: dict[int, bytes] = {}


def _reason(status: int) -> bytes:
    reason = _reasons.get(status)
    if reason is None:
        try:
            reason = http.HTTPStatus(status).phrase.encode("ascii")
        except ValueError:
            reason = b""
        _reasons[status] = reason
    return reason


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class _Cycle:
    """One request and its response: the app's ``receive`` and ``send``."""

    __slots__ = (
        "body",
        "body_seen",
        "buffered",
        "connection",
        "continue_sent",
        "expect_continue",
        "final_delivered",
        "gone",
        "head_only",
        "head_written",
        "more_body",
        "pending_head",
        "response_complete",
        "scope",
        "waiter",
    )

    def __init__(
        self, connection: _Connection, scope: Scope, *, head_only: bool, expect_continue: bool
    ) -> None:
        self.connection = connection
        self.scope = scope
        self.head_only = head_only  # HEAD: the response's body is not sent
        self.expect_continue = expect_continue
        self.continue_sent = False
        self.body: list[bytes] = []  # received, not yet given to the app
        self.buffered = 0
        self.body_seen = 0
        self.more_body = True  # the request's body has not ended yet
        self.final_delivered = False  # the app has had the last ``http.request``
        self.gone = False  # the client went away (or the connection was given up)
        # http.response.start's status and headers, written with the first body part
        self.pending_head: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self.head_written = False
        self.response_complete = False
        self.waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        _wake(self.waiter)

    def client_gone(self) -> None:
        self.gone = True
        self.wake()

    async def receive(self) -> Message:
        while True:
            if self.gone or self.response_complete:
                return _DISCONNECT.copy()
            if self.body:
                data = self.body[0] if len(self.body) == 1 else b"".join(self.body)
                self.body.clear()
                self.buffered = 0
                self.final_delivered = not self.more_body
                self.connection.body_consumed()
                return {"type": "http.request", "body": data, "more_body": self.more_body}
            if not self.more_body and not self.final_delivered:
                self.final_delivered = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if self.expect_continue and not self.continue_sent and self.more_body:
                self.continue_sent = True
                self.connection.send_continue()
            # Body parts, the end of the response or the client's leaving wake this.
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None

    async def send(self, message: Message) -> None:
        if self.gone:
            raise ClientDisconnected("the HTTP client has gone")
        kind = message["type"]
        if kind == "http.response.start":
            if self.pending_head is not None or self.head_written:
                raise RuntimeError("http.response.start sent twice")
            self.pending_head = (int(message["status"]), list(message.get("headers", ())))
        elif kind == "http.response.body":
            if self.pending_head is None and not self.head_written:
                raise RuntimeError("http.response.body before http.response.start")
            if self.response_complete:
                raise RuntimeError("http.response.body after the response was complete")
            await self.connection.write_body(
                self, bytes(message.get("body", b"")), bool(message.get("more_body", False))
            )
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")


class _Connection(asyncio.Protocol):
    """One client connection: h11 parses, one ``_Cycle`` at a time runs the app."""

    def __init__(self, server: HttpServer, loop: asyncio.AbstractEventLoop) -> None:
        self._server = server
        self._loop = loop
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=server.max_header_bytes)
        self._transport: asyncio.Transport | None = None
        self._client: tuple[str, int] | None = None
        self._local: tuple[str, int] | None = None
        self._cycle: _Cycle | None = None  # the request being read or answered
        self._closed = False
        self._lingering = False
        self._partial_head = False  # bytes of a request head not yet parsed
        self._h11_paused = False  # a pipelined request waits for the current response
        self._read_paused = False
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._discarding = False
        self._discarded = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_kind = _NO_TIMER
        self._last_read = 0.0

    # --- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._client = _address(transport.get_extra_info("peername"))
        self._local = _address(transport.get_extra_info("sockname"))
        if not self._server.connection_opened(self):
            self._close()
            return
        self._update_timer()

    def data_received(self, data: bytes) -> None:
        if self._closed or self._lingering:
            return  # a lingering close drops what the client still sends
        self._last_read = self._loop.time()
        their_state = self._h11.their_state
        if their_state is h11.IDLE or their_state is h11.DONE:
            self._partial_head = True  # the start of a (maybe pipelined) request
        self._h11.receive_data(data)
        self._handle_events()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._cancel_timer()
        if self._cycle is not None:
            self._cycle.client_gone()
        _wake(self._drain)
        self._server.connection_closed(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        _wake(self._drain)

    # --- what the server and the cycle ask ------------------------------------------

    def shutdown(self) -> None:
        """Close now when no request is in flight; else once its response is complete."""
        if self._cycle is None:
            self._close()

    def abandon(self) -> None:
        """The graceful time is over: the app sees ``http.disconnect``; the connection ends."""
        if self._cycle is not None:
            self._cycle.client_gone()
        self._close()

    def body_consumed(self) -> None:
        if self._read_paused and not self._h11_paused:
            self._resume_reading()

    def send_continue(self) -> None:
        if self._closed or not self._h11.they_are_waiting_for_100_continue:
            return  # the client did not wait: its body is on the way already
        interim = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
        self._write(self._h11.send(interim))
        self._update_timer()  # the client now sends its body: a stall counts again

    async def write_body(self, cycle: _Cycle, body: bytes, more_body: bool) -> None:
        parts: list[bytes] = []  # head, body and end in one write: one send() for most
        if cycle.pending_head is not None:
            (status, headers), cycle.pending_head = cycle.pending_head, None
            parts.append(self._h11.send(self._response(status, headers)) or b"")
            cycle.head_written = True
        if body and not cycle.head_only:
            parts += self._h11.send_with_data_passthrough(h11.Data(data=body)) or ()
        if not more_body:
            parts.append(self._h11.send(h11.EndOfMessage()) or b"")
        if self._closed:
            cycle.client_gone()
            raise ClientDisconnected("the HTTP client has gone")
        self._write(b"".join(parts))
        if not more_body:
            self._response_done(cycle)
        elif self._write_paused:
            self._drain = self._loop.create_future()
            try:
                await self._drain
            finally:
                self._drain = None
            if self._closed:
                cycle.client_gone()
                raise ClientDisconnected("the HTTP client has gone")

    def _response(self, status: int, headers: list[tuple[bytes, bytes]]) -> h11.Response:
        if not any(name.lower() == b"date" for name, _ in headers):
            headers.append((b"date", _date.value()))
        if self._server.closing:
            headers.append((b"connection", b"close"))  # h11 then closes after this response
        return h11.Response(status_code=status, headers=headers, reason=_reason(status))

    def app_failed(self, cycle: _Cycle) -> None:
        """The app raised or returned early: a 500 if nothing was written yet; then close."""
        if cycle.response_complete or self._closed:
            return
        cycle.client_gone()
        if not cycle.head_written and self._h11.our_state is h11.SEND_RESPONSE:
            self._error_response(500, head_only=cycle.head_only)
        self._close()

    # --- the cycle of requests --------------------------------------------------------

    def _handle_events(self) -> None:
        while not self._closed:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as err:
                self._protocol_error(err)
                return
            if event is h11.NEED_DATA:
                break
            if event is h11.PAUSED:
                self._h11_paused = self._partial_head = True
                self._pause_reading()  # the next request waits for this response
                break
            if isinstance(event, h11.Data):
                self._on_body(event.data)
            elif isinstance(event, h11.Request):
                self._start_cycle(event)
            elif isinstance(event, h11.EndOfMessage):
                if self._cycle is not None:
                    self._cycle.more_body = False
                    self._cycle.wake()
                elif self._discarding:
                    self._discarding = False
                    if self._h11.our_state is not h11.DONE:
                        self._close()
                        return
                    self._h11.start_next_cycle()
            else:  # ConnectionClosed: never, EOF is not fed to h11
                break
        self._update_timer()

    def _start_cycle(self, request: h11.Request) -> None:
        self._partial_head = False
        path, _, query = request.target.partition(b"?")
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.http_version.decode("ascii"),
            "method": request.method.decode("ascii"),
            "scheme": "http",
            "path": unquote(path.decode("latin-1")),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": list(request.headers),
            "client": self._client,
            "server": self._local,
            "state": {},
        }
        cycle = _Cycle(
            self,
            scope,
            head_only=request.method == b"HEAD",
            expect_continue=self._h11.they_are_waiting_for_100_continue,
        )
        self._cycle = cycle
        self._server.run_app(self, cycle)

    def _on_body(self, data: bytes) -> None:
        cycle = self._cycle
        if cycle is None:  # the rest of a body whose request was answered already
            self._discarded += len(data)
            if self._discarded > DISCARD_LIMIT_BYTES:
                self._close()
            return
        cycle.body.append(data)
        cycle.buffered += len(data)
        cycle.body_seen += len(data)
        cycle.wake()
        if cycle.buffered > BODY_HIGH_WATER_BYTES:
            self._pause_reading()

    def _response_done(self, cycle: _Cycle) -> None:
        cycle.response_complete = True
        cycle.wake()  # a pending receive() now gets http.disconnect
        if self._cycle is cycle:
            self._cycle = None
        if self._closed:
            return
        if self._h11.our_state is not h11.DONE or self._server.closing:
            self._close()
            return
        their_state = self._h11.their_state
        if their_state is h11.DONE:
            self._h11.start_next_cycle()
            self._h11_paused = False
            self._resume_reading()
            if self._partial_head:
                self._handle_events()  # a pipelined request
                return
        elif their_state is h11.SEND_BODY:
            if cycle.expect_continue and not cycle.continue_sent and cycle.body_seen == 0:
                self._close()  # the client still waits to send a body nobody wants
                return
            self._discarding, self._discarded = True, cycle.buffered
            cycle.body.clear()
            self._resume_reading()
        else:
            self._close()
            return
        self._update_timer()

    def _protocol_error(self, err: h11.RemoteProtocolError) -> None:
        cycle = self._cycle
        if cycle is not None:
            cycle.client_gone()
        if cycle is None or not cycle.head_written:
            self._error_response(err.error_status_hint, head_only=False)
        self._linger()

    # --- timers: keep-alive idle time, a stalled request, a lingering close -----------

    def _wanted_timer(self) -> int:
        if self._closed:
            return _NO_TIMER
        if self._lingering:
            return _LINGER_TIMER
        their_state = self._h11.their_state
        if self._cycle is None and their_state is h11.IDLE:
            return _STALL_TIMER if self._partial_head else _IDLE_TIMER
        if (
            their_state is h11.SEND_BODY
            and not self._read_paused
            and not self._h11.they_are_waiting_for_100_continue
        ):
            return _STALL_TIMER
        return _NO_TIMER  # the app works, or the client reads our response

    def _update_timer(self) -> None:
        kind = self._wanted_timer()
        if kind == self._timer_kind:
            return  # a stall timer looks at the last read when it fires
        self._cancel_timer()
        self._timer_kind = kind
        if kind == _IDLE_TIMER:
            delay = self._server.keep_alive_timeout_s
        elif kind == _STALL_TIMER:
            self._last_read = self._loop.time()
            delay = self._server.request_timeout_s
        elif kind == _LINGER_TIMER:
            delay = LINGER_S
        else:
            return
        self._timer = self._loop.call_later(delay, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_kind = _NO_TIMER

    def _on_timer(self) -> None:
        kind, self._timer, self._timer_kind = self._timer_kind, None, _NO_TIMER
        if kind == _STALL_TIMER:
            left = self._last_read + self._server.request_timeout_s - self._loop.time()
            if left > 0:
                self._timer_kind = _STALL_TIMER
                self._timer = self._loop.call_later(left, self._on_timer)
                return
            cycle = self._cycle
            if cycle is not None:
                cycle.client_gone()
            if cycle is None or not cycle.head_written:
                self._error_response(408, head_only=False)
            self._linger()
        else:  # idle keep-alive connection, or the end of a lingering close
            self._close()

    # --- the transport ----------------------------------------------------------------

    def _write(self, data: bytes | None) -> None:
        if data and not self._closed and self._transport is not None:
            self._transport.write(data)

    def _error_response(self, status: int, *, head_only: bool) -> None:
        body = b"" if head_only else _reason(status) + b"\n"
        response = h11.Response(
            status_code=status,
            reason=_reason(status),
            headers=[
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"%d" % len(body)),
                (b"connection", b"close"),
                (b"date", _date.value()),
            ],
        )
        try:
            parts = [self._h11.send(response), self._h11.send(h11.Data(data=body))]
            parts.append(self._h11.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:
            return  # a response was under way: closing is all that is left
        self._write(b"".join(part or b"" for part in parts))

    def _linger(self) -> None:
        """Close after an error answer without losing it to a reset: shut our side, drop
        what the client still sends, close at its EOF or after ``LINGER_S``."""
        if self._closed or self._lingering or self._transport is None:
            return
        if not self._transport.can_write_eof():
            self._close()
            return
        self._lingering = True
        self._cycle = None
        self._transport.write_eof()
        self._resume_reading()
        self._update_timer()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._cancel_timer()
        if self._cycle is not None and not self._cycle.response_complete:
            self._cycle.client_gone()
        _wake(self._drain)
        if self._transport is not None:
            self._transport.close()

    def _pause_reading(self) -> None:
        if not self._read_paused and not self._closed and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()
            self._update_timer()

    def _resume_reading(self) -> None:
        if self._read_paused and not self._closed and self._transport is not None:
            self._read_paused = False
            self._transport.resume_reading()


def _address(value: object) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return str(value[0]), int(value[1])
    return None


class HttpServer:
    """Serves an ASGI app on an already bound, listening socket until ``stop()``.

    ``serve(sock)`` runs until ``stop()`` is called, then shuts down: no new
    connections, idle ones closed at once, requests in flight get
    ``graceful_shutdown_s`` to finish; after that their apps get
    ``http.disconnect``, the connections close, and apps still running a
    moment later are cancelled.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        keep_alive_timeout_s: float = KEEP_ALIVE_TIMEOUT_S,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        graceful_shutdown_s: float = GRACEFUL_SHUTDOWN_S,
        max_header_bytes: int = MAX_HEADER_BYTES,
    ) -> None:
        self.app = app
        self.keep_alive_timeout_s = keep_alive_timeout_s
        self.request_timeout_s = request_timeout_s
        self.graceful_shutdown_s = graceful_shutdown_s
        self.max_header_bytes = max_header_bytes
        self.closing = False
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop_requested = asyncio.Event()
        self._drained: asyncio.Event | None = None

    @property
    def connections(self) -> int:
        """Open client connections."""
        return len(self._connections)

    @property
    def requests(self) -> int:
        """App calls still running."""
        return len(self._tasks)

    async def start(self, sock: socket.socket) -> None:
        """Accept connections on ``sock`` (bound, listening, non-blocking)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self, loop), sock=sock)

    async def serve(self, sock: socket.socket) -> None:
        """``start(sock)``, wait for ``stop()``, then ``shutdown()``."""
        await self.start(sock)
        try:
            await self._stop_requested.wait()
        finally:
            await self.shutdown()

    def stop(self) -> None:
        """Ask ``serve`` to shut down (safe to call more than once)."""
        self._stop_requested.set()

    async def shutdown(self) -> None:
        """Stop accepting, close idle connections, let requests in flight finish."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.shutdown()
        if self._connections or self._tasks:
            self._drained = asyncio.Event()
            try:
                async with asyncio.timeout(self.graceful_shutdown_s):
                    await self._drained.wait()
            except TimeoutError:
                await self._abandon()
        if self._server is not None:
            await self._server.wait_closed()

    async def _abandon(self) -> None:
        log.warning(
            "http_shutdown_forced",
            seconds=self.graceful_shutdown_s,
            connections=len(self._connections),
            requests=len(self._tasks),
        )
        for connection in list(self._connections):
            connection.abandon()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=APP_CANCEL_GRACE_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # --- what the connections ask -----------------------------------------------------

    def connection_opened(self, connection: _Connection) -> bool:
        if self.closing:
            return False
        self._connections.add(connection)
        return True

    def connection_closed(self, connection: _Connection) -> None:
        self._connections.discard(connection)
        self._check_drained()

    def run_app(self, connection: _Connection, cycle: _Cycle) -> None:
        task = asyncio.get_running_loop().create_task(self._run_app(connection, cycle))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._check_drained()

    def _check_drained(self) -> None:
        if self._drained is not None and not self._connections and not self._tasks:
            self._drained.set()

    async def _run_app(self, connection: _Connection, cycle: _Cycle) -> None:
        try:
            await self.app(cycle.scope, cycle.receive, cycle.send)
        except Exception as err:
            if cycle.gone:
                return  # the client left; what the app raised is about that
            log.exception(
                "http_app_error",
                method=cycle.scope["method"],
                path=cycle.scope["path"],  # never the query: it may carry the token
                error=f"{type(err).__name__}: {err}",
            )
            connection.app_failed(cycle)
        else:
            if not cycle.response_complete and not cycle.gone:
                log.error(
                    "http_app_error",
                    method=cycle.scope["method"],
                    path=cycle.scope["path"],
                    error="the app returned without completing its response",
                )
                connection.app_failed(cycle)
