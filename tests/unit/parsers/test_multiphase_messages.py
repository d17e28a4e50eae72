"""Every real three-phase and multi-channel message of the fixture file, read as CONTRACT §4a says."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from iot_bridge.domain.readings import Reading
from iot_bridge.parsers import DeviceParser, make_parser

FIXTURE = (
    pathlib.Path(__file__).resolve().parents[2]
    / "fixtures"
    / "devices"
    / "multiphase_messages.json"
)
MESSAGES: list[dict[str, Any]] = json.loads(FIXTURE.read_text(encoding="utf-8"))
SIGN_OF_LIFE = Reading(None, None)
NOT_DATA = "not a data topic"

PRO3EM = "shellypro3em/status/em:0"
PRO3EM_EARLY = "shellypro3em-c8f09xxxxxx/status/em:0"
PRO3EM_RPC = "aiida/17a019b1-253b-40de-8800-d577e4e96181/events/rpc"
GARDEN_EM1 = "ShellyPro3EM-Garten, OutdoorKüche, BackupBox/status/em1:0"
PRO3EM63_RPC = "shellypro3em63-2805a5ca2e44/events/rpc"
PRO3EM63_EM1 = "shellypro3em63-2805a5ca2e44/status/em1:0"
GEN1_3EM_A = "shellies/shellyem3-68C63AFAF952/emeter/0/power"
GEN1_3EM_B = "shellies/shellyem3-485519D6FEC7/emeter/0/power"
GEN1_EM = "shellies/shellyem-123456789012/emeter/0/power"
TASMOTA_3EM = "home/TASMOTA-SHELLY3EM-01/tele/SENSOR"
TASMOTA_DUAL = "tele/tasmota/SENSOR"
OWON = "zigbee2mqtt/Power_0x3c6a2cfffed2138b"
FRIENT = "zigbee2mqtt/0x0015bc001b024000"
TUYA_CLAMP = "zigbee2mqtt/clamp"  # the source does not show the friendly name
PLUS2PM = "shellyplus2pm-Einfahrt/status/switch:0"
PLUS2PM_RPC = "shellyplus2pm-Einfahrt/events/rpc"
PRO4PM_RPC = "shelly1/events/rpc"

THREE = {"channels": [0, 1, 2]}
FOUR = {"channels": [0, 1, 2, 3]}
OWON_PHASES = {
    "power_paths": ["power_l1", "power_l2", "power_l3"],
    "energy_paths": ["energy_l1", "energy_l2", "energy_l3"],
}
TUYA_IMPORT = {"power_paths": ["power_ab"], "energy_paths": ["energy_a", "energy_b"]}

# (index, parser_type, the device's mqtt_topic, parser_options, what a fresh parser reads)
TABLE: list[tuple[int, str, str, dict[str, Any], Reading | str]] = [
    # --- Shelly Pro 3EM, triphase profile: em:0 power, emdata:0 energy ---
    (0, "shelly_pm", PRO3EM, {}, Reading(594.006, None)),
    (1, "shelly_pm", PRO3EM, {}, Reading(None, 345628.03)),  # total_act, never total_act_ret
    (2, "shelly_pm", PRO3EM_EARLY, {}, Reading(974.264, None)),  # negative pf says nothing
    # NotifyStatus with a negative total_act_power (export): 0 W, flagged.
    (3, "shelly_rpc", PRO3EM_RPC, {"component": "em:0"}, Reading(0.0, None, True)),
    # --- Shelly Pro 3EM / 3EM-63, monophase profile: em1:N, channels summed ---
    (4, "shelly_pm", GARDEN_EM1, THREE, Reading(795.6, None)),
    (5, "shelly_rpc", PRO3EM63_RPC, THREE, Reading(102.5, None)),  # a delta of em1:2 only
    (6, "shelly_pm", PRO3EM63_EM1, THREE, Reading(0.0, None)),
    # --- Shelly 3EM / EM Gen1: emeter/N topics, channels summed ---
    (7, "shelly_gen1", GEN1_3EM_A, THREE, Reading(120.11, None)),
    (8, "shelly_gen1", GEN1_3EM_A, THREE, Reading(116.23, None)),
    (9, "shelly_gen1", GEN1_3EM_A, THREE, Reading(76.46, None)),
    (10, "shelly_gen1", GEN1_3EM_B, {}, Reading(None, 10533.1)),  # emeter/N/total is Wh
    (11, "shelly_gen1", GEN1_3EM_B, THREE, NOT_DATA),  # total_returned: export
    (12, "shelly_gen1", GEN1_3EM_B, THREE, NOT_DATA),  # voltage
    (13, "shelly_gen1", GEN1_EM, {"channels": [0, 1]}, Reading(611.53, None)),
    (14, "shelly_gen1", GEN1_EM, {}, Reading(None, 1891.9)),
    # --- Tasmota arrays: all channels summed; a negative phase is 0 W; Total, never Today ---
    (15, "tasmota", TASMOTA_3EM, {}, Reading(408.1, 32325.0, True)),
    (16, "tasmota", TASMOTA_DUAL, {}, Reading(57.0, 3067.0)),
    # --- zigbee2mqtt: `power` is the total, or the configured paths are summed ---
    (17, "zigbee2mqtt", OWON, OWON_PHASES, Reading(127.0, 19932.0)),
    (18, "zigbee2mqtt", FRIENT, {}, Reading(4820.0, 15086470.0)),
    # Signed sum of the two clamps (exporting: 0 W); import counters only, never produced.
    (19, "zigbee2mqtt", TUYA_CLAMP, TUYA_IMPORT, Reading(0.0, 148310.0, True)),
    # --- Shelly switch channels (Plus 2PM, Pro 4PM) ---
    # Energy waits for every listed channel's counter (the sum needs them all).
    (20, "shelly_pm", PLUS2PM, {"channels": [0, 1]}, Reading(0.0, None)),
    (21, "shelly_rpc", PLUS2PM_RPC, {"channels": [0, 1]}, SIGN_OF_LIFE),
    (22, "shelly_rpc", PRO4PM_RPC, FOUR, SIGN_OF_LIFE),
    (23, "shelly_rpc", PRO4PM_RPC, FOUR, Reading(0.0, None)),  # apower 0 as an integer
    (24, "shelly_rpc", PRO4PM_RPC, FOUR, SIGN_OF_LIFE),  # output/source only
]


def _topic(index: int) -> str:
    topic = str(MESSAGES[index]["topic"])
    return TUYA_CLAMP if index == 19 else topic


def _payload(index: int) -> bytes:
    return str(MESSAGES[index]["payload"]).encode("utf-8")


def _feed(parser: DeviceParser, *indexes: int) -> Reading:
    reading = SIGN_OF_LIFE
    for index in indexes:
        reading = parser.parse(_topic(index), _payload(index))
    return reading


def test_fixture_copy_matches_shared_source(shared_fixtures_dir: pathlib.Path) -> None:
    """The fixture copy is byte-identical to the shared multiphase_messages.json."""
    source = shared_fixtures_dir / "multiphase_messages.json"
    if not source.exists():
        pytest.skip("shared fixture folder not present beside the checkout")
    assert FIXTURE.read_bytes() == source.read_bytes()


def test_every_message_has_an_expectation() -> None:
    """Each message of the fixture file appears exactly once in the table."""
    assert sorted(row[0] for row in TABLE) == list(range(len(MESSAGES)))


@pytest.mark.parametrize(("index", "parser_type", "device_topic", "options", "expected"), TABLE)
def test_fixture_message(
    index: int,
    parser_type: str,
    device_topic: str,
    options: dict[str, Any],
    expected: Reading | str,
) -> None:
    """A fresh parser configured as §4a says reads exactly the expected reading."""
    parser = make_parser(parser_type, device_topic, options)
    topic = _topic(index)
    if expected == NOT_DATA:
        assert topic not in parser.data_topics
        assert topic != parser.availability_topic
        return
    assert topic in parser.data_topics
    reading = parser.parse(topic, _payload(index))
    assert isinstance(expected, Reading)
    assert reading.power_w == expected.power_w
    assert reading.negative_power is expected.negative_power
    if expected.energy_wh is None:
        assert reading.energy_wh is None
    else:
        assert reading.energy_wh == pytest.approx(expected.energy_wh, rel=1e-12)


def test_gen1_three_phases_add_up_as_they_arrive() -> None:
    """Each Gen1 phase topic updates its phase; the power is the sum heard so far (312.80 W)."""
    parser = make_parser("shelly_gen1", GEN1_3EM_A, THREE)
    assert [parser.parse(_topic(i), _payload(i)).power_w for i in (7, 8, 9)] == [
        120.11,
        236.34,
        312.8,
    ]
    # A phase reporting again replaces its own value only.
    assert parser.parse(_topic(8), b"0.0").power_w == pytest.approx(120.11 + 76.46)


def test_gen1_energy_is_the_sum_of_the_phase_counters_once_all_reported() -> None:
    """emeter/N/total of every phase is needed; then the energy is their sum in Wh."""
    parser = make_parser("shelly_gen1", GEN1_3EM_B, THREE)
    prefix = "shellies/shellyem3-485519D6FEC7/emeter"
    assert _feed(parser, 10) == SIGN_OF_LIFE
    assert parser.parse(f"{prefix}/1/total", b"9000.0") == SIGN_OF_LIFE
    assert parser.parse(f"{prefix}/2/total", b"13685.4").energy_wh == pytest.approx(
        10533.1 + 9000.0 + 13685.4
    )
    assert f"{prefix}/0/energy" not in parser.data_topics  # watt-minutes, not a lifetime counter


def test_pro4pm_deltas_merge_and_a_relay_only_delta_changes_nothing() -> None:
    """switch:N deltas update their channel; an output-only delta keeps every power."""
    parser = make_parser("shelly_rpc", PRO4PM_RPC, FOUR)
    notify = '{{"method":"NotifyStatus","params":{{"switch:{n}":{{"apower":{w}}}}}}}'
    parser.parse(PRO4PM_RPC, notify.format(n=0, w=100.5).encode())
    parser.parse(PRO4PM_RPC, notify.format(n=2, w=40.0).encode())
    assert _feed(parser, 23).power_w == 140.5  # switch:1 reports 0 W
    assert _feed(parser, 24) == SIGN_OF_LIFE
    assert parser.parse(PRO4PM_RPC, notify.format(n=1, w=10).encode()).power_w == 150.5


def test_pro3em63_delta_of_one_channel_keeps_the_others() -> None:
    """A NotifyStatus with only em1:2 updates channel 2; channels 0 and 1 keep their power."""
    parser = make_parser("shelly_rpc", PRO3EM63_RPC, THREE)
    full = {
        "method": "NotifyFullStatus",
        "params": {f"em1:{n}": {"act_power": 50.0 * (n + 1)} for n in range(3)},
    }
    assert parser.parse(PRO3EM63_RPC, json.dumps(full).encode()).power_w == 300.0
    assert _feed(parser, 5).power_w == 50.0 + 100.0 + 102.5


def test_pro3em_triphase_power_and_energy_from_their_own_topics() -> None:
    """status/em:0 gives the power, status/emdata:0 the import counter (not total_act_ret)."""
    parser = make_parser("shelly_pm", PRO3EM)
    assert parser.data_topics == (PRO3EM, "shellypro3em/status/emdata:0")
    assert _feed(parser, 0) == Reading(594.006, None)
    assert _feed(parser, 1) == Reading(None, 345628.03)


def test_tasmota_channel_and_channels_pick_from_the_arrays() -> None:
    """`channel` reads one phase, `channels` a subset; Today/Yesterday/Period are never totals."""
    one = make_parser("tasmota", TASMOTA_3EM, {"channel": 1})
    assert _feed(one, 15) == Reading(232.1, 22732.0)
    two = make_parser("tasmota", TASMOTA_3EM, {"channels": [0, 2]})
    reading = _feed(two, 15)
    assert reading.power_w == 176.0
    assert reading.negative_power is True
    assert reading.energy_wh == pytest.approx(9593.0)


def test_zigbee2mqtt_not_available_marker_is_absent() -> None:
    """65535 on a configured path is "not available": that path keeps its last value."""
    parser = make_parser(
        "zigbee2mqtt", FRIENT, {"power_paths": ["power", "power_phase_b", "power_phase_c"]}
    )
    first = b'{"power": 1000, "power_phase_b": 500, "power_phase_c": 250}'
    assert parser.parse(FRIENT, first).power_w == 1750.0
    marker = b'{"power": 1200, "power_phase_b": 65535, "power_phase_c": null}'
    assert parser.parse(FRIENT, marker).power_w == 1950.0
    single = make_parser("zigbee2mqtt", FRIENT)
    assert single.parse(FRIENT, b'{"power": 65535, "energy": 65535}') == SIGN_OF_LIFE
