"""Request smuggling shapes: each is refused (and its connection closed) or read one way only.

Every case is followed by a pipelined request for ``/echo?smuggled``: it must never be
served, whatever a proxy in front would have made of the framing.
"""

from __future__ import annotations

import pytest

from tests.integration.http_edge.conftest import edge_app
from tests.support.raw_http import Serve, exchange, request, statuses

SMUGGLED = request("GET", "/echo?smuggled")


def post(*headers: bytes, body: bytes = b"", version: bytes = b"1.1") -> bytes:
    """A POST /echo with exactly these header lines (CRLF added) and body."""
    lines = [b"POST /echo HTTP/" + version, b"Host: test", *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


CHUNKED_HELLO = b"5\r\nhello\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    "data",
    [
        post(b"Content-Length: 4", b"Transfer-Encoding: chunked", body=CHUNKED_HELLO),
        post(b"Transfer-Encoding: chunked", b"Content-Length: 4", body=CHUNKED_HELLO),
        post(b"Transfer-Encoding: chunked", b"Content-Length: 40", body=CHUNKED_HELLO),
        post(b"Transfer-Encoding: CHUNKED", b"Content-Length: 0", body=CHUNKED_HELLO),
    ],
    ids=["cl-te", "te-cl", "te-longer-cl", "te-upper-cl"],
)
async def test_content_length_and_chunked_are_read_by_chunks_and_the_connection_closed(
    serve: Serve, data: bytes
) -> None:
    """CL + TE (RFC 9112 §6.1): the chunks are the body; answered with close; nothing after."""
    _, port = await serve(edge_app)
    raw = await exchange(port, data + SMUGGLED)
    assert statuses(raw) == [200]
    assert b"\r\nconnection: close\r\n" in raw.lower()
    assert raw.endswith(b"POST /echo? hello")
    assert b"smuggled" not in raw


