"""Per-family rules: components, channels, units, paths, topic dispatch."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from iot_bridge.domain.readings import Reading
from iot_bridge.errors import PayloadError
from iot_bridge.parsers import make_parser

SIGN_OF_LIFE = Reading(None, None)


def _reason(parser_type: str, topic: str, payload: bytes, options: Any = None) -> str:
    parser = make_parser(parser_type, topic, options)
    with pytest.raises(PayloadError) as caught:
        parser.parse(topic, payload)
    return caught.value.reason


# ---------------------------------------------------------------- shelly_pm

SHELLY_PM: list[tuple[str, bytes, Reading]] = [
    ("p/status/pm1:0", b'{"apower": 12, "aenergy": {"total": 5}}', Reading(12.0, 5.0)),
    ("p/status/switch:3", b'{"apower": 0.5}', Reading(0.5, None)),
    ("p/status/switch:0", b'{"apower": null, "aenergy": {"total": 7.5}}', Reading(None, 7.5)),
    ("p/status/switch:0", b'{"aenergy": {"by_minute": [1, 2, 3]}}', SIGN_OF_LIFE),
    ("p/status/switch:0", b'{"aenergy": null, "apower": 3}', Reading(3.0, None)),
    ("p/status/switch:0", b'{"act_power": 99}', SIGN_OF_LIFE),  # not the switch's field
    ("p/status/em1:0", b'{"id": 0, "current": 1.2, "voltage": 230, "act_power": 276.1, '
     b'"aprt_power": 280, "pf": 0.98, "freq": 50}', Reading(276.1, None)),
    ("p/status/em1:1", b'{"apower": 99}', SIGN_OF_LIFE),  # em1 reads act_power only
    ("p/status/pm1:0", b"{}", SIGN_OF_LIFE),
]  # fmt: skip


@pytest.mark.parametrize(("topic", "payload", "expected"), SHELLY_PM)
def test_shelly_pm_reading(topic: str, payload: bytes, expected: Reading) -> None:
    """apower (act_power on em1) in W and aenergy.total in Wh; absent values are None."""
    assert make_parser("shelly_pm", topic).parse(topic, payload) == expected


def test_shelly_pm_wildcard_prefix_parses_the_concrete_topic() -> None:
    """A wildcard prefix is a filter; parse() receives the concrete topic."""
    parser = make_parser("shelly_pm", "+/status/pm1:0")
    assert parser.parse("plug-7/status/pm1:0", b'{"apower": 4}') == Reading(4.0, None)


def test_shelly_pm_aenergy_must_be_an_object() -> None:
    """aenergy that is not an object is refused as invalid_energy."""
    assert _reason("shelly_pm", "p/status/pm1:0", b'{"aenergy": [1]}') == "invalid_energy"


# ---------------------------------------------------------------- shelly_rpc

RPC_TOPIC = "plug/events/rpc"


def _rpc(method: str, params: Any) -> bytes:
    return orjson.dumps({"src": "plug", "dst": "plug/events", "method": method, "params": params})


SHELLY_RPC: list[tuple[dict[str, Any], bytes, Reading]] = [
    # Default: the first of pm1:0, switch:0, em1:0 that carries power.
    ({}, _rpc("NotifyStatus", {"ts": 1.0, "pm1:0": {"apower": 8.5}}), Reading(8.5, None)),
    ({}, _rpc("NotifyStatus", {"switch:0": {"apower": 3, "aenergy": {"total": 9}}}),
     Reading(3.0, 9.0)),
    ({}, _rpc("NotifyStatus", {"em1:0": {"act_power": 120.0}}), Reading(120.0, None)),
    ({}, _rpc("NotifyStatus", {"switch:0": {"output": True}, "em1:0": {"act_power": 2}}),
     Reading(2.0, None)),
    ({}, _rpc("NotifyFullStatus", {"pm1:0": {"apower": 1}, "switch:0": {"apower": 2}}),
     Reading(1.0, None)),
    # A delta with only aenergy: a sign of life that updates the counter.
    ({}, _rpc("NotifyStatus", {"switch:0": {"aenergy": {"total": 42.5, "minute_ts": 1}}}),
     Reading(None, 42.5)),
    ({}, _rpc("NotifyStatus", {"switch:0": {"counts": {"switch_on": 3}}}), SIGN_OF_LIFE),
    ({}, _rpc("NotifyStatus", {"switch:0": None}), SIGN_OF_LIFE),
    ({}, _rpc("NotifyStatus", {"switch:1": {"apower": 50}}), SIGN_OF_LIFE),
    ({}, _rpc("NotifyStatus", {"switch:0": {"apower": None}}), SIGN_OF_LIFE),
    # An explicit component is the only one read.
    ({"component": "switch:1"}, _rpc("NotifyStatus", {"switch:0": {"apower": 5},
     "switch:1": {"apower": 6}}), Reading(6.0, None)),
    ({"component": "switch:1"}, _rpc("NotifyStatus", {"switch:0": {"apower": 5}}), SIGN_OF_LIFE),
    ({"component": "em1:1"}, _rpc("NotifyStatus", {"em1:1": {"act_power": 7}}),
     Reading(7.0, None)),
    # Other methods, replies and envelopes without params are signs of life.
    ({}, _rpc("NotifyEvent", {"events": [{"component": "input:0", "event": "single_push"}]}),
     SIGN_OF_LIFE),
    ({}, b'{"id": 3, "src": "plug", "result": {"was_on": true}}', SIGN_OF_LIFE),
    ({}, b'{"method": "NotifyStatus"}', SIGN_OF_LIFE),
    ({}, b'{"method": "NotifyStatus", "params": null}', SIGN_OF_LIFE),
    ({}, b'{"method": 5, "params": {"switch:0": {"apower": -1}}}', SIGN_OF_LIFE),
    ({}, b'{"method": ["NotifyStatus"], "params": {"switch:0": {"apower": 1}}}', SIGN_OF_LIFE),
]  # fmt: skip


@pytest.mark.parametrize(("options", "payload", "expected"), SHELLY_RPC)
def test_shelly_rpc_reading(options: dict[str, Any], payload: bytes, expected: Reading) -> None:
    """NotifyStatus/NotifyFullStatus give the component's power and energy; all else is life."""
    assert make_parser("shelly_rpc", RPC_TOPIC, options).parse(RPC_TOPIC, payload) == expected


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (_rpc("NotifyStatus", [1]), "not_an_object"),
        (_rpc("NotifyStatus", "x"), "not_an_object"),
        (_rpc("NotifyStatus", {"switch:0": 5}), "not_an_object"),
        (_rpc("NotifyStatus", {"switch:0": {"apower": "5"}}), "invalid_power"),
        (_rpc("NotifyStatus", {"switch:0": {"aenergy": {"total": -2}}}), "invalid_energy"),
        (_rpc("NotifyFullStatus", {"pm1:0": {"apower": True}}), "invalid_power"),
    ],
)
def test_shelly_rpc_refusals(payload: bytes, reason: str) -> None:
    """A notification whose params or component are malformed is refused."""
    assert _reason("shelly_rpc", RPC_TOPIC, payload) == reason


