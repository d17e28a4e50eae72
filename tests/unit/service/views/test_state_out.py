"""MQTT state out on a fake publisher: what is published when, retained and QoS 1."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

import pytest

from iot_bridge.config.model import BridgeConfig
from iot_bridge.config.parse import parse_config
from iot_bridge.config.shard import Shard
from iot_bridge.domain.events import Event, EventType
from iot_bridge.domain.session_config import SessionConfig
from iot_bridge.errors import MqttError
from iot_bridge.service.feed import Feed, FeedBatch, ReadingAccepted, StateChanged
from iot_bridge.service.views.state_out import POLL_S, POWER_INTERVAL_S, StateOut, state_out_will
from iot_bridge.service.views.types import MachineStatus

STATE_KEYS = {
    "device_id",
    "machine_name",
    "state",
    "online",
    "power_w",
    "session_id",
    "session_started_at",
    "updated_at",
    "energy_wh_total",
}
MACHINE_OBJECTS = (
    ("sensor", "state"),
    ("sensor", "power"),
    ("binary_sensor", "running"),
    ("binary_sensor", "connectivity"),
)
HEALTH: dict[str, Any] = {
    "status": "ok",
    "devices": 1,
    "shard": None,
    "mqtt": {"connected": True, "protocol": "5"},
    "outbox": {"pending": 0, "dead": 0, "flagged": 0},
    "odoo": {"configured": True, "available": True},
}


class FakePublisher:
    """Records publishes; ``connected``/``connection_count`` are set by the test."""

    def __init__(self) -> None:
        self.connected = True
        self.connection_count = 1
        self.messages: list[tuple[str, bytes, int, bool]] = []
        self.fail = False

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False
    ) -> None:
        if self.fail:
            raise MqttError("connection lost")
        self.messages.append((topic, payload, qos, retain))

    def topics(self) -> list[str]:
        return [m[0] for m in self.messages]

    def take(self) -> list[tuple[str, bytes, int, bool]]:
        taken, self.messages = self.messages, []
        return taken


class FakeDirectory:
    def __init__(self, *device_ids: str) -> None:
        self.statuses = {
            d: MachineStatus(
                device_id=d,
                machine_name=f"Machine {d}",
                state="idle",
                online=True,
                last_seen=1.0,
                power_w=0.0,
                session_id=None,
                session_started_at=None,
                session_config=SessionConfig(),
                parser_type="shelly_pm",
            )
            for d in device_ids
        }

    def device_ids(self) -> Sequence[str]:
        return list(self.statuses)

    def status(self, device_id: str) -> MachineStatus | None:
        return self.statuses.get(device_id)


def _config(*device_ids: str, **state_out: Any) -> BridgeConfig:
    section = {"enabled": True, **state_out}
    return parse_config(
        {
            "state_out": section,
            "devices": [
                {
                    "device_id": d,
                    "machine_name": f"Machine {d}",
                    "mqtt_topic": f"{d}/status/pm1:0",
                    "parser_type": "shelly_pm",
                }
                for d in device_ids
            ],
        }
    )


class Rig:
    """A StateOut on fakes; ``clock`` is a plain number the test moves, ``health`` a dict."""

    def __init__(
        self,
        config: BridgeConfig,
        *device_ids: str,
        shard: Shard | None = None,
        health: dict[str, Any] | None = None,
        health_source: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    ) -> None:
        self.feed = Feed()
        self.publisher = FakePublisher()
        self.directory = FakeDirectory(*device_ids)
        self.config = config
        self.clock = 100.0
        self.health = copy.deepcopy(HEALTH) if health is None else health

        async def health_now() -> dict[str, Any]:
            return self.health

        self.state_out = StateOut(
            feed=self.feed,
            directory=self.directory,
            config=lambda: self.config,
            client=lambda: self.publisher,
            clock=lambda: self.clock,
            shard=shard,
            health=health_source or health_now,
        )

    def set_status(self, device_id: str, **changes: Any) -> None:
        """Change what the directory says of a device."""
        self.directory.statuses[device_id] = replace(self.directory.statuses[device_id], **changes)

    async def step(self, *batches: FeedBatch) -> list[tuple[str, bytes, int, bool]]:
        for batch in batches:
            self.state_out.apply(batch)
        await self.state_out.step()
        return self.publisher.take()


async def test_nothing_is_published_when_state_out_is_off() -> None:
    """No section, or enabled: false, publishes nothing and sets no will."""
    for config in (parse_config({}), _config("cnc", enabled=False)):
        rig = Rig(config, "cnc")
        assert (
            await rig.step(
                FeedBatch(ts=1.0, changes=(StateChanged("cnc", 1, "idle", "working", "s"),))
            )
            == []
        )
        assert state_out_will(config) is None


async def test_readings_while_state_out_is_off_never_make_it_spin() -> None:
    """Off: readings are forgotten and the loop sleeps ``poll_s`` (it once woke at once, forever)."""
    rig = Rig(parse_config({}), "cnc")
    reading = FeedBatch(ts=100.0, readings=(ReadingAccepted("cnc", 100.0, 1.0),))
    assert await rig.step(reading) == []
    rig.clock += 60.0
    assert rig.state_out.wait_s() == POLL_S
    rig.state_out.apply(reading)
    assert rig.state_out.wait_s() == POLL_S  # not due, whatever the clock says


async def test_readings_while_disconnected_wait_for_the_connect_not_for_the_clock() -> None:
    """Disconnected with power updates pending: the loop sleeps ``poll_s``, not 0."""
    rig = Rig(_config("cnc"), "cnc")
    await rig.step()  # the sync
    rig.publisher.connected = False
    rig.clock += 60.0
    rig.state_out.apply(FeedBatch(ts=rig.clock, readings=(ReadingAccepted("cnc", rig.clock, 1.0),)))
    assert await rig.step() == []
    assert rig.state_out.wait_s() == POLL_S
    rig.publisher.connected = True
    assert rig.state_out.wait_s() == 0.0  # due at once now that it can be sent


async def test_the_first_connect_publishes_availability_discovery_and_states_retained() -> None:
    """Discovery configs of the bridge and each machine, statuses, then online: retained, QoS 1."""
    rig = Rig(_config("cnc", "laser"), "cnc", "laser")
    published = await rig.step()
    assert all(qos == 1 and retain for _, _, qos, retain in published)
    topics = [topic for topic, *_ in published]
    assert topics[-1] == "iot-bridge/bridge/availability"  # last: the rest is there by then
    assert published[-1][1] == b"online"
    assert sorted(t for t in topics if t.startswith("homeassistant/")) == sorted(
        [
            *(
                f"homeassistant/{kind}/iot_bridge_{d}/{name}/config"
                for d in ("cnc", "laser")
                for kind, name in MACHINE_OBJECTS
            ),
            "homeassistant/sensor/iot_bridge-bridge/outbox/config",
            "homeassistant/sensor/iot_bridge-bridge/mqtt/config",
            "homeassistant/binary_sensor/iot_bridge-bridge/odoo/config",
        ]
    )
    state = json.loads({t: p for t, p, *_ in published}["iot-bridge/cnc/state"])
    assert set(state) == STATE_KEYS
    assert (state["state"], state["online"], state["machine_name"]) == ("idle", True, "Machine cnc")
    assert state["energy_wh_total"] is None
    status = json.loads({t: p for t, p, *_ in published}["iot-bridge/bridge/status"])
    assert (status["outbox_pending"], status["odoo_reachable"], status["mqtt_protocol"]) == (
        0,
        True,
        "5",
    )


def _discovery(published: list[tuple[str, bytes, int, bool]]) -> dict[str, dict[str, Any]]:
    return {t: json.loads(p) for t, p, *_ in published if t.startswith("homeassistant/") and p}


async def test_machine_entities_need_the_bridge_and_the_meter_online() -> None:
    """Measured entities list both availabilities (mode all); connectivity only the bridge's."""
    rig = Rig(_config("cnc"), "cnc")
    configs = _discovery(await rig.step())
    both = [
        {"topic": "iot-bridge/bridge/availability"},
        {
            "topic": "iot-bridge/cnc/state",
            "value_template": "{{ 'online' if value_json.online else 'offline' }}",
        },
    ]
    for kind, name in MACHINE_OBJECTS:
        entity = configs[f"homeassistant/{kind}/iot_bridge_cnc/{name}/config"]
        assert entity["state_topic"] == "iot-bridge/cnc/state"
        assert entity["unique_id"] == f"iot_bridge_cnc_{name}"
        assert entity["device"]["identifiers"] == ["iot_bridge_cnc"]
        assert entity["device"]["via_device"] == "iot_bridge-bridge"
        assert entity["origin"]["name"] == "iot-bridge"
        assert "availability_topic" not in entity
        if name == "connectivity":
            assert entity["availability"] == both[:1]
            assert entity["device_class"] == "connectivity"
        else:
            assert entity["availability"] == both
            assert entity["availability_mode"] == "all"
    power = configs["homeassistant/sensor/iot_bridge_cnc/power/config"]
    assert (power["unit_of_measurement"], power["device_class"]) == ("W", "power")


