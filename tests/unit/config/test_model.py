"""The config document: every rule of CONTRACT section 2, with its error path."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from iot_bridge.config.env import EnvSettings
from iot_bridge.config.model import (
    DEFAULT_MAX_CONNECTIONS,
    MASK,
    MAX_DEVICES,
    BridgeConfig,
    HttpSection,
    MqttSection,
    OdooSection,
    SessionConfigModel,
)
from iot_bridge.config.parse import parse_config
from iot_bridge.config.sources import effective_max_connections
from iot_bridge.domain.session_config import SessionConfig
from iot_bridge.errors import ConfigError
from iot_bridge.net.http.server import MAX_CONNECTIONS

DEVICE: dict[str, Any] = {
    "device_id": "shelly-pm-workshop",
    "machine_name": "CNC Mill (Workshop)",
    "mqtt_topic": "shellypmminig3-48f6eeb73a1c/status/pm1:0",
    "parser_type": "shelly_pm",
    "session_config": {
        "standby_threshold_w": 5.0,
        "working_threshold_w": 50.0,
        "start_debounce_s": 3.0,
        "stop_debounce_s": 15.0,
        "message_timeout_s": 20.0,
        "heartbeat_interval_s": 300.0,
    },
}
DOCUMENT: dict[str, Any] = {
    "mqtt": {
        "broker": "localhost",
        "port": 1883,
        "username": "",
        "password": "",
        "client_id": "iot_bridge",
        "keepalive": 60,
        "use_tls": False,
        "ca_file": None,
        "tls_insecure": False,
    },
    "odoo": {
        "base_url": "http://odoo:8069",
        "database": "odoo",
        "username": "admin",
        "api_key": "",
    },
    "devices": [DEVICE],
    "timestamp": "2026-02-12T19:40:18Z",
    "version": "1.0",
}


def document(**changes: Any) -> dict[str, Any]:
    """A deep copy of the contract's example with top-level keys replaced."""
    data = copy.deepcopy(DOCUMENT)
    data.update(copy.deepcopy(changes))
    return data


def device(**changes: Any) -> dict[str, Any]:
    """A deep copy of the example device with keys replaced."""
    data = copy.deepcopy(DEVICE)
    data.update(copy.deepcopy(changes))
    return data


def issues(data: object) -> dict[str, str]:
    """The issues parse_config reports, as path -> message."""
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return {issue.path: issue.message for issue in caught.value.issues}


def test_contract_example_is_valid() -> None:
    """The document of CONTRACT section 2 validates as it is."""
    config = parse_config(DOCUMENT)
    assert config.devices[0].device_id == "shelly-pm-workshop"
    assert config.mqtt is not None
    assert config.mqtt.port == 1883
    assert config.odoo is not None
    assert config.odoo.database == "odoo"
    assert config.version == "1.0"


def test_empty_document_means_no_devices_and_env_sections() -> None:
    """{} is valid: no devices, and mqtt/odoo left to the environment."""
    config = parse_config({})
    assert config == BridgeConfig()
    assert config.mqtt is None
    assert config.odoo is None
    assert config.devices == []


def test_defaults_match_the_contract() -> None:
    """Omitted keys take the contract's defaults."""
    config = parse_config(
        {
            "mqtt": {},
            "devices": [
                {
                    "device_id": "d",
                    "machine_name": "M",
                    "mqtt_topic": "p/status/pm1:0",
                    "parser_type": "shelly_pm",
                }
            ],
        }
    )
    assert config.mqtt == MqttSection(
        broker="localhost",
        port=1883,
        username="",
        password="",
        client_id="iot_bridge",
        keepalive=60,
        use_tls=False,
        ca_file=None,
        tls_insecure=False,
    )
    assert config.devices[0].to_session_config() == SessionConfig()
    assert config.devices[0].parser_options.to_mapping() == {}


