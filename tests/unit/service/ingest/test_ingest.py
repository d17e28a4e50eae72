"""The ingestor: routing, parsing, detection, timers, snapshots and counters, without I/O."""

from dataclasses import dataclass

from iot_bridge.domain.session_config import SessionConfig
from iot_bridge.service.ingest.ingestor import DeviceSpec, Ingestor

CONFIG = SessionConfig(
    standby_threshold_w=5.0,
    working_threshold_w=50.0,
    start_debounce_s=3.0,
    stop_debounce_s=15.0,
    message_timeout_s=60.0,
    heartbeat_interval_s=300.0,
)


@dataclass
class Msg:
    topic: str
    payload: bytes
    retain: bool = False


def spec(device_id: str, prefix: str, **changes: object) -> DeviceSpec:
    values: dict[str, object] = {
        "device_id": device_id,
        "machine_name": device_id.title(),
        "mqtt_topic": f"{prefix}/status/pm1:0",
        "parser_type": "shelly_pm",
        "parser_options": {},
        "session_config": CONFIG,
    }
    values.update(changes)
    return DeviceSpec(**values)  # type: ignore[arg-type]


def power(prefix: str, watts: float) -> Msg:
    return Msg(f"{prefix}/status/pm1:0", b'{"id":0,"apower":%f}' % watts)


def test_subscriptions_cover_data_and_availability_topics() -> None:
    """Each Shelly Gen2+ device subscribes its status topic and its <prefix>/online topic."""
    ingestor = Ingestor()
    ingestor.apply_devices([spec("mill", "a"), spec("laser", "b")], 0.0)
    assert ingestor.subscriptions == {
        "a/status/pm1:0",
        "a/online",
        "b/status/pm1:0",
        "b/online",
    }


def test_messages_reach_only_their_device_and_timers_fire_on_tick() -> None:
    """A reading drives its own device; tick() fires the start debounce at its due time."""
    ingestor = Ingestor()
    ingestor.apply_devices([spec("mill", "a"), spec("laser", "b")], 0.0)
    events = ingestor.handle([power("a", 200.0)], 10.0)
    assert [str(e.event_type) for e in events] == ["device_online"]
    assert ingestor.next_deadline() == 13.0
    started = ingestor.tick(13.0)
    assert [(str(e.event_type), e.device_id, e.timestamp) for e in started] == [
        ("session_started", "mill", 13.0)
    ]
    laser = ingestor.detector("laser")
    assert laser is not None and laser.last_seen is None


def test_availability_topic_marks_device_offline() -> None:
    """'false' on <prefix>/online gives device_offline once."""
    ingestor = Ingestor()
    ingestor.apply_devices([spec("mill", "a")], 0.0)
    ingestor.handle([power("a", 0.0)], 1.0)
    events = ingestor.handle([Msg("a/online", b"false")], 2.0)
    assert [str(e.event_type) for e in events] == ["device_offline"]


def test_rejected_payloads_are_counted_and_change_nothing() -> None:
    """A malformed message is counted as received and as rejected per reason; the detector is untouched."""
    ingestor = Ingestor()
    ingestor.apply_devices([spec("mill", "a")], 0.0)
    ingestor.take_changes()
    events = ingestor.handle([Msg("a/status/pm1:0", b"{oops"), Msg("a/status/pm1:0", b"\xff")], 1.0)
    assert events == []
    assert ingestor.take_changes() == {}
    counters = ingestor.drain_counters()
    assert sum(counters.rejected.values()) == 2
    assert all(parser == "shelly_pm" for parser, _ in counters.rejected)
    assert counters.received == {"shelly_pm": 2}  # received counts every routed message


def test_take_changes_snapshots_touched_devices_once() -> None:
    """Only devices touched since the last call are snapshotted; removed ones map to None."""
    ingestor = Ingestor()
    ingestor.apply_devices([spec("mill", "a"), spec("laser", "b")], 0.0)
    assert set(ingestor.take_changes()) == {"mill", "laser"}
    ingestor.handle([power("a", 1.0), power("a", 2.0)], 1.0)
    changes = ingestor.take_changes()
    assert list(changes) == ["mill"] and changes["mill"] is not None
    ingestor.apply_devices([spec("laser", "b")], 2.0)
    assert ingestor.take_changes()["mill"] is None


def test_removing_a_device_ends_its_session() -> None:
    """A device dropped by a config push ends its running session with reason device_removed."""
    ingestor = Ingestor()
    ingestor.apply_devices([spec("mill", "a")], 0.0)
    ingestor.handle([power("a", 200.0)], 1.0)
    ingestor.tick(4.0)
    events = ingestor.apply_devices([], 10.0)
    assert [str(e.event_type) for e in events] == ["session_stopped"]
    assert events[0].data["reason"] == "device_removed"
    assert ingestor.subscriptions == frozenset()


