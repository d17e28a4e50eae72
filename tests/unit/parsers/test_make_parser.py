"""make_parser: derived topics, and a ConfigError with paths for every misfit."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from iot_bridge.errors import ConfigError
from iot_bridge.parsers import PARSER_TYPES, make_parser


def _issues(parser_type: Any, topic: Any, options: Any = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        make_parser(parser_type, topic, options)
    assert caught.value.issues
    return {issue.path: issue.message for issue in caught.value.issues}


def test_parser_types_are_the_contract_names() -> None:
    """PARSER_TYPES lists exactly the parser_type values of CONTRACT section 4, in order."""
    assert PARSER_TYPES == (
        "shelly_pm",
        "shelly_rpc",
        "shelly_gen1",
        "tasmota",
        "zigbee2mqtt",
        "generic_json",
    )


# (parser_type, mqtt_topic, options, data_topics, availability_topic)
DERIVED: list[tuple[str, str, dict[str, Any], tuple[str, ...], str | None]] = [
    ("shelly_pm", "shellypmminig3-48f6eeb73a1c/status/pm1:0", {},
     ("shellypmminig3-48f6eeb73a1c/status/pm1:0",), "shellypmminig3-48f6eeb73a1c/online"),
    ("shelly_pm", "home/garage/shelly/status/switch:1", {},
     ("home/garage/shelly/status/switch:1",), "home/garage/shelly/online"),
    ("shelly_pm", "+/status/em1:0", {}, ("+/status/em1:0", "+/status/em1data:0"), "+/online"),
    ("shelly_rpc", "shellyplusplugs-80646fd031f8/events/rpc", {"component": "switch:0"},
     ("shellyplusplugs-80646fd031f8/events/rpc",), "shellyplusplugs-80646fd031f8/online"),
    ("shelly_gen1", "shellies/shellyplug-s-AB12CD/relay/0/power", {},
     ("shellies/shellyplug-s-AB12CD/relay/0/power", "shellies/shellyplug-s-AB12CD/relay/0/energy"),
     "shellies/shellyplug-s-AB12CD/online"),
    ("shelly_gen1", "shellies/shellyem3-1/emeter/2/power", {},
     ("shellies/shellyem3-1/emeter/2/power", "shellies/shellyem3-1/emeter/2/total"),
     "shellies/shellyem3-1/online"),
    ("shelly_gen1", "shellies/+/relay/1/power", {},
     ("shellies/+/relay/1/power", "shellies/+/relay/1/energy"), "shellies/+/online"),
    ("tasmota", "tele/pow1/SENSOR", {},
     ("tele/pow1/SENSOR", "stat/pow1/STATUS8", "stat/pow1/STATUS10"), "tele/pow1/LWT"),
    ("tasmota", "tele/+/SENSOR", {"channel": 1},
     ("tele/+/SENSOR", "stat/+/STATUS8", "stat/+/STATUS10"), "tele/+/LWT"),
    # A custom FullTopic: no STATUS replies, LWT beside SENSOR.
    ("tasmota", "home/pow1/tele/SENSOR", {}, ("home/pow1/tele/SENSOR",), "home/pow1/tele/LWT"),
    ("tasmota", "pow1/SENSOR", {}, ("pow1/SENSOR",), "pow1/LWT"),
    ("zigbee2mqtt", "zigbee2mqtt/Stopcontact", {}, ("zigbee2mqtt/Stopcontact",),
     "zigbee2mqtt/Stopcontact/availability"),
    ("zigbee2mqtt", "zigbee2mqtt/kitchen/plug", {}, ("zigbee2mqtt/kitchen/plug",),
     "zigbee2mqtt/kitchen/plug/availability"),
    ("zigbee2mqtt", "zigbee2mqtt/+", {}, ("zigbee2mqtt/+",), "zigbee2mqtt/+/availability"),
    ("generic_json", "factory/line1/#", {"power_path": "p"}, ("factory/line1/#",), None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("parser_type", "topic", "options", "data_topics", "availability_topic"), DERIVED
)
def test_derived_topics(
    parser_type: str,
    topic: str,
    options: dict[str, Any],
    data_topics: tuple[str, ...],
    availability_topic: str | None,
) -> None:
    """data_topics and availability_topic follow CONTRACT section 4, wildcards included."""
    parser = make_parser(parser_type, topic, options)
    assert parser.parser_type == parser_type
    assert parser.mqtt_topic == topic
    assert parser.data_topics == data_topics
    assert parser.availability_topic == availability_topic


def test_parsers_are_immutable() -> None:
    """A built parser cannot be changed after make_parser."""
    parser = make_parser("shelly_pm", "plug/status/pm1:0")
    with pytest.raises(dataclasses.FrozenInstanceError):
        parser.mqtt_topic = "other/status/pm1:0"  # type: ignore[misc]


@pytest.mark.parametrize("parser_type", ["shelly", "Shelly_PM", "", None, 3])
def test_unknown_parser_type(parser_type: Any) -> None:
    """An unknown parser_type is refused at path parser_type, naming the valid ones."""
    issues = _issues(parser_type, "plug/status/pm1:0")
    assert set(issues) == {"parser_type"}
    assert "shelly_pm" in issues["parser_type"]


@pytest.mark.parametrize(
    "topic",
    ["", "a/#/b", "a/b#", "a/+b/c", "a\x00/b", "a/\ud800", "x" * 65536, None, 5],
)
def test_invalid_topic_filter(topic: Any) -> None:
    """A string that is not an MQTT topic filter is refused at path mqtt_topic."""
    issues = _issues("generic_json", topic, {"power_path": "p"})
    assert set(issues) == {"mqtt_topic"}


# (parser_type, a valid filter that does not fit the family's topic layout)
MISFITS: list[tuple[str, str]] = [
    ("shelly_pm", "plug/status/mqtt"),
    ("shelly_pm", "plug/status/pm1"),
    ("shelly_pm", "plug/status/light:0"),
    ("shelly_pm", "plug/status/+"),
    ("shelly_pm", "status/pm1:0"),
    ("shelly_pm", "plug/events/rpc"),
    ("shelly_pm", "plug/#"),
    ("shelly_rpc", "plug/events"),
    ("shelly_rpc", "events/rpc"),
    ("shelly_rpc", "plug/status/pm1:0"),
    ("shelly_rpc", "plug/events/#"),
    ("shelly_gen1", "shellies/plug/relay/0/energy"),
    ("shelly_gen1", "shellies/plug/relay/0"),
    ("shelly_gen1", "shellies/plug/relay/+/power"),
    ("shelly_gen1", "shellies/plug/light/0/power"),
    ("shelly_gen1", "relay/0/power"),
    ("shelly_gen1", "shellies/plug/online"),
    ("tasmota", "tele/pow1/STATE"),
    ("tasmota", "tele/pow1/LWT"),
    ("tasmota", "stat/pow1/STATUS8"),
    ("tasmota", "tele/pow1/sensor"),
    ("tasmota", "SENSOR"),
    ("tasmota", "tele/#"),
    ("zigbee2mqtt", "zigbee2mqtt"),
    ("zigbee2mqtt", "zigbee2mqtt/#"),
    ("zigbee2mqtt", "zigbee2mqtt/plug/availability"),
    ("zigbee2mqtt", "zigbee2mqtt/plug/set"),
    ("zigbee2mqtt", "zigbee2mqtt/bridge/state"),
    ("zigbee2mqtt", "zigbee2mqtt/"),
]


@pytest.mark.parametrize(("parser_type", "topic"), MISFITS)
def test_topic_that_does_not_fit_the_family(parser_type: str, topic: str) -> None:
    """A topic outside the family's layout is refused at mqtt_topic, saying what fits."""
    issues = _issues(parser_type, topic)
    assert set(issues) == {"mqtt_topic"}
    assert "expected" in issues["mqtt_topic"]


