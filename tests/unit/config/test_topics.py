"""MQTT topic filter and identifier checks."""

from __future__ import annotations

import pytest

from iot_bridge.topics import config_topic_filter_problem as topic_filter_problem
from iot_bridge.topics import identifier_problem


@pytest.mark.parametrize(
    "topic",
    [
        "shellypmminig3-48f6eeb73a1c/status/pm1:0",
        "tele/plug/SENSOR",
        "shellies/+/relay/0/power",
        "zigbee2mqtt/#",
        "#",
        "+",
        "+/+/status/pm1:0",
        "/leading/slash",
        "a//b",
        "$SYS/broker/uptime",
        "Werkstatt/Fräse/status/pm1:0",
        "a" * 65_535,
    ],
)
def test_valid_topic_filters_pass(topic: str) -> None:
    """Filters valid under MQTT 5 section 4.7 are accepted, '$' prefixes included."""
    assert topic_filter_problem(topic) is None


@pytest.mark.parametrize(
    ("topic", "fragment"),
    [
        ("", "must not be empty"),
        ("a/#/b", "'#' only as the whole last level"),
        ("a/b#", "'#' only as the whole last level"),
        ("#/a", "'#' only as the whole last level"),
        ("a+/b", "'+' only as a whole level"),
        ("a/+b/c", "'+' only as a whole level"),
        ("a/b\x00", "NUL"),
        ("a/b\n", "control characters"),
        ("a\tb", "control characters"),
        ("a/\x85", "control characters"),
        (" tele/plug/SENSOR", "whitespace"),
        ("tele/plug/SENSOR ", "whitespace"),
        ("a/\ud800", "invalid Unicode"),
        ("a" * 65_536, "65535 bytes"),
        ("ä" * 32_768, "65535 bytes"),
        ("$share/group/tele/plug/SENSOR", "shared subscription"),
    ],
)
def test_invalid_topic_filters_say_why(topic: str, fragment: str) -> None:
    """Each kind of invalid filter is rejected with a sentence naming the rule."""
    problem = topic_filter_problem(topic)
    assert problem is not None
    assert fragment in problem


@pytest.mark.parametrize("value", ["a", "shelly-pm-workshop", "A.b:c_d-1", "x" * 64])
def test_valid_identifiers_pass(value: str) -> None:
    """device_id and client_id accept [A-Za-z0-9_.:-]{1,64}."""
    assert identifier_problem(value) is None


@pytest.mark.parametrize("value", ["", "x" * 65, "has space", "slash/no", "ümlaut", "a\n", "a#"])
def test_invalid_identifiers_are_rejected(value: str) -> None:
    """Anything outside [A-Za-z0-9_.:-]{1,64} is rejected, a trailing newline included."""
    assert identifier_problem(value) is not None
