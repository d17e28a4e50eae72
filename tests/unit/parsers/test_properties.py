"""Property-based: whatever arrives, a parser returns a sane Reading or a PayloadError."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from iot_bridge.domain.readings import Reading
from iot_bridge.errors import PayloadError
from iot_bridge.parsers import PAYLOAD_ERROR_REASONS, DeviceParser, make_parser

T = TypeVar("T")

PARSERS: list[DeviceParser] = [
    make_parser("shelly_pm", "plug/status/pm1:0"),
    make_parser("shelly_pm", "plug/status/em1:0"),
    make_parser("shelly_rpc", "plug/events/rpc"),
    make_parser("shelly_rpc", "plug/events/rpc", {"component": "switch:1"}),
    make_parser("shelly_gen1", "shellies/plug/relay/0/power"),
    make_parser("shelly_gen1", "shellies/plug/emeter/0/power"),
    make_parser("tasmota", "tele/pow/SENSOR"),
    make_parser("tasmota", "tele/pow/SENSOR", {"channel": 1}),
    make_parser("zigbee2mqtt", "zigbee2mqtt/plug"),
    make_parser(
        "generic_json",
        "meters/plug",
        {"power_path": "a.0.p", "energy_path": "a.0.e", "energy_unit": "kwh"},
    ),
]

# Names the parsers look for, so generated documents reach deep into them.
KEYS = st.sampled_from(
    [
        "apower", "act_power", "aenergy", "total", "method", "params", "pm1:0", "switch:0",
        "switch:1", "em1:0", "ENERGY", "Power", "Total", "StatusSNS", "power", "energy",
        "state", "a", "0", "p", "e",
    ]
)  # fmt: skip
WORDS = st.sampled_from(["NotifyStatus", "NotifyFullStatus", "NotifyEvent", "online", "true"])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | WORDS
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(KEYS | st.text(max_size=4), children)
    ),
    max_leaves=25,
)


def _dump(value: Any) -> bytes:
    """JSON text as a careless device might write it: NaN and Infinity literals included."""
    return json.dumps(value, allow_nan=True).encode()


def _outcome(call: Callable[[], T]) -> T | PayloadError:
    try:
        return call()
    except PayloadError as err:
        return err


def _check(parser: DeviceParser, payload: bytes) -> None:
    """Every data topic and the availability topic give a sane result or a PayloadError."""
    for topic in (*parser.data_topics, "unrelated/topic"):
        reading = _outcome(partial(parser.parse, topic, payload))
        if isinstance(reading, PayloadError):
            assert reading.reason in PAYLOAD_ERROR_REASONS
        else:
            _assert_sane(reading)
    online = _outcome(partial(parser.parse_availability, payload))
    if isinstance(online, PayloadError):
        assert online.reason in PAYLOAD_ERROR_REASONS
    else:
        assert online in (True, False)


def _assert_sane(reading: Reading) -> None:
    assert isinstance(reading, Reading)
    if reading.power_w is not None:
        assert type(reading.power_w) is float
        assert 0 <= reading.power_w <= 1e9
    if reading.energy_wh is not None:
        assert type(reading.energy_wh) is float
        assert 0 <= reading.energy_wh < math.inf


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_but_payload_error(payload: bytes) -> None:
    """Random bytes give a sane Reading or a PayloadError with a known reason, never a crash."""
    for parser in PARSERS:
        _check(parser, payload)


@settings(max_examples=300)
@given(JSON_VALUES)
def test_arbitrary_json_never_raises_anything_but_payload_error(value: Any) -> None:
    """Any JSON document, NaN and huge numbers included, is read safely."""
    payload = _dump(value)
    for parser in PARSERS:
        _check(parser, payload)


@settings(max_examples=200)
@given(power=JSON_VALUES, energy=JSON_VALUES)
def test_arbitrary_values_in_the_power_and_energy_slots(power: Any, energy: Any) -> None:
    """Whatever sits where power and energy belong, the result is sane or a PayloadError."""
    documents = [
        {"apower": power, "act_power": power, "aenergy": {"total": energy}},
        {"method": "NotifyStatus", "params": {"switch:0": {"apower": power, "aenergy": energy}}},
        {"method": "NotifyFullStatus", "params": {"switch:1": {"apower": power}, "pm1:0": energy}},
        {"ENERGY": {"Power": power, "Total": energy}},
        {"StatusSNS": {"ENERGY": {"Power": power, "Total": energy}}},
        {"power": power, "energy": energy},
        {"a": [{"p": power, "e": energy}]},
    ]
    for document in documents:
        payload = _dump(document)
        for parser in PARSERS:
            _check(parser, payload)


POWERS = st.floats(min_value=0, max_value=1e9, allow_nan=False) | st.integers(0, 10**9)
ENERGIES = st.floats(min_value=0, max_value=1e300, allow_nan=False) | st.integers(0, 2**63)


@given(power=POWERS, energy=ENERGIES)
def test_valid_numbers_are_read_exactly(power: float, energy: float) -> None:
    """Any valid power and energy come back as the same floats (converted to Wh)."""
    shelly = make_parser("shelly_pm", "p/status/pm1:0")
    payload = orjson.dumps({"apower": power, "aenergy": {"total": energy}})
    assert shelly.parse("p/status/pm1:0", payload) == Reading(float(power), float(energy))
    z2m = make_parser("zigbee2mqtt", "z/plug")
    reading = z2m.parse("z/plug", orjson.dumps({"power": power, "energy": energy}))
    # 65535 is zigbee2mqtt's "not available" marker (pinned in test_multiphase).
    assert reading == Reading(
        None if power == 65535 else float(power),
        None if energy == 65535 else float(energy) * 1000.0,
    )


@given(power=POWERS, energy=ENERGIES)
def test_gen1_plain_text_round_trips(power: float, energy: float) -> None:
    """Gen1 decimal text of any valid number parses to that number (energy /60 to Wh)."""
    parser = make_parser("shelly_gen1", "shellies/p/relay/0/power")
    assert parser.parse("shellies/p/relay/0/power", repr(power).encode()) == Reading(
        float(power), None
    )
    reading = parser.parse("shellies/p/relay/0/energy", repr(energy).encode())
    assert reading == Reading(None, float(energy) / 60.0)


@given(st.lists(st.floats(min_value=0, max_value=1e8), min_size=1, max_size=8))
def test_tasmota_channels_sum(channels: list[float]) -> None:
    """Without a channel option, array powers are summed."""
    parser = make_parser("tasmota", "tele/t/SENSOR")
    reading = parser.parse("tele/t/SENSOR", orjson.dumps({"ENERGY": {"Power": channels}}))
    assert reading.power_w is not None
    assert math.isclose(reading.power_w, math.fsum(channels), rel_tol=1e-9, abs_tol=1e-9)
