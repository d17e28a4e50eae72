# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The bridge's checks of a pushed device and broker, restated for Odoo.

The bridge validates every ``POST /config`` (``iot_bridge.config.model`` and
the parser builders in ``iot_bridge.parsers``) and refuses the whole document
when one device is wrong. Odoo runs the same checks when a machine or a broker
is saved, so a mistake is refused in the form, next to the field, instead of
by the bridge at the next push. Every function returns a list of
``(path, message)`` problems (the path as the bridge names it, relative to
the device), empty when the value is accepted.
"""

import json
import math
import re
from urllib.parse import urlsplit

PARSER_TYPES = [
    ("shelly_pm", "Shelly Gen2+ status (status/pm1:0, switch:N, em1:N, em:0)"),
    ("shelly_rpc", "Shelly Gen2+ events/rpc"),
    ("shelly_gen1", "Shelly Gen1 (relay/N/power, emeter/N/power)"),
    ("tasmota", "Tasmota (tele/<topic>/SENSOR)"),
    ("zigbee2mqtt", "zigbee2mqtt"),
    ("generic_json", "Generic JSON"),
]

# parser_type -> the parser_options keys the bridge accepts for it
PARSER_OPTIONS = {
    "shelly_pm": frozenset({"channels"}),
    "shelly_rpc": frozenset({"component", "channels"}),
    "shelly_gen1": frozenset({"channels"}),
    "tasmota": frozenset({"channel", "channels"}),
    "zigbee2mqtt": frozenset({"power_paths", "energy_paths"}),
    "generic_json": frozenset(
        {"power_path", "power_paths", "energy_path", "energy_paths", "energy_unit"}
    ),
}
ALL_OPTIONS = frozenset().union(*PARSER_OPTIONS.values())

# field -> (lowest, lowest allowed itself, highest), as the bridge's SessionConfigModel
SESSION_RANGES = {
    "standby_threshold_w": (0.0, False, 100_000.0),
    "working_threshold_w": (0.0, False, 100_000.0),
    "start_debounce_s": (0.0, True, 3600.0),
    "stop_debounce_s": (0.0, True, 3600.0),
    "message_timeout_s": (1.0, True, 86_400.0),
    "heartbeat_interval_s": (10.0, True, 86_400.0),
}
SESSION_FIELDS = tuple(SESSION_RANGES)

MAX_TOPIC_BYTES = 65_535
MAX_CHANNEL = 255
MAX_CHANNELS = 64
MAX_PATHS = 32
MAX_PATH_CHARS = 200

_IDENTIFIER_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_COMPONENT_RE = re.compile(r"(pm1|switch|em1|em):(\d{1,3})")
_COMPONENTS_TEXT = "pm1:N, switch:N, em1:N or em:N"
_CHANNEL_KINDS = ("switch", "em1")
_GEN1_ENERGY = ("relay", "emeter")
_Z2M_NOT_STATE = frozenset({"availability", "set", "get", "#"})


def text_problem(value):
    """Why a text is unusable in a config (lone surrogates, control characters), or None."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains invalid Unicode (a lone surrogate code point)"
    if _CONTROL_RE.search(value):
        return "must not contain control characters (such as newlines or tabs)"
    return None


def identifier_problem(value):
    """Why ``value`` is not a valid device_id/client_id, or None."""
    if not isinstance(value, str) or _IDENTIFIER_RE.fullmatch(value) is None:
        return "must be 1 to 64 characters, each a letter, a digit, '_', '.', ':' or '-'"
    return None


def machine_name_problem(value):
    """Why ``value`` cannot be a machine_name (one line, 1 to 200 characters), or None."""
    if not value or not value.strip():
        return "must not be empty or blank"
    if len(value) > 200:
        return "must be at most 200 characters"
    return text_problem(value)


def topic_filter_problem(topic):
    """Why ``topic`` is not a valid device topic filter for the bridge, or None.

    MQTT 5 section 4.7 (``+`` a whole level, ``#`` the whole last level) plus
    what a configured device topic must not be: surrounding whitespace,
    control characters, a shared subscription.
    """
    if not topic:
        return "must not be empty"
    problem = text_problem(topic)
    if problem:
        return problem
    if len(topic.encode("utf-8")) > MAX_TOPIC_BYTES:
        return f"must be at most {MAX_TOPIC_BYTES} bytes of UTF-8"
    if topic != topic.strip():
        return "must not start or end with whitespace"
    if topic.startswith("$share/"):
        return "must not be a shared subscription ('$share/...'): use the device's own topic"
    levels = topic.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return "may use '#' only as the whole last level (like 'tele/plug/#')"
        if "+" in level and level != "+":
            return "may use '+' only as a whole level (like 'shellies/+/relay/0/power')"
    return None


