"""The checks on a raw request head before h11 parses it (net/http/head.py)."""

from __future__ import annotations

import pytest

from iot_bridge.net.http.head import (
    could_be_get,
    head_end,
    head_problem,
    split_target,
    supported_version,
)


@pytest.mark.parametrize(
    ("buffer", "end"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY", 27),
        (b"GET / HTTP/1.1\nHost: a\n\nBODY", 24),
        (b"GET / HTTP/1.1\r\nHost: a\n\r\nBODY", 26),
        (b"GET / HTTP/1.1\r\nHost: a\r\n", -1),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r", -1),
        (b"", -1),
    ],
)
def test_head_end_finds_the_first_empty_line(buffer: bytes, end: int) -> None:
    """The head ends after its first empty line, CRLF or bare LF; -1 while incomplete."""
    assert head_end(buffer) == end


def test_head_end_resumes_where_it_stopped() -> None:
    """Searching from two bytes before the old end finds an end split across reads."""
    first = b"GET / HTTP/1.1\r\nHost: a\r\n\r"
    assert head_end(first) == -1
    assert head_end(first + b"\nrest", max(0, len(first) - 2)) == len(first) + 1


@pytest.mark.parametrize(
    ("head", "problem"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", None),
        (b"GET / HTTP/1.1\nHost: a\n\n", "bare LF line ending"),
        (b"GET / HTTP/1.1\r\nHost: a\n\r\n", "bare LF line ending"),
        (b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", "bare CR"),
        (b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", "obsolete line folding"),
        (b"GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", "obsolete line folding"),
        (b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", "obsolete line folding"),
    ],
)
def test_head_problem_refuses_what_a_proxy_could_read_otherwise(
    head: bytes, problem: str | None
) -> None:
    """Bare LF, bare CR, folded lines (and whitespace before the first header) are named."""
    assert head_problem(head) == problem


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        (b"/a/b?c=d", b"/a/b", b"c=d"),
        (b"/", b"/", b""),
        (b"http://host/a?b", b"/a", b"b"),
        (b"HTTPS://host:8443/a", b"/a", b""),
        (b"http://host", b"/", b""),
        (b"http://host?x=1", b"/", b"x=1"),
        (b"http://user@host/p", b"/p", b""),
        (b"*", b"*", b""),
        (b"host:443", b"host:443", b""),
        (b"ftp://host/a", b"ftp://host/a", b""),
    ],
)
def test_split_target_reads_origin_and_absolute_forms(
    target: bytes, path: bytes, query: bytes
) -> None:
    """Origin form and http(s) absolute form give the path and query; others stay whole."""
    assert split_target(target) == (path, query)


@pytest.mark.parametrize(
    ("version", "supported"),
    [(b"1.1", True), (b"1.0", True), (b"1.2", True), (b"2.0", False), (b"0.9", False)],
)
def test_only_http_1_x_is_supported(version: bytes, supported: bool) -> None:
    """HTTP/1.x is read (a later minor version as 1.1); 0.9 and 2.0 are not."""
    assert supported_version(version) is supported


@pytest.mark.parametrize(
    ("start", "possible"),
    [
        (b"", True),
        (b"G", True),
        (b"GET /hea", True),
        (b"GET /health", True),
        (b"GET /health HTTP/1.1\r\n", True),
        (b"GET /health?x=1 HTTP/1.1", True),
        (b"\r\nGET /health ", True),
        (b"GET /healthz HTTP/1.1", False),
        (b"GET /devices HTTP/1.1", False),
        (b"POST /health HTTP/1.1", False),
        (b"get /health", False),
        (b"\x16\x03\x01", False),
    ],
)
def test_could_be_get_tells_a_health_check_from_its_first_bytes(
    start: bytes, possible: bool
) -> None:
    """The first bytes are, or may become, GET /health (with a query); anything else is not."""
    assert could_be_get(start, b"/health") is possible
