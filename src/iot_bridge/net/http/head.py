"""What the HTTP server checks in a request head before h11 parses it (pure, no I/O).

The server collects each request head itself, up to its empty line, and hands
h11 only complete heads. That is what lets it enforce the head size however
the bytes arrive (h11 checks its buffer only while it waits for more), and
see the raw line endings, which h11 normalises away: a proxy in front that
splits lines differently from us is how a request gets smuggled past it.
"""

from __future__ import annotations

from typing import Final

__all__ = ["could_be_get", "head_end", "head_problem", "split_target", "supported_version"]

_CRLF_END: Final = b"\n\r\n"
_LF_END: Final = b"\n\n"
_SCHEMES: Final = (b"http", b"https")


def head_end(buffer: bytes | bytearray, start: int = 0) -> int:
    """The length of the head at the start of ``buffer``, its empty line included; -1 while
    it is incomplete.

    A bare-LF empty line ends a head too (it is refused afterwards, by ``head_problem``,
    instead of waiting for a CRLF that never comes). ``start`` is where the search may
    begin: the bytes before it were searched already (keep two back: an end may straddle).
    """
    crlf = buffer.find(_CRLF_END, start)
    lf = buffer.find(_LF_END, start)
    if lf < 0 or 0 <= crlf < lf:
        return -1 if crlf < 0 else crlf + len(_CRLF_END)
    return lf + len(_LF_END)


def head_problem(head: bytes | bytearray) -> str | None:
    """Why a complete head is refused with 400 before it is parsed, or None.

    RFC 9112 lets a server accept a bare LF as a line end and unfold obsolete line
    folding; both are refused here, as is a bare CR: a proxy that reads such a head
    differently would see other headers than we do.
    """
    line_ends = head.count(b"\r\n")
    if head.count(b"\n") != line_ends:
        return "bare LF line ending"
    if head.count(b"\r") != line_ends:
        return "bare CR"
    if b"\n " in head or b"\n\t" in head:
        return "obsolete line folding"
    return None


def could_be_get(start: bytes | bytearray, path: bytes) -> bool:
    """Whether the first bytes of a request (empty lines before it skipped) are, or may
    still become, ``GET <path>`` with its query, if any: how a connection over the cap
    that may only ask for the health check is told apart before its head is complete."""
    start = start.lstrip(b"\r\n")
    line = b"GET " + path
    if len(start) <= len(line):
        return line.startswith(start)
    return start.startswith(line) and start[len(line) : len(line) + 1] in (b" ", b"?")


def supported_version(http_version: bytes) -> bool:
    """HTTP/1.x (a later 1.x minor version is read as 1.1, RFC 9112 §2.3); not 0.9, not 2."""
    return http_version.startswith(b"1.")


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """The path and the query of a request target in origin form (``/a?b``) or absolute
    form (``http://host/a?b``, which RFC 9112 §3.2.2 requires servers to accept).

    Other forms (``*``, ``host:port``) keep the whole target as their path: no route
    matches them.
    """
    if target[:1] != b"/":
        scheme, separator, rest = target.partition(b"://")
        if separator and scheme.lower() in _SCHEMES:
            cut = len(rest)
            for mark in (b"/", b"?"):
                found = rest.find(mark)
                if 0 <= found < cut:
                    cut = found
            target = rest[cut:]
            if target[:1] != b"/":
                target = b"/" + target
    path, _, query = target.partition(b"?")
    return path, query