def session_config_problems(values):
    """Problems of the six thresholds and timings in ``values`` (a mapping of floats)."""
    problems = []
    for name, (lowest, inclusive, highest) in SESSION_RANGES.items():
        value = values.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append((f"session_config.{name}", "must be a number"))
        elif not math.isfinite(value):
            problems.append((f"session_config.{name}", "must be a finite number"))
        elif value < lowest or (value == lowest and not inclusive) or value > highest:
            low = f"at least {lowest:g}" if inclusive else f"greater than {lowest:g}"
            problems.append((f"session_config.{name}", f"must be {low} and at most {highest:g}"))
    standby = values.get("standby_threshold_w")
    working = values.get("working_threshold_w")
    if isinstance(standby, int | float) and isinstance(working, int | float) and working < standby:
        problems.append(
            (
                "session_config.working_threshold_w",
                f"must be at least standby_threshold_w ({standby:g})",
            )
        )
    return problems


def options_from_text(text):
    """``parser_options`` JSON text as a dict, and the problems of reading it.

    Empty text is no options. Keys set to null count as absent, as the bridge does.
    """
    if not text or not text.strip():
        return {}, []
    try:
        options = json.loads(text)
    except ValueError as err:
        return {}, [("parser_options", f"is not valid JSON: {err}")]
    if options is None:
        return {}, []
    if not isinstance(options, dict):
        return {}, [("parser_options", 'must be a JSON object, like {"channels": [0, 1, 2]}')]
    return {key: value for key, value in options.items() if value is not None}, []


def parser_problems(parser_type, topic, options):
    """Problems of ``parser_options`` and of ``topic``'s layout for ``parser_type``.

    ``topic`` is assumed to be a valid filter (``topic_filter_problem``).
    """
    allowed = PARSER_OPTIONS.get(parser_type)
    if allowed is None:
        known = ", ".join(PARSER_OPTIONS)
        return [("parser_type", f"{parser_type!r} is not one of {known}")]
    problems = []
    for key in sorted(options):
        if key not in allowed:
            accepted = ", ".join(sorted(allowed))
            problems.append(
                (
                    f"parser_options.{key}",
                    f"is not an option of {parser_type} (accepted: {accepted})",
                )
            )
    known = {key: value for key, value in options.items() if key in allowed}
    _LAYOUTS[parser_type](topic, topic.split("/"), known, problems)
    return problems


def _topic_problem(topic, expected):
    return ("mqtt_topic", f"{topic!r} does not fit this parser_type: expected {expected}")


def _prefix(levels, tail):
    count = len(tail)
    if len(levels) <= count or tuple(levels[-count:]) != tail:
        return None
    return "/".join(levels[:-count]) or None


def _channels(options, problems, first=None, names=""):
    """Check ``parser_options.channels``; the list, or None when absent or wrong."""
    if "channels" not in options:
        return None
    path = "parser_options.channels"
    channels = options["channels"]
    if not isinstance(channels, list):
        problems.append((path, "must be a list of channel indexes"))
        return None
    if not channels:
        problems.append((path, "must list at least one of its channel indexes"))
        return None
    if len(channels) > MAX_CHANNELS:
        problems.append((path, f"must list at most {MAX_CHANNELS} channels"))
        return None
    before = len(problems)
    seen = set()
    for position, channel in enumerate(channels):
        if type(channel) is not int or not 0 <= channel <= MAX_CHANNEL:
            problems.append(
                (
                    f"{path}.{position}",
                    f"{channel!r} is not a channel index from 0 to {MAX_CHANNEL}",
                )
            )
        elif channel in seen:
            problems.append((f"{path}.{position}", f"channel {channel} is listed twice"))
        seen.add(channel)
    if len(problems) > before:
        return None
    if first is not None and channels[0] != first:
        problems.append(
            (
                path,
                f"must start with channel {first}, the one {names} names "
                "(the device's mqtt_topic is its first channel's data topic)",
            )
        )
        return None
    return channels


def _no_channels(options, problems, why):
    if "channels" in options:
        problems.append(("parser_options.channels", f"cannot be used here: {why}"))


def _no_channels_reason(kind):
    if kind == "em":
        return "em:N is one component for all three phases; total_act_power is already their sum"
    return f"{kind}:N has one channel; channels are listed for switch:N or em1:N"


