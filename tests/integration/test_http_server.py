"""The HTTP/1.1 server (net/http/server.py) on loopback, driven by raw sockets and httpx."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.responses import StreamingResponse
from structlog.testing import capture_logs

from iot_bridge.bootstrap import bind_socket
from iot_bridge.net.http.server import HttpServer, Message, Receive, Scope, Send
from tests.support.raw_http import (
    DEADLINE_S,
    Serve,
    connect,
    echo,
    read_body,
    read_head,
    read_reply,
    request,
    respond,
    serve,
    until_closed,
    wait_for_condition,
)

__all__ = ["serve"]  # the fixture


async def test_keep_alive_serves_two_requests_on_one_connection(serve: Serve) -> None:
    """Two requests of one httpx client share one connection (the same client port)."""
    ports: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        ports.append(scope["client"][1])
        await respond(send, b"ok")

    _, port = await serve(app)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        assert (await client.get("/a")).text == "ok"
        assert (await client.get("/b")).text == "ok"
    assert len(ports) == 2
    assert ports[0] == ports[1]


async def test_pipelined_requests_are_answered_in_order(serve: Serve) -> None:
    """Three requests in one write get their answers in request order, the slow first one too."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/slow":
            await asyncio.sleep(0.2)
        await echo(scope, receive, send)

    _, port = await serve(app)
    reader, writer = await connect(port)
    writer.write(
        request("GET", "/slow") + request("POST", "/two", body=b"2") + request("GET", "/three")
    )
    bodies = [(await read_reply(reader)).body for _ in range(3)]
    assert bodies == [b"GET /slow ", b"POST /two 2", b"GET /three "]
    writer.close()


async def test_connection_close_is_honoured(serve: Serve) -> None:
    """A request with Connection: close is answered with Connection: close, then closed."""
    _, port = await serve(echo)
    reader, writer = await connect(port)
    writer.write(request("GET", "/", "Connection: close"))
    reply = await read_reply(reader)
    assert (reply.status, reply.headers[b"connection"]) == (200, b"close")
    assert await until_closed(reader) == b""
    writer.close()


