"""Oversized lines and heads, in one read and in many; the deadlines of heads and bodies."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.integration.http_edge.conftest import edge_app
from tests.support.raw_http import (
    Serve,
    connect,
    exchange,
    read_reply,
    request,
    statuses,
    until_closed,
)

BIG = 100_000  # over the 64 KiB head limit


def pieces(data: bytes, size: int) -> list[bytes]:
    """``data`` cut into writes of ``size`` bytes."""
    return [data[i : i + size] for i in range(0, len(data), size)]


OVERSIZED = {
    "request-line": f"GET /{'a' * BIG} HTTP/1.1\r\nHost: test\r\n\r\n".encode(),
    "one-header": request("GET", "/health", "X-Big: " + "a" * BIG),
    "many-headers": request("GET", "/health", *[f"X-{n}: v" for n in range(15_000)]),
    "no-line-end": b"GET /" + b"a" * BIG,
    "no-head-end": request("GET", "/health")[:-2] + b"X-A: b\r\n" * 12_500,
    "empty-lines-then-big": b"\r\n" * 10 + request("GET", "/health", "X-Big: " + "a" * BIG),
}


@pytest.mark.parametrize("size", [None, 1024, 7], ids=["one-write", "1-KiB", "7-bytes"])
@pytest.mark.parametrize("shape", sorted(OVERSIZED))
async def test_oversized_heads_are_431_however_they_arrive(
    serve: Serve, shape: str, size: int | None
) -> None:
    """A request line, a header, a head over 64 KiB (ended or not): 431 and closed, whether
    it comes in one write or in many small ones."""
    _, port = await serve(edge_app)
    data = OVERSIZED[shape] + request("GET", "/echo?after")
    raw = await exchange(port, data if size is None else pieces(data, size))
    assert statuses(raw) == [431]


async def test_a_head_arriving_slowly_but_whole_in_time_is_served(serve: Serve) -> None:
    """A head in 10 pieces well within its deadline is served (the deadline is not a rate)."""
    _, port = await serve(edge_app, head_timeout_s=5.0)
    reader, writer = await connect(port)
    for part in pieces(request("GET", "/health"), 4):
        writer.write(part)
        await writer.drain()
        await asyncio.sleep(0.01)
    assert (await read_reply(reader)).status == 200
    writer.close()


@pytest.mark.parametrize(
    "drip",
    [b"\r\n", b"G", b"X-Header: value\r\n"],
    ids=["empty-lines", "bytes", "whole-header-lines"],
)
async def test_a_dripping_head_of_any_shape_is_408_at_its_deadline(
    serve: Serve, drip: bytes
) -> None:
    """Empty lines, single bytes or complete header lines every 50 ms: the head's deadline
    (0.4 s) holds all the same, with a 30 s stall timeout that each byte would restart."""
    _, port = await serve(edge_app, head_timeout_s=0.4, request_timeout_s=30.0)
    reader, writer = await connect(port)
    start = b"" if drip == b"\r\n" else b"GET /health HTTP/1.1\r\n"
    writer.write(start + drip)
    began = time.monotonic()

    async def dripping() -> None:
        while True:
            await asyncio.sleep(0.05)
            writer.write(drip)

    task = asyncio.create_task(dripping())
    try:
        reply = await read_reply(reader, timeout_s=5.0)
    finally:
        task.cancel()
    assert reply.status == 408
    assert 0.4 <= time.monotonic() - began < 5.0
    writer.close()


async def test_a_silent_connection_is_closed_without_an_answer(serve: Serve) -> None:
    """A connection that never sends a byte is closed at the keep-alive timeout, no answer."""
    server, port = await serve(edge_app, keep_alive_timeout_s=0.2, head_timeout_s=30.0)
    reader, writer = await connect(port)
    assert await until_closed(reader, 5.0) == b""
    assert server.connections == 0
    writer.close()


async def test_the_next_head_has_a_deadline_of_its_own(serve: Serve) -> None:
    """On a kept-alive connection a head's deadline runs from its own first byte: the second
    head, ending 1.2 s after the connection began, is served with a 1 s deadline."""
    _, port = await serve(edge_app, head_timeout_s=1.0)
    reader, writer = await connect(port)
    writer.write(request("GET", "/health"))
    assert (await read_reply(reader)).status == 200
    await asyncio.sleep(0.7)  # idle between requests: no head is under way
    writer.write(b"GET /health HTTP/1.1\r\n")
    await asyncio.sleep(0.5)
    writer.write(b"Host: test\r\n\r\n")
    assert (await read_reply(reader)).status == 200
    writer.close()


async def test_a_body_that_stalls_is_408(serve: Serve) -> None:
    """A body that stops arriving for request_timeout_s: 408 and closed."""
    _, port = await serve(edge_app, request_timeout_s=0.3)
    raw = await exchange(port, request("POST", "/echo", "Content-Length: 10") + b"abc")
    assert statuses(raw) == [408]
