"""Every real device message of the fixture file, with what its parser must make of it."""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass
from typing import Any

import pytest

from iot_bridge.domain.readings import Reading
from iot_bridge.errors import PayloadError
from iot_bridge.parsers import make_parser

FIXTURE = (
    pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "devices" / "device_messages.json"
)
MESSAGES: list[dict[str, Any]] = json.loads(FIXTURE.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Availability:
    """The message is the device's availability flag: online or not."""

    online: bool


@dataclass(frozen=True)
class NotData:
    """The message is on none of the device's data or availability topics."""

    why: str


ONLINE = Availability(online=True)
OFFLINE = Availability(online=False)
SIGN_OF_LIFE = Reading(None, None)

# (index, topic, parser_type, the device's mqtt_topic, expected)
# expected: the exact Reading(power_w, energy_wh in Wh), or Availability, or NotData.
TABLE: list[tuple[int, str, str, str, Reading | Availability | NotData]] = [
    # --- Shelly Gen2/Gen3/Gen4 ---
    (0, "<shelly-id>/status/pm1:0", "shelly_pm", "<shelly-id>/status/pm1:0", Reading(0.0, 11.679)),
    (1, "<shelly-id>/status/switch:0", "shelly_pm", "<shelly-id>/status/switch:0",
     Reading(0.0, 11.679)),
    # A switch without a power meter: no apower, no aenergy.
    (2, "shellyplus1-a8032abe54dc/status/switch:0", "shelly_pm",
     "shellyplus1-a8032abe54dc/status/switch:0", SIGN_OF_LIFE),
    # NotifyStatus delta of switch:0 with only output/source.
    (3, "<shelly-id>/events/rpc", "shelly_rpc", "<shelly-id>/events/rpc", SIGN_OF_LIFE),
    # NotifyStatus of the cloud component only.
    (4, "<shelly-id>/events/rpc", "shelly_rpc", "<shelly-id>/events/rpc", SIGN_OF_LIFE),
    (5, "shellypmmini-6055f999dfd4/status/pm1:0", "shelly_pm",
     "shellypmmini-6055f999dfd4/status/pm1:0", Reading(1.6, 12.948)),
    # NotifyFullStatus on connect: switch:0 among many components.
    (6, "shellyplusplugs-80646fd031f8/events/rpc", "shelly_rpc",
     "shellyplusplugs-80646fd031f8/events/rpc", Reading(0.0, 30473.355)),
    (7, "shellyplusplugs-80646fd031f8/status/mqtt", "shelly_pm",
     "shellyplusplugs-80646fd031f8/status/switch:0", NotData("status of the mqtt component")),
    (8, "shellyplus2pm-Einfahrt/status/switch:0", "shelly_pm",
     "shellyplus2pm-Einfahrt/status/switch:0", Reading(0.0, 123.585)),
    # NotifyStatus of the mqtt component only.
    (9, "shelly1pmmini-Sat/events/rpc", "shelly_rpc", "shelly1pmmini-Sat/events/rpc",
     SIGN_OF_LIFE),
    (10, "shelly1pmmini-Solarthermie/status/switch:0", "shelly_pm",
     "shelly1pmmini-Solarthermie/status/switch:0", Reading(3.8, 26064.252)),
    (11, "shelly1pmminig3-5432044edbc0/status/switch:0", "shelly_pm",
     "shelly1pmminig3-5432044edbc0/status/switch:0", Reading(11.5, 152669.987)),
    (12, "ShellyLichtGarten/status/switch:0", "shelly_pm", "ShellyLichtGarten/status/switch:0",
     Reading(0.0, 2690.730)),
    # NotifyEvent (a button push): a sign of life, not a measurement.
    (13, "shellyplus1pm-b22864/events/rpc", "shelly_rpc", "shellyplus1pm-b22864/events/rpc",
     SIGN_OF_LIFE),
    (14, "shellypro2pm-30c6f7850a64/online", "shelly_pm",
     "shellypro2pm-30c6f7850a64/status/switch:0", OFFLINE),
    (15, "iobroker/rpc", "shelly_rpc", "shellyplugsg3-8cbfea9585e8/events/rpc",
     NotData("an RPC reply to another client")),
    (16, "<shelly-id>/status/switch:0", "shelly_pm", "<shelly-id>/status/switch:0",
     Reading(0.0, 0.0)),
    # --- Shelly Gen1 ---
    # 81010 watt-minutes = 1350.1666... Wh
    (17, "shellies/shellyplug-s-XXYYYY/relay/0/energy", "shelly_gen1",
     "shellies/shellyplug-s-XXYYYY/relay/0/power", Reading(None, 81010 / 60)),
    (18, "shellies/NAPPALITV/relay/0/power", "shelly_gen1", "shellies/NAPPALITV/relay/0/power",
     Reading(0.0, None)),
    (19, "shellies/NAPPALITV/relay/0/energy", "shelly_gen1", "shellies/NAPPALITV/relay/0/power",
     Reading(None, 0.0)),
    (20, "shellies/NAPPALITV/relay/1", "shelly_gen1", "shellies/NAPPALITV/relay/1/power",
     NotData("relay state on/off")),
    (21, "shellies/NAPPALITV/input/0", "shelly_gen1", "shellies/NAPPALITV/relay/0/power",
     NotData("input state")),
    (22, "shellies/shellyswitch25-C45BBE798F0F/online", "shelly_gen1",
     "shellies/shellyswitch25-C45BBE798F0F/relay/0/power", OFFLINE),
    (23, "shellies/shellyem3-68C63AFAF952/emeter/0/pf", "shelly_gen1",
     "shellies/shellyem3-68C63AFAF952/emeter/0/power", NotData("power factor")),
    (24, "shellies/shellyem3-68C63AFAF952/emeter/0/current", "shelly_gen1",
     "shellies/shellyem3-68C63AFAF952/emeter/0/power", NotData("current")),
    (25, "shellies/shellyem3-68C63AFAF952/emeter/0/voltage", "shelly_gen1",
     "shellies/shellyem3-68C63AFAF952/emeter/0/power", NotData("voltage")),
    (26, "shellies/shellyem3-68C63AFAF952/relay/0", "shelly_gen1",
     "shellies/shellyem3-68C63AFAF952/emeter/0/power", NotData("contactor state")),
    (27, "shellies/shellyem3-3494546ECFF8/emeter/0/total_returned", "shelly_gen1",
     "shellies/shellyem3-3494546ECFF8/emeter/0/power", NotData("returned energy")),
    (28, "shellies/shellyem3-3494546ECFF8/emeter/1/power", "shelly_gen1",
     "shellies/shellyem3-3494546ECFF8/emeter/1/power", Reading(2.55, None)),
    (29, "shellies/shellydimmer2-4C7525336380/temperature", "shelly_gen1",
     "shellies/shellydimmer2-4C7525336380/relay/0/power", NotData("device temperature")),
    (30, "shellies/shellydimmer2-4C7525336380/overtemperature", "shelly_gen1",
     "shellies/shellydimmer2-4C7525336380/relay/0/power", NotData("overheat flag")),
    (31, "shellies/shellydimmer2-XXX/announce", "shelly_gen1",
     "shellies/shellydimmer2-XXX/relay/0/power", NotData("discovery announcement")),
    # --- Tasmota ---  (Total kWh -> Wh)
    (32, "tele/pow1/SENSOR", "tasmota", "tele/pow1/SENSOR", Reading(2635.0, 6294.0)),
    (33, "stat/pow1/STATUS8", "tasmota", "tele/pow1/SENSOR", Reading(2629.0, 6404.0)),
    (34, "tele/tasmota_XXXXXX/LWT", "tasmota", "tele/tasmota_XXXXXX/SENSOR", ONLINE),
    (35, "tele/tasmota_XXXXXX/LWT", "tasmota", "tele/tasmota_XXXXXX/SENSOR", OFFLINE),
    (36, "stat/tasmota_switch/RESULT", "tasmota", "tele/tasmota_switch/SENSOR",
     NotData("command reply")),
    (37, "stat/tasmota_switch/POWER", "tasmota", "tele/tasmota_switch/SENSOR",
     NotData("relay state")),
    (38, "stat/demo-sensor/POWER", "tasmota", "tele/demo-sensor/SENSOR", NotData("relay state")),
    (39, "tele/demo-sensor/STATE", "tasmota", "tele/demo-sensor/SENSOR",
     NotData("periodic STATE, no energy")),
    (40, "tele/dual/STATE", "tasmota", "tele/dual/SENSOR", NotData("periodic STATE, no energy")),
    (41, "tele/DVES_EA9716/SENSOR", "tasmota", "tele/DVES_EA9716/SENSOR", Reading(0.0, 52.0)),
    (42, "tele/DVES_EA9716/STATE", "tasmota", "tele/DVES_EA9716/SENSOR",
     NotData("periodic STATE, no energy")),
    # --- zigbee2mqtt ---  (energy kWh -> Wh)
    (43, "zigbee2mqttcc1352/plug_zigbee23", "zigbee2mqtt", "zigbee2mqttcc1352/plug_zigbee23",
     Reading(3.0, 8420.0)),
    (44, "zigbee2mqtt/Stopcontact", "zigbee2mqtt", "zigbee2mqtt/Stopcontact", Reading(0.0, 1540.0)),
    (45, "zigbee2mqtt/z1/energy", "zigbee2mqtt", "zigbee2mqtt/z1",
     NotData("per-attribute plain-text copy; the JSON state is the data topic")),
    (46, "zigbee2mqtt/FRIENDLY_NAME/availability", "zigbee2mqtt", "zigbee2mqtt/FRIENDLY_NAME",
     OFFLINE),
    (47, "zigbee2mqtt/FRIENDLY_NAME/availability", "zigbee2mqtt", "zigbee2mqtt/FRIENDLY_NAME",
     ONLINE),
    (48, "zigbee2mqtt/bridge/state", "zigbee2mqtt", "zigbee2mqtt/Stopcontact",
     NotData("the zigbee2mqtt bridge's own state")),
]  # fmt: skip

# Parsers that tell their topics apart by the last levels refuse a foreign topic outright.
DISPATCHING = {"shelly_gen1", "tasmota"}


def _payload(index: int) -> bytes:
    return str(MESSAGES[index]["payload"]).encode("utf-8")


def test_fixture_copy_matches_shared_source(shared_fixtures_dir: pathlib.Path) -> None:
    """The fixture copy is byte-identical to the shared device_messages.json."""
    source = shared_fixtures_dir / "device_messages.json"
    if not source.exists():
        pytest.skip("shared fixture folder not present beside the checkout")
    assert FIXTURE.read_bytes() == source.read_bytes()


def test_every_message_has_an_expectation() -> None:
    """Each message of the fixture file appears exactly once in the table."""
    indexes = [row[0] for row in TABLE]
    assert sorted(indexes) == list(range(len(MESSAGES)))


@pytest.mark.parametrize(("index", "topic", "parser_type", "device_topic", "expected"), TABLE)
def test_fixture_message(
    index: int,
    topic: str,
    parser_type: str,
    device_topic: str,
    expected: Reading | Availability | NotData,
) -> None:
    """The message gives exactly its expected reading, availability, or is not a data topic."""
    assert MESSAGES[index]["topic"] == topic
    parser = make_parser(parser_type, device_topic)
    payload = _payload(index)
    if isinstance(expected, Reading):
        assert topic in parser.data_topics
        reading = parser.parse(topic, payload)
        assert reading.power_w == expected.power_w
        if expected.energy_wh is None:
            assert reading.energy_wh is None
        else:
            assert reading.energy_wh == pytest.approx(expected.energy_wh, rel=1e-12)
    elif isinstance(expected, Availability):
        assert topic == parser.availability_topic
        assert parser.parse_availability(payload) is expected.online
    else:
        assert topic not in parser.data_topics
        assert topic != parser.availability_topic
        if parser_type in DISPATCHING:
            with pytest.raises(PayloadError) as caught:
                parser.parse(topic, payload)
            assert caught.value.reason == "unknown_topic"
