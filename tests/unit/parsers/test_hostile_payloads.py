"""Unusable payloads: each is refused with a PayloadError and its stable reason."""

from __future__ import annotations

from typing import Any

import pytest

from iot_bridge.domain.readings import Reading
from iot_bridge.errors import PayloadError
from iot_bridge.parsers import PAYLOAD_ERROR_REASONS, make_parser

# parser_type -> (mqtt_topic, options, JSON template with {} where the power goes,
#                 template with {} where the energy goes)
JSON_FAMILIES: dict[str, tuple[str, dict[str, Any], str, str]] = {
    "shelly_pm": ("plug/status/switch:0", {}, '{{"apower": {}}}', '{{"aenergy": {{"total": {}}}}}'),
    "shelly_rpc": (
        "plug/events/rpc",
        {},
        '{{"method": "NotifyStatus", "params": {{"switch:0": {{"apower": {}}}}}}}',
        '{{"method": "NotifyStatus", "params": {{"switch:0": {{"aenergy": {{"total": {}}}}}}}}}',
    ),
    "tasmota": ("tele/pow/SENSOR", {}, '{{"ENERGY": {{"Power": {}}}}}',
                '{{"ENERGY": {{"Total": {}}}}}'),
    "zigbee2mqtt": ("zigbee2mqtt/plug", {}, '{{"power": {}}}', '{{"energy": {}}}'),
    "generic_json": (
        "meters/plug",
        {"power_path": "m.p", "energy_path": "m.e"},
        '{{"m": {{"p": {}}}}}',
        '{{"m": {{"e": {}}}}}',
    ),
}  # fmt: skip

# Whole payloads no JSON family can use.
BAD_DOCUMENTS: list[tuple[bytes, str]] = [
    (b"", "empty_payload"),
    (b"  \r\n\t", "empty_payload"),
    (b"\xff\xfe\x00", "invalid_utf8"),
    (b'{"power": "\xc3\x28"}', "invalid_utf8"),
    (b'{"x": "\xed\xa0\x80"}', "invalid_utf8"),  # an encoded surrogate
    (b"{", "invalid_json"),
    (b'{"power": 1,}', "invalid_json"),
    (b"{'power': 1}", "invalid_json"),
    (b"\x00", "invalid_json"),
    (b"[" * 5000, "invalid_json"),  # deeper than any decoder recursion limit
    (b'{"a": NaN}', "invalid_json"),
    (b'{"a": 1e999}', "invalid_json"),
    (b"12.5", "not_an_object"),
    (b"null", "not_an_object"),
    (b"true", "not_an_object"),
    (b'"online"', "not_an_object"),
]

# A value where the power goes, and the reason it is refused (JSON families).
BAD_POWER: list[tuple[str, str]] = [
    ("1e10", "invalid_power"),
    ("-1e10", "invalid_power"),
    ("1000000000.5", "invalid_power"),
    ("18446744073709551615", "invalid_power"),
    ("true", "invalid_power"),
    ("false", "invalid_power"),
    ('"12.5"', "invalid_power"),
    ('""', "invalid_power"),
    ("{}", "invalid_power"),
    ('{"value": 1}', "invalid_power"),
    ("NaN", "invalid_json"),
    ("Infinity", "invalid_json"),
    ("-Infinity", "invalid_json"),
    ("1e999", "invalid_json"),
    ("-1e999", "invalid_json"),
]

# A value where the energy counter goes, and the reason it is refused.
BAD_ENERGY: list[tuple[str, str]] = [
    ("-1", "invalid_energy"),
    ("true", "invalid_energy"),
    ('"6.294"', "invalid_energy"),
    ("{}", "invalid_energy"),
    ("NaN", "invalid_json"),
    ("1e999", "invalid_json"),
]


def _refusal(parser_type: str, topic: str, options: dict[str, Any], payload: bytes) -> str:
    parser = make_parser(parser_type, topic, options)
    with pytest.raises(PayloadError) as caught:
        parser.parse(topic, payload)
    assert caught.value.reason in PAYLOAD_ERROR_REASONS
    assert caught.value.detail
    return caught.value.reason