# ---------------------------------------------------------------- shelly_gen1

GEN1: list[tuple[str, str, bytes, Reading]] = [
    ("shellies/p/relay/0/power", "shellies/p/relay/0/power", b"0.00", Reading(0.0, None)),
    ("shellies/p/relay/0/power", "shellies/p/relay/0/power", b"1234.56", Reading(1234.56, None)),
    ("shellies/p/relay/0/power", "shellies/p/relay/0/power", b" 7\n", Reading(7.0, None)),
    ("shellies/p/relay/0/power", "shellies/p/relay/0/power", b"+5.", Reading(5.0, None)),
    ("shellies/p/relay/0/power", "shellies/p/relay/0/power", b"-0", Reading(0.0, None)),
    ("shellies/p/relay/0/power", "shellies/p/relay/0/energy", b"600", Reading(None, 10.0)),
    ("shellies/p/relay/0/power", "shellies/p/relay/0/energy", b"1.2e3", Reading(None, 20.0)),
    ("shellies/e/emeter/1/power", "shellies/e/emeter/1/total", b"9876.5", Reading(None, 9876.5)),
    ("shellies/+/relay/0/power", "shellies/abc/relay/0/energy", b"60", Reading(None, 1.0)),
]  # fmt: skip


@pytest.mark.parametrize(("device_topic", "topic", "payload", "expected"), GEN1)
def test_shelly_gen1_reading(
    device_topic: str, topic: str, payload: bytes, expected: Reading
) -> None:
    """Power in W; relay energy in watt-minutes (/60), emeter total in Wh."""
    assert make_parser("shelly_gen1", device_topic).parse(topic, payload) == expected