def test_null_session_config_and_parser_options_mean_defaults() -> None:
    """session_config: null and parser_options: null are the defaults, not errors."""
    config = parse_config(document(devices=[device(session_config=None, parser_options=None)]))
    assert config.devices[0].session_config == SessionConfigModel()


@pytest.mark.parametrize(
    ("data", "path"),
    [
        (document(extra=1), "extra"),
        (document(mqtt={**DOCUMENT["mqtt"], "brokr": "x"}), "mqtt.brokr"),
        (document(odoo={**DOCUMENT["odoo"], "apikey": "x"}), "odoo.apikey"),
        (document(devices=[device(name="x")]), "devices.0.name"),
        (
            document(devices=[device(parser_options={"chanel": 1})]),
            "devices.0.parser_options.chanel",
        ),
        (
            document(devices=[device(session_config={"stop_debounce": 3})]),
            "devices.0.session_config.stop_debounce",
        ),
    ],
)
def test_unknown_keys_are_rejected_with_their_path(data: dict[str, Any], path: str) -> None:
    """A typo at any level is an error at its own path, never a silent default."""
    found = issues(data)
    assert path in found
    assert found[path].startswith("is not a known key")


def test_unknown_key_suggests_the_closest_known_one() -> None:
    """The message of a typo names the key that was probably meant."""
    found = issues(document(devices=[device(session_config={"stop_debounce": 3})]))
    assert "did you mean 'stop_debounce_s'?" in found["devices.0.session_config.stop_debounce"]


@pytest.mark.parametrize(
    ("section", "key", "value", "fragment"),
    [
        ("mqtt", "port", 0, "at least 1"),
        ("mqtt", "port", 65_536, "at most 65535"),
        ("mqtt", "keepalive", 4, "at least 5"),
        ("mqtt", "keepalive", 3601, "at most 3600"),
        ("mqtt", "broker", "", "must not be empty"),
        ("mqtt", "broker", "mqtt://host", "without a scheme"),
        ("mqtt", "broker", "my host", "no spaces"),
        ("mqtt", "broker", "broker..local", "not a valid host name"),
        ("mqtt", "broker", "x" * 64 + ".local", "not a valid host name"),
        ("mqtt", "client_id", "", "1 to 64 characters"),
        ("mqtt", "client_id", "x" * 65, "1 to 64 characters"),
        ("mqtt", "ca_file", "", "must not be empty"),
        ("mqtt", "password", "p" * 1025, "at most 1024 characters"),
        ("odoo", "base_url", "odoo:8069", "http:// or https://"),
        ("odoo", "base_url", "ftp://odoo", "http:// or https://"),
        ("odoo", "base_url", "http://", "http:// or https://"),
        ("odoo", "base_url", "http://odoo:99999", "valid host and port"),
        ("odoo", "base_url", "http://user:pw@odoo:8069", "credentials"),
        ("odoo", "base_url", "http://odoo:8069/?db=x", "query string"),
        ("odoo", "base_url", "", "must not be empty"),
        ("odoo", "base_url", "http://ä..b:8069", "not a URL the HTTP client accepts"),
        ("odoo", "base_url", "http://odoo\u200b:8069", "not a URL the HTTP client accepts"),
        ("odoo", "api_key", "s3cret\n", "visible ASCII"),
        ("odoo", "api_key", "sëcret", "visible ASCII"),
        ("odoo", "api_key", "two words", "visible ASCII"),
    ],
)
def test_section_ranges_name_the_field(section: str, key: str, value: Any, fragment: str) -> None:
    """Every out-of-range mqtt/odoo value is an error at mqtt.<key> or odoo.<key>."""
    found = issues(document(**{section: {**DOCUMENT[section], key: value}}))
    assert fragment in found[f"{section}.{key}"]


