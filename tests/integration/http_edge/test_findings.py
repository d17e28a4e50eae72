"""Issue 20's five findings, one regression test (or a few) each: each failed before its fix."""

from __future__ import annotations

import asyncio
import resource
import time

import pytest
from structlog.testing import capture_logs

from iot_bridge.bootstrap import FD_HEADROOM, bind_socket, connection_cap, raise_fd_limit
from iot_bridge.net.http.server import HEALTH_RESERVE, HttpServer, Receive, Scope, Send
from tests.integration.http_edge.conftest import edge_app
from tests.support.raw_http import (
    Serve,
    connect,
    exchange,
    listen_backlog,
    read_body,
    read_reply,
    request,
    respond,
    statuses,
    unread_by_server,
    until_closed,
    wait_for_condition,
)

# --- 1. a request that ends the connection keeps its answer ---------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"GET /health HTTP/1.0\r\n\r\n\r\n",
        b"GET /health HTTP/1.0\r\n\r\nGET /health HTTP/1.0\r\n\r\n",
        request("GET", "/health", "Connection: close") + b"x",
        request("GET", "/health", "Connection: close") + request("GET", "/echo"),
    ],
    ids=["http10-crlf", "http10-pipelined", "close-garbage", "close-pipelined"],
)
async def test_extra_bytes_after_a_last_request_do_not_replace_its_answer(
    serve: Serve, data: bytes
) -> None:
    """Bytes after a request that ends the connection, in the same write: its 200, only."""
    _, port = await serve(edge_app)
    assert statuses(await exchange(port, data)) == [200]


async def test_extra_bytes_while_the_app_runs_do_not_replace_its_answer(serve: Serve) -> None:
    """An HTTP/1.0 POST whose client sends more while the app works still gets the app's 200."""
    started = asyncio.Event()
    release = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        started.set()
        await release.wait()
        await respond(send, b"applied " + body)

    _, port = await serve(app)
    reader, writer = await connect(port)
    writer.write(request("POST", "/config", body=b"{}", version="1.0"))
    await asyncio.wait_for(started.wait(), 10)
    writer.write(b"\r\n")
    await writer.drain()
    client_port = writer.get_extra_info("sockname")[1]
    await wait_for_condition(lambda: unread_by_server(port, client_port) == 0)
    release.set()
    reply = await read_reply(reader)
    assert (reply.status, reply.body) == (200, b"applied {}")
    assert await until_closed(reader) == b""
    writer.close()


# --- 2. dripping clients: a deadline for the head, a cap on connections ---------------------


async def test_a_dripped_head_is_cut_at_its_deadline(serve: Serve) -> None:
    """One byte every 0.1 s does not hold a connection: 408 at the head's deadline."""
    _, port = await serve(edge_app, head_timeout_s=0.5)
    reader, writer = await connect(port)
    head = request("GET", "/health", "X-Pad: " + "a" * 200)
    first_byte = time.monotonic()

    async def drip() -> None:
        for byte in head[:-4]:
            writer.write(bytes([byte]))
            await asyncio.sleep(0.1)

    dripping = asyncio.create_task(drip())
    try:
        reply = await read_reply(reader, timeout_s=5.0)
    finally:
        dripping.cancel()
    ended = time.monotonic() - first_byte
    assert reply.status == 408
    assert 0.5 <= ended < 5.0
    writer.close()


async def test_connections_over_the_cap_are_answered_503_and_closed_at_once(
    serve: Serve,
) -> None:
    """Over max_connections (no reserve) a new connection gets 503 before it sends a byte."""
    server, port = await serve(edge_app, max_connections=3, health_reserve=0)
    held = [await connect(port) for _ in range(3)]
    await wait_for_condition(lambda: server.connections == 3)
    reader, writer = await connect(port)
    reply = await read_reply(reader, timeout_s=2.0)
    assert (reply.status, reply.headers[b"connection"]) == (503, b"close")
    assert await until_closed(reader, 2.0) == b""
    assert server.connections == 3
    writer.close()
    for _, held_writer in held:
        held_writer.close()


async def test_refusals_are_logged_once_per_interval_with_their_count(serve: Serve) -> None:
    """50 refused connections: one line at once, then one with the count of the rest."""
    server, port = await serve(edge_app, max_connections=1, health_reserve=0, log_interval_s=0.3)
    held = await connect(port)
    await wait_for_condition(lambda: server.connections == 1)
    with capture_logs() as logs:
        for _ in range(50):
            reader, writer = await connect(port)
            assert (await read_reply(reader)).status == 503
            writer.close()

        def refusal_lines() -> list[int]:
            return [e["count"] for e in logs if e["event"] == "http_connection_refused"]

        await wait_for_condition(lambda: sum(refusal_lines()) == 50)
    assert len(refusal_lines()) <= 3  # at once, then one per 0.3 s interval
    assert refusal_lines()[0] == 1
    held[1].close()


