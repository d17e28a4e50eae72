"""Availability payloads of every family, and the refusal of unknown ones."""

from __future__ import annotations

import pytest

from iot_bridge.errors import PayloadError
from iot_bridge.parsers import make_parser

DEVICES: dict[str, tuple[str, dict[str, str]]] = {
    "shelly_pm": ("plug/status/pm1:0", {}),
    "shelly_rpc": ("plug/events/rpc", {}),
    "shelly_gen1": ("shellies/plug/relay/0/power", {}),
    "tasmota": ("tele/pow/SENSOR", {}),
    "zigbee2mqtt": ("zigbee2mqtt/plug", {}),
    "generic_json": ("meters/plug", {"power_path": "p"}),
}

# (parser_type, payload as published, online?)
FAMILY_PAYLOADS: list[tuple[str, bytes, bool]] = [
    ("shelly_pm", b"true", True),
    ("shelly_pm", b"false", False),
    ("shelly_rpc", b"true", True),
    ("shelly_rpc", b"false", False),
    ("shelly_gen1", b"true", True),
    ("shelly_gen1", b"false", False),
    ("shelly_gen1", b"1", True),
    ("shelly_gen1", b"0", False),
    ("tasmota", b"Online", True),
    ("tasmota", b"Offline", False),
    ("zigbee2mqtt", b"online", True),
    ("zigbee2mqtt", b"offline", False),
    ("zigbee2mqtt", b'{"state":"online"}', True),
    ("zigbee2mqtt", b'{"state":"offline"}', False),
    ("zigbee2mqtt", b'{"state": "online", "last_seen": 1}', True),
]


@pytest.mark.parametrize(("parser_type", "payload", "online"), FAMILY_PAYLOADS)
def test_family_availability_payload(parser_type: str, payload: bytes, online: bool) -> None:
    """Each family's own online/offline payload is understood."""
    topic, options = DEVICES[parser_type]
    assert make_parser(parser_type, topic, options).parse_availability(payload) is online


@pytest.mark.parametrize(
    ("payload", "online"),
    [
        (b"true\n", True),
        (b" Offline ", False),
        (b"ONLINE", True),
        (b"TRUE", True),
        (b'"online"', True),
        (b'{"state":"OFFLINE"}', False),
    ],
)
def test_availability_tolerates_case_and_whitespace(payload: bytes, online: bool) -> None:
    """Case and surrounding whitespace do not matter; a JSON string is read like plain text."""
    parser = make_parser("zigbee2mqtt", "zigbee2mqtt/plug")
    assert parser.parse_availability(payload) is online


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"maybe", "invalid_availability"),
        (b"2", "invalid_availability"),
        (b"-1", "invalid_availability"),
        (b"null", "invalid_availability"),
        (b"on", "invalid_availability"),
        (b"[]", "invalid_availability"),
        (b'["online"]', "invalid_availability"),
        (b'{"state":"unknown"}', "invalid_availability"),
        (b'{"status":"online"}', "invalid_availability"),
        (b'{"state":true}', "invalid_availability"),
        (b'{"state":', "invalid_availability"),
        (b"", "empty_payload"),
        (b"   ", "empty_payload"),
        (b"\xff", "invalid_utf8"),
    ],
)
def test_unknown_availability_payload_is_refused(payload: bytes, reason: str) -> None:
    """Anything but a known online/offline form raises a PayloadError with a clear detail."""
    for parser_type, (topic, options) in DEVICES.items():
        parser = make_parser(parser_type, topic, options)
        with pytest.raises(PayloadError) as caught:
            parser.parse_availability(payload)
        assert caught.value.reason == reason, parser_type
        if reason == "invalid_availability":
            assert "online/offline" in caught.value.detail