async def test_http_1_0_is_answered_and_closed(serve: Serve) -> None:
    """An HTTP/1.0 request gets its answer (a body of unknown length runs to the close)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one ", "more_body": True})
        await send({"type": "http.response.body", "body": scope["http_version"].encode()})

    _, port = await serve(app)
    reader, writer = await connect(port)
    writer.write(request("GET", "/", version="1.0"))
    status, headers = await read_head(reader)
    assert status == 200
    assert b"transfer-encoding" not in headers
    assert await asyncio.wait_for(reader.read(), DEADLINE_S) == b"one 1.0"
    writer.close()


async def test_chunked_upload_reaches_the_app_as_it_arrives(serve: Serve) -> None:
    """A chunked body is given to the app part by part, before the client has sent the rest."""
    first_part = asyncio.Event()
    parts: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            parts.append(message["body"])
            first_part.set()
            if not message["more_body"]:
                break
        await respond(send, b"".join(parts))

    _, port = await serve(app)
    reader, writer = await connect(port)
    writer.write(request("POST", "/", "Transfer-Encoding: chunked") + b"5\r\nhello\r\n")
    await asyncio.wait_for(first_part.wait(), DEADLINE_S)
    assert parts == [b"hello"]
    writer.write(b"6\r\n world\r\n0\r\n\r\n")
    reply = await read_reply(reader)
    assert reply.body == b"hello world"
    assert len([p for p in parts if p]) == 2
    writer.close()


async def test_expect_100_continue_is_answered_before_the_body_is_sent(serve: Serve) -> None:
    """With Expect: 100-continue the 100 arrives when the app reads, before any body byte."""
    _, port = await serve(echo)
    reader, writer = await connect(port)
    writer.write(request("PUT", "/up", "Expect: 100-continue", "Content-Length: 4"))
    status, _ = await read_head(reader)
    assert status == 100
    writer.write(b"data")
    reply = await read_reply(reader)
    assert (reply.status, reply.body) == (200, b"PUT /up data")
    writer.close()


async def test_no_100_continue_when_the_app_answers_without_reading(serve: Serve) -> None:
    """An app that refuses the request unread sends no 100; the final answer comes at once."""

    async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, b"too big", 413)

    _, port = await serve(refuse)
    reader, writer = await connect(port)
    writer.write(request("POST", "/", "Expect: 100-continue", "Content-Length: 99999999"))
    status, _ = await read_head(reader)
    assert status == 413
    writer.close()


async def test_garbage_is_400_and_closed(serve: Serve) -> None:
    """What is not HTTP gets 400 and the connection is closed."""
    _, port = await serve(echo)
    reader, writer = await connect(port)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    reply = await read_reply(reader)
    assert (reply.status, reply.headers[b"connection"]) == (400, b"close")
    assert await until_closed(reader) == b""
    writer.close()


async def test_huge_headers_are_431(serve: Serve) -> None:
    """A request head over the limit gets 431, even while the client is still sending it."""
    _, port = await serve(echo, max_header_bytes=16 * 1024)
    reader, writer = await connect(port)
    writer.write(request("GET", "/", "X-Big: " + "a" * 200_000))
    reply = await read_reply(reader)
    assert reply.status == 431
    assert await until_closed(reader) == b""
    writer.close()


async def test_stalled_request_head_is_408(serve: Serve) -> None:
    """A request head that stops arriving is answered 408 after the request timeout."""
    _, port = await serve(echo, request_timeout_s=0.2)
    reader, writer = await connect(port)
    writer.write(b"GET / HTTP/1.1\r\nHost: te")
    assert (await read_reply(reader)).status == 408
    assert await until_closed(reader) == b""
    writer.close()


async def test_stalled_request_body_is_408_and_the_app_sees_disconnect(serve: Serve) -> None:
    """A body that stops arriving: 408 after the request timeout; the waiting app is told."""
    messages: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while (message := await receive())["type"] == "http.request":
            messages.append(message)
        messages.append(message)

    server, port = await serve(app, request_timeout_s=0.2)
    reader, writer = await connect(port)
    writer.write(request("POST", "/", "Content-Length: 10") + b"abc")
    assert (await read_reply(reader)).status == 408
    assert await until_closed(reader) == b""
    await wait_for_condition(lambda: server.requests == 0)
    assert messages[-1] == {"type": "http.disconnect"}
    assert b"".join(m.get("body", b"") for m in messages) == b"abc"
    writer.close()


async def test_client_disconnect_ends_a_streaming_app(serve: Serve) -> None:
    """A Starlette StreamingResponse (like the board's SSE) ends when its client goes away."""
    streaming = asyncio.Event()
    closed = asyncio.Event()

    async def ticks() -> AsyncIterator[bytes]:
        try:
            while True:
                streaming.set()
                yield b"data: tick\n\n"
                await asyncio.sleep(0.05)
        finally:
            closed.set()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await StreamingResponse(ticks(), media_type="text/event-stream")(scope, receive, send)

    server, port = await serve(app)
    reader, writer = await connect(port)
    writer.write(request("GET", "/stream"))
    status, headers = await read_head(reader)
    assert (status, headers[b"transfer-encoding"]) == (200, b"chunked")
    await asyncio.wait_for(streaming.wait(), DEADLINE_S)
    writer.close()
    await asyncio.wait_for(closed.wait(), DEADLINE_S)
    await wait_for_condition(lambda: server.requests == 0 and server.connections == 0)


async def test_receive_gives_disconnect_once_the_client_is_gone(serve: Serve) -> None:
    """An app waiting in receive() after the body gets http.disconnect when the client leaves."""
    messages: list[Message] = []
    waiting = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await read_body(receive)
        waiting.set()
        messages.append(await receive())

    server, port = await serve(app)
    _, writer = await connect(port)
    writer.write(request("POST", "/", body=b"x"))
    await asyncio.wait_for(waiting.wait(), DEADLINE_S)
    writer.close()
    await wait_for_condition(lambda: server.requests == 0)
    assert messages == [{"type": "http.disconnect"}]


async def test_large_response_to_a_slow_reader_is_flow_controlled(serve: Serve) -> None:
    """The app's send() waits while the client does not read: the server buffers little."""
    total = 32 * 1024 * 1024
    chunk = b"x" * (256 * 1024)
    sent = 0

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal sent
        head = [(b"content-length", b"%d" % total)]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        while sent < total:
            sent += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": sent < total})

    _, port = await serve(app)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # no receive autotuning
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=64 * 1024)
    writer.write(request("GET", "/big"))
    status, _ = await read_head(reader)
    assert status == 200
    received = 0
    ahead = 0
    while received < total:
        received += len(await asyncio.wait_for(reader.read(64 * 1024), DEADLINE_S))
        ahead = max(ahead, sent - received)
        if received < 4 * 1024 * 1024:
            await asyncio.sleep(0.001)  # a slow reader at first
    assert received == total
    assert ahead < 12 * 1024 * 1024  # kernel buffers and one transport buffer, not 32 MiB
    writer.close()


