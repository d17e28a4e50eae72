"""A minimal HTTP/1.1 client exchange over asyncio streams, for one kind of request.

The Odoo sender POSTs small JSON bodies to one URL, thousands of times a
second during a backlog. General clients (httpx, and h11 below it) spend most
of the CPU of such an exchange on generality: header normalisation, state
machines, per-request objects. This module writes a request whose head is
prepared once and reads the reply with a few ``bytes`` operations:

- the status line and headers (at most ``MAX_HEAD_BYTES``), skipping 1xx
  interim replies;
- the body by ``Content-Length``, by ``Transfer-Encoding: chunked``, or, with
  neither, until the server closes the connection; 204 and 304 have none; at
  most ``max_body_bytes`` (1 MiB unless the caller says otherwise);
- keep-alive as HTTP/1.1 says: reusable unless ``Connection: close``, an
  HTTP/1.0 reply without ``keep-alive``, or a close-delimited body.

A reply that breaks these rules raises ``HttpProtocolError``. A reused
connection that the server had closed meanwhile (idle timeout) fails before
any byte of a reply arrives: ``StaleConnectionError``, so the caller can send
again on a fresh connection.
"""

from __future__ import annotations

import asyncio

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})


class HttpProtocolError(Exception):
    """The server's reply is not valid HTTP/1.1 (or too large)."""


class StaleConnectionError(Exception):
    """A reused connection was closed by the server before it sent any reply."""


def request_head(method: str, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """The request line and headers, up to (not including) ``Content-Length``.

    Raises ``ValueError`` if a name or value could split the head (CR, LF).
    """
    lines = [method.encode("ascii") + b" " + target + b" HTTP/1.1"]
    for name, value in headers:
        if any(c in name + value for c in (b"\r", b"\n", b"\0")) or b":" in name:
            raise ValueError(f"unusable HTTP header {name!r}")
        lines.append(name + b": " + value)
    return b"\r\n".join(lines) + b"\r\nContent-Length: "


class Reply:
    """A parsed reply: status, headers (lower-case names), body, and keep-alive."""

    __slots__ = ("body", "headers", "keep_alive", "status")

    def __init__(
        self, status: int, headers: dict[bytes, bytes], body: bytes, keep_alive: bool
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive


async def exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    head: bytes,
    body: bytes,
    *,
    reused: bool,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Reply:
    """Send ``head`` (from ``request_head``) with ``body``; read the whole reply."""
    try:
        writer.write(b"%s%d\r\n\r\n%s" % (head, len(body), body))
        while True:
            status, version, headers = await _read_head(reader, reused=reused)
            if status >= 200:
                break
            reused = False  # an interim reply came: the connection is alive
    except (ConnectionResetError, BrokenPipeError) as err:
        if reused:
            raise StaleConnectionError from err
        raise
    keep_alive = _keep_alive(version, headers)
    if status in _NO_BODY_STATUSES:
        return Reply(status, headers, b"", keep_alive)
    transfer = headers.get(b"transfer-encoding")
    if transfer is not None:
        if transfer.strip().lower() != b"chunked":
            raise HttpProtocolError(f"unsupported Transfer-Encoding {transfer!r}")
        return Reply(status, headers, await _read_chunked(reader, max_body_bytes), keep_alive)
    length = headers.get(b"content-length")
    if length is not None:
        text = length.strip()
        if not text.isdigit():
            raise HttpProtocolError(f"bad Content-Length {length!r}")
        size = int(text)
        if size > max_body_bytes:
            raise HttpProtocolError(_too_large(max_body_bytes))
        return Reply(status, headers, await _read_exactly(reader, size), keep_alive)
    return Reply(status, headers, await _read_to_close(reader, max_body_bytes), False)


def _too_large(max_body_bytes: int) -> str:
    return f"reply body larger than {max_body_bytes / 2**20:g} MiB"


async def _read_head(
    reader: asyncio.StreamReader, *, reused: bool
) -> tuple[int, bytes, dict[bytes, bytes]]:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as err:
        if reused and not err.partial:
            raise StaleConnectionError from err
        raise HttpProtocolError("connection closed before the reply head ended") from err
    except asyncio.LimitOverrunError as err:
        raise HttpProtocolError("reply head too large") from err
    lines = raw[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise HttpProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise HttpProtocolError(f"bad header line {line[:80]!r}")
        key = name.lower()
        value = value.strip()
        if key == b"content-length" and key in headers and headers[key] != value:
            raise HttpProtocolError("conflicting Content-Length headers")
        headers[key] = value
    return int(parts[1]), parts[0], headers


def _keep_alive(version: bytes, headers: dict[bytes, bytes]) -> bool:
    tokens = {t.strip().lower() for t in headers.get(b"connection", b"").split(b",")}
    if version == b"HTTP/1.0":
        return b"keep-alive" in tokens
    return b"close" not in tokens


async def _read_exactly(reader: asyncio.StreamReader, size: int) -> bytes:
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError as err:
        raise HttpProtocolError("connection closed before the reply body ended") from err


async def _read_chunked(reader: asyncio.StreamReader, max_body_bytes: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        try:
            line = await reader.readuntil(b"\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as err:
            raise HttpProtocolError("bad chunked reply body") from err
        size_text = line[:-2].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError as err:
            raise HttpProtocolError(f"bad chunk size {size_text[:20]!r}") from err
        if size < 0:
            raise HttpProtocolError("bad chunk size")
        if size == 0:
            break
        total += size
        if total > max_body_bytes:
            raise HttpProtocolError(_too_large(max_body_bytes))
        chunk = await _read_exactly(reader, size + 2)
        if chunk[-2:] != b"\r\n":
            raise HttpProtocolError("chunk not followed by CRLF")
        parts.append(chunk[:-2])
    while True:  # trailer fields, up to the empty line
        try:
            trailer = await reader.readuntil(b"\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as err:
            raise HttpProtocolError("bad chunked reply trailer") from err
        if trailer == b"\r\n":
            return b"".join(parts)


async def _read_to_close(reader: asyncio.StreamReader, max_body_bytes: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            return b"".join(parts)
        total += len(chunk)
        if total > max_body_bytes:
            raise HttpProtocolError(_too_large(max_body_bytes))
        parts.append(chunk)