def test_reconfigure_keeps_the_running_session() -> None:
    """Changing thresholds of a kept device does not end its session."""
    ingestor = Ingestor()
    ingestor.apply_devices([spec("mill", "a")], 0.0)
    ingestor.handle([power("a", 200.0)], 1.0)
    ingestor.tick(4.0)
    detector = ingestor.detector("mill")
    assert detector is not None
    session_id = detector.session_id
    new = SessionConfig(standby_threshold_w=10.0, working_threshold_w=500.0)
    assert ingestor.apply_devices([spec("mill", "a", session_config=new)], 5.0) == []
    assert detector.session_id == session_id
    assert detector.config == new


def test_restore_continues_a_session_after_restart() -> None:
    """Snapshots restored into a new ingestor keep the session id; the next message says online."""
    first = Ingestor()
    first.apply_devices([spec("mill", "a")], 0.0)
    first.handle([power("a", 200.0)], 1.0)
    first.tick(4.0)
    snapshots = first.take_changes()
    session_id = first.detector("mill").session_id  # type: ignore[union-attr]

    second = Ingestor()
    second.apply_devices([spec("mill", "a")], 100.0)
    assert second.restore({k: v for k, v in snapshots.items() if v}, 100.0) == ([], [])
    events = second.handle([power("a", 200.0)], 101.0)
    assert [str(e.event_type) for e in events] == ["device_online"]
    assert second.detector("mill").session_id == session_id  # type: ignore[union-attr]


def test_restore_drops_corrupt_snapshots() -> None:
    """A corrupt snapshot is reported and not used; the device starts fresh."""
    ingestor = Ingestor()
    ingestor.apply_devices([spec("mill", "a")], 0.0)
    events, unusable = ingestor.restore(
        {"ghost": {"x": 1}, "mill": {"garbage": True}, "other": {"detector": {}}}, 1.0
    )
    assert events == []
    assert sorted(unusable) == ["ghost", "mill", "other"]
    assert ingestor.detector("mill").state == "idle"  # type: ignore[union-attr]


def test_restore_ends_the_session_of_a_device_no_longer_configured() -> None:
    """A persisted running session of a device missing from the config ends as device_removed."""
    first = Ingestor()
    first.apply_devices([spec("mill", "a"), spec("laser", "b")], 0.0)
    first.handle([power("a", 200.0)], 1.0)
    first.tick(4.0)
    session_id = first.detector("mill").session_id  # type: ignore[union-attr]
    snapshots = {k: v for k, v in first.take_changes().items() if v}

    second = Ingestor()
    second.apply_devices([spec("laser", "b")], 50.0)
    events, unusable = second.restore(snapshots, 50.0)
    assert unusable == []
    assert [(str(e.event_type), e.device_id, e.session_id) for e in events] == [
        ("session_stopped", "mill", session_id)
    ]
    assert events[0].data["reason"] == "device_removed"
    assert events[0].machine_name == "Mill"
    assert second.take_changes()["mill"] is None


def test_masked_secrets_pushed_back_keep_their_value() -> None:
    """A config copied from GET /config (secrets as ***) and pushed again keeps the real secrets."""
    from iot_bridge.config.parse import parse_config
    from iot_bridge.service.config_push.use_case import keep_masked_secrets

    current = parse_config(
        {
            "mqtt": {"password": "real-pw"},
            "odoo": {"base_url": "http://o:8069", "api_key": "real-key"},
        }
    )
    pushed = parse_config(current.masked())
    kept = keep_masked_secrets(pushed, current)
    assert kept.mqtt is not None and kept.mqtt.password == "real-pw"
    assert kept.odoo is not None and kept.odoo.api_key == "real-key"
    changed = parse_config({"mqtt": {"password": "new-pw"}})
    assert keep_masked_secrets(changed, current).mqtt.password == "new-pw"  # type: ignore[union-attr]


def test_masked_secrets_are_refused_for_another_destination() -> None:
    """'***' with another broker/URL/username, or with no current secret, is a ConfigError."""
    import pytest

    from iot_bridge.config.parse import parse_config
    from iot_bridge.errors import ConfigError
    from iot_bridge.service.config_push.use_case import keep_masked_secrets

    current = parse_config(
        {
            "mqtt": {"broker": "mqtt.local", "password": "real-pw"},
            "odoo": {"base_url": "http://o:8069", "api_key": "real-key"},
        }
    )
    for pushed, path in (
        ({"mqtt": {"broker": "evil.example", "password": "***"}}, "mqtt.password"),
        ({"mqtt": {"broker": "mqtt.local", "username": "x", "password": "***"}}, "mqtt.password"),
        ({"odoo": {"base_url": "http://evil.example", "api_key": "***"}}, "odoo.api_key"),
    ):
        with pytest.raises(ConfigError) as caught:
            keep_masked_secrets(parse_config(pushed), current)
        assert [issue.path for issue in caught.value.issues] == [path]
    with pytest.raises(ConfigError):
        keep_masked_secrets(parse_config({"mqtt": {"password": "***"}}), parse_config({}))