@pytest.mark.parametrize(
    "data",
    [
        post(b"Content-Length: 5", b"Content-Length: 6", body=b"hello!"),
        post(b"Content-Length: 5, 6", body=b"hello!"),
        post(b"Content-Length: -5", body=b"hello"),
        post(b"Content-Length: 0x5", body=b"hello"),
        post(b"Content-Length: 5 5", body=b"hello"),
        post(b"Content-Length: +5", body=b"hello"),
        post(b"Content-Length: " + b"9" * 30, body=b"hello"),
        post(b"Transfer-Encoding: chunked, identity", body=CHUNKED_HELLO),
        post(b"Transfer-Encoding: identity, chunked", body=CHUNKED_HELLO),
        post(b"Transfer-Encoding: identity", body=b"hello"),
        post(b"Transfer-Encoding: gzip, chunked", body=CHUNKED_HELLO),
        post(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked", body=CHUNKED_HELLO),
        post(b"Transfer-Encoding: xchunked", body=CHUNKED_HELLO),
        post(b"Transfer-Encoding : chunked", body=CHUNKED_HELLO),
        post(b"Transfer-Encoding:\r\n chunked", body=CHUNKED_HELLO),
        post(b"X-Folded: a", b" b", b"Content-Length: 5", body=b"hello"),
        post(b"X-Folded: a", b"\tb", b"Content-Length: 5", body=b"hello"),
        b"POST /echo HTTP/1.1\nHost: test\nContent-Length: 5\n\nhello",
        b"POST /echo HTTP/1.1\r\nHost: test\nContent-Length: 5\r\n\r\nhello",
        b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\n\r\nhello",
        b"POST /echo HTTP/1.1\r\nHost: test\r\nX-A: 1\rContent-Length: 5\r\n\r\nhello",
        b" POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /echo HTTP/1.1\r\n Host: test\r\nContent-Length: 5\r\n\r\nhello",
        b"POST  /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
    ],
    ids=[
        "two-cls",
        "cl-list",
        "cl-negative",
        "cl-hex",
        "cl-two-numbers",
        "cl-plus",
        "cl-huge",
        "te-chunked-identity",
        "te-identity-chunked",
        "te-identity",
        "te-gzip-chunked",
        "te-twice",
        "te-xchunked",
        "te-space-before-colon",
        "te-obs-fold",
        "obs-fold-space",
        "obs-fold-tab",
        "bare-lf-everywhere",
        "bare-lf-one-line",
        "bare-lf-empty-line",
        "bare-cr",
        "space-before-request-line",
        "space-before-first-header",
        "double-space-request-line",
        "two-hosts",
        "no-host-1.1",
    ],
)
async def test_ambiguous_framing_is_400_and_the_connection_closed(
    serve: Serve, data: bytes
) -> None:
    """Framing two parsers could read differently: 400, closed, the next request never read."""
    _, port = await serve(edge_app)
    raw = await exchange(port, data + SMUGGLED)
    assert statuses(raw) == [400]
    assert b"smuggled" not in raw


@pytest.mark.parametrize(
    "chunks",
    [
        b"-1\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"G\r\nhello\r\n0\r\n\r\n",
        b"\r\nhello\r\n0\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloX\r\n0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhello0\r\n\r\n",
        b"1" * 21 + b"\r\nhello\r\n0\r\n\r\n",
    ],
    ids=[
        "negative",
        "hex-prefix",
        "not-hex",
        "empty",
        "leading-space",
        "bare-lf-after-size",
        "longer-than-size",
        "bare-lf-after-data",
        "no-crlf-after-data",
        "21-digits",
    ],
)
async def test_bad_chunks_are_400_and_the_connection_closed(serve: Serve, chunks: bytes) -> None:
    """A chunk size or chunk end h11 cannot read: 400, closed, nothing after it served."""
    _, port = await serve(edge_app)
    raw = await exchange(port, post(b"Transfer-Encoding: chunked", body=chunks) + SMUGGLED)
    assert statuses(raw) == [400]
    assert b"smuggled" not in raw


async def test_a_huge_chunk_size_is_a_body_that_stalls(serve: Serve) -> None:
    """16 hex digits of chunk size: the body is what arrives; when it stops, 408 and close."""
    _, port = await serve(edge_app, request_timeout_s=0.3)
    data = post(b"Transfer-Encoding: chunked", body=b"FFFFFFFFFFFFFFFF\r\nhello") + SMUGGLED
    raw = await exchange(port, data)
    assert statuses(raw) == [408]
    assert b"smuggled" not in raw


async def test_identical_content_lengths_are_one(serve: Serve) -> None:
    """Content-Length repeated with the same value (RFC 9110 §8.6 lets a recipient accept it)."""
    _, port = await serve(edge_app)
    data = post(b"Content-Length: 5", b"Content-Length: 5", b"Connection: close", body=b"hello")
    raw = await exchange(port, data)
    assert statuses(raw) == [200]
    assert raw.endswith(b"POST /echo? hello")


async def test_chunked_in_http_1_0_is_read_by_chunks_and_closed(serve: Serve) -> None:
    """Transfer-Encoding in an HTTP/1.0 request: read by its chunks, answered, closed."""
    _, port = await serve(edge_app)
    raw = await exchange(
        port, post(b"Transfer-Encoding: chunked", body=CHUNKED_HELLO, version=b"1.0") + SMUGGLED
    )
    assert statuses(raw) == [200]
    assert raw.endswith(b"POST /echo? hello")


async def test_chunk_extensions_are_ignored(serve: Serve) -> None:
    """A chunk extension (of any bytes but a line end: h11 does not read them) changes
    nothing: the body is the chunks' data."""
    _, port = await serve(edge_app)
    body = b"5;name=value\r\nhello\r\n1;\x00\r\n!\r\n0\r\n\r\n"
    raw = await exchange(port, post(b"Transfer-Encoding: chunked", b"Connection: close", body=body))
    assert statuses(raw) == [200]
    assert raw.endswith(b"POST /echo? hello!")
