"""Pipelining and HTTP/1.0: answers in order, and where a connection's requests end."""

from __future__ import annotations

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

MIXED = [
    request("GET", "/echo?1"),
    request("POST", "/echo?2", body=b"two"),
    b"POST /echo?3 HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nthree\r\n0\r\n\r\n",
    request("GET", "/missing"),
    request("GET", "/echo?5", "Connection: close"),
]
ANSWERS = [b"GET /echo?1 ", b"POST /echo?2 two", b"POST /echo?3 three", b"not found"]


@pytest.mark.parametrize("split", ["one-write", "byte-by-byte", "per-request"])
async def test_pipelined_requests_are_answered_in_order(serve: Serve, split: str) -> None:
    """Five requests (bodies by length and by chunks, a 404, a close) in one write, byte by
    byte, or one write each: five answers in order, then the close."""
    _, port = await serve(edge_app)
    data = b"".join(MIXED)
    parts = {
        "one-write": [data],
        "byte-by-byte": [data[i : i + 1] for i in range(len(data))],
        "per-request": MIXED,
    }[split]
    raw = await exchange(port, parts)
    assert statuses(raw) == [200, 200, 200, 404, 200]
    positions = [raw.index(body) for body in ANSWERS]
    assert positions == sorted(positions)
    assert raw.endswith(b"GET /echo?5 ")


async def test_empty_lines_between_pipelined_requests_are_ignored(serve: Serve) -> None:
    """RFC 9112 §2.2: CRLFs before a request line (after a body, as old clients sent) are
    skipped, in the first read or between pipelined requests."""
    _, port = await serve(edge_app)
    data = (
        b"\r\n\r\n"
        + request("POST", "/echo?1", body=b"one")
        + b"\r\n"
        + request("GET", "/echo?2", "Connection: close")
    )
    raw = await exchange(port, data)
    assert statuses(raw) == [200, 200]
    assert raw.endswith(b"GET /echo?2 ")


async def test_a_refused_request_ends_the_pipeline(serve: Serve) -> None:
    """After a request the server refuses (400), the requests pipelined behind it are not read."""
    _, port = await serve(edge_app)
    raw = await exchange(port, request("GET", "/echo?1") + b"BAD\r\n\r\n" + request("GET", "/"))
    assert statuses(raw) == [200, 400]


async def test_a_pipelined_request_after_the_app_answered_early_is_served(serve: Serve) -> None:
    """A 404 answered before its body was read: the body is skipped, the next request served."""
    _, port = await serve(edge_app)
    data = request("POST", "/missing", body=b"x" * 100_000) + request(
        "GET", "/echo?next", "Connection: close"
    )
    raw = await exchange(port, data)
    assert statuses(raw) == [404, 200]
    assert raw.endswith(b"GET /echo?next ")


@pytest.mark.parametrize(
    "data",
    [
        request("GET", "/echo?a", version="1.0"),
        request("GET", "/echo?a", "Connection: keep-alive", version="1.0"),
        b"GET /echo?a HTTP/1.0\r\n\r\n",
        request("POST", "/echo?a", body=b"body", version="1.0"),
    ],
    ids=["get", "keep-alive-asked", "no-host", "post"],
)
async def test_http_1_0_is_answered_and_closed(serve: Serve, data: bytes) -> None:
    """HTTP/1.0 (with or without Host, even asking keep-alive): one answer, then the close."""
    _, port = await serve(edge_app)
    raw = await exchange(port, data + request("GET", "/echo?after"))
    assert statuses(raw) == [200]
    assert b"GET /echo?a " in raw or b"POST /echo?a body" in raw
    assert b"after" not in raw


async def test_http_1_0_answer_to_a_reader_that_waits(serve: Serve) -> None:
    """The answer to HTTP/1.0 is complete, and the server closes its side after it."""
    _, port = await serve(edge_app)
    reader, writer = await connect(port)
    writer.write(request("GET", "/health", version="1.0"))
    reply = await read_reply(reader)
    assert (reply.status, reply.body) == (200, b'{"status": "ok"}')
    assert await until_closed(reader) == b""
    writer.close()
