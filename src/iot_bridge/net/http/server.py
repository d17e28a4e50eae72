"""A small asyncio HTTP/1.1 server for the bridge's ASGI app, on h11.

Why not uvicorn: importing it costs about 4 MiB of an idle bridge (its
``__init__`` loads click, multiprocessing, its supervisors), and its main loop
wakes every second to refresh the ``Date`` header. Here nothing runs while no
client is connected: each connection has at most one timer (its keep-alive
idle time, the deadline of a request head, a stalled body, or the last moments
of a lingering close), and the ``Date`` string is computed when a response
needs it, once per second at most.

What it serves: the ASGI 3 ``http`` scope only (no lifespan, no WebSockets);
keep-alive and pipelining (answered in order), HTTP/1.0, ``Connection:
close``; request bodies (Content-Length or chunked) handed to the app through
``receive()`` as they arrive, with read back-pressure; ``Expect:
100-continue``; ``http.disconnect`` once the client is gone; responses with
the app's Content-Length or chunked, HEAD without a body, write back-pressure;
a graceful shutdown.

What it refuses, each answer closing the connection: a head over
``max_header_bytes`` (431) however it arrives; a head not complete within
``head_timeout_s`` of its first byte, however the bytes drip (408); a body
that stalls for ``request_timeout_s`` (408); bare LF or CR line ends and
obsolete line folding (400, see ``head.py``); what h11 refuses (400,
conflicting Content-Lengths, bad chunks, a transfer coding other than
chunked); a version other than HTTP/1.x (505); 500 when the app fails before
its response goes out. A request with both Content-Length and
Transfer-Encoding is read by its chunks, answered, and the connection closed
(RFC 9112 §6.1). Once a request ends its connection (HTTP/1.0, ``Connection:
close``) what the client sends after it is not read.

Connections are capped at ``max_connections``. The server accepts by itself:
over the cap, what a connection sent is read from its socket before any
transport is made; anything but the start of ``GET <health_path>`` is answered
503 and closed at once. A whole health check head gets a connection that
answers it; a connection that sent nothing yet, or part of such a head, waits
in a reserve of ``health_reserve`` raw sockets (a reader each, no transport, no
task) until its head is whole, turns out to be something else, or
``head_timeout_s`` has passed. When the reserve is full its oldest waiting
member is read once more, then served or refused, to make way: a burst of
newcomers pushes out only clients that have not sent a health check. So the
health check answers while the cap is reached by idle or dripping clients.
Refusals are logged at most
once per ``log_interval_s`` with their count (``http_connection_refused``), 4xx
answers as ``http_client_error`` (at most ``CLIENT_ERROR_LOG_BURST`` lines per
``log_interval_s``, then a count).

Query strings are never logged: the board's stream carries its token as
``?token=``.

This module accepts, caps and shuts down; one connection (its heads, its requests'
cycles, its timer) is ``connection.Connection``; the checks of a raw head are
``head.py``'s.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import socket
from typing import TYPE_CHECKING, Any, Final

from iot_bridge.logs import FloodLog, get_logger
from iot_bridge.net.http.connection import GENERAL, RESERVE, Connection
from iot_bridge.net.http.head import could_be_get, head_end
from iot_bridge.net.http.wire import (
    ASGIApp,
    ClientDisconnected,
    Message,
    Receive,
    Scope,
    Send,
    host_and_port,
    refuse_socket,
)

if TYPE_CHECKING:
    from iot_bridge.net.http.cycle import Cycle

__all__ = [
    "ASGIApp",
    "ClientDisconnected",
    "HttpServer",
    "Message",
    "Receive",
    "Scope",
    "Send",
]

log = get_logger(__name__)

KEEP_ALIVE_TIMEOUT_S: Final = 5.0  # uvicorn's default
# A request head must be complete this long after its first byte, however the bytes drip.
HEAD_TIMEOUT_S: Final = 5.0
REQUEST_TIMEOUT_S: Final = 30.0  # no byte of a started request body for this long: 408
GRACEFUL_SHUTDOWN_S: Final = 5.0
MAX_HEADER_BYTES: Final = 64 * 1024  # a longer request head is answered 431
# Open client connections; config/model.py's DEFAULT_MAX_CONNECTIONS is what the bridge uses.
MAX_CONNECTIONS: Final = 512
# Connections over the cap held to see whether they are a health check (each a raw socket
# until it shows one: a descriptor and a reader), or answering one. A burst of newcomers
# pushes the oldest out, so a health check must show its request before this many more
# connections come: a backlog's worth.
HEALTH_RESERVE: Final = 128
LISTEN_BACKLOG: Final = 128
# Out of file descriptors (or kernel memory) at accept: accepting pauses this long.
ACCEPT_RETRY_S: Final = 1.0
# Refused connections: one line per interval with their count. 4xx answers: a few lines
# per interval, then one with the count of the rest.
LOG_INTERVAL_S: Final = 10.0
CLIENT_ERROR_LOG_BURST: Final = 10
# Once the graceful time is over and the apps were told the clients are gone, how long
# they get to return before they are cancelled.
APP_CANCEL_GRACE_S: Final = 1.0

# What a connection over the cap gets, from its first bytes.
_SERVE: Final = "serve"
_WAIT: Final = "wait"
_REFUSE: Final = "refuse"
_OUT_OF_RESOURCES: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class _Waiting:
    """A connection over the cap that has not shown a whole health check yet: a raw socket
    with a reader (no transport, no task), the bytes it sent, its deadline."""

    __slots__ = ("client", "head", "timer")

    def __init__(
        self, client: tuple[str, int] | None, head: bytearray, timer: asyncio.TimerHandle
    ) -> None:
        self.client = client
        self.head = head
        self.timer = timer


def _read_into(sock: socket.socket, head: bytearray, limit: int) -> bool:
    """Append what ``sock`` holds (up to ``limit`` bytes in all) to ``head``, without
    waiting; True when the client is gone (its end of file, or an error)."""
    try:
        data = sock.recv(max(1, limit - len(head)), socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True
    if not data:
        return True
    head += data
    return False


class HttpServer:
    """Serves an ASGI app on an already bound socket until ``stop()``.

    ``serve(sock)`` runs until ``stop()`` is called, then shuts down: no new
    connections, idle ones closed at once, requests in flight get
    ``graceful_shutdown_s`` to finish; after that their apps get
    ``http.disconnect``, the connections close, and apps still running a
    moment later are cancelled.

    ``max_connections`` may be changed while it serves (a config push): it
    applies to the connections that come next.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        keep_alive_timeout_s: float = KEEP_ALIVE_TIMEOUT_S,
        head_timeout_s: float = HEAD_TIMEOUT_S,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        graceful_shutdown_s: float = GRACEFUL_SHUTDOWN_S,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_connections: int = MAX_CONNECTIONS,
        health_path: str = "/health",
        health_reserve: int = HEALTH_RESERVE,
        backlog: int = LISTEN_BACKLOG,
        log_interval_s: float = LOG_INTERVAL_S,
    ) -> None:
        self.app = app
        self.keep_alive_timeout_s = keep_alive_timeout_s
        self.head_timeout_s = head_timeout_s
        self.request_timeout_s = request_timeout_s
        self.graceful_shutdown_s = graceful_shutdown_s
        self.max_header_bytes = max_header_bytes
        self.max_connections = max_connections
        self.health_path = health_path
        self.health_path_bytes = health_path.encode("latin-1")
        self.health_reserve = health_reserve
        self.backlog = backlog
        self.closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: socket.socket | None = None
        self._accept_retry: asyncio.TimerHandle | None = None
        self._setups: set[asyncio.Task[Any]] = set()  # transports being made
        self._general: set[Connection] = set()
        # Over the cap: raw sockets waiting to show a health check (oldest first), and the
        # connections answering one.
        self._waiting: dict[socket.socket, _Waiting] = {}
        self._reserve: dict[Connection, None] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop_requested = asyncio.Event()
        self._drained: asyncio.Event | None = None
        self._refusals = FloodLog(log, "http_connection_refused", interval_s=log_interval_s)
        self._client_errors = FloodLog(
            log,
            "http_client_error",
            interval_s=log_interval_s,
            burst=CLIENT_ERROR_LOG_BURST,
            level="info",
        )
        self._accept_errors = FloodLog(log, "http_accept_failed", interval_s=log_interval_s)
        self._flushes: set[asyncio.TimerHandle] = set()

    @property
    def connections(self) -> int:
        """Open client connections (the health reserve's included)."""
        return len(self._general) + len(self._waiting) + len(self._reserve)

    @property
    def requests(self) -> int:
        """App calls still running."""
        return len(self._tasks)

    async def start(self, sock: socket.socket) -> None:
        """Accept connections on ``sock`` (bound; it listens again with ``backlog``).

        The server accepts by itself rather than through ``loop.create_server``: a
        connection over the cap is answered 503 from its socket before any transport is
        made, a health check is told from the rest by its first bytes, and the backlog is
        ours (``create_server`` listens again, with 100 unless told otherwise).
        """
        self._loop = asyncio.get_running_loop()
        sock.setblocking(False)
        sock.listen(self.backlog)
        self._listener = sock
        self._loop.add_reader(sock.fileno(), self._accept)

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
        if self._listener is not None and self._loop is not None:
            self._loop.remove_reader(self._listener.fileno())
            # Closed, as asyncio's servers do: a new client is refused, not left waiting.
            self._listener.close()
        if self._accept_retry is not None:
            self._accept_retry.cancel()
        for sock in list(self._waiting):
            self._stop_waiting(sock)
            sock.close()
        for connection in [*self._general, *self._reserve]:
            connection.shutdown()
        if self._general or self._reserve or self._tasks:
            self._drained = asyncio.Event()
            try:
                async with asyncio.timeout(self.graceful_shutdown_s):
                    await self._drained.wait()
            except TimeoutError:
                await self._abandon()
        if self._setups:
            await asyncio.wait(set(self._setups))
        now = asyncio.get_running_loop().time()
        for handle in self._flushes:
            handle.cancel()
        self._flushes.clear()
        for flood in (self._refusals, self._client_errors, self._accept_errors):
            flood.flush(now)  # the counts held back are not lost at a stop

    async def _abandon(self) -> None:
        log.warning(
            "http_shutdown_forced",
            seconds=self.graceful_shutdown_s,
            connections=self.connections,
            requests=len(self._tasks),
        )
        for connection in [*self._general, *self._reserve]:
            connection.abandon()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=APP_CANCEL_GRACE_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # --- what the connections ask -----------------------------------------------------

    def _accept(self) -> None:
        """Accept what the listening socket holds (up to a backlog's worth per turn)."""
        listener = self._listener
        if listener is None:
            return
        for _ in range(self.backlog):
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as err:
                self._log(self._accept_errors, error=err.strerror or str(err))
                if err.errno in _OUT_OF_RESOURCES:
                    self._pause_accepting()
                return
            client = host_and_port(address)
            if self.closing:
                sock.close()
            elif len(self._general) < self.max_connections:
                self._open(sock, client, GENERAL)
            else:
                self._over_cap(sock, client, bytearray())

    def _pause_accepting(self) -> None:
        """No file descriptor left (or no memory): retry in a moment instead of spinning."""
        if self._loop is None or self._listener is None:
            return
        self._loop.remove_reader(self._listener.fileno())
        self._accept_retry = self._loop.call_later(ACCEPT_RETRY_S, self._resume_accepting)

    def _resume_accepting(self) -> None:
        self._accept_retry = None
        if not self.closing and self._loop is not None and self._listener is not None:
            self._loop.add_reader(self._listener.fileno(), self._accept)

    # --- over the cap: the health reserve ----------------------------------------------

    def _over_cap(
        self, sock: socket.socket, client: tuple[str, int] | None, head: bytearray
    ) -> None:
        """A newly accepted connection over the cap: its first bytes (read without a
        transport) decide. A whole ``GET <health path>`` head: served. The start of one, or
        nothing yet: it waits (a raw socket and a reader, no transport). Anything else, or
        a reserve without room: 503 at once."""
        verdict = self._verdict(sock, head)
        if verdict != _REFUSE and self._make_room():
            if verdict == _SERVE:
                self._open(sock, client, RESERVE, bytes(head))
            else:
                self._wait(sock, client, head)
        else:
            self._refuse(sock, client)

    def _verdict(self, sock: socket.socket, head: bytearray) -> str:
        """Read what ``sock`` holds into ``head``: serve it, let it wait, or refuse it."""
        gone = _read_into(sock, head, self.max_header_bytes + 1)
        if gone or not could_be_get(head, self.health_path_bytes):
            return _REFUSE
        if head_end(head.lstrip(b"\r\n")) >= 0:
            return _SERVE
        return _REFUSE if len(head) > self.max_header_bytes else _WAIT

    def _wait(self, sock: socket.socket, client: tuple[str, int] | None, head: bytearray) -> None:
        loop = self._loop
        if loop is None:
            sock.close()
            return
        timer = loop.call_later(self.head_timeout_s, self._waited_too_long, sock)
        self._waiting[sock] = _Waiting(client, head, timer)
        loop.add_reader(sock.fileno(), self._waiting_readable, sock)

    def _stop_waiting(self, sock: socket.socket) -> _Waiting | None:
        waiting = self._waiting.pop(sock, None)
        if waiting is not None:
            waiting.timer.cancel()
            if self._loop is not None:
                self._loop.remove_reader(sock.fileno())
        return waiting

    def _settle(self, sock: socket.socket, waiting: _Waiting, verdict: str) -> None:
        """A waiting member is done waiting: served (its slot becomes a connection) or
        refused."""
        self._stop_waiting(sock)
        if verdict == _SERVE:
            self._open(sock, waiting.client, RESERVE, bytes(waiting.head))
        else:
            self._refuse(sock, waiting.client)

    def _waiting_readable(self, sock: socket.socket) -> None:
        waiting = self._waiting.get(sock)
        if waiting is not None:
            verdict = self._verdict(sock, waiting.head)
            if verdict != _WAIT:  # else the rest of the head is on its way
                self._settle(sock, waiting, verdict)

    def _waited_too_long(self, sock: socket.socket) -> None:
        waiting = self._waiting.get(sock)
        if waiting is not None:
            self._settle(sock, waiting, _REFUSE)

    def _make_room(self) -> bool:
        """Room in the reserve for one more, if need be by refusing its oldest waiting member,
        once its last bytes are read: a health check whose request arrived meanwhile is
        served instead, and the next oldest makes way."""
        while len(self._waiting) + len(self._reserve) >= self.health_reserve:
            oldest = next(iter(self._waiting.items()), None)
            if oldest is None:
                return False  # every slot answers a health check right now
            sock, waiting = oldest
            verdict = self._verdict(sock, waiting.head)
            self._settle(sock, waiting, _SERVE if verdict == _SERVE else _REFUSE)
        return True

    def _refuse(self, sock: socket.socket, client: tuple[str, int] | None) -> None:
        refuse_socket(sock)
        self.refused(client)

    # --- connections ----------------------------------------------------------------------

    def _open(
        self,
        sock: socket.socket,
        client: tuple[str, int] | None,
        kind: int,
        received: bytes = b"",
    ) -> None:
        """Make the connection's transport (a task: asyncio does it so). The socket is left
        as accepted until then: what is read or sent before says MSG_DONTWAIT, and
        ``connect_accepted_socket`` makes it non-blocking."""
        loop = self._loop
        if loop is None:
            sock.close()
            return
        connection = Connection(self, loop, kind=kind, client=client, received=received)
        if kind == GENERAL:
            self._general.add(connection)
        else:
            self._reserve[connection] = None
        setup = loop.create_task(loop.connect_accepted_socket(lambda: connection, sock))
        self._setups.add(setup)
        setup.add_done_callback(functools.partial(self._setup_done, connection, sock))

    def _setup_done(
        self, connection: Connection, sock: socket.socket, setup: asyncio.Task[Any]
    ) -> None:
        self._setups.discard(setup)
        if setup.cancelled() or setup.exception() is not None:
            sock.close()
            connection.setup_failed()

    def connection_closed(self, connection: Connection) -> None:
        self._general.discard(connection)
        self._reserve.pop(connection, None)
        self._check_drained()

    def refused(self, client: tuple[str, int] | None) -> None:
        """Count a connection answered 503 (logged once per interval, with the count)."""
        self._log(
            self._refusals,
            client=None if client is None else client[0],
            max_connections=self.max_connections,
            connections=self.connections,
        )

    def client_error(
        self,
        status: int,
        client: tuple[str, int] | None,
        method: str | None,
        path: str | None,
        reason: str | None = None,
    ) -> None:
        """Log a 4xx answer (rate-limited): never the query, which may carry the token."""
        self._log(
            self._client_errors,
            status=status,
            client=None if client is None else client[0],
            method=method,
            path=None if path is None else path[:200],
            reason=reason,
        )

    def _log(self, flood: FloodLog, **fields: Any) -> None:
        loop = asyncio.get_running_loop()
        due = flood.record(loop.time(), **fields)
        if due is not None:

            def flush() -> None:
                self._flushes.discard(handle)
                flood.flush(loop.time())

            handle = loop.call_at(due, flush)
            self._flushes.add(handle)

    def run_app(self, connection: Connection, cycle: Cycle) -> None:
        task = asyncio.get_running_loop().create_task(self._run_app(connection, cycle))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._check_drained()

    def _check_drained(self) -> None:
        if (
            self._drained is not None
            and not self._general
            and not self._reserve
            and not self._tasks
        ):
            self._drained.set()

    async def _run_app(self, connection: Connection, cycle: Cycle) -> None:
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
