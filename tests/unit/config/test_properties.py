"""Invariants of parse_config over arbitrary documents (hypothesis)."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iot_bridge.config._yaml import StrictLoader
from iot_bridge.config.model import BridgeConfig
from iot_bridge.config.parse import parse_config
from iot_bridge.errors import ConfigError
from iot_bridge.parsers import PARSER_TYPES

KEYS = st.sampled_from(
    [
        "mqtt",
        "odoo",
        "devices",
        "timestamp",
        "version",
        "broker",
        "port",
        "password",
        "base_url",
        "device_id",
        "machine_name",
        "mqtt_topic",
        "parser_type",
        "parser_options",
        "session_config",
        "channel",
        "component",
        "power_path",
        "standby_threshold_w",
        "working_threshold_w",
        "message_timeout_s",
        "x",
    ]
) | st.text(max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(PARSER_TYPES)
)
JSONISH = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=25,
)

TOPIC_LEVEL = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/+#"),
    min_size=1,
    max_size=8,
).filter(lambda level: level.strip() == level)
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30
).filter(lambda value: value.strip() != "")


def config_error(data: object) -> ConfigError | None:
    """The ConfigError parse_config raises for ``data``; any other exception propagates."""
    try:
        parse_config(data)
    except ConfigError as err:
        return err
    return None


@st.composite
def valid_devices(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Lists of valid shelly_pm devices with arbitrary names and thresholds."""
    count = draw(st.integers(min_value=0, max_value=4))
    devices = []
    for index in range(count):
        standby = draw(st.floats(min_value=0.001, max_value=1000))
        devices.append(
            {
                "device_id": f"dev-{index}",
                "machine_name": draw(TEXT),
                "mqtt_topic": f"{draw(TOPIC_LEVEL)}/status/pm1:{index}",
                "parser_type": "shelly_pm",
                "session_config": {
                    "standby_threshold_w": standby,
                    "working_threshold_w": draw(st.floats(min_value=standby, max_value=100_000)),
                    "stop_debounce_s": draw(st.floats(min_value=0, max_value=3600)),
                },
            }
        )
    return devices


@given(JSONISH)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_documents_raise_only_config_error(data: object) -> None:
    """Any JSON-like value either validates or raises ConfigError, never anything else."""
    error = config_error(data)
    if error is not None:
        assert error.issues
        for issue in error.issues:
            assert isinstance(issue.path, str)
            assert issue.message


@given(st.dictionaries(KEYS, JSONISH, max_size=4), st.sampled_from(["mqtt", "odoo", "devices"]))
@settings(max_examples=200, deadline=None)
def test_arbitrary_sections_raise_only_config_error(section: Any, key: str) -> None:
    """Arbitrary content inside a known section gives ConfigError or a config."""
    error = config_error({key: [section] if key == "devices" else section})
    if error is not None:
        assert all(issue.path.startswith(key) for issue in error.issues)


@given(
    valid_devices(),
    # Control characters are left out: NEL (U+0085) is a line break to YAML,
    # so a YAML file cannot carry it raw (persist_config writes JSON syntax).
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20),
    # An API key goes into an HTTP header: visible ASCII only (validated).
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20),
)
@settings(max_examples=100, deadline=None)
def test_yaml_dump_and_load_give_an_equal_config(
    devices: list[dict[str, Any]], password: str, api_key: str
) -> None:
    """A config dumped as YAML loads back through the strict loader to an equal config."""
    config = parse_config(
        {
            "mqtt": {"password": password},
            "odoo": {"base_url": "http://odoo:8069", "api_key": api_key},
            "devices": devices,
        }
    )
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    reloaded = parse_config(yaml.load(text, Loader=StrictLoader))
    assert reloaded == config
    assert isinstance(reloaded, BridgeConfig)