@pytest.mark.parametrize(
    "topic",
    [
        "shellies/p/relay/1/power",
        "shellies/p/relay/0/energy_returned",
        "shellies/p/emeter/0/total",
        "shellies/p/online",
        "shellies/p/relay/0",
    ],
)
def test_shelly_gen1_foreign_topic(topic: str) -> None:
    """A topic that is neither the power nor its energy sibling is unknown_topic."""
    parser = make_parser("shelly_gen1", "shellies/p/relay/0/power")
    with pytest.raises(PayloadError) as caught:
        parser.parse(topic, b"1")
    assert caught.value.reason == "unknown_topic"


# ---------------------------------------------------------------- tasmota

SENSOR = "tele/pow/SENSOR"

TASMOTA: list[tuple[dict[str, Any], str, bytes, Reading]] = [
    ({}, SENSOR, b'{"ENERGY":{"Power":15,"Total":1.5}}', Reading(15.0, 1500.0)),
    ({}, SENSOR, b'{"ENERGY":{"Total":2}}', Reading(None, 2000.0)),
    ({}, SENSOR, b'{"ENERGY":{"Power":null}}', SIGN_OF_LIFE),
    ({}, SENSOR, b'{"Time":"2021-01-01T00:00:00","AM2301":{"Temperature":21.5}}', SIGN_OF_LIFE),
    ({}, SENSOR, b'{"ENERGY":null}', SIGN_OF_LIFE),
    # Arrays: summed without a channel, picked with one.
    ({}, SENSOR, b'{"ENERGY":{"Power":[10,0,5.5],"Total":[1,2,3]}}', Reading(15.5, 6000.0)),
    ({"channel": 2}, SENSOR, b'{"ENERGY":{"Power":[10,0,5.5],"Total":[1,2,3]}}',
     Reading(5.5, 3000.0)),
    ({"channel": 0}, SENSOR, b'{"ENERGY":{"Power":[10,0],"Total":[1,2]}}', Reading(10.0, 1000.0)),
    # One Total beside per-channel Power is the device's, not the channel's.
    ({"channel": 1}, SENSOR, b'{"ENERGY":{"Power":[10,20],"Total":7}}', Reading(20.0, None)),
    ({"channel": 0}, SENSOR, b'{"ENERGY":{"Power":[10,20],"Total":7}}', Reading(10.0, None)),
    ({}, SENSOR, b'{"ENERGY":{"Power":[10,20],"Total":7}}', Reading(30.0, 7000.0)),
    # A single-channel meter with channel 0 configured.
    ({"channel": 0}, SENSOR, b'{"ENERGY":{"Power":10,"Total":7}}', Reading(10.0, 7000.0)),
    ({}, "stat/pow/STATUS10", b'{"StatusSNS":{"ENERGY":{"Power":4,"Total":0.5}}}',
     Reading(4.0, 500.0)),
    ({}, "stat/pow/STATUS8", b'{"StatusSNS":{"Time":"x"}}', SIGN_OF_LIFE),
    ({}, "stat/pow/STATUS10", b'{"Status":{"Module":1}}', SIGN_OF_LIFE),
]  # fmt: skip