async def test_idle_keep_alive_connection_is_closed_after_the_timeout(serve: Serve) -> None:
    """A keep-alive connection with no new request is closed after the idle timeout."""
    server, port = await serve(echo, keep_alive_timeout_s=0.2)
    reader, writer = await connect(port)
    writer.write(request("GET", "/"))
    assert (await read_reply(reader)).status == 200
    assert await until_closed(reader) == b""
    await wait_for_condition(lambda: server.connections == 0)
    writer.close()


async def test_graceful_shutdown_finishes_the_request_in_flight(serve: Serve) -> None:
    """stop(): no new connections, idle ones closed, the request in flight is answered."""
    started = asyncio.Event()
    release = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/slow":
            started.set()
            await release.wait()
        await respond(send, b"done")

    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = HttpServer(app)
    serving = asyncio.create_task(server.serve(sock))
    idle_reader, idle_writer = await connect(port)
    idle_writer.write(request("GET", "/fast"))
    assert (await read_reply(idle_reader)).status == 200
    reader, writer = await connect(port)
    writer.write(request("GET", "/slow"))
    await asyncio.wait_for(started.wait(), DEADLINE_S)
    server.stop()
    assert await until_closed(idle_reader) == b""
    with pytest.raises(ConnectionRefusedError):
        await connect(port)
    release.set()
    reply = await read_reply(reader)
    assert (reply.status, reply.body, reply.headers[b"connection"]) == (200, b"done", b"close")
    await asyncio.wait_for(serving, DEADLINE_S)
    for w in (writer, idle_writer):
        w.close()


async def test_shutdown_past_the_grace_time_gives_disconnect(serve: Serve) -> None:
    """A request still running after graceful_shutdown_s sees http.disconnect; serve() ends."""
    messages: list[Message] = []
    waiting = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await read_body(receive)
        waiting.set()
        messages.append(await receive())

    sock = bind_socket("127.0.0.1", 0)
    server = HttpServer(app, graceful_shutdown_s=0.2)
    serving = asyncio.create_task(server.serve(sock))
    reader, writer = await connect(sock.getsockname()[1])
    writer.write(request("GET", "/"))
    await asyncio.wait_for(waiting.wait(), DEADLINE_S)
    with capture_logs() as logs:
        server.stop()
        await asyncio.wait_for(serving, DEADLINE_S)
    assert messages == [{"type": "http.disconnect"}]
    assert [entry["event"] for entry in logs] == ["http_shutdown_forced"]
    assert await until_closed(reader) == b""
    writer.close()


async def test_head_has_the_headers_of_get_and_no_body(serve: Serve) -> None:
    """HEAD keeps the app's Content-Length and sends no body: the next reply parses cleanly."""
    _, port = await serve(echo)
    reader, writer = await connect(port)
    writer.write(request("HEAD", "/x") + request("GET", "/y"))
    head = await read_reply(reader, head_request=True)
    assert (head.status, head.headers[b"content-length"]) == (200, b"8")
    assert (await read_reply(reader)).body == b"GET /y "
    writer.close()