# (parser_type, mqtt_topic, the foreign option)
FOREIGN_OPTIONS: list[tuple[str, str, str]] = [
    ("shelly_pm", "plug/status/pm1:0", "channel"),
    ("shelly_pm", "plug/status/pm1:0", "component"),
    ("shelly_rpc", "plug/events/rpc", "channel"),
    ("shelly_gen1", "shellies/plug/relay/0/power", "energy_unit"),
    ("tasmota", "tele/pow/SENSOR", "component"),
    ("zigbee2mqtt", "zigbee2mqtt/plug", "power_path"),
    ("generic_json", "meters/plug", "chanel"),
]


@pytest.mark.parametrize(("parser_type", "topic", "key"), FOREIGN_OPTIONS)
def test_option_of_another_parser_type(parser_type: str, topic: str, key: str) -> None:
    """An option that does not belong to the parser_type is refused at parser_options.<key>."""
    options: dict[str, Any] = {key: 0}
    if parser_type == "generic_json":
        options["power_path"] = "p"
    issues = _issues(parser_type, topic, options)
    assert set(issues) == {f"parser_options.{key}"}
    assert parser_type in issues[f"parser_options.{key}"]


@pytest.mark.parametrize("options", [["component"], "component=switch:0", 5])
def test_options_must_be_a_mapping(options: Any) -> None:
    """parser_options that is not a mapping is refused at parser_options."""
    assert set(_issues("shelly_rpc", "plug/events/rpc", options)) == {"parser_options"}


