"""JSON log lines: one object per line, secrets masked, odd values rendered, not raised."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from iot_bridge.logs import FloodLog, configure_logging, get_logger


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(level="INFO", fmt="json", stream=stream)
    yield stream
    configure_logging()  # back to stderr for the rest of the session


def _records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_is_one_json_object_with_level_time_and_fields(lines: io.StringIO) -> None:
    get_logger("t").info("event_emitted", device_id="cnc-1", n=3, ratio=0.5, tags=["a"])
    (record,) = _records(lines)
    assert record["event"] == "event_emitted"
    assert record["level"] == "info"
    assert record["logger_name"] == "t"
    assert str(record["timestamp"]).endswith("Z")
    assert (record["device_id"], record["n"], record["ratio"], record["tags"]) == (
        "cnc-1", 3, 0.5, ["a"],
    )  # fmt: skip


def test_secrets_are_masked(lines: io.StringIO) -> None:
    get_logger("t").info("config_received", api_key="k-123", token="t-456", device_id="x")
    (record,) = _records(lines)
    assert record["api_key"] == record["token"] == "***"
    assert "k-123" not in lines.getvalue() and "t-456" not in lines.getvalue()


def test_values_json_cannot_hold_are_rendered_not_raised(lines: io.StringIO) -> None:
    big = 2**70  # past orjson's 64 bits: the stdlib encoder takes the line
    get_logger("t").info("odd", path=Path("/var/lib/x"), big=big, keys={1: "one"}, text="ü")
    get_logger("t").info("odd_without_big", path=Path("/var/lib/x"), keys={1: "one"})
    first, second = _records(lines)
    assert first["big"] == big
    assert first["path"] == repr(Path("/var/lib/x"))
    assert first["text"] == "ü"
    assert second["path"] == repr(Path("/var/lib/x"))
    assert second["keys"] == {"1": "one"}


def test_the_level_filters(lines: io.StringIO) -> None:
    configure_logging(level="WARNING", fmt="json", stream=lines)
    get_logger("t").info("dropped")
    get_logger("t").warning("kept")
    assert [r["event"] for r in _records(lines)] == ["kept"]


class _Recorder:
    """A logger that keeps (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, object]]] = []

    def __getattr__(self, level: str) -> object:
        return lambda event, **fields: self.lines.append((level, event, fields))


def test_flood_log_writes_the_first_at_once_then_one_count_per_interval() -> None:
    """burst=1: the first line at once; what follows in the interval is one count line at its
    end; a flood that goes on gives one line per interval; silence resets the budget."""
    logger = _Recorder()
    flood = FloodLog(logger, "refused", interval_s=10.0)
    assert flood.record(0.0, client="a") is None
    assert flood.record(1.0, client="b") == 10.0  # held: flush due at the interval's end
    assert flood.record(2.0, client="c") is None  # already due
    assert flood.held == 2
    flood.flush(10.0)
    assert flood.record(11.0, client="d") == 20.0  # still flooding: counted, not written
    flood.flush(20.0)
    flood.flush(30.0)  # nothing held: nothing written
    assert flood.record(31.0, client="e") is None  # quiet for a whole interval: at once again
    assert logger.lines == [
        ("warning", "refused", {"count": 1, "client": "a"}),
        ("warning", "refused", {"count": 2, "client": "c"}),
        ("warning", "refused", {"count": 1, "client": "d"}),
        ("warning", "refused", {"count": 1, "client": "e"}),
    ]


def test_flood_log_burst_lines_before_counting() -> None:
    """burst=3 at level info: three lines of their own, then a count of the rest."""
    logger = _Recorder()
    flood = FloodLog(logger, "bad", interval_s=5.0, burst=3, level="info")
    dues = [flood.record(float(n) / 10, n=n) for n in range(10)]
    assert dues == [None, None, None, 5.0, None, None, None, None, None, None]
    flood.flush(5.0)
    assert [fields["count"] for _, _, fields in logger.lines] == [1, 1, 1, 7]
    assert {level for level, _, _ in logger.lines} == {"info"}
    assert logger.lines[-1][2]["n"] == 9  # the count line carries the last one's fields
