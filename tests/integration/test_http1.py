"""The sender's HTTP/1.1 exchange against canned replies from a real loopback server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from iot_bridge.net.http1 import (
    HttpProtocolError,
    StaleConnectionError,
    exchange,
    request_head,
)

Connect = Callable[..., Awaitable[Any]]
HEAD = request_head("POST", b"/ows/iot/event?db=x", [(b"Host", b"odoo"), (b"X-A", b"1")])


@pytest.fixture
async def canned() -> AsyncIterator[Connect]:
    """``connect(replies, close_after=False)``: a server answering each request with the next
    canned bytes; returns the client's streams and the requests the server read."""
    servers: list[asyncio.Server] = []
    writers: list[asyncio.StreamWriter] = []

    async def connect(
        replies: list[bytes], *, close_after: bool = False
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, list[bytes]]:
        seen: list[bytes] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for reply in replies:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                seen.append(head + await reader.readexactly(length))
                writer.write(reply)
                await writer.drain()
            if close_after:
                writer.close()
            else:
                await reader.read()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
        return reader, writer, seen

    yield connect
    for writer in writers:
        writer.close()
    for server in servers:
        server.close()


async def test_request_is_one_write_with_content_length(canned: Connect) -> None:
    """The request line, the prepared headers, Content-Length and the body go out as sent."""
    reader, writer, seen = await canned([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])
    reply = await exchange(reader, writer, HEAD, b'{"a":1}', reused=False)
    assert (reply.status, reply.body, reply.keep_alive) == (200, b"ok", True)
    assert seen == [
        b"POST /ows/iot/event?db=x HTTP/1.1\r\nHost: odoo\r\nX-A: 1\r\n"
        b'Content-Length: 7\r\n\r\n{"a":1}'
    ]


async def test_keep_alive_serves_several_requests(canned: Connect) -> None:
    """Replies with Content-Length leave the connection usable for the next request."""
    replies = [b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%d" % n for n in range(3)]
    reader, writer, _ = await canned(replies)
    bodies = [(await exchange(reader, writer, HEAD, b"x", reused=n > 0)).body for n in range(3)]
    assert bodies == [b"0", b"1", b"2"]


async def test_chunked_body_with_extensions_and_trailers(canned: Connect) -> None:
    """A chunked reply (as a proxy may send it) is joined; extensions and trailers are skipped."""
    reply = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    reader, writer, _ = await canned([reply, reply])
    first = await exchange(reader, writer, HEAD, b"", reused=False)
    assert (first.body, first.keep_alive) == (b"hello world", True)
    assert (await exchange(reader, writer, HEAD, b"", reused=True)).body == b"hello world"


async def test_body_until_close_is_not_kept_alive(canned: Connect) -> None:
    """Without Content-Length or chunking the body runs to the close; no reuse."""
    reader, writer, _ = await canned([b"HTTP/1.1 500 Oops\r\n\r\nbroken"], close_after=True)
    reply = await exchange(reader, writer, HEAD, b"", reused=False)
    assert (reply.status, reply.body, reply.keep_alive) == (500, b"broken", False)


@pytest.mark.parametrize(
    ("reply", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 204 No Content\r\n\r\n", True),
    ],
)
async def test_keep_alive_follows_the_reply(
    canned: Connect, reply: bytes, keep_alive: bool
) -> None:
    """Connection: close and HTTP/1.0 end keep-alive; 204 has no body and keeps it."""
    reader, writer, _ = await canned([reply])
    assert (await exchange(reader, writer, HEAD, b"", reused=False)).keep_alive is keep_alive


async def test_interim_replies_are_skipped(canned: Connect) -> None:
    """A 100 Continue before the reply is read past."""
    reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
    reader, writer, _ = await canned([reply])
    assert (await exchange(reader, writer, HEAD, b"", reused=False)).status == 201


async def test_headers_are_case_insensitive(canned: Connect) -> None:
    """Header names are matched whatever their case; values are stripped."""
    reply = b"HTTP/1.1 503 Unavailable\r\nRETRY-after:  30 \r\ncontent-LENGTH: 0\r\n\r\n"
    reader, writer, _ = await canned([reply])
    assert (await exchange(reader, writer, HEAD, b"", reused=False)).headers[
        b"retry-after"
    ] == b"30"


@pytest.mark.parametrize(
    "reply",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY",
    ],
)
async def test_broken_replies_are_protocol_errors(canned: Connect, reply: bytes) -> None:
    """What is not a valid HTTP/1.1 reply raises HttpProtocolError, never a wrong success."""
    reader, writer, _ = await canned([reply], close_after=True)
    with pytest.raises(HttpProtocolError):
        await exchange(reader, writer, HEAD, b"", reused=False)


async def test_a_reused_connection_closed_meanwhile_is_stale(canned: Connect) -> None:
    """A reused connection that the server closed gives StaleConnectionError, not a failure."""
    reader, writer, _ = await canned(
        [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"], close_after=True
    )
    await exchange(reader, writer, HEAD, b"", reused=False)
    with pytest.raises(StaleConnectionError):
        await exchange(reader, writer, HEAD, b"", reused=True)


async def test_a_fresh_connection_closed_early_is_a_protocol_error(canned: Connect) -> None:
    """On a new connection an early close is the server's fault, not staleness."""
    reader, writer, _ = await canned([b"HTTP/1.1 200"], close_after=True)
    with pytest.raises(HttpProtocolError):
        await exchange(reader, writer, HEAD, b"", reused=False)


@pytest.mark.parametrize(
    ("name", "value"), [(b"X", b"a\r\nInjected: 1"), (b"X\n", b"1"), (b"A:B", b"1")]
)
def test_header_values_cannot_split_the_head(name: bytes, value: bytes) -> None:
    """A header name or value with CR/LF (or a colon in a name) is refused up front."""
    with pytest.raises(ValueError, match="unusable HTTP header"):
        request_head("POST", b"/", [(name, value)])
