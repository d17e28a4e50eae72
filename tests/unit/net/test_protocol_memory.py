"""The data dir's record of 3.1.1-only brokers: written once, read back, never in the way."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from iot_bridge.net.mqtt.protocol_memory import FILE_NAME, FileProtocolMemory


def test_nothing_is_remembered_at_first(tmp_path: Path) -> None:
    """No file: no broker is known, MQTT 5 comes first."""
    assert FileProtocolMemory(tmp_path).recall("broker:1883") is None
    assert not (tmp_path / FILE_NAME).exists()


def test_a_3_1_1_broker_is_written_down_and_read_back(tmp_path: Path) -> None:
    """3.1.1 accepted: the next process (a new memory on the same dir) recalls it."""
    FileProtocolMemory(tmp_path).remember("old:1883", "3.1.1")
    memory = FileProtocolMemory(tmp_path)
    assert memory.recall("old:1883") == "3.1.1"
    assert memory.recall("other:1883") is None
    assert json.loads((tmp_path / FILE_NAME).read_text()) == {
        "version": 1,
        "brokers": {"old:1883": "3.1.1"},
    }


def test_mqtt5_accepted_again_forgets_the_broker(tmp_path: Path) -> None:
    """An upgraded broker is removed from the file; others stay."""
    memory = FileProtocolMemory(tmp_path)
    memory.remember("a:1", "3.1.1")
    memory.remember("b:2", "3.1.1")
    memory.remember("a:1", "5")
    assert (memory.recall("a:1"), memory.recall("b:2")) == (None, "3.1.1")


def test_mqtt5_brokers_never_create_the_file(tmp_path: Path) -> None:
    """The default needs no record: an install on an MQTT 5 broker writes nothing."""
    FileProtocolMemory(tmp_path).remember("new:1883", "5")
    assert not (tmp_path / FILE_NAME).exists()


def test_nothing_is_written_when_nothing_changed(tmp_path: Path) -> None:
    """Every connect reports its protocol; the file is rewritten only on a change."""
    memory = FileProtocolMemory(tmp_path)
    memory.remember("old:1883", "3.1.1")
    path = tmp_path / FILE_NAME
    os.utime(path, (0, 0))
    memory.remember("old:1883", "3.1.1")
    assert path.stat().st_mtime == 0


@pytest.mark.parametrize(
    "text",
    ["{not json", "[]", '{"version": 2, "brokers": {}}', '{"version": 1, "brokers": []}'],
)
def test_an_unreadable_file_is_reported_and_ignored(tmp_path: Path, text: str) -> None:
    """A damaged file is only a lost shortcut: a clear warning, MQTT 5 first, then rewritten."""
    path = tmp_path / FILE_NAME
    path.write_text(text)
    memory = FileProtocolMemory(tmp_path)
    with capture_logs() as logs:
        assert memory.recall("old:1883") is None
    assert [entry["event"] for entry in logs] == ["mqtt_protocol_memory_unreadable"]
    memory.remember("old:1883", "3.1.1")
    assert memory.recall("old:1883") == "3.1.1"


def test_a_write_that_fails_is_reported_and_the_bridge_goes_on(tmp_path: Path) -> None:
    """A data dir that cannot be written to: a warning, no exception."""
    missing = tmp_path / "gone"
    with capture_logs() as logs:
        FileProtocolMemory(missing).remember("old:1883", "3.1.1")
    assert [entry["event"] for entry in logs] == ["mqtt_protocol_memory_not_written"]