async def test_health_answers_through_the_reserve_while_the_cap_is_reached(
    serve: Serve,
) -> None:
    """Cap and reserve held by idle and dripping clients: GET /health still gets its 200, the
    reserve's oldest waiting client makes way (503), and other paths get 503."""
    server, port = await serve(edge_app, max_connections=4, health_reserve=2)
    idle = [await connect(port) for _ in range(4)]
    await wait_for_condition(lambda: server.connections == 4)
    dripping = [await connect(port) for _ in range(2)]
    for _, writer in dripping:
        writer.write(b"GE")
    await wait_for_condition(lambda: server.connections == 6)
    reader, writer = await connect(port)
    writer.write(request("GET", "/health"))
    reply = await read_reply(reader, timeout_s=2.0)
    assert (reply.status, reply.headers[b"connection"]) == (200, b"close")
    assert (await read_reply(dripping[0][0], timeout_s=2.0)).status == 503
    writer.close()
    other_reader, other_writer = await connect(port)
    other_writer.write(request("GET", "/echo"))
    assert (await read_reply(other_reader, timeout_s=2.0)).status == 503
    other_writer.close()
    for _, held in idle + dripping:
        held.close()


async def test_a_health_check_sent_in_pieces_over_the_cap_is_served(serve: Serve) -> None:
    """Over the cap, a GET /health whose head comes in pieces waits in the reserve and is
    answered once whole; one that never ends is answered 503 at the head's deadline."""
    server, port = await serve(edge_app, max_connections=1, head_timeout_s=0.5)
    held = await connect(port)
    await wait_for_condition(lambda: server.connections == 1)
    reader, writer = await connect(port)
    slow_reader, slow_writer = await connect(port)
    writer.write(b"GET /hea")
    slow_writer.write(b"GET /health HTTP/1.1\r\n")
    await wait_for_condition(lambda: server.connections == 3)
    writer.write(b"lth HTTP/1.1\r\nHost: test\r\n\r\n")
    assert (await read_reply(reader, timeout_s=2.0)).status == 200
    assert (await read_reply(slow_reader, timeout_s=2.0)).status == 503
    for held_writer in (held[1], writer, slow_writer):
        held_writer.close()


async def test_a_lowered_cap_applies_to_the_next_connections(serve: Serve) -> None:
    """max_connections changed while serving (a config push) is the cap of what comes next."""
    server, port = await serve(edge_app, max_connections=10, health_reserve=0)
    first = await connect(port)
    await wait_for_condition(lambda: server.connections == 1)
    server.max_connections = 1
    reader, writer = await connect(port)
    assert (await read_reply(reader, timeout_s=2.0)).status == 503
    first[1].write(request("GET", "/health"))
    assert (await read_reply(first[0])).status == 200
    for held in (first[1], writer):
        held.close()


def test_the_soft_fd_limit_is_raised_to_the_hard_limit() -> None:
    """raise_fd_limit: the soft RLIMIT_NOFILE becomes the hard one, and is returned."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        assert raise_fd_limit() == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_cap_is_lowered_to_fit_under_the_fd_limit() -> None:
    """A cap that would not fit beside the health reserve and the headroom is lowered, logged."""
    assert connection_cap(512, 20_000) == 512
    with capture_logs() as logs:
        lowered = connection_cap(512, 400)
    assert lowered == 400 - FD_HEADROOM - HEALTH_RESERVE
    assert [e["event"] for e in logs] == ["http_max_connections_lowered"]


# --- 3. the head limit, whatever the read size ----------------------------------------------


async def test_a_head_over_the_limit_in_one_read_is_431(serve: Serve) -> None:
    """The issue's 118 KB head of 10,000 headers, read at once (it fits the socket's receive
    buffer): 431 (it was served: h11 checks its buffer only while it waits for more)."""
    _, port = await serve(edge_app)
    head = request("GET", "/health", *[f"X-H{n}: a" for n in range(10_000)])
    assert 115_000 < len(head) < 120_000
    assert statuses(await exchange(port, head)) == [431]


@pytest.mark.parametrize("split", [False, True], ids=["one-write", "1-KiB-writes"])
async def test_the_head_limit_is_64_kib_exactly(serve: Serve, split: bool) -> None:
    """A head of 64 KiB is served; one byte more is 431, in one write or many."""
    _, port = await serve(edge_app)
    for size, expected in ((64 * 1024, 200), (64 * 1024 + 1, 431)):
        head = _padded_head(size)
        assert len(head) == size
        parts = [head[i : i + 1024] for i in range(0, len(head), 1024)] if split else head
        assert statuses(await exchange(port, parts)) == [expected]


def _padded_head(size: int) -> bytes:
    head = request("GET", "/health", "Connection: close", "X-Pad: ")
    return head[:-4] + b"a" * (size - len(head)) + b"\r\n\r\n"


# --- 4. Content-Length and Transfer-Encoding together --------------------------------------


async def test_content_length_with_chunked_is_read_by_its_chunks_answered_and_closed(
    serve: Serve,
) -> None:
    """CL + TE: the chunks are the body, the answer says close, what follows is not served."""
    _, port = await serve(edge_app)
    smuggled = request("GET", "/echo?smuggled")
    data = (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + smuggled
    )
    raw = await exchange(port, data)
    assert statuses(raw) == [200]
    assert b"connection: close" in raw.lower()
    assert raw.endswith(b"POST /echo? hello")


# --- 5. backlog, absolute form, HTTP/2.0, 4xx logs --------------------------------------------


async def test_the_listen_backlog_is_the_one_configured() -> None:
    """The socket listens with the backlog given, not asyncio's 100 of its second listen()."""
    sock = bind_socket("127.0.0.1", 0, backlog=77)
    server = HttpServer(edge_app, backlog=77)
    await server.start(sock)
    try:
        assert listen_backlog(sock) == 77
    finally:
        await server.shutdown()
        sock.close()


