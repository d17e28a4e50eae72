"""The HTTP server's edge cases (issue 20) on real loopback sockets.

An h11 upgrade must pass this suite: it pins what our server does with what a
hostile or broken client sends, where h11's own behaviour decides much of it.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import AsyncIterator, Iterator

import pytest
from starlette.responses import StreamingResponse

from iot_bridge.net.http.server import Receive, Scope, Send
from tests.support.raw_http import read_body, respond, serve

__all__ = ["edge_app", "serve"]


@pytest.fixture(scope="session", autouse=True)
def _enough_file_descriptors() -> Iterator[None]:
    """The crowd tests hold thousands of sockets: the soft limit goes to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _ticks() -> AsyncIterator[bytes]:
    while True:
        yield b"data: tick\n\n"
        await asyncio.sleep(0.2)


async def edge_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The app behind the server in these tests.

    ``GET /health``: 200 at once. ``/echo`` and ``/``: the method, path, query and body
    it read.
    ``GET /stream``: an event stream (a Starlette StreamingResponse, as the board's).
    Anything else: its body read, then 404.
    """
    path = scope["path"]
    if path == "/health":
        await respond(send, b'{"status": "ok"}')
    elif path in ("/", "/echo"):
        body = await read_body(receive)
        query = scope["query_string"]
        await respond(send, f"{scope['method']} {path}?".encode() + query + b" " + body)
    elif path == "/stream":
        response = StreamingResponse(_ticks(), media_type="text/event-stream")
        await response(scope, receive, send)
    else:
        await read_body(receive)
        await respond(send, b"not found", 404)
