"""``parse_config``: a config document in, a validated ``BridgeConfig`` or every problem out."""

from __future__ import annotations

from pydantic import ValidationError

from iot_bridge.config._issues import check_raw_devices, check_valid_devices, issues_from_validation
from iot_bridge.config.model import SHARED_PARTS, BridgeConfig, SharedParts
from iot_bridge.errors import ConfigError, ConfigIssue


def _device_index(issue: ConfigIssue) -> int:
    """Sort key keeping each device's issues together, in document order."""
    parts = issue.path.split(".", 2)
    if len(parts) > 1 and parts[0] == "devices" and parts[1].isdigit():
        return int(parts[1])
    return -1


def parse_config(data: object, *, source: str = "config") -> BridgeConfig:
    """Validate a config document; raise ``ConfigError`` listing every problem.

    ``source`` names the document in the error (a file name, ``POST /config``).
    Beyond the model's own rules, each device's parser is built once with
    ``iot_bridge.parsers.make_parser`` so that options that do not fit the
    parser are rejected here, with paths like ``devices.2.parser_options.channel``.
    """
    try:
        config = BridgeConfig.model_validate(data, context={SHARED_PARTS: SharedParts()})
    except ValidationError as err:
        issues = issues_from_validation(err)
        issues.extend(check_raw_devices(data, already_reported=issues))
        raise ConfigError(sorted(issues, key=_device_index), source) from None
    issues = sorted(check_valid_devices(config.devices), key=_device_index)
    if issues:
        raise ConfigError(issues, source)
    return config