@pytest.mark.parametrize(("options", "topic", "payload", "expected"), TASMOTA)
def test_tasmota_reading(
    options: dict[str, Any], topic: str, payload: bytes, expected: Reading
) -> None:
    """ENERGY.Power in W, ENERGY.Total in kWh -> Wh; arrays summed or picked by channel."""
    reading = make_parser("tasmota", SENSOR, options).parse(topic, payload)
    assert reading.power_w == expected.power_w
    assert reading.energy_wh == pytest.approx(expected.energy_wh)


def test_tasmota_custom_fulltopic() -> None:
    """A custom FullTopic ending in SENSOR is read; STATUS replies are then not data topics."""
    parser = make_parser("tasmota", "home/pow1/tele/SENSOR")
    payload = b'{"ENERGY":{"Power":3}}'
    assert parser.parse("home/pow1/tele/SENSOR", payload) == Reading(3.0, None)
    with pytest.raises(PayloadError) as caught:
        parser.parse("home/pow1/stat/STATUS8", b'{"StatusSNS":{"ENERGY":{"Power":3}}}')
    assert caught.value.reason == "unknown_topic"


@pytest.mark.parametrize(
    ("options", "payload", "reason"),
    [
        ({}, b'{"ENERGY":{"Power":[]}}', "invalid_power"),
        ({}, b'{"ENERGY":{"Power":[1,true]}}', "invalid_power"),
        ({}, b'{"ENERGY":{"Power":[1,"2"]}}', "invalid_power"),
        ({}, b'{"ENERGY":{"Power":[1,[2]]}}', "invalid_power"),
        ({}, b'{"ENERGY":{"Power":[6e8,6e8]}}', "invalid_power"),
        ({"channel": 3}, b'{"ENERGY":{"Power":[1,2]}}', "invalid_power"),
        ({"channel": 1}, b'{"ENERGY":{"Power":5}}', "invalid_power"),
        ({}, b'{"ENERGY":{"Power":1,"Total":[1,-1]}}', "invalid_energy"),
        ({}, b'{"ENERGY":{"Power":1,"Total":[]}}', "invalid_energy"),
        ({"channel": 1}, b'{"ENERGY":{"Power":[1,2],"Total":[1]}}', "invalid_energy"),
        ({}, b'{"ENERGY":{"Power":1,"Total":[1e306,1e306]}}', "invalid_energy"),
        ({}, b'{"ENERGY":[1]}', "not_an_object"),
        ({}, b'{"ENERGY":"x"}', "not_an_object"),
    ],
)
def test_tasmota_refusals(options: dict[str, Any], payload: bytes, reason: str) -> None:
    """Bad channel arrays, a missing channel and a non-object ENERGY are refused."""
    assert _reason("tasmota", SENSOR, payload, options) == reason


def test_tasmota_status_must_hold_an_object() -> None:
    """A StatusSNS that is not an object is refused."""
    parser = make_parser("tasmota", SENSOR)
    with pytest.raises(PayloadError) as caught:
        parser.parse("stat/pow/STATUS8", b'{"StatusSNS": 3}')
    assert caught.value.reason == "not_an_object"


@pytest.mark.parametrize("topic", ["tele/pow/STATE", "stat/pow/RESULT", "tele/pow/LWT"])
def test_tasmota_foreign_topic(topic: str) -> None:
    """STATE, RESULT and LWT are not data topics."""
    parser = make_parser("tasmota", SENSOR)
    with pytest.raises(PayloadError) as caught:
        parser.parse(topic, b'{"ENERGY":{"Power":1}}')
    assert caught.value.reason == "unknown_topic"