async def test_the_state_sensor_is_an_enum_whose_attributes_change_only_with_the_state() -> None:
    """device_class enum, the five states as options, no power or timestamp attributes."""
    rig = Rig(_config("cnc"), "cnc")
    state = _discovery(await rig.step())["homeassistant/sensor/iot_bridge_cnc/state/config"]
    assert state["device_class"] == "enum"
    assert state["options"] == ["idle", "starting", "standby", "working", "stopping"]
    template = state["json_attributes_template"]
    assert "session_id" in template and "session_started_at" in template
    assert "power_w" not in template and "updated_at" not in template


async def test_model_names_the_meter_family_and_the_parser_is_the_model_id() -> None:
    """A shelly_pm on status/pm1:0 is a Shelly PM; the parser name goes to model_id."""
    rig = Rig(_config("cnc"), "cnc")
    configs = _discovery(await rig.step())
    device = configs["homeassistant/sensor/iot_bridge_cnc/power/config"]["device"]
    assert (device["manufacturer"], device["model"], device["model_id"]) == (
        "Shelly",
        "Shelly PM (Gen2+)",
        "shelly_pm",
    )


async def test_the_energy_sensor_appears_once_the_meter_reports_a_counter() -> None:
    """No counter, no energy entity; the first counter announces it before its value."""
    rig = Rig(_config("cnc"), "cnc")
    first = await rig.step()
    assert not [t for t, *_ in first if t.endswith("/energy/config")]
    rig.set_status("cnc", energy_wh_total=12.34567)
    rig.clock += POWER_INTERVAL_S
    published = await rig.step(FeedBatch(ts=rig.clock, energy_read=("cnc",)))
    topics = [t for t, *_ in published]
    assert topics == ["homeassistant/sensor/iot_bridge_cnc/energy/config", "iot-bridge/cnc/state"]
    energy = json.loads(published[0][1])
    assert (energy["device_class"], energy["state_class"], energy["unit_of_measurement"]) == (
        "energy",
        "total_increasing",
        "kWh",
    )
    assert json.loads(published[1][1])["energy_wh_total"] == 12.346
    rig.publisher.connection_count += 1  # a reconnect announces it with the rest
    again = [t for t, *_ in await rig.step()]
    assert "homeassistant/sensor/iot_bridge_cnc/energy/config" in again


