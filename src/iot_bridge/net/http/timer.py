"""A connection's one timer: its keep-alive idle time, its head's deadline, a stalled body,
or a lingering close.

A connection never has more than one, and none while it waits for the app or
the client reads a response. A stalled-body timer does not move at each read:
when it fires it looks at the last read and, if there was one since, sleeps
the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from iot_bridge.net.http.server import HttpServer

NO_TIMER: Final = 0
IDLE_TIMER: Final = 1
HEAD_TIMER: Final = 2
STALL_TIMER: Final = 3
LINGER_TIMER: Final = 4
# After an answer that ends the connection the write side is shut and what the client
# still sends is dropped for this long, so the answer is not lost to a TCP reset.
LINGER_S: Final = 2.0


class ConnectionTimer:
    """The timer of one connection; ``on_fire(kind)`` when it ends."""

    __slots__ = ("_handle", "_loop", "_on_fire", "_server", "kind", "last_read")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        server: HttpServer,
        on_fire: Callable[[int], None],
    ) -> None:
        self._loop = loop
        self._server = server
        self._on_fire = on_fire
        self._handle: asyncio.TimerHandle | None = None
        self.kind = NO_TIMER
        self.last_read = 0.0  # loop time of the last read of a body (for a stall)

    def set(self, kind: int) -> None:
        """Run the timer of ``kind`` (NO_TIMER: none); the same kind keeps its deadline."""
        if kind == self.kind:
            return  # a head's deadline does not move; a stall timer looks at the last read
        self.cancel()
        self.kind = kind
        server = self._server
        if kind == IDLE_TIMER:
            delay = server.keep_alive_timeout_s
        elif kind == HEAD_TIMER:
            delay = server.head_timeout_s
        elif kind == STALL_TIMER:
            self.last_read = self._loop.time()
            delay = server.request_timeout_s
        elif kind == LINGER_TIMER:
            delay = LINGER_S
        else:
            return
        self._handle = self._loop.call_later(delay, self._fire)

    def cancel(self) -> None:
        """No timer."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.kind = NO_TIMER

    def _fire(self) -> None:
        kind, self._handle, self.kind = self.kind, None, NO_TIMER
        if kind == STALL_TIMER:
            left = self.last_read + self._server.request_timeout_s - self._loop.time()
            if left > 0:
                self.kind = STALL_TIMER
                self._handle = self._loop.call_later(left, self._fire)
                return
        self._on_fire(kind)