@pytest.mark.parametrize("parser_type", sorted(JSON_FAMILIES))
@pytest.mark.parametrize(("payload", "reason"), BAD_DOCUMENTS)
def test_bad_document_is_refused(parser_type: str, payload: bytes, reason: str) -> None:
    """Empty, non-UTF-8, non-JSON and non-object payloads are refused with their reason."""
    topic, options, _, _ = JSON_FAMILIES[parser_type]
    assert _refusal(parser_type, topic, options, payload) == reason


@pytest.mark.parametrize("parser_type", sorted(JSON_FAMILIES))
@pytest.mark.parametrize(("value", "reason"), BAD_POWER)
def test_bad_power_is_refused(parser_type: str, value: str, reason: str) -> None:
    """Absurd, boolean, string, object and non-finite powers are refused."""
    topic, options, power_template, _ = JSON_FAMILIES[parser_type]
    payload = power_template.format(value).encode()
    assert _refusal(parser_type, topic, options, payload) == reason


@pytest.mark.parametrize("parser_type", sorted(JSON_FAMILIES))
@pytest.mark.parametrize("value", ["-1", "-0.001", "-18.017", "-1000000000"])
def test_negative_power_is_a_reading_of_zero(parser_type: str, value: str) -> None:
    """A negative power (export, a reversed clamp) is a valid 0 W reading, flagged as negative."""
    topic, options, power_template, _ = JSON_FAMILIES[parser_type]
    parser = make_parser(parser_type, topic, options)
    reading = parser.parse(topic, power_template.format(value).encode())
    assert reading.power_w == 0.0
    assert reading.negative_power is True


@pytest.mark.parametrize("parser_type", sorted(set(JSON_FAMILIES) - {"tasmota"}))
def test_array_power_is_refused_outside_tasmota(parser_type: str) -> None:
    """An array where a power number belongs is refused (only Tasmota sends channel arrays)."""
    topic, options, power_template, _ = JSON_FAMILIES[parser_type]
    payload = power_template.format("[1, 2]").encode()
    assert _refusal(parser_type, topic, options, payload) == "invalid_power"


@pytest.mark.parametrize("parser_type", sorted(JSON_FAMILIES))
@pytest.mark.parametrize(("value", "reason"), BAD_ENERGY)
def test_bad_energy_is_refused(parser_type: str, value: str, reason: str) -> None:
    """Negative, boolean, string, object and non-finite energy counters are refused."""
    topic, options, _, energy_template = JSON_FAMILIES[parser_type]
    payload = energy_template.format(value).encode()
    assert _refusal(parser_type, topic, options, payload) == reason


@pytest.mark.parametrize("parser_type", sorted(JSON_FAMILIES))
def test_null_power_is_a_sign_of_life(parser_type: str) -> None:
    """A JSON null where the power goes means "no value", not an error."""
    topic, options, power_template, _ = JSON_FAMILIES[parser_type]
    parser = make_parser(parser_type, topic, options)
    assert parser.parse(topic, power_template.format("null").encode()) == Reading(None, None)


@pytest.mark.parametrize("parser_type", sorted(JSON_FAMILIES))
def test_huge_finite_energy_counter_is_kept(parser_type: str) -> None:
    """A large but finite energy counter is a valid reading, not an error."""
    topic, options, _, energy_template = JSON_FAMILIES[parser_type]
    parser = make_parser(parser_type, topic, options)
    reading = parser.parse(topic, energy_template.format("1e300").encode())
    assert reading.power_w is None
    assert reading.energy_wh is not None
    assert reading.energy_wh >= 1e300


@pytest.mark.parametrize(
    ("parser_type", "options"),
    [("tasmota", {}), ("zigbee2mqtt", {}), ("generic_json", {"energy_unit": "kwh"})],
)
def test_energy_overflowing_on_conversion_is_refused(
    parser_type: str, options: dict[str, Any]
) -> None:
    """A kWh counter so large that its Wh value is infinite is refused."""
    topic, base_options, _, energy_template = JSON_FAMILIES[parser_type]
    payload = energy_template.format("1e307").encode()
    assert _refusal(parser_type, topic, {**base_options, **options}, payload) == "invalid_energy"


