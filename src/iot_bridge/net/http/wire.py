"""The HTTP server's wire-level pieces: ASGI types, status lines, dates, canned answers.

Shared by ``server.py``, ``connection.py`` and ``cycle.py``; no state but the
cached ``Date`` value and reason phrases.
"""

from __future__ import annotations

import contextlib
import http
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final

import h11

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_DAYS: Final = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
_MONTHS: Final = (
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun",
    b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
)  # fmt: skip
_UNAVAILABLE_BODY: Final = b"Service Unavailable: too many connections\n"
UNAVAILABLE: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\n"
    b"connection: close\r\n\r\n%s" % (len(_UNAVAILABLE_BODY), _UNAVAILABLE_BODY)
)


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


date_header = _DateHeader()
_reasons: dict[int, bytes] = {}


def reason_phrase(status: int) -> bytes:
    reason = _reasons.get(status)
    if reason is None:
        try:
            reason = http.HTTPStatus(status).phrase.encode("ascii")
        except ValueError:
            reason = b""
        _reasons[status] = reason
    return reason


def error_text(err: h11.RemoteProtocolError) -> str:
    """h11's reason for refusing a request, without the client's bytes it quotes (a request
    line carries the query, and the query may carry the token)."""
    text = str(err)
    for quote in (" b'", ' b"', " bytearray(", " ("):
        cut = text.find(quote)
        if cut >= 0:
            text = text[:cut]
    return text.rstrip(": ")[:120] or "invalid request"


def error_response(status: int, *, head_only: bool) -> bytes:
    """Our own answer, as bytes (h11 may be in no state to send one); it ends the connection."""
    body = b"" if head_only else reason_phrase(status) + b"\n"
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\nconnection: close\r\ndate: %s\r\n\r\n%s"
        % (status, reason_phrase(status), len(body), date_header.value(), body)
    )


def has_both_lengths(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Content-Length and Transfer-Encoding together (h11 gives lower-case names)."""
    length = coding = False
    for name, _ in headers:
        if name == b"content-length":
            length = True
        elif name == b"transfer-encoding":
            coding = True
    return length and coding


def host_and_port(value: object) -> tuple[str, int] | None:
    """A socket address as (host, port); None for what is not one (a Unix socket)."""
    if isinstance(value, tuple) and len(value) >= 2:
        return str(value[0]), int(value[1])
    return None


def refuse_socket(sock: socket.socket) -> None:
    """503 on a socket no transport was made for, then close. What the client sent is
    read first: closing with unread bytes would send a reset that can overtake the 503."""
    with contextlib.suppress(OSError):
        sock.recv(65536, socket.MSG_DONTWAIT)
    with contextlib.suppress(OSError):
        sock.send(UNAVAILABLE, socket.MSG_DONTWAIT)
    sock.close()