def test_odoo_request_format_is_jsonrpc_json_or_batch() -> None:
    """request_format defaults to jsonrpc, takes json and batch, and anything else is an
    error there."""
    assert parse_config(document()).odoo.request_format == "jsonrpc"  # type: ignore[union-attr]
    for request_format in ("json", "batch"):
        config = parse_config(document(odoo={**DOCUMENT["odoo"], "request_format": request_format}))
        assert config.odoo is not None
        assert config.odoo.request_format == request_format
    for wrong in ("JSON-RPC", "Batch", "batched"):
        found = issues(document(odoo={**DOCUMENT["odoo"], "request_format": wrong}))
        assert list(found) == ["odoo.request_format"]


def test_odoo_base_url_is_required() -> None:
    """An odoo section without base_url is an error at odoo.base_url."""
    assert issues(document(odoo={"database": "odoo"})) == {"odoo.base_url": "is required"}


def test_odoo_base_url_loses_trailing_slashes() -> None:
    """http://odoo:8069/ is stored as http://odoo:8069, so paths join cleanly."""
    config = parse_config(document(odoo={"base_url": "https://erp.example.com/odoo//"}))
    assert config.odoo == OdooSection(base_url="https://erp.example.com/odoo")


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("standby_threshold_w", 0, "greater than 0"),
        ("standby_threshold_w", -1.0, "greater than 0"),
        ("working_threshold_w", 100_001, "at most 100000"),
        ("start_debounce_s", -0.1, "at least 0"),
        ("start_debounce_s", 3601, "at most 3600"),
        ("stop_debounce_s", -1, "at least 0"),
        ("stop_debounce_s", 3600.5, "at most 3600"),
        ("message_timeout_s", 0, "at least 1"),
        ("message_timeout_s", 86_401, "at most 86400"),
        ("heartbeat_interval_s", 9.9, "at least 10"),
        ("heartbeat_interval_s", 86_401, "at most 86400"),
        ("message_timeout_s", float("inf"), "finite number"),
        ("heartbeat_interval_s", float("nan"), "finite number"),
        ("start_debounce_s", "3", "must be a number (got a string)"),
        ("stop_debounce_s", True, "must be a number (got true/false)"),
        ("stop_debounce_s", None, "must be a number (got null)"),
    ],
)
def test_session_config_ranges_name_the_field(key: str, value: Any, fragment: str) -> None:
    """Every session_config violation is reported at its field with the bound."""
    session = {**DEVICE["session_config"], key: value}
    found = issues(document(devices=[device(session_config=session)]))
    assert fragment in found[f"devices.0.session_config.{key}"]


def test_session_config_bounds_are_inclusive() -> None:
    """The documented limits themselves are valid values."""
    session = {
        "standby_threshold_w": 100_000,
        "working_threshold_w": 100_000,
        "start_debounce_s": 0,
        "stop_debounce_s": 3600,
        "message_timeout_s": 1,
        "heartbeat_interval_s": 86_400,
    }
    config = parse_config(document(devices=[device(session_config=session)]))
    assert config.devices[0].session_config.stop_debounce_s == 3600.0


def test_working_below_standby_is_an_error_at_working_threshold() -> None:
    """working_threshold_w < standby_threshold_w is reported at working_threshold_w."""
    session = {"standby_threshold_w": 10, "working_threshold_w": 5}
    found = issues(document(devices=[device(session_config=session)]))
    assert found == {
        "devices.0.session_config.working_threshold_w": (
            "must be at least standby_threshold_w (10.0)"
        )
    }


def test_working_equal_to_standby_is_allowed() -> None:
    """A machine with no standby band (equal thresholds) is valid."""
    session = {"standby_threshold_w": 20, "working_threshold_w": 20}
    parse_config(document(devices=[device(session_config=session)]))


def test_to_domain_copies_every_field() -> None:
    """SessionConfigModel.to_domain gives the detector's SessionConfig with the same values."""
    model = SessionConfigModel(
        standby_threshold_w=1,
        working_threshold_w=2,
        start_debounce_s=3,
        stop_debounce_s=4,
        message_timeout_s=5,
        heartbeat_interval_s=60,
    )
    assert model.to_domain() == SessionConfig(1.0, 2.0, 3.0, 4.0, 5.0, 60.0)


