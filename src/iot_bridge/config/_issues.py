"""Turning pydantic errors and device checks into ``ConfigIssue``s with dotted paths.

Private to the config package: ``parse_config`` is the public entry point.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from iot_bridge.config.model import (
    BridgeConfig,
    DeviceConfig,
    MqttSection,
    OdooSection,
    ParserOptions,
    SessionConfigModel,
)
from iot_bridge.errors import ConfigError, ConfigIssue
from iot_bridge.parsers import make_parser

# Which model sits under which key, to name the known keys of a typo's parent.
_CHILDREN: dict[type[BaseModel], dict[str, type[BaseModel]]] = {
    BridgeConfig: {"mqtt": MqttSection, "odoo": OdooSection, "devices": DeviceConfig},
    DeviceConfig: {"parser_options": ParserOptions, "session_config": SessionConfigModel},
}

_TYPE_MESSAGES = {
    "string_type": "must be a string",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "model_type": "must be a mapping of keys to values",
    "model_attributes_type": "must be a mapping of keys to values",
    "dict_type": "must be a mapping of keys to values",
}
_RANGE_MESSAGES = {
    "greater_than": ("gt", "must be greater than {}"),
    "greater_than_equal": ("ge", "must be at least {}"),
    "less_than": ("lt", "must be less than {}"),
    "less_than_equal": ("le", "must be at most {}"),
}


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _key_text(key: object) -> str:
    text = str(key)
    safe = text.encode("ascii", "backslashreplace").decode("ascii")
    if safe != text or not text.isprintable() or len(text) > 80:
        text = safe[:80] + ("..." if len(safe) > 80 else "")
    return text


def _path(loc: Sequence[int | str]) -> str:
    return ".".join(_key_text(part) for part in loc)


def _model_at(loc: Sequence[int | str]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = BridgeConfig
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue  # a list index keeps the item model
        model = _CHILDREN.get(model, {}).get(part)
    return model


def _unknown_key_message(loc: Sequence[int | str]) -> str:
    parent = _model_at(loc[:-1])
    if parent is None:
        return "is not a known key"
    known = list(parent.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"is not a known key ({hint}known keys: {', '.join(known)})"


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    value = error.get("input")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return _unknown_key_message(error["loc"])
    if kind == "invalid_key":
        return "keys must be strings"
    if kind in _TYPE_MESSAGES:
        return f"{_TYPE_MESSAGES[kind]} (got {_kind(value)})"
    if kind == "finite_number":
        return "must be a finite number"
    if kind in _RANGE_MESSAGES:
        bound_key, template = _RANGE_MESSAGES[kind]
        return f"{template.format(ctx.get(bound_key))} (got {value!r})"
    if kind in ("string_too_short", "too_short"):
        minimum = ctx.get("min_length", 1)
        if not isinstance(value, str):
            return f"must have at least {minimum} items"
        return "must not be empty" if minimum == 1 else f"must be at least {minimum} characters"
    if kind in ("string_too_long", "too_long"):
        if isinstance(value, str):
            return f"must be at most {ctx.get('max_length')} characters"
        return f"must have at most {ctx.get('max_length')} items"
    if kind == "literal_error":
        got = repr(value) if isinstance(value, str) else _kind(value)
        return f"must be one of {ctx.get('expected')} (got {_key_text(got)})"
    return str(error["msg"])


def issues_from_validation(err: ValidationError) -> list[ConfigIssue]:
    """One issue per pydantic error, with a dotted path and a plain sentence."""
    issues: list[ConfigIssue] = []
    for error in err.errors(include_url=False):
        if error["type"] == "duplicate_device_id":
            continue  # check_devices reports each repeat at its own path
        issues.append(ConfigIssue(_path(error["loc"]), _message(error)))
    return issues


def _raw_devices(data: object) -> list[object]:
    if isinstance(data, dict):
        devices = data.get("devices")
        if isinstance(devices, list):
            return devices
    return []


def _duplicate_issues(device_ids: list[object]) -> list[ConfigIssue]:
    first_index: dict[str, int] = {}
    issues: list[ConfigIssue] = []
    for index, device_id in enumerate(device_ids):
        if not isinstance(device_id, str):
            continue
        if device_id in first_index:
            issues.append(
                ConfigIssue(
                    f"devices.{index}.device_id",
                    f"duplicate device_id {_key_text(repr(device_id))} "
                    f"(already used by devices.{first_index[device_id]})",
                )
            )
        else:
            first_index[device_id] = index
    return issues


def _parser_issues(index: int, device: DeviceConfig) -> list[ConfigIssue]:
    try:
        make_parser(device.parser_type, device.mqtt_topic, device.parser_options.to_mapping())
    except ConfigError as err:
        prefix = f"devices.{index}"
        return [
            ConfigIssue(f"{prefix}.{issue.path}" if issue.path else prefix, issue.message)
            for issue in err.issues
        ]
    return []


def check_valid_devices(devices: Sequence[DeviceConfig]) -> list[ConfigIssue]:
    """Duplicate ``device_id``s and parser fit of validated devices."""
    issues = _duplicate_issues([device.device_id for device in devices])
    for index, device in enumerate(devices):
        issues.extend(_parser_issues(index, device))
    return issues


def check_raw_devices(data: object, *, already_reported: list[ConfigIssue]) -> list[ConfigIssue]:
    """The same checks on a document that failed validation.

    Devices without a problem of their own are still checked, so one run
    lists every problem.
    """
    raw = _raw_devices(data)
    broken = {
        issue.path.split(".")[1] for issue in already_reported if issue.path.startswith("devices.")
    }
    issues = _duplicate_issues(
        [item.get("device_id") if isinstance(item, dict) else None for item in raw]
    )
    for index, item in enumerate(raw):
        if str(index) in broken:
            continue
        try:
            device = DeviceConfig.model_validate(item)
        except ValidationError:
            continue  # reported under its own path already
        issues.extend(_parser_issues(index, device))
    return issues
