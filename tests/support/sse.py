"""Reading a ``text/event-stream`` in tests: parsed events until a condition or a deadline."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One server-sent event: its name, id and JSON data; ``at`` is when it arrived."""

    name: str
    event_id: str | None
    data: Any
    at: float


def events(response: httpx.Response) -> Iterator[SseEvent]:
    """The events of a streaming response, as they arrive."""
    name, event_id, data = "message", None, []
    for line in response.iter_lines():
        if not line:
            if data:
                yield SseEvent(name, event_id, json.loads("\n".join(data)), time.monotonic())
            name, event_id, data = "message", None, []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "id":
                event_id = value
            elif field == "data":
                data.append(value)


def collect(
    url: str,
    *,
    until: Callable[[list[SseEvent]], bool],
    timeout_s: float = 20.0,
    headers: dict[str, str] | None = None,
    on_open: Callable[[], None] | None = None,
) -> list[SseEvent]:
    """Events from ``url`` until ``until(events so far)`` holds; fails after ``timeout_s``."""
    got: list[SseEvent] = []
    deadline = time.monotonic() + timeout_s
    with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(timeout_s)) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in events(response):
            got.append(event)
            if len(got) == 1 and on_open is not None:
                on_open()
            if until(got):
                return got
            if time.monotonic() > deadline:
                break
    raise AssertionError(f"stream condition not met within {timeout_s} s: {[e.name for e in got]}")
