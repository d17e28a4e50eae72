"""Mutated requests (hypothesis) against the server on loopback: never a 500, never a
traceback, every connection answered or closed within its deadline.

Each example sends 16 mutants of well-formed requests at once, each on its own connection,
cut into writes at random points, some followed by the client's end of file. Every
timeout of the server is 0.25 s here, so a mutant that leaves a head or a body incomplete
is answered 408 (or closed) 0.25 s after its last byte.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from iot_bridge.bootstrap import bind_socket
from iot_bridge.net.http.server import HttpServer
from tests.integration.http_edge.conftest import edge_app
from tests.support.raw_http import request

TIMEOUT_S = 0.25  # head, body stall and keep-alive
# A connection's first answer (or its close) comes within the deadline after its last byte,
# plus this for the event loops of a loaded 2-core machine.
SCHEDULING_SLACK_S = 1.0

SEEDS = [
    request("GET", "/health"),
    request("GET", "/echo?token=secret", "Accept: */*", "User-Agent: fuzz"),
    request("POST", "/echo", "Content-Type: application/json", body=b'{"devices": []}'),
    b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n",
    request("GET", "/health", version="1.0") + b"\r\n",
    request("GET", "/echo?1") + request("POST", "/echo?2", body=b"two"),
    request("GET", "/health", "Connection: close", "Expect: 100-continue"),
    b"GET http://test/echo HTTP/1.1\r\nHost: test\r\n\r\n",
]
TOKENS = [
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b"\t",
    b":",
    b"\x00",
    b"\xff",
    b";",
    b",",
    b"Transfer-Encoding: chunked\r\n",
    b"Content-Length: 3\r\n",
    b"Content-Length: 99999999\r\n",
    b"0\r\n\r\n",
    b"FFFFFFFF\r\n",
    b"HTTP/1.0",
    b"HTTP/2.0",
    b"\r\n\r\n",
    b"Connection: close\r\n",
    b"GET / HTTP/1.1\r\n",
]


@st.composite
def mutants(draw: st.DrawFn) -> tuple[bytes, list[int], bool]:
    """A seed request with 1-4 mutations; where its writes are cut; whether EOF follows."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "insert", "token", "delete", "repeat", "cut"]))
        if kind == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "token":
            data[at:at] = draw(st.sampled_from(TOKENS))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif kind == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 64))] * draw(st.integers(1, 50))
        elif kind == "cut":
            del data[at:]
    if not data:
        data = bytearray(b"\r\n")
    cuts = sorted(draw(st.lists(st.integers(1, len(data)), max_size=3)))
    return bytes(data), cuts, draw(st.booleans())


async def one_client(port: int, data: bytes, cuts: list[int], eof: bool) -> dict[str, Any]:
    """Send ``data`` in writes cut at ``cuts``; read until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    previous = 0
    try:
        for cut in [*cuts, len(data)]:
            if cut > previous:
                writer.write(data[previous:cut])
                await writer.drain()
                await asyncio.sleep(0)
            previous = cut
        sent = time.monotonic()
        if eof:
            writer.write_eof()
        first = await reader.read(1)  # the first byte of an answer, or b"" at the close
        answered = time.monotonic()
        received = first + await asyncio.wait_for(reader.read(), 10.0)
    except (ConnectionResetError, BrokenPipeError):
        sent = answered = time.monotonic()
        received = b"<reset>"
    finally:
        writer.close()
    return {"data": data, "sent": sent - started, "answered": answered - sent, "raw": received}


def statuses_in(raw: bytes) -> list[int]:
    """Every status code of the responses in ``raw`` (a cheap scan: 'HTTP/1.1 NNN ')."""
    found = []
    for part in raw.split(b"HTTP/1.1 ")[1:]:
        if part[:3].isdigit() and part[3:4] == b" ":
            found.append(int(part[:3]))
    return found


async def run_example(examples: list[tuple[bytes, list[int], bool]]) -> None:
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: loop_errors.append(context))
    sock = bind_socket("127.0.0.1", 0)
    server = HttpServer(
        edge_app,
        head_timeout_s=TIMEOUT_S,
        request_timeout_s=TIMEOUT_S,
        keep_alive_timeout_s=TIMEOUT_S,
        graceful_shutdown_s=1.0,
    )
    serving = asyncio.create_task(server.serve(sock))
    await asyncio.sleep(0)
    port = sock.getsockname()[1]
    with capture_logs() as logs:
        results = await asyncio.gather(*(one_client(port, *example) for example in examples))
        server.stop()
        await asyncio.wait_for(serving, 10.0)
    for result in results:
        assert 500 not in statuses_in(result["raw"]), result
        assert result["answered"] <= TIMEOUT_S + SCHEDULING_SLACK_S, result
    assert not loop_errors
    for entry in logs:
        assert entry["log_level"] not in ("error", "critical"), entry
        assert "exc_info" not in entry and "exception" not in entry, entry
    assert server.connections == 0 and server.requests == 0


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(mutants(), min_size=16, max_size=16))
def test_mutated_requests_never_get_a_500_and_always_end(
    examples: list[tuple[bytes, list[int], bool]],
) -> None:
    """Property: for any mutant, no 500, no traceback, an answer or a close in time."""
    asyncio.run(run_example(examples))
