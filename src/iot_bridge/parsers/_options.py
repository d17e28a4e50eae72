"""Checks of parser options shared by several families (config time only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from iot_bridge.errors import ConfigIssue

CHANNELS_PATH: Final = "parser_options.channels"
MAX_CHANNEL: Final = 255


def list_option(
    options: Mapping[str, Any], key: str, issues: list[ConfigIssue], items: str
) -> list[Any] | tuple[Any, ...] | None:
    """``parser_options.<key>`` when it is a non-empty list, else None (an issue when set).

    ``items`` names what the list holds in the message ("channel indexes").
    """
    if key not in options:
        return None
    values = options[key]
    if not isinstance(values, list | tuple):
        issues.append(ConfigIssue(f"parser_options.{key}", f"must be a list of {items}"))
        return None
    if not values:
        issues.append(
            ConfigIssue(f"parser_options.{key}", f"must list at least one of its {items}")
        )
        return None
    return values


def channel_list(
    options: Mapping[str, Any],
    issues: list[ConfigIssue],
    *,
    maximum: int = MAX_CHANNEL,
    first: int | None = None,
    topic_names: str = "",
) -> tuple[int, ...] | None:
    """``parser_options.channels`` as a tuple, or None when absent or after adding issues.

    A list of distinct channel indexes from 0 to ``maximum``, at least one.
    ``first``: the channel ``mqtt_topic`` names (``topic_names`` says how), which
    must be listed first.
    """
    channels = list_option(options, "channels", issues, "channel indexes")
    if channels is None:
        return None
    before = len(issues)
    seen: set[int] = set()
    for position, channel in enumerate(channels):
        if type(channel) is not int or not 0 <= channel <= maximum:  # type() refuses booleans
            issues.append(
                ConfigIssue(
                    f"{CHANNELS_PATH}.{position}",
                    f"{channel!r} is not a channel index from 0 to {maximum}",
                )
            )
        elif channel in seen:
            issues.append(
                ConfigIssue(f"{CHANNELS_PATH}.{position}", f"channel {channel} is listed twice")
            )
        else:
            seen.add(channel)
    if len(issues) > before:
        return None
    if first is not None and channels[0] != first:
        issues.append(
            ConfigIssue(
                CHANNELS_PATH,
                f"must start with channel {first}, the one {topic_names} names "
                f"(the device's mqtt_topic is its first channel's data topic)",
            )
        )
        return None
    return tuple(channels)


def no_channels(options: Mapping[str, Any], issues: list[ConfigIssue], why: str) -> None:
    """Add an issue when ``parser_options.channels`` is set where there are no channels."""
    if "channels" in options:
        issues.append(ConfigIssue(CHANNELS_PATH, f"cannot be used here: {why}"))