async def test_head_of_a_streamed_response_has_no_body(serve: Serve) -> None:
    """HEAD of a response the app streams without a length: headers only, in every part."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"streamed", "more_body": True})
        await send({"type": "http.response.body", "body": b" body", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    _, port = await serve(app)
    reader, writer = await connect(port)
    writer.write(request("HEAD", "/") + request("GET", "/"))
    head = await read_reply(reader, head_request=True)
    assert (head.status, head.headers[b"transfer-encoding"]) == (200, b"chunked")
    assert (await read_reply(reader)).body == b"streamed body"
    writer.close()


async def test_response_without_length_is_chunked(serve: Serve) -> None:
    """An app that gives no Content-Length is sent chunked to an HTTP/1.1 client."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": []})
        for part in (b"a", b"", b"bc"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    _, port = await serve(app)
    async with httpx.AsyncClient() as client:
        reply = await client.get(f"http://127.0.0.1:{port}/")
    assert (reply.status_code, reply.text) == (201, "abc")
    assert reply.headers["transfer-encoding"] == "chunked"
    assert reply.headers["date"].endswith(" GMT")


async def test_scope_describes_the_request(serve: Serve) -> None:
    """The http scope: ASGI 3.0 / spec 2.3, a decoded path, the raw path and query, headers."""
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(scope)
        await respond(send, b"")

    _, port = await serve(app)
    reader, writer = await connect(port)
    writer.write(request("GET", "/a%20b/c?token=x&y=%20", "X-Mixed-Case: V"))
    await read_reply(reader)
    scope = scopes[0]
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.3"}
    assert (scope["http_version"], scope["method"], scope["scheme"]) == ("1.1", "GET", "http")
    assert (scope["path"], scope["raw_path"]) == ("/a b/c", b"/a%20b/c")
    assert (scope["query_string"], scope["root_path"]) == (b"token=x&y=%20", "")
    assert (b"x-mixed-case", b"V") in scope["headers"]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ("127.0.0.1", port)
    assert scope["state"] == {}
    writer.close()


async def test_app_error_before_the_response_is_500_and_logged_without_query(
    serve: Serve,
) -> None:
    """An app that raises before answering gives 500 and one http_app_error, no query string."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    _, port = await serve(app)
    reader, writer = await connect(port)
    with capture_logs() as logs:
        writer.write(request("GET", "/fail?token=secret-value"))
        reply = await read_reply(reader)
    assert (reply.status, reply.headers[b"connection"]) == (500, b"close")
    assert [(e["event"], e["path"]) for e in logs] == [("http_app_error", "/fail")]
    assert "secret-value" not in repr(logs)
    assert await until_closed(reader) == b""
    writer.close()


async def test_app_error_after_the_response_started_closes(serve: Serve) -> None:
    """An app that fails mid-response leaves a truncated body and a closed connection."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise RuntimeError("boom")

    _, port = await serve(app)
    reader, writer = await connect(port)
    with capture_logs() as logs:
        writer.write(request("GET", "/"))
        status, _ = await read_head(reader)
        assert status == 200
        assert await until_closed(reader) == b"4\r\npart\r\n"  # no last chunk
    assert [e["event"] for e in logs] == ["http_app_error"]
    writer.close()


async def test_early_answer_to_a_body_still_arriving_keeps_the_connection(serve: Serve) -> None:
    """An app that answers 413 mid-body: the client, still sending, reads it; keep-alive holds."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "GET":
            await respond(send, b"next")
            return
        size = 0
        while size <= 1024 * 1024:
            message = await receive()
            size += len(message["body"])
        await respond(send, b"too large", 413)

    _, port = await serve(app)
    reader, writer = await connect(port)
    total = 8 * 1024 * 1024
    writer.write(request("POST", "/", f"Content-Length: {total}"))

    async def upload() -> None:
        for _ in range(total // 65536):
            writer.write(b"y" * 65536)
            await writer.drain()

    uploading = asyncio.create_task(upload())
    reply = await read_reply(reader)
    assert (reply.status, reply.body) == (413, b"too large")
    await asyncio.wait_for(uploading, DEADLINE_S)
    writer.write(request("GET", "/"))
    assert (await read_reply(reader)).body == b"next"
    writer.close()