@pytest.mark.parametrize("component", ["pm1", "switch", "light:0", "switch:-1", "PM1:0", 0, ""])
def test_invalid_rpc_component(component: Any) -> None:
    """shelly_rpc's component must be pm1:N, switch:N or em1:N."""
    issues = _issues("shelly_rpc", "plug/events/rpc", {"component": component})
    assert set(issues) == {"parser_options.component"}


@pytest.mark.parametrize("channel", [-1, 32, True, "0", 1.0, [0]])
def test_invalid_tasmota_channel(channel: Any) -> None:
    """tasmota's channel must be an integer index from 0 to 31 (not a boolean)."""
    issues = _issues("tasmota", "tele/pow/SENSOR", {"channel": channel})
    assert set(issues) == {"parser_options.channel"}


def test_null_options_count_as_absent() -> None:
    """An option set to null is the default, even one of another parser_type."""
    options = {"channel": None, "component": None, "power_path": None, "energy_unit": None}
    tasmota = make_parser("tasmota", "tele/pow/SENSOR", options)
    assert tasmota.parse("tele/pow/SENSOR", b'{"ENERGY":{"Power":[1,2]}}').power_w == 3.0
    rpc = make_parser("shelly_rpc", "plug/events/rpc", options)
    payload = b'{"method":"NotifyStatus","params":{"pm1:0":{"apower":7}}}'
    assert rpc.parse("plug/events/rpc", payload).power_w == 7.0
    assert set(_issues("generic_json", "meters/plug", options)) == {"parser_options.power_path"}


# (options, the paths that must be reported)
GENERIC_ERRORS: list[tuple[dict[str, Any], set[str]]] = [
    ({}, {"parser_options.power_path"}),
    ({"power_path": ""}, {"parser_options.power_path"}),
    ({"power_path": "a..b"}, {"parser_options.power_path"}),
    ({"power_path": ".a"}, {"parser_options.power_path"}),
    ({"power_path": 5}, {"parser_options.power_path"}),
    ({"power_path": "a." * 200 + "a"}, {"parser_options.power_path"}),
    ({"power_path": "p", "energy_path": ""}, {"parser_options.energy_path"}),
    ({"power_path": "p", "energy_path": "e", "energy_unit": "mwh"},
     {"parser_options.energy_unit"}),
    ({"power_path": "p", "energy_path": "e", "energy_unit": 1000},
     {"parser_options.energy_unit"}),
    ({"power_path": "p", "energy_unit": "kwh"}, {"parser_options.energy_unit"}),
    ({"energy_path": "a..b", "energy_unit": "joule", "channel": 1},
     {"parser_options.power_path", "parser_options.energy_path", "parser_options.energy_unit",
      "parser_options.channel"}),
]  # fmt: skip


@pytest.mark.parametrize(("options", "paths"), GENERIC_ERRORS)
def test_generic_json_option_errors(options: dict[str, Any], paths: set[str]) -> None:
    """generic_json needs a valid power_path; every bad option is reported with its path."""
    assert set(_issues("generic_json", "meters/plug", options)) == paths


def test_every_issue_is_reported_at_once() -> None:
    """A bad topic and a bad option are both listed in one ConfigError."""
    issues = _issues("tasmota", "tele/pow/STATE", {"channel": -1, "component": "pm1:0"})
    assert set(issues) == {"mqtt_topic", "parser_options.channel", "parser_options.component"}


def test_config_error_message_is_one_readable_sentence() -> None:
    """The ConfigError text names the path and the problem."""
    with pytest.raises(
        ConfigError, match=r"parser_options\.channel: .* not an option of shelly_pm"
    ):
        make_parser("shelly_pm", "plug/status/pm1:0", {"channel": 0})