GEN1_POWER_TOPIC = "shellies/plug/relay/0/power"
GEN1_ENERGY_TOPIC = "shellies/plug/relay/0/energy"

# Plain-text Gen1 payloads: (payload, reason on the power topic, reason on the energy topic)
BAD_GEN1_TEXT: list[tuple[bytes, str, str]] = [
    (b"", "empty_payload", "empty_payload"),
    (b" \n", "empty_payload", "empty_payload"),
    (b"\xff", "invalid_utf8", "invalid_utf8"),
    (b"12\xe9", "invalid_utf8", "invalid_utf8"),
    (b"nan", "invalid_power", "invalid_energy"),
    (b"NaN", "invalid_power", "invalid_energy"),
    (b"inf", "invalid_power", "invalid_energy"),
    (b"-inf", "invalid_power", "invalid_energy"),
    (b"Infinity", "invalid_power", "invalid_energy"),
    (b"1e999", "invalid_power", "invalid_energy"),
    (b"-1e10", "invalid_power", "invalid_energy"),
    (b"true", "invalid_power", "invalid_energy"),
    (b"null", "invalid_power", "invalid_energy"),
    (b'"12.5"', "invalid_power", "invalid_energy"),
    (b"1_000", "invalid_power", "invalid_energy"),
    (b"0x10", "invalid_power", "invalid_energy"),
    (b"12.5 W", "invalid_power", "invalid_energy"),
    (b"1,5", "invalid_power", "invalid_energy"),
    (b"{}", "invalid_power", "invalid_energy"),
    (b"[1]", "invalid_power", "invalid_energy"),
    (b"\xd9\xa1", "invalid_power", "invalid_energy"),  # an Arabic-Indic digit one
]


@pytest.mark.parametrize(("payload", "power_reason", "energy_reason"), BAD_GEN1_TEXT)
def test_bad_gen1_text_is_refused(payload: bytes, power_reason: str, energy_reason: str) -> None:
    """Gen1 numbers are strict decimal text: no nan/inf, words or units."""
    assert _refusal("shelly_gen1", GEN1_POWER_TOPIC, {}, payload) == power_reason
    parser = make_parser("shelly_gen1", GEN1_POWER_TOPIC)
    with pytest.raises(PayloadError) as caught:
        parser.parse(GEN1_ENERGY_TOPIC, payload)
    assert caught.value.reason == energy_reason


@pytest.mark.parametrize("payload", [b"-1", b"-0.5", b"-120.11"])
def test_gen1_negative_power_is_zero_and_negative_energy_refused(payload: bytes) -> None:
    """A negative Gen1 power is a flagged 0 W reading; a negative energy counter is refused."""
    parser = make_parser("shelly_gen1", GEN1_POWER_TOPIC)
    assert parser.parse(GEN1_POWER_TOPIC, payload) == Reading(0.0, None, True)
    with pytest.raises(PayloadError) as caught:
        parser.parse(GEN1_ENERGY_TOPIC, payload)
    assert caught.value.reason == "invalid_energy"


def test_gen1_power_above_a_gigawatt_is_refused() -> None:
    """A Gen1 power above 1e9 W is refused; the same number as energy is a valid counter."""
    parser = make_parser("shelly_gen1", GEN1_POWER_TOPIC)
    assert _refusal("shelly_gen1", GEN1_POWER_TOPIC, {}, b"1e10") == "invalid_power"
    assert parser.parse(GEN1_ENERGY_TOPIC, b"6e10") == Reading(None, 1e9)


def test_payload_error_never_leaks_a_decoder_exception() -> None:
    """The PayloadError chains the decoder's error but is itself the only thing raised."""
    parser = make_parser("zigbee2mqtt", "zigbee2mqtt/plug")
    with pytest.raises(PayloadError) as caught:
        parser.parse("zigbee2mqtt/plug", b"{oops")
    assert caught.value.reason == "invalid_json"
    assert "oops" not in caught.value.detail