@pytest.mark.parametrize(
    ("changes", "path", "fragment"),
    [
        ({"device_id": "has space"}, "devices.0.device_id", "1 to 64 characters"),
        ({"device_id": ""}, "devices.0.device_id", "1 to 64 characters"),
        ({"device_id": 7}, "devices.0.device_id", "must be a string (got a number)"),
        ({"machine_name": ""}, "devices.0.machine_name", "must not be empty"),
        ({"machine_name": "   "}, "devices.0.machine_name", "must not be blank"),
        ({"machine_name": "x" * 201}, "devices.0.machine_name", "at most 200 characters"),
        ({"machine_name": "Mill\nB"}, "devices.0.machine_name", "control characters"),
        ({"machine_name": "Mill \ud800"}, "devices.0.machine_name", "invalid Unicode"),
        ({"parser_type": "shelly"}, "devices.0.parser_type", "must be one of 'shelly_pm'"),
        ({"mqtt_topic": "a/#/b"}, "devices.0.mqtt_topic", "'#' only as the whole last level"),
        ({"mqtt_topic": "a+/b"}, "devices.0.mqtt_topic", "'+' only as a whole level"),
        ({"mqtt_topic": ""}, "devices.0.mqtt_topic", "must not be empty"),
        ({"mqtt_topic": "a/\x00/b"}, "devices.0.mqtt_topic", "NUL"),
        ({"parser_options": {"channel": -1}}, "devices.0.parser_options.channel", "at least 0"),
        ({"parser_options": {"channel": 1.5}}, "devices.0.parser_options.channel", "whole number"),
        (
            {"parser_options": {"energy_unit": "W"}},
            "devices.0.parser_options.energy_unit",
            "must be one of 'wh' or 'kwh'",
        ),
        (
            {"parser_options": {"power_path": "a..b"}},
            "devices.0.parser_options.power_path",
            "dotted path",
        ),
        ({"parser_options": []}, "devices.0.parser_options", "mapping"),
    ],
)
def test_device_field_errors_name_the_field(
    changes: dict[str, Any], path: str, fragment: str
) -> None:
    """Each invalid device field is reported at devices.N.<field> with a plain sentence."""
    found = issues(document(devices=[device(**changes)]))
    assert fragment in found[path]


def test_missing_device_fields_are_each_reported() -> None:
    """A device missing its required keys gets one 'is required' per key."""
    found = issues(document(devices=[{}]))
    assert found == {
        f"devices.0.{key}": "is required"
        for key in ("device_id", "machine_name", "mqtt_topic", "parser_type")
    }


def test_duplicate_device_ids_are_reported_at_each_repeat() -> None:
    """A device_id used twice is an error at the later device's device_id."""
    devices = [device(), device(mqtt_topic="other/status/pm1:0"), device(device_id="b"), device()]
    found = issues(document(devices=devices))
    assert found == {
        f"devices.{index}.device_id": (
            "duplicate device_id 'shelly-pm-workshop' (already used by devices.0)"
        )
        for index in (1, 3)
    }


def test_duplicates_are_reported_alongside_other_errors() -> None:
    """One run lists duplicates and field errors together."""
    found = issues(document(devices=[device(), device(machine_name="")]))
    assert set(found) == {"devices.1.machine_name", "devices.1.device_id"}


def test_same_topic_on_two_devices_is_allowed() -> None:
    """Two devices may share a data topic (the bridge does not guess which is wrong)."""
    parse_config(document(devices=[device(), device(device_id="second")]))


def test_direct_model_validation_also_rejects_duplicates() -> None:
    """BridgeConfig.model_validate alone refuses duplicate ids (defence in depth)."""
    with pytest.raises(ValueError, match="device_id must be unique"):
        BridgeConfig.model_validate({"devices": [DEVICE, DEVICE]})