async def test_bind_socket_listens_with_the_default_backlog() -> None:
    """bind_socket and HttpServer share one default backlog (128)."""
    sock = bind_socket("127.0.0.1", 0)
    server = HttpServer(edge_app)
    await server.start(sock)
    try:
        assert listen_backlog(sock) == 128
    finally:
        await server.shutdown()
        sock.close()


@pytest.mark.parametrize(
    ("target", "seen"),
    [
        ("http://test/echo?a=1", b"GET /echo?a=1 "),
        ("HTTP://test:8080/echo", b"GET /echo? "),
        ("https://test/echo", b"GET /echo? "),
        ("http://test?a=1", b"GET /?a=1 "),
    ],
)
async def test_absolute_form_targets_are_served(serve: Serve, target: str, seen: bytes) -> None:
    """RFC 9112 §3.2.2: GET http://host/path is the path's resource, not a 404."""
    _, port = await serve(edge_app)
    reader, writer = await connect(port)
    writer.write(request("GET", target))
    reply = await read_reply(reader)
    writer.close()
    assert (reply.status, reply.body) == (200, seen)


@pytest.mark.parametrize("version", ["2.0", "0.9", "3.1"])
async def test_versions_other_than_http_1_are_505(serve: Serve, version: str) -> None:
    """An HTTP/2.0 (or 0.9, 3.1) request line is refused with 505 and the connection closed."""
    _, port = await serve(edge_app)
    raw = await exchange(port, f"GET /health HTTP/{version}\r\nHost: test\r\n\r\n".encode())
    assert statuses(raw) == [505]


async def test_the_http2_preface_is_refused(serve: Serve) -> None:
    """A client speaking HTTP/2 without upgrade gets 505, not a route."""
    _, port = await serve(edge_app)
    raw = await exchange(port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert statuses(raw) == [505]


async def test_4xx_answers_are_logged_without_the_query(serve: Serve) -> None:
    """The app's 404 and the server's 400 are logged (status, method, path), never ?token=."""
    _, port = await serve(edge_app)
    with capture_logs() as logs:
        reader, writer = await connect(port)
        writer.write(request("GET", "/nowhere?token=secret-value"))
        assert (await read_reply(reader)).status == 404
        writer.close()
        assert statuses(await exchange(port, b"GET /?token=secret-value HTTP/1.1 x\r\n\r\n")) == [
            400
        ]
    lines = [e for e in logs if e["event"] == "http_client_error"]
    assert [(e["status"], e["method"], e["path"]) for e in lines] == [
        (404, "GET", "/nowhere"),
        (400, None, None),
    ]
    assert all(e["count"] == 1 and e["client"] == "127.0.0.1" for e in lines)
    assert lines[1]["reason"] == "illegal request line"
    assert "secret-value" not in repr(logs)


async def test_a_flood_of_bad_requests_is_logged_a_few_lines_and_a_count(serve: Serve) -> None:
    """60 bad requests: 10 lines, then one line counting the other 50 at the interval's end."""
    _, port = await serve(edge_app, log_interval_s=0.3)
    with capture_logs() as logs:
        for _ in range(60):
            assert statuses(await exchange(port, b"NOT HTTP\r\n\r\n")) == [400]

        def counts() -> list[int]:
            return [e["count"] for e in logs if e["event"] == "http_client_error"]

        await wait_for_condition(lambda: sum(counts()) == 60)
    assert counts()[:10] == [1] * 10
    assert len(counts()) <= 12  # 10 lines, then a count per 0.3 s interval


async def test_server_made_errors_carry_no_client_bytes_in_their_reason(serve: Serve) -> None:
    """h11's reasons quote the client's bytes (the query with it): the log keeps the words."""
    _, port = await serve(edge_app)
    with capture_logs() as logs:
        raw = await exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\nBad Header?token=x: 1\r\n\r\n")
    assert statuses(raw) == [400]
    (line,) = [e for e in logs if e["event"] == "http_client_error"]
    assert line["reason"] == "illegal header line"
    assert "token" not in repr(logs)
