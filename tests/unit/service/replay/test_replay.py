"""Replay: a trace through the same parsers and detectors, timers at exact due times."""

import json
import pathlib

import pytest

from iot_bridge.config.parse import parse_config
from iot_bridge.domain.events import Event
from iot_bridge.service.replay.trace import TraceError, parse_trace_line, replay

REPO = pathlib.Path(__file__).resolve().parents[4]
TOPIC = "shop/mill/status/pm1:0"


def _config(**session: float) -> object:
    return parse_config(
        {
            "devices": [
                {
                    "device_id": "mill",
                    "machine_name": "Mill",
                    "mqtt_topic": TOPIC,
                    "parser_type": "shelly_pm",
                    "session_config": {
                        "standby_threshold_w": 5.0,
                        "working_threshold_w": 50.0,
                        "start_debounce_s": 3.0,
                        "stop_debounce_s": 15.0,
                        "message_timeout_s": 60.0,
                        "heartbeat_interval_s": 300.0,
                        **session,
                    },
                }
            ]
        }
    )


def _line(ts: float, power: float, topic: str = TOPIC) -> str:
    return json.dumps({"ts": ts, "topic": topic, "payload": json.dumps({"id": 0, "apower": power})})


def _run(lines: list[str], config: object | None = None) -> list[Event]:
    events: list[Event] = []
    replay(lines, config or _config(), events.append)
    return events


def test_start_debounce_fires_at_its_due_time_between_readings() -> None:
    """session_started is stamped first crossing + start_debounce_s, not at the next reading."""
    events = _run([_line(1000.0, 0), _line(1010.0, 200), _line(1100.0, 200)])
    started = [e for e in events if e.event_type == "session_started"]
    assert len(started) == 1
    assert started[0].timestamp == 1013.0
    assert started[0].data["started_at"] == "1970-01-01T00:16:50.000000+00:00"


def test_timeout_fires_between_readings_and_precedes_offline() -> None:
    """A silence longer than message_timeout_s ends the session at the last message, then offline."""
    events = _run([_line(0.0, 200), _line(10.0, 200), _line(500.0, 0)])
    kinds = [str(e.event_type) for e in events]
    assert kinds[:4] == ["device_online", "session_started", "session_timeout", "device_offline"]
    timeout = events[2]
    assert timeout.timestamp == 70.0
    assert timeout.data["ended_at"] == "1970-01-01T00:00:10.000000+00:00"
    assert timeout.data["reason"] == "timeout"
    assert kinds[4] == "device_online"


def test_bundled_sample_trace_gives_one_whole_session() -> None:
    """samples/traces/cnc-session.jsonl: online, started, one heartbeat, stopped (power_off)."""
    from iot_bridge.config.sources import load_config_file

    config = load_config_file(REPO / "samples/traces/replay-config.yaml")
    lines = (REPO / "samples/traces/cnc-session.jsonl").read_text().splitlines()
    events = _run(lines, config)
    assert [str(e.event_type) for e in events] == [
        "device_online",
        "session_started",
        "session_heartbeat",
        "session_stopped",
    ]
    stopped = events[-1].data
    assert stopped["reason"] == "power_off"
    assert stopped["duration_s"] == 480.0
    assert stopped["working_s"] + stopped["standby_s"] == stopped["duration_s"]


def test_same_trace_same_events_except_uid() -> None:
    """Replay is deterministic: only event_uid differs between two runs."""
    lines = [_line(float(t * 7), p) for t, p in enumerate([0, 100, 100, 100, 0, 0, 0, 0] * 5)]

    def strip(events: list[Event]) -> list[dict[str, object]]:
        return [{k: v for k, v in e.to_dict().items() if k != "event_uid"} for e in events]

    first, second = _run(lines), _run(lines)
    assert first and strip(first) == strip(second)
    assert {e.event_uid for e in first}.isdisjoint({e.event_uid for e in second})


def test_unusable_payload_changes_nothing() -> None:
    """A malformed message in a trace is dropped; the session is unaffected."""
    bad = json.dumps({"ts": 5.0, "topic": TOPIC, "payload": "{not json"})
    with_bad = _run([_line(0.0, 200), bad, _line(10.0, 200)])
    without = _run([_line(0.0, 200), _line(10.0, 200)])
    assert [e.to_dict()["data"] for e in with_bad] == [e.to_dict()["data"] for e in without]


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"ts": 1, "topic": "a"}', "missing payload"),
        ('{"ts": "x", "topic": "a", "payload": ""}', "ts must be"),
        ('{"ts": true, "topic": "a", "payload": ""}', "ts must be"),
        ('{"ts": 1, "topic": "", "payload": ""}', "topic must be"),
        ('{"ts": 1, "topic": "a", "payload": {"apower": 1}}', "payload must be a string"),
    ],
)
def test_bad_trace_lines_name_their_line_number(line: str, fragment: str) -> None:
    """Every kind of bad line is a TraceError that says which line and what is wrong."""
    with pytest.raises(TraceError) as caught:
        parse_trace_line(line, 7)
    assert "line 7" in str(caught.value)
    assert fragment in str(caught.value)


def test_blank_lines_are_skipped() -> None:
    """Empty lines in a trace are not errors."""
    assert parse_trace_line("   \n", 1) is None
