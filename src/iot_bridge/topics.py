"""MQTT topic names and filters, in one place: validation and matching (MQTT 5 section 4.7).

Two levels of validation: ``topic_name_problem``/``topic_filter_problem`` say
what the protocol refuses (the MQTT client and the demo broker ask them);
``config_topic_filter_problem`` adds what a configured device topic must not be
(whitespace, control characters, shared subscriptions), and
``config_filter_levels`` is its form for the parsers, which derive each
device's sibling topics (energy, availability) from the levels. Identifier
checks for ``device_id``/``client_id`` live here too, as they share the text
rules. Pure functions returning a problem sentence (or ``None``).
"""

from __future__ import annotations

import re

from iot_bridge.errors import ConfigIssue

MAX_TOPIC_BYTES = 65_535
_MAX_TOPIC_BYTES = MAX_TOPIC_BYTES
CONFIG_TOPIC_PATH = "mqtt_topic"


def _common_problem(text: object, kind: str) -> str | None:
    if not isinstance(text, str):
        return f"a {kind} must be a string"
    if not text:
        return f"a {kind} must not be empty"
    if "\x00" in text:
        return f"a {kind} must not contain a NUL character"
    if len(text.encode("utf-8", errors="surrogatepass")) > _MAX_TOPIC_BYTES:
        return f"a {kind} must be at most {_MAX_TOPIC_BYTES} bytes"
    return None


def topic_name_problem(topic: object) -> str | None:
    """Why ``topic`` cannot be published to, or None when it can."""
    problem = _common_problem(topic, "topic name")
    if problem:
        return problem
    assert isinstance(topic, str)
    if "+" in topic or "#" in topic:
        return f"topic name {topic!r} must not contain the wildcards '+' or '#'"
    return None


def topic_filter_problem(topic_filter: object) -> str | None:
    """Why ``topic_filter`` cannot be subscribed to, or None when it can."""
    problem = _common_problem(topic_filter, "topic filter")
    if problem:
        return problem
    assert isinstance(topic_filter, str)
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return f"topic filter {topic_filter!r}: '#' must be a whole level and the last one"
        if "+" in level and level != "+":
            return f"topic filter {topic_filter!r}: '+' must be a whole level"
    return None


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True when ``topic`` (a name) matches ``topic_filter`` (which may hold wildcards).

    Topics starting with ``$`` are not matched by a leading wildcard, as brokers do.
    """
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)


# -- configured device topics and identifiers (config time only) ---------------------

_DEVICE_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# C0 and C1 controls and DEL: mosquitto rejects them in topics, and in names
# they are always a copy-paste accident.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def unicode_problem(value: str) -> str | None:
    """Why ``value`` cannot be encoded as UTF-8 (a lone surrogate), or ``None``."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains invalid Unicode (a lone surrogate code point)"
    return None


def control_character_problem(value: str) -> str | None:
    """Why ``value`` is unusable because of control characters, or ``None``."""
    if "\x00" in value:
        return "must not contain a NUL character"
    if _CONTROL_RE.search(value):
        return "must not contain control characters (such as newlines or tabs)"
    return None


def identifier_problem(value: str) -> str | None:
    """Why ``value`` is not a valid ``device_id``/``client_id``, or ``None``."""
    if _DEVICE_ID_RE.fullmatch(value) is None:
        return "must be 1 to 64 characters, each a letter, a digit, '_', '.', ':' or '-'"
    return None


def config_topic_filter_problem(topic: str) -> str | None:
    """Why ``topic`` is not a valid MQTT topic filter, or ``None`` when it is.

    Follows MQTT 5 section 4.7: non-empty, at most 65535 bytes of UTF-8, no
    NUL, ``+`` only as a whole level, ``#`` only as the whole last level.
    Shared subscriptions (``$share/<group>/...``) are refused: their messages
    arrive on the real topic, which the bridge could not route back to the
    device. Other ``$`` topics (broker topics) are accepted. Leading or
    trailing whitespace and control characters
    are rejected: a device never publishes on such a topic, so they can only
    be typos that would leave the device silently unheard.
    """
    if not topic:
        return "must not be empty"
    problem = unicode_problem(topic) or control_character_problem(topic)
    if problem:
        return problem
    if len(topic.encode("utf-8")) > MAX_TOPIC_BYTES:
        return f"must be at most {MAX_TOPIC_BYTES} bytes of UTF-8"
    if topic != topic.strip():
        return "must not start or end with whitespace"
    if topic.startswith("$share/"):
        return "must not be a shared subscription ('$share/...'): use the device's own topic"
    levels = topic.split("/")
    last = len(levels) - 1
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != last):
            return "may use '#' only as the whole last level (like 'tele/plug/#')"
        if "+" in level and level != "+":
            return "may use '+' only as a whole level (like 'shellies/+/relay/0/power')"
    return None


def config_filter_levels(topic: object, issues: list[ConfigIssue]) -> list[str] | None:
    """Split a valid configured topic filter into its levels, or add an issue and return None."""
    if not isinstance(topic, str) or not topic:
        issues.append(ConfigIssue(CONFIG_TOPIC_PATH, "must be a non-empty MQTT topic"))
        return None
    problem = config_topic_filter_problem(topic)
    if problem:
        issues.append(
            ConfigIssue(CONFIG_TOPIC_PATH, f"{topic!r} is not a valid MQTT topic filter: {problem}")
        )
        return None
    return topic.split("/")


def topic_issue(topic: str, expected: str) -> ConfigIssue:
    """The issue for a valid filter that does not fit the parser's topic layout."""
    return ConfigIssue(
        CONFIG_TOPIC_PATH, f"{topic!r} does not fit this parser_type: expected {expected}"
    )
