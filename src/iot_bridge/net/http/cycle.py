"""One request and its response as the app sees them: ASGI ``receive`` and ``send``."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

from iot_bridge.net.http.wire import ClientDisconnected, Message, Scope

if TYPE_CHECKING:
    from iot_bridge.net.http.connection import Connection

_DISCONNECT: Final[dict[str, Any]] = {"type": "http.disconnect"}


def wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class Cycle:
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
        self, connection: Connection, scope: Scope, *, head_only: bool, expect_continue: bool
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
        wake(self.waiter)

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