def _dotted_path_problem(value):
    if not isinstance(value, str) or not value:
        return "must be a non-empty dotted path such as ENERGY.Power"
    if len(value) > MAX_PATH_CHARS:
        return f"must be at most {MAX_PATH_CHARS} characters"
    problem = text_problem(value)
    if problem:
        return problem
    if "" in value.split("."):
        return "must be a dotted path of non-empty keys (like 'ENERGY.Power')"
    return None


def _path_option(options, key, problems):
    problem = _dotted_path_problem(options[key])
    if problem:
        problems.append((f"parser_options.{key}", problem))


def _paths_option(options, key, problems):
    path = f"parser_options.{key}"
    values = options[key]
    if not isinstance(values, list):
        problems.append((path, "must be a list of dotted paths"))
        return
    if not values:
        problems.append((path, "must list at least one of its dotted paths"))
        return
    if len(values) > MAX_PATHS:
        problems.append((path, f"must list at most {MAX_PATHS} paths"))
        return
    for position, value in enumerate(values):
        problem = _dotted_path_problem(value)
        if problem:
            problems.append((f"{path}.{position}", problem))
        elif value in values[:position]:
            problems.append((f"{path}.{position}", f"{value!r} is listed twice"))


def _shelly_pm(topic, levels, options, problems):
    name = levels[-1]
    match = _COMPONENT_RE.fullmatch(name)
    if _prefix(levels, ("status", name)) is None or match is None:
        problems.append(_topic_problem(topic, f"<prefix>/status/<component> ({_COMPONENTS_TEXT})"))
        _no_channels(options, problems, "the mqtt_topic is not a Shelly status topic")
        return
    kind, index = match.group(1), int(match.group(2))
    if kind not in _CHANNEL_KINDS:
        _no_channels(options, problems, _no_channels_reason(kind))
        return
    _channels(options, problems, first=index, names=f"{name} in mqtt_topic")


def _shelly_rpc(topic, levels, options, problems):
    if _prefix(levels, ("events", "rpc")) is None:
        problems.append(_topic_problem(topic, "<prefix>/events/rpc"))
    first = None
    if "component" in options:
        chosen = options["component"]
        match = _COMPONENT_RE.fullmatch(chosen) if isinstance(chosen, str) else None
        if match is None:
            problems.append(
                (
                    "parser_options.component",
                    f"{chosen!r} is not a metering component: expected {_COMPONENTS_TEXT}",
                )
            )
            return
        kind, first = match.group(1), int(match.group(2))
        if kind not in _CHANNEL_KINDS and "channels" in options:
            _no_channels(options, problems, _no_channels_reason(kind))
            return
    _channels(options, problems, first=first, names="parser_options.component")


def _shelly_gen1(topic, levels, options, problems):
    fits = (
        len(levels) >= 4
        and levels[-1] == "power"
        and levels[-3] in _GEN1_ENERGY
        and levels[-2].isascii()
        and levels[-2].isdigit()
        and "/".join(levels[:-3]) != ""
    )
    if not fits:
        problems.append(
            _topic_problem(topic, "shellies/<id>/relay/N/power or shellies/<id>/emeter/N/power")
        )
        return
    names = f"{levels[-3]}/{levels[-2]} in mqtt_topic"
    _channels(options, problems, first=int(levels[-2]), names=names)


def _tasmota(topic, levels, options, problems):
    channel = options.get("channel")
    if channel is not None and not (type(channel) is int and 0 <= channel <= MAX_CHANNEL):
        problems.append(
            (
                "parser_options.channel",
                f"{channel!r} is not a channel index from 0 to {MAX_CHANNEL}",
            )
        )
    _channels(options, problems)
    if channel is not None and "channels" in options:
        problems.append(
            ("parser_options.channels", "cannot be used with parser_options.channel: set one")
        )
    if len(levels) < 2 or levels[-1] != "SENSOR":
        problems.append(
            _topic_problem(topic, "tele/<topic>/SENSOR or a custom FullTopic ending in SENSOR")
        )


def _zigbee2mqtt(topic, levels, options, problems):
    for key in ("power_paths", "energy_paths"):
        if key in options:
            _paths_option(options, key, problems)
    if len(levels) < 2 or not levels[-1] or levels[-1] in _Z2M_NOT_STATE or levels[1] == "bridge":
        problems.append(_topic_problem(topic, "<base>/<friendly_name> (the device state topic)"))