@pytest.mark.parametrize(
    ("changes", "path", "fragment"),
    [
        ({"mqtt_topic": "tele/plug/SENSOR"}, "devices.0.mqtt_topic", "does not fit"),
        ({"parser_options": {"channel": 1}}, "devices.0.parser_options.channel", "not an option"),
        (
            {"parser_type": "generic_json", "mqtt_topic": "lab/oven"},
            "devices.0.parser_options.power_path",
            "required",
        ),
        (
            {
                "parser_type": "generic_json",
                "mqtt_topic": "lab/oven",
                "parser_options": {"power_path": "p", "energy_unit": "kwh"},
            },
            "devices.0.parser_options.energy_unit",
            "energy_path",
        ),
    ],
)
def test_parser_options_and_topic_must_fit_the_parser(
    changes: dict[str, Any], path: str, fragment: str
) -> None:
    """make_parser's checks are reported with devices.N. prefixed to their paths."""
    found = issues(document(devices=[device(), device(device_id="b", **changes)]).copy())
    assert fragment in found[path.replace("devices.0", "devices.1")]


@pytest.mark.parametrize(
    ("parser_type", "topic", "options"),
    [
        ("shelly_pm", "shellyplus1pm-abc/status/switch:0", {}),
        ("shelly_rpc", "shellyplus1pm-abc/events/rpc", {"component": "switch:0"}),
        ("shelly_gen1", "shellies/shelly1pm-ABC/relay/0/power", {}),
        ("tasmota", "tele/plug/SENSOR", {"channel": 2}),
        ("zigbee2mqtt", "zigbee2mqtt/plug", {}),
        (
            "generic_json",
            "lab/oven",
            {"power_path": "a.b", "energy_path": "e", "energy_unit": "wh"},
        ),
    ],
)
def test_each_parser_type_accepts_its_options(
    parser_type: str, topic: str, options: dict[str, Any]
) -> None:
    """Every parser_type validates with a fitting topic and its own options."""
    config = parse_config(
        document(
            devices=[device(parser_type=parser_type, mqtt_topic=topic, parser_options=options)]
        )
    )
    assert config.devices[0].parser_options.to_mapping() == options


@pytest.mark.parametrize(
    ("changes", "path", "fragment"),
    [
        # A parser or topic that has no channels.
        ({"parser_options": {"channels": [0, 1]}}, "parser_options.channels", "one channel"),
        (
            {"mqtt_topic": "shellypro3em-abc/status/em:0", "parser_options": {"channels": [0]}},
            "parser_options.channels",
            "already their sum",
        ),
        (
            {"parser_type": "zigbee2mqtt", "mqtt_topic": "z2m/clamp",
             "parser_options": {"channels": [0, 1]}},
            "parser_options.channels",
            "not an option of zigbee2mqtt",
        ),
        (
            {"parser_type": "shelly_rpc", "mqtt_topic": "p/events/rpc",
             "parser_options": {"component": "em:0", "channels": [0, 1]}},
            "parser_options.channels",
            "already their sum",
        ),
        # An empty list, a repeat, a channel the topic does not start with.
        (
            {"mqtt_topic": "p/status/em1:0", "parser_options": {"channels": []}},
            "parser_options.channels",
            "at least one of its channel indexes",
        ),
        (
            {"mqtt_topic": "p/status/em1:0", "parser_options": {"channels": [0, 1, 1]}},
            "parser_options.channels.2",
            "listed twice",
        ),
        (
            {"parser_type": "shelly_gen1", "mqtt_topic": "shellies/em3/emeter/1/power",
             "parser_options": {"channels": [0, 1, 2]}},
            "parser_options.channels",
            "must start with channel 1",
        ),
        (
            {"parser_type": "tasmota", "mqtt_topic": "tele/em/SENSOR",
             "parser_options": {"channel": 1, "channels": [0, 1]}},
            "parser_options.channels",
            "set one",
        ),
        (
            {"parser_type": "tasmota", "mqtt_topic": "tele/em/SENSOR",
             "parser_options": {"channels": [0, 32]}},
            "parser_options.channels.1",
            "from 0 to 31",
        ),
        (
            {"parser_type": "generic_json", "mqtt_topic": "lab/meter",
             "parser_options": {"power_paths": ["a", "a"]}},
            "parser_options.power_paths.1",
            "listed twice",
        ),
        (
            {"parser_type": "zigbee2mqtt", "mqtt_topic": "z2m/clamp",
             "parser_options": {"energy_paths": []}},
            "parser_options.energy_paths",
            "at least one of its dotted paths",
        ),
    ],
)  # fmt: skip
def test_channel_lists_that_cannot_work_are_rejected_with_their_path(
    changes: dict[str, Any], path: str, fragment: str
) -> None:
    """channels/power_paths/energy_paths: no channels there, empty, repeated: the field's path."""
    changes = {"mqtt_topic": "shellyplus1pm-abc/status/pm1:0", **changes}
    found = issues(document(devices=[device(**changes)]))
    assert fragment in found[f"devices.0.{path}"]