# ---------------------------------------------------------------- zigbee2mqtt

Z2M: list[tuple[bytes, Reading]] = [
    (b'{"power": 60.5}', Reading(60.5, None)),
    (b'{"energy": 0.25}', Reading(None, 250.0)),
    (b'{"power": null, "energy": null, "state": "ON"}', SIGN_OF_LIFE),
    (b'{"linkquality": 80}', SIGN_OF_LIFE),
    (b'{"power": 0, "energy": 0}', Reading(0.0, 0.0)),
]


@pytest.mark.parametrize(("payload", "expected"), Z2M)
def test_zigbee2mqtt_reading(payload: bytes, expected: Reading) -> None:
    """power in W, energy in kWh -> Wh; each may be missing or null."""
    assert make_parser("zigbee2mqtt", "zigbee2mqtt/plug").parse("zigbee2mqtt/plug", payload) == (
        expected
    )


# ---------------------------------------------------------------- generic_json

GENERIC: list[tuple[dict[str, Any], bytes, Reading]] = [
    ({"power_path": "power"}, b'{"power": 5}', Reading(5.0, None)),
    ({"power_path": "a.b.c", "energy_path": "a.e"}, b'{"a": {"b": {"c": 1.5}, "e": 10}}',
     Reading(1.5, 10.0)),
    ({"power_path": "p", "energy_path": "e", "energy_unit": "kwh"}, b'{"p": 1, "e": 2.5}',
     Reading(1.0, 2500.0)),
    ({"power_path": "p", "energy_path": "e", "energy_unit": "kWh"}, b'{"e": 1}',
     Reading(None, 1000.0)),
    ({"power_path": "p", "energy_path": "e", "energy_unit": "wh"}, b'{"p": 1, "e": 2.5}',
     Reading(1.0, 2.5)),
    ({"power_path": "meters.1.power"}, b'{"meters": [{"power": 1}, {"power": 2}]}',
     Reading(2.0, None)),
    ({"power_path": "0.p"}, b'[{"p": 4}]', Reading(4.0, None)),
    ({"power_path": "m.0"}, b'{"m": {"0": 9}}', Reading(9.0, None)),  # a digit key of an object
    ({"power_path": "meters.5.power"}, b'{"meters": [{"power": 1}]}', SIGN_OF_LIFE),
    ({"power_path": "a.b"}, b'{"a": null}', SIGN_OF_LIFE),
    ({"power_path": "a.b"}, b'{"x": 1}', SIGN_OF_LIFE),
]  # fmt: skip


@pytest.mark.parametrize(("options", "payload", "expected"), GENERIC)
def test_generic_json_reading(options: dict[str, Any], payload: bytes, expected: Reading) -> None:
    """Dotted paths read object keys and array indexes; missing or null is a sign of life."""
    parser = make_parser("generic_json", "sensors/x", options)
    assert parser.parse("sensors/x", payload) == expected


@pytest.mark.parametrize(
    ("options", "payload", "reason"),
    [
        ({"power_path": "a.b"}, b'{"a": 5}', "invalid_power"),
        ({"power_path": "a.b"}, b'{"a": [1, 2]}', "invalid_power"),
        ({"power_path": "a.b"}, b"[]", "invalid_power"),
        ({"power_path": "a.b"}, b'{"a": "text"}', "invalid_power"),
        ({"power_path": "p", "energy_path": "e.total"}, b'{"p": 1, "e": 3}', "invalid_energy"),
        ({"power_path": "p"}, b"5", "not_an_object"),
    ],
)
def test_generic_json_refusals(options: dict[str, Any], payload: bytes, reason: str) -> None:
    """A path that runs into a number or string where an object belongs is refused."""
    assert _reason("generic_json", "sensors/x", payload, options) == reason
