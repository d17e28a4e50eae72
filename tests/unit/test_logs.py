"""JSON log lines: one object per line, secrets masked, odd values rendered, not raised."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from iot_bridge.logs import configure_logging, get_logger


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
