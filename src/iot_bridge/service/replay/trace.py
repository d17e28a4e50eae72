"""Replay a recorded trace through the same parsers and detectors, offline.

The clock is the trace's ``ts``; timers (debounce, timeout, heartbeat) fire at
their exact due times between readings, across all devices in time order.
The trace is not extended past its last line: sessions still running at the
end stay running.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from iot_bridge.domain.events import Event
from iot_bridge.errors import BridgeError
from iot_bridge.service.ingest.ingestor import Ingestor, device_specs

MAX_TS = 253_402_300_799  # 9999-12-31T23:59:59Z


class TraceError(BridgeError):
    """A trace line cannot be used; the message names its line number."""


@dataclass(frozen=True, slots=True)
class TraceMessage:
    """One recorded MQTT message."""

    ts: float
    topic: str
    payload: bytes


def parse_trace_line(line: str, line_number: int) -> TraceMessage | None:
    """One JSON line of a trace; blank lines are skipped (None)."""
    if not line.strip():
        return None
    try:
        record: Any = orjson.loads(line)
    except orjson.JSONDecodeError as err:
        raise TraceError(f"line {line_number}: not valid JSON ({err})") from err
    if not isinstance(record, dict):
        raise TraceError(f"line {line_number}: expected a JSON object with ts, topic, payload")
    missing = [key for key in ("ts", "topic", "payload") if key not in record]
    if missing:
        raise TraceError(f"line {line_number}: missing {', '.join(missing)}")
    ts, topic, payload = record["ts"], record["topic"], record["payload"]
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        raise TraceError(f"line {line_number}: ts must be unix seconds (a finite number)")
    if not 0 <= ts <= MAX_TS:
        raise TraceError(
            f"line {line_number}: ts {ts} is not unix seconds between 1970 and 9999"
            " (milliseconds? divide by 1000)"
        )
    if not isinstance(topic, str) or not topic:
        raise TraceError(f"line {line_number}: topic must be a non-empty string")
    if not isinstance(payload, str):
        raise TraceError(f"line {line_number}: payload must be a string, exactly as published")
    return TraceMessage(float(ts), topic, payload.encode("utf-8", "surrogatepass"))


def replay(
    lines: Iterable[str],
    config: Any,
    emit: Callable[[Event], None],
    *,
    uid_factory: Callable[[], str] | None = None,
) -> int:
    """Feed trace lines through parsers and detectors; ``emit`` each event in order.

    Returns the number of messages replayed. Raises ``TraceError`` on a bad line.
    """
    ingestor = Ingestor(uid_factory=uid_factory)
    start: float | None = None
    clock = float("-inf")
    count = 0
    for number, line in enumerate(lines, start=1):
        message = parse_trace_line(line, number)
        if message is None:
            continue
        if start is None:
            start = message.ts
            for event in ingestor.apply_devices(device_specs(config), start):
                emit(event)
        # A recording may hold slightly reordered lines; time never runs backwards here.
        clock = max(clock, message.ts)
        for event in ingestor.handle((message,), clock):
            emit(event)
        count += 1
    return count
