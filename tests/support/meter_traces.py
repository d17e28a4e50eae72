"""Traces of one machine session behind each meter of CONTRACT §4a, as the meters publish.

Every meter sees the same machine: idle for a minute, then 10 minutes at
1200 + 900 + 600 W on its three phases (or channels), then off. Power is
published every 10 s, the import counters once a minute, shaped as each
meter publishes them (real field names and units; export counters and
Tasmota's Today/Yesterday beside them, as the devices send them). Each
counter rises by what its phase used, and some meters restart a phase's
counter from zero in the middle (a reboot): the session's energy is still
the 450 Wh the machine used. A counter reported at the same instant as a
power is published first (energy reported after a session's first low
reading belongs to the dip, which a stop rolls back).

    python3 -m tests.support.meter_traces   # writes samples/traces/three-phase.*

The committed samples are this module's output (a test checks it).
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import Any

import yaml

T0 = 1_764_400_000.0
START_S = 60.0
STOP_S = 660.0
END_S = 720.0
PHASE_W = (1200.0, 900.0, 600.0)
SESSION_W = sum(PHASE_W)
SESSION_WH = SESSION_W * (STOP_S - START_S) / 3600.0  # 450 Wh
BASE_WH = (115_973.75, 118_809.52, 110_844.76)
RESET_AT_S = 360.0  # the phase-B counter of some meters restarts from zero here

SESSION = {
    "standby_threshold_w": 5.0,
    "working_threshold_w": 50.0,
    "start_debounce_s": 3.0,
    "stop_debounce_s": 15.0,
    "message_timeout_s": 120.0,
    "heartbeat_interval_s": 300.0,
}

Line = dict[str, Any]


def _powers(t: float) -> tuple[float, ...]:
    on = START_S <= t < STOP_S
    return tuple(watts if on else 0.0 for watts in PHASE_W)


def _counters(t: float, *, reset_phase_b: bool) -> tuple[float, ...]:
    """Each phase's import counter (Wh) at ``t``: what it used so far, from its base."""
    used = [watts * max(0.0, min(t, STOP_S) - START_S) / 3600.0 for watts in PHASE_W]
    values = [base + use for base, use in zip(BASE_WH, used, strict=True)]
    if reset_phase_b and t > RESET_AT_S:  # rebooted just after reporting at RESET_AT_S
        values[1] = PHASE_W[1] * (min(t, STOP_S) - RESET_AT_S) / 3600.0
    return tuple(round(value, 3) for value in values)


