"""One client connection of the HTTP server (``server.py``): its request heads, the
h11 cycle of each request (``cycle.py``), its timer (``timer.py``), its lingering close.

Between requests the connection collects the next head itself, up to its empty line,
and checks it (``head.py``) before a fresh h11 parses it: the head size holds however
the bytes arrive, bare line ends and folded lines are refused, empty lines before a
request line are skipped. h11 then reads the body, and the app runs as one ``Cycle``
(its ``receive`` and ``send``). Each connection has at most one timer: its keep-alive
idle time, its head's deadline (from the head's first byte, however the bytes drip), a
stalled body, or a lingering close.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final, cast
from urllib.parse import unquote

import h11

from iot_bridge.net.http.cycle import Cycle, wake
from iot_bridge.net.http.head import (
    could_be_get,
    head_end,
    head_problem,
    split_target,
    supported_version,
)
from iot_bridge.net.http.timer import (
    HEAD_TIMER,
    IDLE_TIMER,
    LINGER_TIMER,
    NO_TIMER,
    STALL_TIMER,
    ConnectionTimer,
)
from iot_bridge.net.http.wire import (
    UNAVAILABLE,
    ClientDisconnected,
    Scope,
    date_header,
    error_response,
    error_text,
    has_both_lengths,
    host_and_port,
    reason_phrase,
)

if TYPE_CHECKING:
    from iot_bridge.net.http.server import HttpServer

__all__ = ["GENERAL", "RESERVE", "Connection"]

# Unread request body held for the app before reading pauses (back-pressure on the client).
BODY_HIGH_WATER_BYTES: Final = 256 * 1024
# The rest of a body the app answered without reading (the 413 of a too large config) is
# read and dropped, so the client sees the answer instead of a reset; past this it is cut.
DISCARD_LIMIT_BYTES: Final = 64 * 1024 * 1024

# What a connection is to the cap.
GENERAL: Final = 0
RESERVE: Final = 1  # over the cap: the health check it showed, answered, then closed


class Connection(asyncio.Protocol):
    """One client connection: we collect each request head, h11 parses it and its body, one
    ``Cycle`` at a time runs the app."""

    def __init__(
        self,
        server: HttpServer,
        loop: asyncio.AbstractEventLoop,
        *,
        kind: int,
        client: tuple[str, int] | None,
        received: bytes = b"",
    ) -> None:
        self._server = server
        self._received = received  # read before the transport was made (a health check's)
        self._loop = loop
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=server.max_header_bytes)
        self._transport: asyncio.Transport | None = None
        self._kind = kind
        self._refused = False
        self._client = client
        self._local: tuple[str, int] | None = None
        self._cycle: Cycle | None = None  # the request being read or answered
        self._closed = False
        self._lingering = False
        # Between requests we collect the next head ourselves; h11 gets it whole.
        self._reading_head = True
        self._head = bytearray()
        self._head_started = False  # a byte of the next head arrived: its deadline runs
        self._close_after = False  # the request in flight ends the connection
        self._h11_paused = False  # a pipelined request waits for the current response
        self._read_paused = False
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._discarding = False
        self._discarded = 0
        self._timer = ConnectionTimer(loop, server, self._on_timer)

    # --- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        if self._closed or self._server.closing:  # refused, evicted or shut down meanwhile
            if self._refused:
                self._transport.write(UNAVAILABLE)
            self._closed = True
            self._transport.close()
            return
        self._local = host_and_port(transport.get_extra_info("sockname"))
        self._update_timer()
        if self._received:
            received, self._received = self._received, b""
            self.data_received(received)

    def data_received(self, data: bytes) -> None:
        if self._closed or self._lingering:
            return  # a lingering close drops what the client still sends
        if self._reading_head:
            self._receive_head(data)
            return
        their_state = self._h11.their_state
        if their_state is h11.MUST_CLOSE or their_state is h11.ERROR:
            return  # the request said it was the last one: what follows is not read
        self._timer.last_read = self._loop.time()
        self._h11.receive_data(data)
        self._handle_events()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._timer.cancel()
        if self._cycle is not None:
            self._cycle.client_gone()
        wake(self._drain)
        self._server.connection_closed(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        wake(self._drain)

    # --- what the server and the cycle ask ------------------------------------------

    @property
    def client(self) -> tuple[str, int] | None:
        """The client's address and port."""
        return self._client

    def setup_failed(self) -> None:
        """The transport could not be made (the client went at once): forget it."""
        self._closed = True
        self._server.connection_closed(self)

    def shutdown(self) -> None:
        """Close now when no request is in flight; else once its response is complete."""
        if self._cycle is None:
            self._close()

    def abandon(self) -> None:
        """The graceful time is over: the app sees ``http.disconnect``; the connection ends."""
        if self._cycle is not None:
            self._cycle.client_gone()
        self._close()

    def refuse(self) -> None:
        """503 and close at once: a connection over the cap that is not a health check."""
        if self._closed:
            return
        self._refused = True
        self._server.refused(self._client)
        if self._cycle is not None:
            self._cycle.client_gone()
        self._write(UNAVAILABLE)
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

    async def write_body(self, cycle: Cycle, body: bytes, more_body: bool) -> None:
        parts: list[bytes] = []  # head, body and end in one write: one send() for most
        if cycle.pending_head is not None:
            (status, headers), cycle.pending_head = cycle.pending_head, None
            parts.append(self._h11.send(self._response(cycle, status, headers)) or b"")
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

    def _response(
        self, cycle: Cycle, status: int, headers: list[tuple[bytes, bytes]]
    ) -> h11.Response:
        if not any(name.lower() == b"date" for name, _ in headers):
            headers.append((b"date", date_header.value()))
        if self._close_after or self._server.closing:
            headers.append((b"connection", b"close"))  # h11 then closes after this response
        if 400 <= status < 500:
            scope = cycle.scope
            self._server.client_error(status, self._client, scope["method"], scope["path"])
        return h11.Response(status_code=status, headers=headers, reason=reason_phrase(status))

    def app_failed(self, cycle: Cycle) -> None:
        """The app raised or returned early: a 500 if nothing was written yet; then close."""
        if cycle.response_complete or self._closed:
            return
        cycle.client_gone()
        if not cycle.head_written:
            self._error_response(500, head_only=cycle.head_only)
        self._close()

    # --- request heads ----------------------------------------------------------------

    def _receive_head(self, data: bytes) -> None:
        """Collect the next request head; hand it to a fresh h11 once it is complete."""
        limit = self._server.max_header_bytes
        if self._head:
            start = max(0, len(self._head) - 2)  # an end may straddle the two reads
            self._head += data
            buffer: bytes | bytearray = self._head
        else:
            self._head_started = True  # even for empty lines: their deadline runs
            # RFC 9112 §2.2: empty lines before a request line are ignored.
            buffer = data = data.lstrip(b"\r\n")
            start = 0
        if self._kind == RESERVE and not could_be_get(buffer, self._server.health_path_bytes):
            self.refuse()  # over the cap only the health check is served
            return
        end = head_end(buffer, start)
        if end < 0:
            if len(buffer) > limit:
                self._refuse_request(431, "request head too large")
            elif buffer is data and data:
                self._head += data
            self._update_timer()
            return
        if end > limit:
            self._refuse_request(431, "request head too large")
            return
        problem = head_problem(buffer[:end])
        if problem is not None:
            self._refuse_request(400, problem)
            return
        received = bytes(buffer)
        self._head.clear()
        self._reading_head = self._head_started = False
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limit)
        self._timer.last_read = self._loop.time()
        self._h11.receive_data(received)
        self._handle_events()

    def _next_request(self) -> None:
        """The cycle is over on both sides: read the next head, starting with whatever the
        client pipelined after the last request."""
        pipelined = self._h11.trailing_data[0]
        self._reading_head = True
        self._h11_paused = False
        self._resume_reading()
        if pipelined:
            self._receive_head(pipelined)
        else:
            self._update_timer()

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
                self._h11_paused = True
                self._pause_reading()  # the next request waits for this response
                break
            if isinstance(event, h11.Data):
                self._on_body(event.data)
            elif isinstance(event, h11.Request):
                if not self._start_cycle(event):
                    return
            elif isinstance(event, h11.EndOfMessage):
                if self._cycle is not None:
                    self._cycle.more_body = False
                    self._cycle.wake()
                elif self._discarding:
                    self._discarding = False
                    if self._h11.our_state is not h11.DONE:
                        self._close()
                    else:
                        self._next_request()
                    return
                if self._h11.their_state is h11.MUST_CLOSE:
                    break  # the last request of the connection: nothing after it is read
            else:  # ConnectionClosed: never, EOF is not fed to h11
                break
        self._update_timer()

    def _start_cycle(self, request: h11.Request) -> bool:
        """Run the app for ``request``; False when the request was refused instead."""
        if not supported_version(request.http_version):
            self._refuse_request(505, "HTTP version not supported")
            return False
        path, query = split_target(request.target)
        method = request.method.decode("ascii")
        decoded_path = unquote(path.decode("latin-1"))
        if self._kind == RESERVE:
            if method != "GET" or decoded_path != self._server.health_path:
                self.refuse()
                return False
            self._close_after = True
        else:
            # RFC 9112 §6.1: chunked wins, and the connection is not used again.
            self._close_after = has_both_lengths(request.headers)
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.http_version.decode("ascii"),
            "method": method,
            "scheme": "http",
            "path": decoded_path,
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": list(request.headers),
            "client": self._client,
            "server": self._local,
            "state": {},
        }
        cycle = Cycle(
            self,
            scope,
            head_only=request.method == b"HEAD",
            expect_continue=self._h11.they_are_waiting_for_100_continue,
        )
        self._cycle = cycle
        self._server.run_app(self, cycle)
        return True

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

    def _response_done(self, cycle: Cycle) -> None:
        cycle.response_complete = True
        cycle.wake()  # a pending receive() now gets http.disconnect
        if self._cycle is cycle:
            self._cycle = None
        if self._closed:
            return
        if self._h11.our_state is not h11.DONE or self._server.closing:
            if self._server.closing or self._kind == RESERVE:
                self._close()
            else:
                self._linger()  # what the client sent after its last request: no reset
            return
        their_state = self._h11.their_state
        if their_state is h11.DONE:
            self._next_request()
            return
        if their_state is h11.SEND_BODY:
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
        if cycle is not None and cycle.head_written:
            self._linger()  # a response is under way: it cannot be replaced
            return
        # h11 hints 501 for a transfer coding other than chunked; RFC 9112 §6.1 asks 400
        # when chunked is not the last coding, and 400 suits the rest as well.
        status = err.error_status_hint
        self._refuse_request(400 if status == 501 else status, error_text(err))

    def _refuse_request(self, status: int, reason: str) -> None:
        """Answer a request we refuse (or the deadline of one), log it, close politely."""
        if self._kind == RESERVE:
            self.refuse()
            return
        self._server.client_error(status, self._client, None, None, reason)
        self._error_response(status, head_only=False)
        self._linger()

    # --- timers: keep-alive idle time, a head's deadline, a stalled body, a linger ----

    def _wanted_timer(self) -> int:
        if self._closed:
            return NO_TIMER
        if self._lingering:
            return LINGER_TIMER
        if self._reading_head:
            return HEAD_TIMER if self._head_started else IDLE_TIMER
        if (
            self._h11.their_state is h11.SEND_BODY
            and not self._read_paused
            and not self._h11.they_are_waiting_for_100_continue
        ):
            return STALL_TIMER
        return NO_TIMER  # the app works, or the client reads our response

    def _update_timer(self) -> None:
        self._timer.set(self._wanted_timer())

    def _on_timer(self, kind: int) -> None:
        if kind == STALL_TIMER:
            cycle = self._cycle
            if cycle is not None:
                cycle.client_gone()
            if cycle is None or not cycle.head_written:
                self._refuse_request(408, "request body stalled")
            else:
                self._linger()
        elif kind == HEAD_TIMER:
            self._refuse_request(408, "request head not complete in time")
        elif kind == IDLE_TIMER and self._kind == RESERVE:
            self.refuse()
        else:  # idle keep-alive connection, or the end of a lingering close
            self._close()

    # --- the transport ----------------------------------------------------------------

    def _write(self, data: bytes | None) -> None:
        if data and not self._closed and self._transport is not None:
            self._transport.write(data)

    def _error_response(self, status: int, *, head_only: bool) -> None:
        self._write(error_response(status, head_only=head_only))

    def _linger(self) -> None:
        """Close after an answer that ends the connection without losing it to a reset: shut
        our side, drop what the client still sends, close at its EOF or after ``LINGER_S``."""
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
        self._timer.cancel()
        if self._cycle is not None and not self._cycle.response_complete:
            self._cycle.client_gone()
        wake(self._drain)
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
