"""MQTT topic filter and identifier checks used by the config model.

Pure functions returning a problem sentence (or ``None``), so the model can
turn them into field errors and other layers can reuse them.
"""

from __future__ import annotations

import re

MAX_TOPIC_BYTES = 65_535

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


def topic_filter_problem(topic: str) -> str | None:
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