def _times(step: float) -> list[float]:
    count = int(END_S // step)
    return [index * step for index in range(count + 1)]


def _line(t: float, topic: str, payload: Any) -> Line:
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return {"ts": T0 + t, "topic": topic, "payload": text}


def _pro3em_em(t: float) -> dict[str, Any]:
    a, b, c = _powers(t)
    return {
        "id": 0,
        "a_act_power": a,
        "b_act_power": b,
        "c_act_power": c,
        "a_pf": -0.7,
        "n_current": None,
        "total_act_power": round(a + b + c, 3),
        "total_aprt_power": round((a + b + c) * 1.3, 3),
    }


def _pro3em_emdata(t: float) -> dict[str, Any]:
    a, b, c = _counters(t, reset_phase_b=False)
    return {
        "id": 0,
        "a_total_act_energy": a,
        "a_total_act_ret_energy": 0.0,
        "b_total_act_energy": b,
        "b_total_act_ret_energy": 0.0,
        "c_total_act_energy": c,
        "c_total_act_ret_energy": 1247.42,
        "total_act": round(a + b + c, 3),
        "total_act_ret": 1247.42,
    }


def pro3em_triphase(prefix: str = "shellypro3em-lathe") -> list[Line]:
    """Pro 3EM, triphase profile: status/em:0 every 10 s, status/emdata:0 each minute."""
    lines = [_line(t, f"{prefix}/status/emdata:0", _pro3em_emdata(t)) for t in _times(60.0)]
    lines += [_line(t, f"{prefix}/status/em:0", _pro3em_em(t)) for t in _times(10.0)]
    return lines


def pro3em_triphase_rpc(prefix: str = "shellypro3em-press") -> list[Line]:
    """Pro 3EM over RPC: NotifyStatus of em:0, and of emdata:0 each minute."""

    def notify(t: float, component: str, status: dict[str, Any]) -> Line:
        params = {"ts": T0 + t, component: status}
        return _line(t, f"{prefix}/events/rpc", {"method": "NotifyStatus", "params": params})

    lines = [notify(t, "emdata:0", _pro3em_emdata(t)) for t in _times(60.0)]
    lines += [notify(t, "em:0", _pro3em_em(t)) for t in _times(10.0)]
    return lines


def pro3em_monophase(prefix: str = "shellypro3em-mill") -> list[Line]:
    """Pro 3EM, monophase profile: status/em1:N each, status/em1data:N each minute."""
    lines: list[Line] = []
    for t in _times(60.0):
        for channel, wh in enumerate(_counters(t, reset_phase_b=True)):
            body = {"id": channel, "total_act_energy": wh, "total_act_ret_energy": 3.5}
            lines.append(_line(t, f"{prefix}/status/em1data:{channel}", body))
    for t in _times(10.0):
        for channel, watts in enumerate(_powers(t)):
            body = {"id": channel, "act_power": watts, "aprt_power": watts * 1.2, "pf": 0.8}
            lines.append(_line(t, f"{prefix}/status/em1:{channel}", body))
    return lines


def pro3em_monophase_rpc(prefix: str = "shellypro3em63-saw") -> list[Line]:
    """Pro 3EM-63 monophase over RPC: one NotifyStatus delta per channel."""
    lines: list[Line] = []
    for t in _times(60.0):
        for channel, wh in enumerate(_counters(t, reset_phase_b=True)):
            params = {f"em1data:{channel}": {"total_act_energy": wh, "total_act_ret_energy": 0}}
            body = {"method": "NotifyStatus", "params": params}
            lines.append(_line(t, f"{prefix}/events/rpc", body))
    for t in _times(10.0):
        for channel, watts in enumerate(_powers(t)):
            params = {f"em1:{channel}": {"act_power": watts, "pf": 0.54}}
            body = {"method": "NotifyStatus", "params": params}
            lines.append(_line(t, f"{prefix}/events/rpc", body))
    return lines


def pro4pm_switches(prefix: str = "shellypro4pm-kiln") -> list[Line]:
    """Pro 4PM, three switch channels driving one kiln: status/switch:N with aenergy."""
    lines: list[Line] = []
    for t in _times(10.0):
        counters = _counters(t, reset_phase_b=True)
        for channel, watts in enumerate(_powers(t)):
            body = {
                "id": channel,
                "output": True,
                "apower": watts,
                "aenergy": {"total": counters[channel], "by_minute": [0, 0, 0], "minute_ts": 0},
            }
            lines.append(_line(t, f"{prefix}/status/switch:{channel}", body))
    return lines


def plus2pm_rpc(prefix: str = "shellyplus2pm-drill") -> list[Line]:
    """Plus 2PM over RPC: apower deltas per switch, aenergy-only deltas each minute.

    Its two channels carry phases A and B of the machine only (2100 W, 350 Wh).
    """
    lines: list[Line] = []

    def notify(t: float, params: dict[str, Any]) -> Line:
        return _line(t, f"{prefix}/events/rpc", {"method": "NotifyStatus", "params": params})

    for t in _times(60.0):
        for channel, wh in enumerate(_counters(t, reset_phase_b=False)[:2]):
            lines.append(
                notify(t, {f"switch:{channel}": {"id": channel, "aenergy": {"total": wh}}})
            )
    for t in _times(10.0):
        for channel, watts in enumerate(_powers(t)[:2]):
            lines.append(notify(t, {f"switch:{channel}": {"id": channel, "apower": watts}}))
    return lines


def gen1_3em(device: str = "shellyem3-compressor") -> list[Line]:
    """Shelly 3EM Gen1: emeter/N/power, /total, /total_returned, /energy each 30 s (plain text)."""
    lines: list[Line] = []
    for t in _times(30.0):
        counters = _counters(t, reset_phase_b=True)
        for channel in range(3):
            base = f"shellies/{device}/emeter/{channel}"
            lines.append(_line(t, f"{base}/energy", "1234"))  # watt-minutes: never read
            lines.append(_line(t, f"{base}/total", f"{counters[channel]:.1f}"))
            lines.append(_line(t, f"{base}/total_returned", "427.7"))
        for channel, watts in enumerate(_powers(t)):
            lines.append(_line(t, f"shellies/{device}/emeter/{channel}/power", f"{watts:.2f}"))
    return lines


def tasmota_3em(topic: str = "tasmota-3em-laser") -> list[Line]:
    """Tasmota on a Shelly 3EM: arrays per phase, every 10 s (TelePeriod 10)."""
    lines: list[Line] = []
    for t in _times(10.0):
        counters = _counters(t, reset_phase_b=True)
        energy = {
            "Total": [round(wh / 1000.0, 6) for wh in counters],
            "Yesterday": [1.513, 10.905, -0.002],
            "Today": [5.285, 7.902, 0.005],
            "ExportActive": [8.196, 0.0, 0.012],
            "Period": [2.9, 3.9, 0.0],
            "Power": list(_powers(t)),
            "Voltage": [231, 230, 229],
        }
        lines.append(_line(t, f"tele/{topic}/SENSOR", {"Time": "x", "ENERGY": energy}))
    return lines


def zigbee_3phase(name: str = "clamp-router") -> list[Line]:
    """A zigbee2mqtt clamp whose `power` is phase A only: power, power_phase_b, power_phase_c."""
    lines: list[Line] = []
    for t in _times(10.0):
        a, b, c = _powers(t)
        ea, eb, ec = _counters(t, reset_phase_b=False)
        body = {
            "power": a,
            "power_phase_b": b,
            "power_phase_c": c,
            "energy": round(ea / 1000.0, 6),
            "energy_phase_b": round(eb / 1000.0, 6),
            "energy_phase_c": round(ec / 1000.0, 6),
            "current_phase_b": 65535,
            "produced_energy": 12.5,
            "linkquality": 51,
        }
        lines.append(_line(t, f"zigbee2mqtt/{name}", body))
    return lines


def generic_meter(topic: str = "workshop/meter/cnc") -> list[Line]:
    """Any JSON meter with per-phase fields: power_paths and energy_paths (kWh)."""
    lines: list[Line] = []
    for t in _times(10.0):
        powers = _powers(t)
        counters = _counters(t, reset_phase_b=True)
        body = {
            "phases": [
                {"p": watts, "import_kwh": round(wh / 1000.0, 6)}
                for watts, wh in zip(powers, counters, strict=True)
            ]
        }
        lines.append(_line(t, topic, body))
    return lines


def _device(
    device_id: str, topic: str, parser_type: str, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    device: dict[str, Any] = {
        "device_id": device_id,
        "machine_name": device_id.replace("-", " ").title(),
        "mqtt_topic": topic,
        "parser_type": parser_type,
        "session_config": dict(SESSION),
    }
    if options:
        device["parser_options"] = options
    return device


THREE = [0, 1, 2]
# device -> (its config, its trace, the session's power (W) and energy (Wh))
METERS: dict[str, tuple[dict[str, Any], Callable[[], list[Line]], float, float]] = {
    "lathe": (
        _device("lathe", "shellypro3em-lathe/status/em:0", "shelly_pm"),
        pro3em_triphase,
        SESSION_W,
        SESSION_WH,
    ),
    "press": (
        _device("press", "shellypro3em-press/events/rpc", "shelly_rpc", {"component": "em:0"}),
        pro3em_triphase_rpc,
        SESSION_W,
        SESSION_WH,
    ),
    "mill": (
        _device("mill", "shellypro3em-mill/status/em1:0", "shelly_pm", {"channels": THREE}),
        pro3em_monophase,
        SESSION_W,
        SESSION_WH,
    ),
    "saw": (
        _device("saw", "shellypro3em63-saw/events/rpc", "shelly_rpc", {"channels": THREE}),
        pro3em_monophase_rpc,
        SESSION_W,
        SESSION_WH,
    ),
    "kiln": (
        _device("kiln", "shellypro4pm-kiln/status/switch:0", "shelly_pm", {"channels": THREE}),
        pro4pm_switches,
        SESSION_W,
        SESSION_WH,
    ),
    "drill": (
        _device("drill", "shellyplus2pm-drill/events/rpc", "shelly_rpc", {"channels": [0, 1]}),
        plus2pm_rpc,
        PHASE_W[0] + PHASE_W[1],
        (PHASE_W[0] + PHASE_W[1]) * (STOP_S - START_S) / 3600.0,
    ),
    "compressor": (
        _device(
            "compressor",
            "shellies/shellyem3-compressor/emeter/0/power",
            "shelly_gen1",
            {"channels": THREE},
        ),
        gen1_3em,
        SESSION_W,
        SESSION_WH,
    ),
    "laser": (
        _device("laser", "tele/tasmota-3em-laser/SENSOR", "tasmota"),
        tasmota_3em,
        SESSION_W,
        SESSION_WH,
    ),
    "router": (
        _device(
            "router",
            "zigbee2mqtt/clamp-router",
            "zigbee2mqtt",
            {
                "power_paths": ["power", "power_phase_b", "power_phase_c"],
                "energy_paths": ["energy", "energy_phase_b", "energy_phase_c"],
            },
        ),
        zigbee_3phase,
        SESSION_W,
        SESSION_WH,
    ),
    "cnc": (
        _device(
            "cnc",
            "workshop/meter/cnc",
            "generic_json",
            {
                "power_paths": ["phases.0.p", "phases.1.p", "phases.2.p"],
                "energy_paths": [f"phases.{n}.import_kwh" for n in THREE],
                "energy_unit": "kwh",
            },
        ),
        generic_meter,
        SESSION_W,
        SESSION_WH,
    ),
}


def config_document() -> dict[str, Any]:
    """The replay config: one device per meter."""
    return {"devices": [meter[0] for meter in METERS.values()], "version": "1.0"}


def trace_lines() -> list[str]:
    """Every meter's messages, merged in time order (stable), as trace JSON lines."""
    lines = [line for meter in METERS.values() for line in meter[1]()]
    lines.sort(key=lambda line: line["ts"])
    return [json.dumps(line, ensure_ascii=False) for line in lines]


SAMPLES = pathlib.Path(__file__).resolve().parents[2] / "samples" / "traces"
SAMPLE_TRACE = SAMPLES / "three-phase.jsonl"
SAMPLE_CONFIG = SAMPLES / "three-phase-config.yaml"
CONFIG_HEADER = (
    "# Config for `iot-bridge replay samples/traces/three-phase.jsonl"
    " --config samples/traces/three-phase-config.yaml`\n"
    "# One machine behind each meter of CONTRACT section 4a; written by"
    " `python3 -m tests.support.meter_traces`.\n"
)


def sample_config_text() -> str:
    """The committed config file's text."""
    return CONFIG_HEADER + yaml.safe_dump(config_document(), sort_keys=False, allow_unicode=True)


def main() -> None:
    """Write the sample trace and config."""
    SAMPLE_TRACE.write_text("\n".join(trace_lines()) + "\n", encoding="utf-8")
    SAMPLE_CONFIG.write_text(sample_config_text(), encoding="utf-8")


if __name__ == "__main__":
    main()
