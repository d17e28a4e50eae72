"""Structured logging: JSON lines by default, ``LOG_FORMAT=text`` for people.

Every log line is an event name plus fields: ``log.info("state_transition",
device_id=..., from_state=..., to_state=...)``. Secrets never go into fields;
``redact`` is a last line of defence for keys that look secret.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any, TextIO

import orjson

from iot_bridge.errors import ConfigError, ConfigIssue

_HIDDEN_FROM_STRUCTLOG = ("rich", "greenlet")


def _import_structlog_without_rich() -> None:
    """Import structlog without letting it import rich (and pygments) or greenlet.

    ``structlog.dev`` imports rich whenever it is installed (it is: the demo
    draws with it), only for tracebacks drawn with colours, which the bridge
    never uses: ``format_exc_info`` turns exceptions into text first. That
    import was a sixth of an idle bridge's memory. ``structlog.threadlocal``
    imports greenlet when installed (playwright brings it), for greenlet
    servers; the bridge runs on asyncio. With both hidden while structlog
    loads, structlog uses its plain traceback formatter and ``threading.local``;
    both stay importable afterwards (the demo imports rich itself).
    """
    if "structlog" in sys.modules:
        return
    hidden = [name for name in _HIDDEN_FROM_STRUCTLOG if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import <name>` fail
    try:
        import structlog  # noqa: F401, PLC0415
    finally:
        for name in hidden:
            del sys.modules[name]


_import_structlog_without_rich()

import structlog  # noqa: E402


def task_stack(task: asyncio.Task[Any], limit: int = 12) -> list[str]:
    """Where ``task`` waits: ``file:line function`` of its await chain, outermost first."""
    return [
        f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}"
        for frame in task.get_stack(limit=limit)
    ]


_SECRET_KEYS = ("password", "api_key", "token", "authorization", "secret")


def _redact(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if any(marker in key.lower() for marker in _SECRET_KEYS) and event_dict[key]:
            event_dict[key] = "***"
    return event_dict


def _fallback(value: Any) -> Any:
    """What JSON cannot hold: its ``__structlog__()`` (as structlog does), else ``repr``."""
    to_log = getattr(value, "__structlog__", None)
    return to_log() if callable(to_log) else repr(value)


def _dumps(event_dict: Any, **_: Any) -> str:
    """One log line's JSON: orjson (a third of the stdlib encoder's 51 µs a line here)."""
    try:
        return orjson.dumps(event_dict, default=_fallback, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # what orjson refuses (an int past 64 bits): the stdlib encoder takes it
        return json.dumps(event_dict, default=_fallback)


class _StderrProxy:
    """Writes to whatever ``sys.stderr`` is at the moment (test runners swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(
    *, level: str = "INFO", fmt: str = "json", file: str | None = None, stream: TextIO | None = None
) -> None:
    """Configure structlog and the standard library root logger once per process.

    Raises ``ConfigError`` when ``file`` cannot be opened for appending.
    """
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        numeric_level = logging.INFO
    output: Any = stream or _StderrProxy()
    if file:
        try:
            output = open(file, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - lives as long as the process
        except OSError as err:
            raise ConfigError(
                [ConfigIssue("LOG_FILE", f"cannot open {file}: {err.strerror or err}")],
                source="environment",
            ) from err
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "text"
        else structlog.processors.JSONRenderer(serializer=_dumps)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(output),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(numeric_level, logging.WARNING), stream=output, force=True)


def get_logger(name: str) -> Any:
    """A structlog logger bound to ``logger_name=name``."""
    return structlog.get_logger(logger_name=name)


class RateLimiter:
    """Allows one log line per key per ``interval_s``; counts what it suppressed.

    Keeps a bad device from flooding the log. Time is passed in.
    """

    def __init__(self, interval_s: float = 60.0, max_keys: int = 10_000) -> None:
        self._interval_s = interval_s
        self._max_keys = max_keys
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str, now: float | None = None) -> tuple[bool, int]:
        """Return (allowed, suppressed_since_last_allowed)."""
        now = time.monotonic() if now is None else now
        last = self._last.get(key)
        if last is not None and now - last < self._interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False, 0
        if len(self._last) >= self._max_keys:
            self._last.clear()
        self._last[key] = now
        return True, self._suppressed.pop(key, 0)


class FloodLog:
    """Log lines of one event that a client can repeat at will (refused connections, bad
    requests): at most ``burst`` lines per ``interval_s``, then one line at the end of the
    interval with the count of the rest.

    Every line has ``count``: 1 for a line of its own, the number it stands for on a
    count line (which carries the fields of the last one it counts). ``record`` returns
    when ``flush`` is due the first time it holds a line back: the caller schedules
    it. Time is passed in.
    """

    def __init__(
        self,
        logger: Any,
        event: str,
        *,
        interval_s: float,
        burst: int = 1,
        level: str = "warning",
    ) -> None:
        self._write = getattr(logger, level)
        self._event = event
        self._interval_s = interval_s
        self._burst = burst
        self._left = 0  # lines the current interval may still write
        self._interval_end = float("-inf")
        self._held = 0
        self._held_fields: dict[str, Any] = {}

    @property
    def held(self) -> int:
        """Lines counted and not written yet (the next ``flush`` writes their count)."""
        return self._held

    def record(self, now: float, **fields: Any) -> float | None:
        """Log one occurrence, or count it; returns when ``flush`` is due, if it must be
        scheduled now."""
        if now >= self._interval_end and not self._held:
            self._interval_end = now + self._interval_s
            self._left = self._burst
        if self._left > 0:
            self._left -= 1
            self._write(self._event, count=1, **fields)
            return None
        self._held += 1
        self._held_fields = fields
        return self._interval_end if self._held == 1 else None

    def flush(self, now: float) -> None:
        """Write the count line of what was held back, if anything; a new interval starts
        without a budget, so a flood that goes on gives one line per interval."""
        if not self._held:
            return
        self._write(self._event, count=self._held, **self._held_fields)
        self._held = 0
        self._interval_end = now + self._interval_s
        self._left = 0