def test_retained_readings_are_not_live_but_retained_availability_is() -> None:
    """A retained data message (the broker's old copy) changes nothing; a retained LWT counts."""
    ingestor = Ingestor()
    ingestor.apply_devices([spec("mill", "a")], 0.0)
    stale = Msg("a/status/pm1:0", b'{"id":0,"apower":500.0}', retain=True)
    assert ingestor.handle([stale], 1.0) == []
    mill = ingestor.detector("mill")
    assert mill is not None and mill.power_w is None and mill.last_seen is None
    events = ingestor.handle([Msg("a/online", b"true", retain=True)], 2.0)
    assert [str(e.event_type) for e in events] == ["device_online"]


def gen1_3em(device_id: str = "lathe", **changes: object) -> DeviceSpec:
    values: dict[str, object] = {
        "mqtt_topic": "shellies/em3/emeter/0/power",
        "parser_type": "shelly_gen1",
        "parser_options": {"channels": [0, 1, 2]},
    }
    return spec(device_id, "", **{**values, **changes})


def phase(channel: int, leaf: str, value: float) -> Msg:
    return Msg(f"shellies/em3/emeter/{channel}/{leaf}", repr(value).encode())


def test_channels_subscribe_every_phase_and_its_counter() -> None:
    """A channel list subscribes each listed channel's data topic and energy sibling."""
    ingestor = Ingestor()
    ingestor.apply_devices([gen1_3em()], 0.0)
    assert ingestor.subscriptions == {
        *(f"shellies/em3/emeter/{n}/{leaf}" for n in range(3) for leaf in ("power", "total")),
        "shellies/em3/online",
    }


def test_negative_power_is_counted_by_parser_type() -> None:
    """A negative power is a 0 W reading, counted in negative_power (the metric's source)."""
    ingestor = Ingestor()
    ingestor.apply_devices([gen1_3em(), spec("mill", "a")], 0.0)
    ingestor.handle([phase(0, "power", -12.5), phase(1, "power", 40.0), power("a", 1.0)], 1.0)
    counters = ingestor.drain_counters()
    assert counters.negative_power == {"shelly_gen1": 1}
    assert counters.rejected == {}
    detector = ingestor.detector("lathe")
    assert detector is not None
    assert detector.power_w == 40.0
    assert ingestor.drain_counters().negative_power == {}


def _restarted(before: Ingestor, specs: list[DeviceSpec], now: float) -> Ingestor:
    after = Ingestor()
    after.apply_devices(specs, now)
    stored = {k: v for k, v in before.take_changes().items() if v is not None}
    _, unusable = after.restore(stored, now)
    assert unusable == []
    return after


def test_channel_state_survives_a_restart() -> None:
    """After a restart the phases not heard again keep their power, and counters continue."""
    before = Ingestor()
    before.apply_devices([gen1_3em()], 0.0)
    before.handle([phase(n, "power", 100.0 * (n + 1)) for n in range(3)], 1.0)
    before.handle([phase(n, "total", 1000.0) for n in range(3)], 2.0)
    before.handle([phase(2, "total", 5.0)], 3.0)  # phase C restarted from zero: +5 Wh
    after = _restarted(before, [gen1_3em()], 10.0)
    after.handle([phase(0, "power", 150.0), phase(1, "total", 1010.0)], 11.0)
    detector = after.detector("lathe")
    assert detector is not None
    assert detector.power_w == 150.0 + 200.0 + 300.0
    # 3000 at first, +5 after phase C's restart, +10 on phase B: never the lifetime again.
    assert detector.energy_counter_wh == 3015.0


def test_a_config_push_keeps_channel_state_unless_the_channels_change() -> None:
    """Same parser settings keep the phases; other channels continue the import counter only."""
    ingestor = Ingestor()
    ingestor.apply_devices([gen1_3em()], 0.0)
    ingestor.handle([phase(n, "power", 10.0) for n in range(3)], 1.0)
    ingestor.handle([phase(n, "total", 500.0) for n in range(3)], 2.0)
    ingestor.apply_devices([gen1_3em(machine_name="Big lathe")], 3.0)
    ingestor.handle([phase(0, "power", 20.0)], 4.0)
    detector = ingestor.detector("lathe")
    assert detector is not None
    assert detector.power_w == 40.0
    ingestor.apply_devices([gen1_3em(parser_options={"channels": [0, 1]})], 5.0)
    ingestor.handle([phase(0, "total", 600.0), phase(1, "total", 700.0)], 6.0)
    assert detector.energy_counter_wh == 1500.0  # new baselines: no lifetime counted as use
    ingestor.handle([phase(1, "total", 750.0)], 7.0)
    assert detector.energy_counter_wh == 1550.0
