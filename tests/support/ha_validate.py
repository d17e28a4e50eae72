"""Checks discovery configs with Home Assistant's own MQTT discovery code (for ``scripts/ha-test``).

Runs in a venv with the ``homeassistant`` package, never in the bridge's; it
imports nothing of iot-bridge. For every config collected by
``tests/support/ha_payloads.py`` it does what Home Assistant does with a
message on its discovery topic, then more:

1. the topic must match Home Assistant's discovery topic pattern (node and
   object ids of ``[a-zA-Z0-9_-]``), for a platform Home Assistant supports;
2. the payload is a JSON object; abbreviations are expanded and the origin
   checked by Home Assistant's ``discovery.py``;
3. the platform's ``DISCOVERY_SCHEMA`` validates it; a warning Home Assistant
   logs meanwhile is an error here, and so is a key the schema dropped
   (Home Assistant ignores unknown keys silently: a typo would hide);
4. unique ids are unique per platform, every ``via_device`` names a device
   that is announced, every device has one name;
5. the templates (value, availability, attributes) are rendered by Home
   Assistant's template engine against the state messages the bridge
   retained in the same run, and against variants of them (meter offline,
   no counter, each machine state, Odoo down): an enum's value must be one of
   its options, a number a number, a binary sensor's ``ON``/``OFF``, an
   availability ``online``/``offline``, attributes a JSON object.

    python -m tests.support.ha_validate PAYLOADS.json

Exit 0 when everything holds, 1 with every problem listed otherwise.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import json
import logging
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import voluptuous as vol
from homeassistant.components.mqtt import discovery
from homeassistant.components.mqtt.const import SUPPORTED_COMPONENTS
from homeassistant.const import __version__ as HA_VERSION
from homeassistant.core import HomeAssistant
from homeassistant.helpers.template import Template

NONE_PAYLOAD = "None"  # what Home Assistant's MQTT sensors read as "unknown"


class _Warnings(logging.Handler):
    """Collects what Home Assistant logs at WARNING or above while a config is checked."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage())


def _check_config(
    topic: str, prefix: str, raw: str, problems: list[str]
) -> tuple[str, dict[str, Any]] | None:
    """Steps 1 to 3 for one message; the platform and the validated config, or None."""
    trimmed = topic.replace(f"{prefix}/", "", 1)
    match = discovery.TOPIC_MATCHER.match(trimmed)
    if match is None or match.end() != len(trimmed):
        problems.append(f"{topic}: not a topic Home Assistant reads as a discovery topic")
        return None
    component = match.group("component")
    if component not in SUPPORTED_COMPONENTS:
        problems.append(f"{topic}: {component} is not a platform Home Assistant supports")
        return None
    try:
        loaded = json.loads(raw)
    except ValueError as err:
        problems.append(f"{topic}: not JSON ({err})")
        return None
    if not isinstance(loaded, dict):
        problems.append(f"{topic}: not a JSON object")
        return None
    payload = discovery.MQTTDiscoveryPayload(loaded)
    discovery._replace_all_abbreviations(payload)
    if not discovery._valid_origin_info(payload):
        problems.append(f"{topic}: origin refused: {payload.get('origin')!r}")
        return None
    if discovery.TOPIC_BASE in payload:
        discovery._replace_topic_base(payload)
    schema = importlib.import_module(f"homeassistant.components.mqtt.{component}").DISCOVERY_SCHEMA
    handler = _Warnings()
    logging.getLogger("homeassistant").addHandler(handler)
    try:
        validated: dict[str, Any] = schema(copy.deepcopy(dict(payload)))
    except vol.Invalid as err:
        problems.append(f"{topic}: Home Assistant's {component} schema refuses it: {err}")
        return None
    finally:
        logging.getLogger("homeassistant").removeHandler(handler)
    problems.extend(f"{topic}: Home Assistant warns: {message}" for message in handler.records)
    dropped = sorted(set(payload) - set(validated))
    if dropped:
        problems.append(f"{topic}: keys Home Assistant ignores: {dropped}")
    return component, validated