async def test_energy_only_messages_publish_the_state_at_the_power_pace() -> None:
    """A counter update without power (Shelly's minute update) still reaches the state topic."""
    rig = Rig(_config("cnc"), "cnc")
    await rig.step()
    rig.set_status("cnc", energy_wh_total=1.0)
    assert await rig.step(FeedBatch(ts=rig.clock, energy_read=("cnc",))) == []  # just published
    rig.clock += POWER_INTERVAL_S
    assert "iot-bridge/cnc/state" in [t for t, *_ in await rig.step()]


async def test_a_state_change_is_published_at_once() -> None:
    """A StateChanged publishes that device's state in the next step, whatever the power timer."""
    rig = Rig(_config("cnc", "laser"), "cnc", "laser")
    await rig.step()
    rig.directory.statuses["cnc"] = replace(
        rig.directory.statuses["cnc"], state="working", session_id="sid", session_started_at=50.0
    )
    published = await rig.step(
        FeedBatch(ts=100.0, changes=(StateChanged("cnc", 100.0, "idle", "working", "sid"),))
    )
    assert [t for t, *_ in published] == ["iot-bridge/cnc/state"]
    state = json.loads(published[0][1])
    assert (state["state"], state["session_id"]) == ("working", "sid")
    assert state["session_started_at"].startswith("1970-01-01T00:00:50")


