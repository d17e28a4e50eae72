"""MQTT topic names and filters: validation and matching (MQTT 5 section 4.7)."""

from __future__ import annotations

_MAX_TOPIC_BYTES = 65_535


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