@pytest.mark.parametrize(
    ("parser_type", "topic", "options"),
    [
        ("shelly_pm", "shellypro3em-abc/status/em:0", {}),
        ("shelly_pm", "shellypro3em-abc/status/em1:0", {"channels": [0, 1, 2]}),
        ("shelly_pm", "shellypro4pm-abc/status/switch:0", {"channels": [0, 1, 2, 3]}),
        ("shelly_rpc", "shellypro3em-abc/events/rpc", {"component": "em:0"}),
        ("shelly_rpc", "shellypro3em-abc/events/rpc", {"channels": [0, 1, 2]}),
        ("shelly_gen1", "shellies/shellyem3-ABC/emeter/0/power", {"channels": [0, 1, 2]}),
        ("tasmota", "tele/em/SENSOR", {"channels": [0, 2]}),
        (
            "zigbee2mqtt",
            "zigbee2mqtt/clamp",
            {"power_paths": ["power", "power_phase_b", "power_phase_c"]},
        ),
        ("generic_json", "lab/meter", {"power_paths": ["a", "b"], "energy_paths": ["c", "d"]}),
    ],
)
def test_every_meter_of_section_4a_is_accepted(
    parser_type: str, topic: str, options: dict[str, Any]
) -> None:
    """The configuration CONTRACT §4a names for each meter validates as written."""
    config = parse_config(
        document(
            devices=[device(parser_type=parser_type, mqtt_topic=topic, parser_options=options)]
        )
    )
    assert config.devices[0].parser_options.to_mapping() == options


def test_parser_fit_is_checked_even_when_another_device_is_invalid() -> None:
    """A run with a broken device still reports a valid device's parser misfit."""
    found = issues(
        document(devices=[device(device_id="bad id"), device(device_id="b", mqtt_topic="x/y")])
    )
    assert set(found) == {"devices.0.device_id", "devices.1.mqtt_topic"}


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("port", "1883", "must be a whole number (got a string)"),
        ("port", 1883.0, "must be a whole number (got a number)"),
        ("port", True, "must be a whole number (got true/false)"),
        ("use_tls", "yes", "must be true or false (got a string)"),
        ("use_tls", 1, "must be true or false (got a number)"),
    ],
)
def test_types_are_strict(key: str, value: Any, fragment: str) -> None:
    """Strings, floats and booleans are never coerced into ports or flags."""
    found = issues(document(mqtt={key: value}))
    assert found[f"mqtt.{key}"] == fragment


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        ([1], "", "must be a mapping of keys to values (got a list)"),
        ("text", "", "must be a mapping of keys to values (got a string)"),
        (None, "", "must be a mapping of keys to values (got null)"),
        ({"devices": {}}, "devices", "must be a list (got a mapping)"),
        ({"devices": None}, "devices", "must be a list (got null)"),
        ({"devices": [5]}, "devices.0", "must be a mapping of keys to values (got a number)"),
        ({"mqtt": "localhost"}, "mqtt", "must be a mapping of keys to values (got a string)"),
        ({1: "x"}, "1", "keys must be strings"),
        ({"version": [1]}, "version", "must be a string (got a list)"),
    ],
)
def test_wrong_shapes_are_plain_sentences(data: object, path: str, message: str) -> None:
    """Wrong container types give a sentence with what was found instead."""
    assert issues(data) == {path: message}