def _variants(message: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The retained message and the states it may take (meter offline, no counter, ...)."""
    yield message
    if "device_id" in message:  # a machine's state
        for online in (True, False):
            for energy in (None, 0.0, 123456.789):
                for state in ("idle", "starting", "standby", "working", "stopping"):
                    session = None if state in ("idle", "starting") else "5b0c7c9e-0000-4000"
                    yield {
                        **message,
                        "online": online,
                        "energy_wh_total": energy,
                        "state": state,
                        "session_id": session,
                        "power_w": None if not online and energy is None else 12.5,
                    }
    if "outbox_pending" in message:  # the bridge's status
        for reachable in (None, True, False):
            for protocol in ("5", "3.1.1"):
                yield {**message, "odoo_reachable": reachable, "mqtt_protocol": protocol}


def _render(hass: HomeAssistant, template: Any, payload: str) -> str:
    source = template.template if hasattr(template, "template") else str(template)
    return str(Template(source, hass).async_render_with_possible_json_value(payload, NONE_PAYLOAD))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_templates(
    hass: HomeAssistant,
    *,
    topic: str,
    component: str,
    config: dict[str, Any],
    retained: dict[str, str],
    problems: list[str],
) -> int:
    """Step 5 for one config; how many renderings were checked."""
    state_topic = config.get("state_topic")
    if state_topic not in retained or not retained[state_topic]:
        problems.append(f"{topic}: nothing retained on its state topic {state_topic!r}")
        return 0
    checked = 0
    for message in _variants(json.loads(retained[state_topic])):
        payload = json.dumps(message)
        value = _render(hass, config.get("value_template", "{{ value }}"), payload)
        checked += 1
        what = f"{topic}: value {value!r} for {payload}"
        device_class = str(config.get("device_class") or "")
        if component == "sensor" and device_class == "enum":
            if value not in config.get("options", []):
                problems.append(f"{what} is not one of the options {config.get('options')}")
        elif component == "sensor" and config.get("state_class"):
            if value != NONE_PAYLOAD and not _is_number(value):
                problems.append(f"{what} is not a number")
        elif component == "binary_sensor" and value not in (
            config["payload_on"],
            config["payload_off"],
            NONE_PAYLOAD,
        ):
            problems.append(f"{what} is neither {config['payload_on']} nor {config['payload_off']}")
        if "json_attributes_template" in config:
            attributes = _render(hass, config["json_attributes_template"], payload)
            if not isinstance(json.loads(attributes), dict):
                problems.append(f"{topic}: attributes {attributes!r} are not a JSON object")
        for entry in config.get("availability", []):
            if entry["topic"] != state_topic:
                continue
            said = _render(hass, entry.get("value_template", "{{ value }}"), payload)
            if said not in (entry["payload_available"], entry["payload_not_available"]):
                problems.append(f"{topic}: availability {said!r} for {payload}")
    return checked


def _check_devices(
    run: str, configs: list[tuple[str, str, dict[str, Any]]], problems: list[str]
) -> None:
    """Step 4 across one run's configs."""
    unique: dict[tuple[str, str], str] = {}
    names: dict[str, set[str]] = {}
    via: set[str] = set()
    for topic, component, config in configs:
        key = (component, str(config.get("unique_id")))
        if "unique_id" not in config:
            problems.append(f"{topic}: no unique_id (no device, no history)")
        elif key in unique:
            problems.append(f"{topic}: unique_id {key[1]} also used by {unique[key]}")
        unique.setdefault(key, topic)
        device = config.get("device") or {}
        for identifier in device.get("identifiers", []):
            names.setdefault(identifier, set()).add(str(device.get("name")))
        if device.get("via_device"):
            via.add(device["via_device"])
    for identifier, seen in names.items():
        if len(seen) != 1:
            problems.append(f"{run}: device {identifier} is announced under names {sorted(seen)}")
    problems.extend(f"{run}: via_device {v} is not an announced device" for v in via - set(names))


async def validate(collected: dict[str, Any]) -> tuple[int, int, list[str]]:
    """Every run's configs: (configs checked, templates rendered, problems)."""
    problems: list[str] = []
    configs_checked = renderings = 0
    with tempfile.TemporaryDirectory(prefix="ha-validate-") as config_dir:
        hass = HomeAssistant(config_dir)
        for run in collected["runs"]:
            valid: list[tuple[str, str, dict[str, Any]]] = []
            for topic, raw in sorted(run["discovery"].items()):
                found = _check_config(topic, run["discovery_prefix"], raw, problems)
                configs_checked += 1
                if found is None:
                    continue
                component, config = found
                valid.append((topic, component, config))
                renderings += _check_templates(
                    hass,
                    topic=topic,
                    component=component,
                    config=config,
                    retained=run["retained"],
                    problems=problems,
                )
            _check_devices(run["name"], valid, problems)
    return configs_checked, renderings, problems


# Faults the checks must catch, each applied to a copy of one collected config: if
# one passes, the checker itself is broken (an API of Home Assistant moved, say).
_FAULTS: dict[str, tuple[str, Any]] = {
    "an unknown key": ("state_clas", "measurement"),
    "options on a numeric sensor": ("options", ["a", "b"]),
    "an unknown device class": ("device_class", "wattage"),
    "an origin without a name": ("origin", {"sw_version": "1"}),
    "a value template Home Assistant cannot render to an option": (
        "value_template",
        "{{ value_json.power_w }}",
    ),
    "a device without identifiers": ("device", {"name": "x"}),
}


async def _self_test(collected: dict[str, Any]) -> list[str]:
    """Each fault of ``_FAULTS`` in a machine's state sensor config must be reported."""
    run = collected["runs"][0]
    topic = next(t for t in sorted(run["discovery"]) if t.endswith("/state/config"))
    missed = []
    for fault, (key, value) in _FAULTS.items():
        config = json.loads(run["discovery"][topic])
        config[key] = value
        broken = {**run, "discovery": {topic: json.dumps(config)}}
        _, _, problems = await validate({"runs": [broken]})
        if not problems:
            missed.append(f"the checks let {fault} pass")
    bad_topic = topic.replace("/state/config", "/st.ate/config")
    broken = {**run, "discovery": {bad_topic: run["discovery"][topic]}}
    if not (await validate({"runs": [broken]}))[2]:
        missed.append("the checks let a '.' in an object id pass")
    return missed


def main(argv: list[str] | None = None) -> int:
    """Validate the file named on the command line; print the verdict."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tests.support.ha_validate PAYLOADS.json", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as handle:
        collected = json.load(handle)
    # Home Assistant's own warnings are collected per config (_Warnings), not printed.
    logging.getLogger("homeassistant").addHandler(logging.NullHandler())
    missed = asyncio.run(_self_test(collected))
    if missed:
        for problem in missed:
            print(f"ha-test: self-test: {problem}", file=sys.stderr)
        return 1
    platforms = sorted(
        {topic.split("/")[-4] for run in collected["runs"] for topic in run["discovery"]}
    )
    configs, renderings, problems = asyncio.run(validate(collected))
    if not configs:
        problems.append("no discovery config was collected")
    for problem in problems:
        print(f"ha-test: {problem}", file=sys.stderr)
    verdict = "FAILED" if problems else "all valid"
    print(
        f"ha-test: Home Assistant {HA_VERSION}: {configs} discovery configs "
        f"({', '.join(platforms)}), {renderings} template renderings: {verdict}"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
