"""Silence the bridge caused (a lost broker link) and sessions restarted from held power."""

from iot_bridge.domain.events import EventType
from iot_bridge.domain.readings import Reading
from iot_bridge.domain.session import DetectorState, SessionDetector
from iot_bridge.domain.session_config import SessionConfig

CONFIG = SessionConfig(
    standby_threshold_w=5.0,
    working_threshold_w=50.0,
    start_debounce_s=3.0,
    stop_debounce_s=15.0,
    message_timeout_s=20.0,
    heartbeat_interval_s=300.0,
)


def detector() -> SessionDetector:
    return SessionDetector(device_id="d", machine_name="M", config=CONFIG)


def kinds(events: list) -> list[str]:  # type: ignore[type-arg]
    return [str(e.event_type) for e in events]


def test_excused_silence_does_not_time_out_a_session() -> None:
    """Silence excused until t (broker link down) counts from t, not from the last message."""
    d = detector()
    d.on_reading(0.0, Reading(100.0))
    d.tick(3.0)
    d.excuse_silence(15.0)
    d.excuse_silence(30.0)
    assert d.tick(49.0) == []
    assert d.state is DetectorState.WORKING
    events = d.tick(50.0)
    assert kinds(events) == ["session_timeout", "device_offline"]
    assert events[0].data["ended_at"] == "1970-01-01T00:00:00.000000+00:00"


def test_excusing_silence_owes_no_device_online() -> None:
    """Unlike a restart, an excused silence keeps 'online': the next message emits nothing new."""
    d = detector()
    d.on_reading(0.0, Reading(0.0))
    d.excuse_silence(10.0)
    assert d.on_reading(11.0, Reading(0.0)) == []
    assert d.online is True


def test_excusing_does_not_revive_an_offline_device() -> None:
    """A device already offline stays offline (no timer is armed by excusing)."""
    d = detector()
    d.on_reading(0.0, Reading(0.0))
    assert kinds(d.tick(20.0)) == ["device_offline"]
    d.excuse_silence(30.0)
    assert d.next_deadline() is None


def test_held_power_starts_a_session_from_a_sign_of_life() -> None:
    """Idle with a held power over the threshold (after a timeout), an energy-only message starts."""
    d = detector()
    d.on_reading(0.0, Reading(100.0, 10.0))
    d.tick(3.0)
    assert kinds(d.tick(20.0)) == ["session_timeout", "device_offline"]
    assert d.state is DetectorState.IDLE
    events = d.on_reading(60.0, Reading(None, 11.0))
    assert kinds(events) == ["device_online"]
    assert d.state is DetectorState.STARTING
    started = d.tick(63.0)
    assert kinds(started) == [str(EventType.SESSION_STARTED)]
    assert started[0].data["started_at"] == "1970-01-01T00:01:00.000000+00:00"
    assert started[0].data["power_w"] == 100.0


def test_a_low_held_power_starts_nothing() -> None:
    """A sign of life with a held power under the threshold leaves the device idle."""
    d = detector()
    d.on_reading(0.0, Reading(2.0, 10.0))
    d.on_reading(5.0, Reading(None, 10.5))
    assert d.state is DetectorState.IDLE