def test_messages_carry_no_pydantic_jargon() -> None:
    """No 'Value error,' prefixes or pydantic URLs reach the operator."""
    with pytest.raises(ConfigError) as caught:
        parse_config(
            document(
                extra=1,
                devices=[
                    device(
                        machine_name=" ",
                        session_config={"standby_threshold_w": 9, "working_threshold_w": 1},
                    )
                ],
            )
        )
    text = str(caught.value) + " ".join(issue.message for issue in caught.value.issues)
    for jargon in ("Value error", "pydantic", "errors.pydantic.dev", "Input should"):
        assert jargon not in text


def test_every_problem_is_listed_in_document_order() -> None:
    """One run lists all problems, each device's together, in document order."""
    with pytest.raises(ConfigError) as caught:
        parse_config(
            document(
                mqtt={"port": 0},
                devices=[
                    device(device_id="a b"),
                    device(),
                    device(device_id="c", machine_name=""),
                    device(),
                ],
            )
        )
    paths = [issue.path for issue in caught.value.issues]
    assert paths == [
        "mqtt.port",
        "devices.0.device_id",
        "devices.2.machine_name",
        "devices.3.device_id",
    ]


def test_too_many_devices_is_an_error() -> None:
    """More than MAX_DEVICES devices is rejected at devices."""
    devices = [device(device_id=f"d{i}") for i in range(MAX_DEVICES + 1)]
    found = issues({"devices": devices})
    assert found["devices"] == f"must have at most {MAX_DEVICES} items"


def test_source_names_the_document() -> None:
    """The error message starts with the source given by the caller."""
    with pytest.raises(ConfigError) as caught:
        parse_config({"x": 1}, source="config push")
    assert caught.value.source == "config push"
    assert str(caught.value).startswith("invalid config push: x: is not a known key")


def test_numeric_labels_become_text() -> None:
    """version: 1.0 (a YAML float) is kept as the text '1.0'."""
    assert parse_config({"version": 1.0, "timestamp": 5}).version == "1.0"


def test_masked_hides_set_secrets() -> None:
    """masked() replaces a non-empty password and api_key by '***', keeping the shape."""
    config = parse_config(
        document(
            mqtt={**DOCUMENT["mqtt"], "password": "hunter2"},
            odoo={**DOCUMENT["odoo"], "api_key": "k-123"},
        )
    )
    masked = config.masked()
    assert masked["mqtt"]["password"] == MASK
    assert masked["odoo"]["api_key"] == MASK
    assert "hunter2" not in repr(masked)
    assert "k-123" not in repr(masked)
    assert set(masked) == set(DOCUMENT) | {"state_out", "store", "http"}
    assert masked["devices"] == config.model_dump(mode="json")["devices"]
    assert config.mqtt is not None
    assert config.mqtt.password == "hunter2"


def test_masked_keeps_empty_secrets_empty_and_absent_sections_null() -> None:
    """An empty secret stays '' (nothing to hide) and absent sections stay null."""
    assert parse_config(DOCUMENT).masked()["mqtt"]["password"] == ""
    assert parse_config({}).masked() == {
        "mqtt": None,
        "odoo": None,
        "state_out": None,
        "store": None,
        "http": None,
        "devices": [],
        "timestamp": None,
        "version": None,
    }