def _generic_json(topic, levels, options, problems):
    if "power_path" in options and "power_paths" in options:
        problems.append(("parser_options.power_paths", "set power_path or power_paths"))
    elif "power_paths" in options:
        _paths_option(options, "power_paths", problems)
    elif "power_path" in options:
        _path_option(options, "power_path", problems)
    else:
        problems.append(("parser_options.power_path", "is required for generic_json"))
    if "energy_path" in options and "energy_paths" in options:
        problems.append(("parser_options.energy_paths", "set energy_path or energy_paths"))
    elif "energy_paths" in options:
        _paths_option(options, "energy_paths", problems)
    elif "energy_path" in options:
        _path_option(options, "energy_path", problems)
    if "energy_unit" in options:
        if options["energy_unit"] not in ("wh", "kwh"):
            problems.append(
                ("parser_options.energy_unit", f"{options['energy_unit']!r} is not 'wh' or 'kwh'")
            )
        elif "energy_path" not in options and "energy_paths" not in options:
            problems.append(("parser_options.energy_unit", "needs parser_options.energy_path"))


_LAYOUTS = {
    "shelly_pm": _shelly_pm,
    "shelly_rpc": _shelly_rpc,
    "shelly_gen1": _shelly_gen1,
    "tasmota": _tasmota,
    "zigbee2mqtt": _zigbee2mqtt,
    "generic_json": _generic_json,
}


def device_problems(device):
    """Every problem of one device as pushed (the ``devices.N`` object of the document)."""
    problems = []
    problem = identifier_problem(device.get("device_id"))
    if problem:
        problems.append(("device_id", problem))
    problem = machine_name_problem(device.get("machine_name") or "")
    if problem:
        problems.append(("machine_name", problem))
    topic = device.get("mqtt_topic") or ""
    problem = topic_filter_problem(topic)
    if problem:
        problems.append(("mqtt_topic", f"{topic!r} is not a valid MQTT topic filter: {problem}"))
    options = device.get("parser_options") or {}
    if not problem:
        problems += parser_problems(device.get("parser_type"), topic, options)
    problems += session_config_problems(device.get("session_config") or {})
    return problems


def broker_host_problem(value):
    """Why ``value`` is not a host name or IP address the bridge connects to, or None."""
    if not value or not value.strip():
        return "must not be empty"
    if len(value) > 253:
        return "must be at most 253 characters"
    if "://" in value:
        return "must be a host name or IP address without a scheme (use TLS for TLS)"
    if any(char.isspace() or char in "/?#@" for char in value):
        return "must be a host name or IP address (no spaces, '/', '?', '#' or '@')"
    problem = text_problem(value)
    if problem:
        return problem
    if ":" not in value:  # IPv6 literals are not host names
        try:
            value.encode("idna")
        except UnicodeError:
            return "is not a valid host name (empty label, or a label over 63 characters)"
    return None


def broker_problems(section):
    """Every problem of the document's ``mqtt`` section (paths relative to it)."""
    problems = []
    problem = broker_host_problem(section.get("broker") or "")
    if problem:
        problems.append(("broker", problem))
    port = section.get("port")
    if not isinstance(port, int) or not 1 <= port <= 65_535:
        problems.append(("port", "must be a whole number from 1 to 65535"))
    keepalive = section.get("keepalive")
    if not isinstance(keepalive, int) or not 5 <= keepalive <= 3600:
        problems.append(("keepalive", "must be a whole number of seconds from 5 to 3600"))
    problem = identifier_problem(section.get("client_id"))
    if problem:
        problems.append(("client_id", problem))
    for key in ("username", "password"):
        value = section.get(key) or ""
        if len(value) > 1024:
            problems.append((key, "must be at most 1024 characters"))
        else:
            problem = text_problem(value) if key == "username" else None
            if problem:
                problems.append((key, problem))
    ca_file = section.get("ca_file")
    if ca_file is not None:
        problem = text_problem(ca_file)
        if not ca_file.strip() or len(ca_file) > 4096 or problem:
            problems.append(("ca_file", problem or "must be a path of 1 to 4096 characters"))
    return problems


def http_url_problem(value):
    """Why ``value`` is not an http(s) URL the bridge or Odoo can be reached at, or None."""
    if not value or any(char.isspace() for char in value):
        return "must be an http:// or https:// URL without spaces"
    try:
        parts = urlsplit(value)
        _port = parts.port  # reading the property validates the port
    except ValueError:
        return "must be an http:// or https:// URL with a valid host and port"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host (like http://iot-bridge:8080)"
    if parts.username is not None or parts.password is not None:
        return "must not contain credentials"
    if parts.query or parts.fragment:
        return "must not contain a query string or a fragment"
    return text_problem(value)