async def test_power_changes_are_published_at_most_every_few_seconds() -> None:
    """Readings publish the state once per POWER_INTERVAL_S, and the latest power when due."""
    rig = Rig(_config("cnc"), "cnc")
    await rig.step()  # the sync at t=100
    sent = 0
    for tenth in range(1, 121):  # 12 s of readings, ten a second
        rig.clock = 100.0 + tenth / 10
        rig.directory.statuses["cnc"] = replace(rig.directory.statuses["cnc"], power_w=float(tenth))
        published = await rig.step(
            FeedBatch(ts=rig.clock, readings=(ReadingAccepted("cnc", rig.clock, 1.0),))
        )
        sent += len(published)
        if published:
            assert json.loads(published[0][1])["power_w"] == float(tenth)
    assert sent == int(12 / POWER_INTERVAL_S)


async def test_device_online_and_offline_publish_at_once() -> None:
    """An availability change is a state change for the retained message."""
    rig = Rig(_config("cnc"), "cnc")
    await rig.step()
    rig.directory.statuses["cnc"] = replace(rig.directory.statuses["cnc"], online=False)
    offline = Event("u", EventType.DEVICE_OFFLINE, "cnc", "M", None, 100.0, {"last_seen": None})
    published = await rig.step(FeedBatch(ts=100.0, events=(offline,)))
    assert json.loads(published[0][1])["online"] is False


async def test_a_reconnect_publishes_everything_again() -> None:
    """After the client connected again (a will may have said offline), all is sent again."""
    rig = Rig(_config("cnc"), "cnc")
    first = await rig.step()
    assert await rig.step() == []
    rig.publisher.connection_count += 1
    again = await rig.step()
    assert [t for t, *_ in again] == [t for t, *_ in first]


async def test_nothing_is_published_while_disconnected_and_all_after() -> None:
    """Disconnected: publishes wait; the next connect sends the whole picture."""
    rig = Rig(_config("cnc"), "cnc")
    rig.publisher.connected = False
    assert (
        await rig.step(FeedBatch(ts=1.0, changes=(StateChanged("cnc", 1, "idle", "working", "s"),)))
        == []
    )
    rig.publisher.connected = True
    assert "iot-bridge/cnc/state" in [t for t, *_ in await rig.step()]


async def test_readings_never_make_it_busy_wait_when_off_or_disconnected() -> None:
    """Switched off, or disconnected: after readings its next wait is the poll, not zero."""
    off = Rig(_config("cnc", enabled=False), "cnc")
    disconnected = Rig(_config("cnc"), "cnc")
    await disconnected.step()  # synced
    disconnected.publisher.connected = False
    for rig in (off, disconnected):
        rig.clock += 3600.0  # any power publish would be long due
        reading = FeedBatch(ts=rig.clock, readings=(ReadingAccepted("cnc", rig.clock, 1.0),))
        assert await rig.step(reading) == []
        assert rig.state_out.wait_s() == POLL_S


async def test_a_removed_device_has_its_state_and_discovery_cleared() -> None:
    """Empty retained messages on the removed device's four topics; the other is untouched."""
    rig = Rig(_config("cnc", "laser"), "cnc", "laser")
    await rig.step()
    rig.config = _config("cnc")
    del rig.directory.statuses["laser"]
    published = await rig.step()
    assert sorted((t, p) for t, p, *_ in published) == sorted(
        [
            ("iot-bridge/laser/state", b""),
            *(
                (f"homeassistant/{kind}/iot_bridge_laser/{name}/config", b"")
                for kind, name in MACHINE_OBJECTS
            ),
        ]
    )


