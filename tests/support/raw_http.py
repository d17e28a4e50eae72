"""Raw HTTP/1.1 on loopback for the server's tests: requests as bytes, replies parsed by hand.

httpx would refuse or repair most of what these tests send (and hide what the
server wrote), so requests are written byte for byte and replies read with a
small parser of our own.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from iot_bridge.bootstrap import bind_socket
from iot_bridge.net.http.server import ASGIApp, HttpServer, Message, Receive, Scope, Send

Serve = Callable[..., Awaitable[tuple[HttpServer, int]]]
DEADLINE_S = 10.0


@dataclass
class Reply:
    """One parsed response."""

    status: int
    headers: dict[bytes, bytes]
    body: bytes


async def wait_for_condition(check: Callable[[], bool], timeout_s: float = DEADLINE_S) -> None:
    """Poll ``check`` until it holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def read_head(
    reader: asyncio.StreamReader, timeout_s: float = DEADLINE_S
) -> tuple[int, dict[bytes, bytes]]:
    """A response's status and headers (names lower-cased)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
    status_line, *lines = head[:-4].split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers


async def read_reply(
    reader: asyncio.StreamReader, *, head_request: bool = False, timeout_s: float = DEADLINE_S
) -> Reply:
    """One response: Content-Length, chunked or up to the close; 1xx are skipped."""
    status, headers = await read_head(reader, timeout_s)
    while status < 200:
        status, headers = await read_head(reader, timeout_s)
    if head_request or status in (204, 304):
        return Reply(status, headers, b"")
    if b"content-length" in headers:
        length = int(headers[b"content-length"])
        body = await asyncio.wait_for(reader.readexactly(length), timeout_s)
    elif headers.get(b"transfer-encoding") == b"chunked":
        parts = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append((await reader.readexactly(size + 2))[:-2])
        while await reader.readuntil(b"\r\n") != b"\r\n":
            pass  # trailers
        body = b"".join(parts)
    else:
        body = await asyncio.wait_for(reader.read(), timeout_s)
    return Reply(status, headers, body)


async def until_closed(reader: asyncio.StreamReader, timeout_s: float = DEADLINE_S) -> bytes:
    """What the server still sends before it closes the connection (within the deadline)."""
    try:
        return await asyncio.wait_for(reader.read(), timeout_s)
    except ConnectionResetError:
        return b"<reset>"


def request(
    method: str = "GET", target: str = "/", *headers: str, body: bytes = b"", version: str = "1.1"
) -> bytes:
    """A request as bytes, with ``Host`` and (for a body) ``Content-Length``."""
    lines = [f"{method} {target} HTTP/{version}", "Host: test", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_body(receive: Receive) -> bytes:
    """The whole request body an app receives."""
    parts = []
    while True:
        message = await receive()
        assert message["type"] == "http.request"
        parts.append(message["body"])
        if not message.get("more_body", False):
            return b"".join(parts)


async def respond(
    send: Send, body: bytes, status: int = 200, *headers: tuple[bytes, bytes]
) -> None:
    """A complete response with a Content-Length."""
    head = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body)), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with the method, the path and the body it read."""
    body = await read_body(receive)
    await respond(send, f"{scope['method']} {scope['path']} ".encode() + body)


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """``serve(app, **options)``: an HttpServer on a free loopback port; stopped afterwards."""
    running: list[tuple[HttpServer, asyncio.Task[None]]] = []

    async def start(app: ASGIApp, **options: Any) -> tuple[HttpServer, int]:
        backlog = options.get("backlog")
        sock = (
            bind_socket("127.0.0.1", 0) if backlog is None else bind_socket("127.0.0.1", 0, backlog)
        )
        server = HttpServer(app, **options)
        task = asyncio.create_task(server.serve(sock))
        running.append((server, task))
        await asyncio.sleep(0)  # serve() starts accepting
        return server, sock.getsockname()[1]

    yield start
    for server, task in running:
        server.stop()
        await asyncio.wait_for(task, DEADLINE_S)


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client connection to the server on ``port``."""
    return await asyncio.open_connection("127.0.0.1", port)


async def exchange(port: int, data: bytes | list[bytes], *, timeout_s: float = DEADLINE_S) -> bytes:
    """Send ``data`` (a list: one write each, a loop turn apart) and read everything the
    server writes until it closes the connection."""
    reader, writer = await connect(port)
    try:
        for part in [data] if isinstance(data, bytes) else data:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0)
        return await until_closed(reader, timeout_s)
    finally:
        writer.close()


def statuses(raw: bytes) -> list[int]:
    """The status codes of every response in ``raw`` (bodies skipped by their length)."""
    found = []
    while raw.startswith(b"HTTP/1.1 "):
        head, _, rest = raw.partition(b"\r\n\r\n")
        found.append(int(head.split()[1]))
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        raw = rest[length:]
    return found


def unread_by_server(server_port: int, client_port: int) -> int:
    """Bytes the client sent that the server process has not read yet (the receive queue
    of the server's end of the connection, from /proc/net/tcp; Linux, IPv4)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, queues = fields[1], fields[2], fields[4]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == (
            client_port
        ):
            return int(queues.split(":")[1], 16)
    return 0  # closed: nothing is waiting


def listen_backlog(sock: socket.socket) -> int:
    """The backlog a listening socket really has (Linux: ``tcpi_sacked`` of its TCP_INFO)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return int.from_bytes(info[28:32], "little")


__all__ = [
    "DEADLINE_S",
    "Message",
    "Reply",
    "Serve",
    "connect",
    "echo",
    "exchange",
    "listen_backlog",
    "read_body",
    "read_head",
    "read_reply",
    "request",
    "respond",
    "serve",
    "statuses",
    "unread_by_server",
    "until_closed",
    "wait_for_condition",
]