def test_repr_hides_secrets() -> None:
    """repr() of the sections never shows the password or the API key."""
    mqtt = MqttSection(password="hunter2")
    odoo = OdooSection(base_url="http://odoo", api_key="k-123")
    assert "hunter2" not in repr(mqtt)
    assert "hunter2" not in str(mqtt)
    assert "k-123" not in repr(odoo)


def test_config_is_immutable() -> None:
    """A validated config cannot be changed in place (the active config is shared)."""
    config = parse_config(DOCUMENT)
    with pytest.raises(ValueError, match="frozen"):
        config.devices[0].device_id = "x"  # type: ignore[misc]


def _devices(*sessions: dict[str, Any]) -> dict[str, Any]:
    return {
        "devices": [
            {**DEVICE, "device_id": f"d{i}", "session_config": session}
            for i, session in enumerate(sessions)
        ]
    }


def test_equal_session_settings_share_one_model_and_keep_the_document() -> None:
    """Devices with equal settings share one (frozen) model; the document reads back as pushed.

    -0.0 and 0.0 (or values set and left default) are equal but not the same text:
    they are not merged, so GET /config and the persisted file keep each as sent.
    """
    same = {"standby_threshold_w": 5.0, "start_debounce_s": 1.0}
    doc = _devices(same, dict(same), {**same, "start_debounce_s": -0.0}, {"start_debounce_s": 0.0})
    config = parse_config(copy.deepcopy(doc))
    devices = config.devices
    assert devices[0].session_config is devices[1].session_config
    assert devices[2].session_config is not devices[3].session_config
    dumped = config.model_dump(mode="json")["devices"]
    assert [d["session_config"]["start_debounce_s"] for d in dumped] == [1.0, 1.0, -0.0, 0.0]
    assert str(dumped[2]["session_config"]["start_debounce_s"]) == "-0.0"
    assert config.masked()["devices"] == dumped
    assert config.devices[3].session_config.model_dump(exclude_unset=True) == {
        "start_debounce_s": 0.0
    }
    # Validated directly (no parse_config context): shared as well, same result.
    direct = BridgeConfig.model_validate(copy.deepcopy(doc))
    assert direct.devices[0].session_config is direct.devices[1].session_config
    assert direct.model_dump(mode="json") == config.model_dump(mode="json")


def test_http_section_sets_the_connection_cap() -> None:
    """http.max_connections is read; absent, the section is null and the default is 512."""
    assert parse_config(document(http={"max_connections": 64})).http == HttpSection(
        max_connections=64
    )
    assert parse_config(document()).http is None
    assert HttpSection().max_connections == DEFAULT_MAX_CONNECTIONS == 512


@pytest.mark.parametrize(
    ("http", "path"),
    [
        ({"max_connections": 0}, "http.max_connections"),
        ({"max_connections": 100_001}, "http.max_connections"),
        ({"max_connections": "64"}, "http.max_connections"),
        ({"max_connections": 64.5}, "http.max_connections"),
        ({"max_connection": 64}, "http.max_connection"),
    ],
)
def test_invalid_http_section_names_the_field(http: dict[str, Any], path: str) -> None:
    """A cap out of 1-100,000, not an integer, or a misspelt key: an error at its path."""
    assert set(issues(document(http=http))) == {path}


def test_the_cap_comes_from_the_document_then_the_environment_then_the_default() -> None:
    """effective_max_connections: http.max_connections, else BRIDGE_MAX_CONNECTIONS, else 512."""
    with_section = parse_config(document(http={"max_connections": 64}))
    without = parse_config(document())
    env = EnvSettings(max_connections=100)
    assert effective_max_connections(with_section, env) == 64
    assert effective_max_connections(without, env) == 100
    assert effective_max_connections(without, EnvSettings()) == DEFAULT_MAX_CONNECTIONS


def test_the_server_default_cap_is_the_configs() -> None:
    """HttpServer's own default cap is the config's documented default."""
    assert MAX_CONNECTIONS == DEFAULT_MAX_CONNECTIONS