async def test_a_removal_while_disconnected_is_cleared_after_the_reconnect() -> None:
    """The clear is not lost when the broker is away at the time of the push."""
    rig = Rig(_config("cnc", "laser"), "cnc", "laser")
    await rig.step()
    rig.publisher.connected = False
    rig.config = _config("cnc")
    del rig.directory.statuses["laser"]
    assert await rig.step() == []
    rig.publisher.connected = True
    rig.publisher.connection_count += 1
    published = await rig.step()
    cleared = {t for t, p, *_ in published if p == b""}
    assert "iot-bridge/laser/state" in cleared
    assert "iot-bridge/laser/state" not in {t for t, p, *_ in published if p}


async def test_switching_state_out_off_clears_everything_it_retained() -> None:
    """enabled: false by a push empties availability, discovery and states."""
    rig = Rig(_config("cnc"), "cnc")
    first = {t for t, *_ in await rig.step()}
    rig.config = _config("cnc", enabled=False)
    published = await rig.step()
    assert {t for t, p, *_ in published if p == b""} == first
    assert await rig.step() == []


async def test_without_discovery_only_availability_and_states_are_published() -> None:
    """homeassistant_discovery: false publishes nothing under the discovery prefix."""
    rig = Rig(_config("cnc", homeassistant_discovery=False, topic_prefix="plant/a"), "cnc")
    topics = [t for t, *_ in await rig.step()]
    assert topics == ["plant/a/bridge/status", "plant/a/cnc/state", "plant/a/bridge/availability"]


async def test_a_failed_publish_makes_the_next_connect_send_everything() -> None:
    """An MqttError mid-way (connection lost) is not fatal; all is sent again later."""
    rig = Rig(_config("cnc"), "cnc")
    await rig.step()
    rig.publisher.fail = True
    await rig.step(FeedBatch(ts=1.0, changes=(StateChanged("cnc", 1, "idle", "working", "s"),)))
    rig.publisher.fail = False
    again = [t for t, *_ in await rig.step()]
    assert "iot-bridge/bridge/availability" in again
    assert "iot-bridge/cnc/state" in again


async def test_close_says_offline_retained() -> None:
    """A clean stop publishes offline: the broker drops the will on a normal DISCONNECT."""
    rig = Rig(_config("cnc"), "cnc")
    await rig.step()
    await rig.state_out.close()
    assert rig.publisher.take() == [("iot-bridge/bridge/availability", b"offline", 1, True)]


def test_the_will_is_offline_retained_on_the_availability_topic() -> None:
    """The bridge connects with this will (retained, QoS 1) when state out is on."""
    will = state_out_will(_config("cnc", topic_prefix="plant"))
    assert will is not None
    assert (will.topic, will.payload) == ("plant/bridge/availability", b"offline")


@pytest.mark.parametrize(
    ("section", "path"),
    [
        ({"enabled": True, "topic_prefix": "a/+/b"}, "state_out.topic_prefix"),
        ({"enabled": True, "topic_prefix": "/a"}, "state_out.topic_prefix"),
        ({"enabled": True, "discovery_prefix": "$SYS"}, "state_out.discovery_prefix"),
        ({"enabled": "yes"}, "state_out.enabled"),
        ({"enabled": True, "retain": True}, "state_out.retain"),
    ],
)
def test_a_bad_state_out_section_is_refused_with_its_path(
    section: dict[str, Any], path: str
) -> None:
    """Wildcards, empty levels, '$', non-booleans and unknown keys are config errors."""
    from iot_bridge.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        parse_config({"state_out": section})
    assert path in [issue.path for issue in caught.value.issues]


