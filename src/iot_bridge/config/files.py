"""Reading config files (YAML or JSON) into a validated ``BridgeConfig``.

Every problem becomes a ``ConfigError`` naming the file: missing, unreadable,
not UTF-8, empty, a syntax error (with its line), a duplicate key, or an
invalid document.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from iot_bridge.config.model import BridgeConfig
from iot_bridge.config.parse import parse_config
from iot_bridge.errors import ConfigError, ConfigIssue

MAX_FILE_BYTES = 16 * 1024 * 1024
# The issue path of problems with the file as a whole (missing, empty, not UTF-8).
FILE = "file"


def _fail(path: Path, where: str, message: str) -> ConfigError:
    return ConfigError([ConfigIssue(where, message)], source=str(path))


def _read_text(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise _fail(path, FILE, "does not exist") from None
    except IsADirectoryError:
        raise _fail(path, FILE, "is a directory, not a file") from None
    except OSError as err:
        raise _fail(path, FILE, f"cannot be read ({err.strerror or err})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise _fail(path, FILE, f"is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise _fail(path, FILE, f"is not UTF-8 text (invalid byte at offset {err.start})") from None


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key[:80]!r}")
        result[key] = value
    return result


def _load_json(path: Path, text: str) -> object:
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except json.JSONDecodeError as err:
        raise _fail(
            path, f"line {err.lineno}", f"invalid JSON: {err.msg} (column {err.colno})"
        ) from None
    except ValueError as err:
        raise _fail(path, FILE, f"invalid JSON: {err}") from None


def _load_yaml(path: Path, text: str) -> object:
    # PyYAML (about 1 MiB) only when a YAML file is read: pushes and JSON files never need it.
    import yaml  # noqa: PLC0415

    from iot_bridge.config._yaml import StrictLoader  # noqa: PLC0415

    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        # Only the problem and its place: the offending line could hold a secret.
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else FILE
        problem = err.problem or err.context or "syntax error"
        raise _fail(path, where, f"invalid YAML: {problem}") from None
    except yaml.reader.ReaderError as err:
        raise _fail(
            path,
            FILE,
            f"invalid YAML: character {err.character!r} not allowed (offset {err.position})",
        ) from None
    except yaml.YAMLError as err:
        raise _fail(path, FILE, f"invalid YAML: {err}") from None


def _load_document(path: Path, text: str) -> object:
    if path.suffix.lower() == ".json":
        return _load_json(path, text)
    if text.lstrip().startswith("{"):
        # JSON is YAML too, and the json module reads it 50 times faster than
        # PyYAML (the persisted file is written as JSON). A YAML flow mapping
        # such as `{mqtt: {port: 1883}}` is not JSON and falls through.
        try:
            return _load_json(path, text)
        except ConfigError as json_error:
            try:
                return _load_yaml(path, text)
            except ConfigError:
                raise json_error from None
    return _load_yaml(path, text)


def load_config_file(path: Path) -> BridgeConfig:
    """Read and validate a YAML or JSON config file (JSON by ``.json`` or a leading ``{``).

    JSON syntax is also valid YAML, so a ``.yaml`` file may hold either.

    Raises ``ConfigError`` whose ``source`` is the file's path and whose
    issues carry the document path (or ``line N, column M`` for syntax).
    """
    text = _read_text(path)
    try:
        data = _load_document(path, text)
    except RecursionError:
        raise _fail(path, FILE, "is nested too deeply") from None
    if data is None:
        raise _fail(path, FILE, "is empty (no config document in it)")
    return parse_config(data, source=str(path))
