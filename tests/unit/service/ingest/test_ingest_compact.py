"""The ingestor's compact per-device state and its bounded timer firing (issue 12 item 4)."""

from dataclasses import dataclass

from iot_bridge.config.parse import parse_config
from iot_bridge.domain.session_config import SessionConfig
from iot_bridge.service.ingest.ingestor import TICK_LIMIT, DeviceSpec, Ingestor, device_specs

CONFIG = SessionConfig(start_debounce_s=1.0, message_timeout_s=600.0)


@dataclass
class Msg:
    topic: str
    payload: bytes
    retain: bool = False


def spec(index: int) -> DeviceSpec:
    return DeviceSpec(
        device_id=f"d{index}",
        machine_name=f"Machine {index}",
        mqtt_topic=f"p{index}/status/pm1:0",
        parser_type="shelly_pm",
        parser_options={},
        session_config=CONFIG,
    )


def power(index: int, watts: float) -> Msg:
    return Msg(f"p{index}/status/pm1:0", b'{"id":0,"apower":%f}' % watts)


def started(devices: int, ingestor: Ingestor) -> None:
    """Every device reads 800 W at 10 s: all their start debounces are due at 11 s."""
    ingestor.apply_devices([spec(i) for i in range(devices)], 0.0)
    ingestor.handle([power(i, 800.0) for i in range(devices)], 10.0)


def test_handle_fires_due_timers_in_chunks_with_the_same_events() -> None:
    """More due timers than TICK_LIMIT: handle fires the earliest ones, the next calls the rest.

    Together they give the same events, at the same times, as one unbounded tick.
    """
    devices = TICK_LIMIT * 2 + 5
    chunked, whole = Ingestor(), Ingestor()
    for ingestor in (chunked, whole):
        started(devices, ingestor)
    expected = [(e.device_id, str(e.event_type), e.timestamp) for e in whole.tick(20.0)]
    assert len(expected) == devices  # one session_started each

    got: list[tuple[str, str, float]] = []
    calls = 0
    while (deadline := chunked.next_deadline()) is not None and deadline <= 20.0:
        events = chunked.handle([], 20.0)
        assert len(events) <= TICK_LIMIT
        got.extend((e.device_id, str(e.event_type), e.timestamp) for e in events)
        calls += 1
    assert calls == 3
    assert sorted(got) == sorted(expected)
    assert all(
        chunked.detector(f"d{i}").session_id is not None  # type: ignore[union-attr]
        for i in range(devices)
    )


def test_a_message_fires_its_devices_own_due_timer_when_the_chunk_left_it() -> None:
    """A device whose due timer a chunk left unfired still starts before its next reading."""
    devices = TICK_LIMIT + 1
    ingestor = Ingestor()
    started(devices, ingestor)
    last = max(range(devices), key=lambda i: f"d{i}")  # equal due times: id order
    events = ingestor.handle([power(last, 800.0)], 20.0)
    mine = [str(e.event_type) for e in events if e.device_id == f"d{last}"]
    assert mine == ["session_started"]
    assert len(events) == TICK_LIMIT + 1


def test_devices_with_equal_settings_share_their_spec_parts() -> None:
    """device_specs gives equal session settings and options one object, not one per device."""
    session = {"standby_threshold_w": 5.0, "working_threshold_w": 50.0}
    config = parse_config(
        {
            "devices": [
                {
                    "device_id": f"d{i}",
                    "machine_name": f"M{i}",
                    "mqtt_topic": f"p{i}/status/pm1:0",
                    "parser_type": "shelly_pm",
                    "session_config": dict(session),
                }
                for i in range(3)
            ]
            + [
                {
                    "device_id": "other",
                    "machine_name": "Other",
                    "mqtt_topic": "q/status/pm1:0",
                    "parser_type": "shelly_pm",
                    "session_config": {**session, "working_threshold_w": 60.0},
                }
            ]
        }
    )
    specs = device_specs(config)
    assert specs[0].session_config is specs[1].session_config is specs[2].session_config
    assert specs[3].session_config is not specs[0].session_config
    assert specs[3].session_config.working_threshold_w == 60.0
    assert specs[0].parser_options is specs[3].parser_options
    assert dict(specs[0].parser_options) == {}


def test_routes_of_exact_topics_are_shared_tuples() -> None:
    """Without wildcard filters a topic's routes come from the table itself (no cache entry)."""
    ingestor = Ingestor()
    ingestor.apply_devices([spec(0), spec(1)], 0.0)
    router = ingestor._router
    first = router.routes("p0/status/pm1:0")
    assert [r.device_id for r in first] == ["d0"]
    assert router.routes("p0/status/pm1:0") is first
    assert router.routes("nobody/status/pm1:0") == ()
    assert router._cache == {}