def test_state_out_is_off_by_default() -> None:
    """A section without enabled publishes nothing; the defaults are the contract's."""
    section = parse_config({"state_out": {}}).state_out
    assert section is not None
    assert (
        section.enabled,
        section.topic_prefix,
        section.homeassistant_discovery,
        section.discovery_prefix,
    ) == (
        False,
        "iot-bridge",
        True,
        "homeassistant",
    )


async def _settle(condition: Any, turns: int = 200) -> None:
    """Let the loop run until ``condition()`` holds (a bounded number of turns, no clock)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


async def test_off_it_leaves_the_feed_and_sleeps_until_a_push() -> None:
    """Off: no subscription (no wake-up per message) and no timer; a push wakes it."""
    rig = Rig(parse_config({}), "cnc")
    task = asyncio.create_task(rig.state_out.run())
    await _settle(rig.state_out.dormant)
    await _settle(lambda: not rig.feed.has_subscribers)
    for _ in range(20):
        await asyncio.sleep(0)
    assert not task.done()
    assert rig.publisher.take() == []
    rig.config = _config("cnc")
    rig.state_out.config_changed()
    await _settle(lambda: "iot-bridge/bridge/availability" in rig.publisher.topics())
    await _settle(lambda: rig.feed.has_subscribers)  # on: it follows the feed again
    await rig.state_out.close()
    await asyncio.wait_for(task, 1.0)


async def test_turned_off_it_clears_then_sleeps_and_close_ends_it() -> None:
    """On -> off: the retained topics are cleared first, then it sleeps; close ends the run."""
    rig = Rig(_config("cnc"), "cnc")
    task = asyncio.create_task(rig.state_out.run())
    await _settle(lambda: "iot-bridge/cnc/state" in rig.publisher.topics())
    rig.publisher.take()
    rig.config = parse_config({})
    rig.state_out.config_changed()
    await _settle(rig.state_out.dormant)
    assert ("iot-bridge/cnc/state", b"", 1, True) in rig.publisher.take()
    await _settle(lambda: not rig.feed.has_subscribers)
    await rig.state_out.close()
    await asyncio.wait_for(task, 1.0)


async def test_a_push_that_keeps_it_off_sleeps_again() -> None:
    rig = Rig(parse_config({}), "cnc")
    task = asyncio.create_task(rig.state_out.run())
    await _settle(rig.state_out.dormant)
    rig.config = parse_config({"devices": []})
    rig.state_out.config_changed()
    await _settle(lambda: rig.state_out.dormant() and rig.state_out._seen_config is rig.config)
    assert rig.publisher.take() == []
    await rig.state_out.close()
    await asyncio.wait_for(task, 1.0)


async def test_press_dot_1_and_press_underscore_1_are_two_machines() -> None:
    """Different device ids never share a discovery topic, unique id or device identifier."""
    rig = Rig(_config("press.1", "press_1"), "press.1", "press_1")
    configs = _discovery(await rig.step())
    by_machine: dict[str, list[dict[str, Any]]] = {}
    for entity in configs.values():
        if "via_device" in entity["device"]:
            by_machine.setdefault(entity["device"]["name"], []).append(entity)
    dot, underscore = by_machine["Machine press.1"], by_machine["Machine press_1"]
    assert {e["device"]["identifiers"][0] for e in underscore} == {"iot_bridge_press_1"}
    assert {e["device"]["identifiers"][0] for e in dot} == {"iot_bridge-press_2e1"}
    assert not {e["unique_id"] for e in dot} & {e["unique_id"] for e in underscore}
    assert {e["state_topic"] for e in dot} == {"iot-bridge/press.1/state"}


async def test_removing_press_dot_1_leaves_press_underscore_1_alone() -> None:
    """Only the removed machine's topics are emptied; the other's discovery stays."""
    rig = Rig(_config("press.1", "press_1"), "press.1", "press_1")
    await rig.step()
    rig.config = _config("press_1")
    del rig.directory.statuses["press.1"]
    cleared = [t for t, p, *_ in await rig.step() if p == b""]
    assert "iot-bridge/press.1/state" in cleared
    assert [t for t in cleared if "iot_bridge-press_2e1" in t]
    assert not [t for t in cleared if "iot_bridge_press_1" in t or "press_1/" in t]


async def test_the_node_id_an_earlier_version_gave_a_dotted_id_is_cleared_unless_taken() -> None:
    """press.1 used to live at iot_bridge_press_1: emptied once, but not while press_1 owns it."""
    alone = Rig(_config("press.1"), "press.1")
    cleared = {t for t, p, *_ in await alone.step() if p == b""}
    assert cleared == {
        "homeassistant/sensor/iot_bridge_press_1/state/config",
        "homeassistant/sensor/iot_bridge_press_1/power/config",
        "homeassistant/binary_sensor/iot_bridge_press_1/running/config",
    }
    alone.publisher.connection_count += 1
    assert not [p for _, p, *_ in await alone.step() if p == b""]  # once per process
    both = Rig(_config("press.1", "press_1"), "press.1", "press_1")
    assert not [t for t, p, *_ in await both.step() if p == b""]


async def test_each_shard_has_its_own_availability_status_and_bridge_device() -> None:
    """One instance's will must not make another's machines unavailable; its devices only."""
    everyone = ("mill", "lathe", "press", "drill", "saw")
    shard = Shard(2, 2)
    mine = [d for d in everyone if shard.takes(d)]
    assert mine and len(mine) < len(everyone)
    rig = Rig(_config(*everyone), *mine, shard=shard)
    published = await rig.step()
    topics = [t for t, *_ in published]
    assert topics[-1] == "iot-bridge/bridge/shard2/availability"
    assert "iot-bridge/bridge/shard2/status" in topics
    configs = _discovery(published)
    machines = {e["device"]["name"] for e in configs.values() if "via_device" in e["device"]}
    assert machines == {f"Machine {d}" for d in mine}
    for entity in configs.values():
        assert entity["availability"][0] == {"topic": "iot-bridge/bridge/shard2/availability"}
        assert entity["device"].get("via_device", "iot_bridge-bridge-shard2") == (
            "iot_bridge-bridge-shard2"
        )
    will = state_out_will(_config("mill"), shard)
    assert will is not None and will.topic == "iot-bridge/bridge/shard2/availability"


async def test_the_bridge_status_is_polled_and_published_when_it_changes() -> None:
    """Every bridge_status_interval_s: a changed outbox or Odoo state is published, else nothing."""
    rig = Rig(_config("cnc"), "cnc")
    await rig.step()
    rig.health["outbox"]["pending"] = 7
    rig.clock += 5.0
    assert await rig.step() == []  # not due yet
    rig.clock += 5.0
    published = await rig.step()
    assert [t for t, *_ in published] == ["iot-bridge/bridge/status"]
    assert json.loads(published[0][1])["outbox_pending"] == 7
    rig.clock += 10.0
    assert await rig.step() == []  # unchanged


async def test_without_odoo_the_bridge_has_no_odoo_entity() -> None:
    """Local-only mode shows no Odoo sensor; configuring Odoo later adds it, removing clears it."""
    health = copy.deepcopy(HEALTH)
    health["odoo"] = {"configured": False, "available": None}
    rig = Rig(_config("cnc"), "cnc", health=health)
    odoo = "homeassistant/binary_sensor/iot_bridge-bridge/odoo/config"
    assert odoo not in [t for t, *_ in await rig.step()]
    rig.health["odoo"] = {"configured": True, "available": False}
    rig.clock += 10.0
    assert odoo in [t for t, p, *_ in await rig.step() if p]
    rig.health["odoo"] = {"configured": False, "available": None}
    rig.clock += 10.0
    assert (odoo, b"") in [(t, p) for t, p, *_ in await rig.step()]


async def test_a_failing_status_source_never_stops_the_machines_state() -> None:
    """An error reading the bridge's health is logged; machine states are still published."""

    async def broken() -> dict[str, Any]:
        raise RuntimeError("store gone")

    rig = Rig(_config("cnc"), "cnc", health_source=broken)
    topics = [t for t, *_ in await rig.step()]
    assert "iot-bridge/cnc/state" in topics
    assert "iot-bridge/bridge/status" not in topics
