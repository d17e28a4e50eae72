"""MQTT topic filter checks used when a parser is built (config time only)."""

from __future__ import annotations

from typing import Final

from iot_bridge.errors import ConfigIssue

TOPIC_PATH: Final = "mqtt_topic"
_MAX_TOPIC_BYTES: Final = 65535


def filter_levels(topic: object, issues: list[ConfigIssue]) -> list[str] | None:
    """Split a valid MQTT topic filter into its levels, or add an issue and return None.

    Valid: a non-empty string of at most 65535 UTF-8 bytes, no NUL character,
    ``+`` and ``#`` only as a whole level, ``#`` only as the last level.
    """
    if not isinstance(topic, str) or not topic:
        issues.append(ConfigIssue(TOPIC_PATH, "must be a non-empty MQTT topic"))
        return None
    problem = _filter_problem(topic)
    if problem:
        issues.append(
            ConfigIssue(TOPIC_PATH, f"{topic!r} is not a valid MQTT topic filter: {problem}")
        )
        return None
    return topic.split("/")


def _filter_problem(topic: str) -> str:
    if "\x00" in topic:
        return "it contains a NUL character"
    try:
        size = len(topic.encode("utf-8"))
    except UnicodeEncodeError:
        return "it is not valid UTF-8"
    if size > _MAX_TOPIC_BYTES:
        return "it is longer than 65535 bytes"
    levels = topic.split("/")
    for position, level in enumerate(levels):
        if level in ("+", "#"):
            if level == "#" and position != len(levels) - 1:
                return "'#' must be the last level"
        elif "+" in level or "#" in level:
            return "'+' and '#' must fill a whole level"
    return ""


def has_wildcard(levels: list[str]) -> bool:
    """Whether a filter's levels contain ``+`` or ``#``."""
    return any(level in ("+", "#") for level in levels)


def topic_issue(topic: str, expected: str) -> ConfigIssue:
    """The issue for a valid filter that does not fit the parser's topic layout."""
    return ConfigIssue(TOPIC_PATH, f"{topic!r} does not fit this parser_type: expected {expected}")
