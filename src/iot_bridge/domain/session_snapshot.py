"""Strict reading of detector snapshots: every bad field is a ValueError naming it."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["SnapshotReader"]

_E = TypeVar("_E", bound=enum.Enum)


class SnapshotReader:
    """Typed getters over one mapping of a snapshot; ``path`` names it in errors."""

    __slots__ = ("_data", "_path")

    def __init__(self, data: Any, path: str) -> None:
        """Wrap ``data``; ValueError if it is not a mapping with string keys."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{path}: expected an object, got {type(data).__name__}")
        self._data: Mapping[str, Any] = data
        self._path = path

    def _get(self, key: str) -> Any:
        try:
            return self._data[key]
        except KeyError:
            raise ValueError(f"{self._path}.{key}: missing") from None

    def _fail(self, key: str, expected: str, value: Any) -> ValueError:
        return ValueError(f"{self._path}.{key}: expected {expected}, got {value!r}")

    def check(self, condition: bool, message: str) -> None:
        """Raise ValueError with ``message`` unless ``condition`` holds."""
        if not condition:
            raise ValueError(f"{self._path}: {message}")

    def number(self, key: str) -> float:
        """A finite int or float (never a bool), as float."""
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(key, "a number", value)
        result = float(value)
        if not math.isfinite(result):
            raise self._fail(key, "a finite number", value)
        return result

    def optional_number(self, key: str) -> float | None:
        """A finite number or None."""
        return None if self._get(key) is None else self.number(key)

    def integer(self, key: str) -> int:
        """An int (never a bool)."""
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, "an integer", value)
        return value

    def boolean(self, key: str) -> bool:
        """A bool."""
        value = self._get(key)
        if not isinstance(value, bool):
            raise self._fail(key, "true or false", value)
        return value

    def optional_bool(self, key: str) -> bool | None:
        """A bool or None."""
        return None if self._get(key) is None else self.boolean(key)

    def string(self, key: str) -> str:
        """A str."""
        value = self._get(key)
        if not isinstance(value, str):
            raise self._fail(key, "a string", value)
        return value

    def optional_string(self, key: str) -> str | None:
        """A str or None."""
        return None if self._get(key) is None else self.string(key)

    def choice(self, key: str, enum_type: type[_E]) -> _E:
        """One of the values of ``enum_type``."""
        value = self._get(key)
        for member in enum_type:
            if member.value == value:
                return member
        raise self._fail(key, f"one of {[m.value for m in enum_type]}", value)

    def optional_mapping(self, key: str) -> SnapshotReader | None:
        """A nested object (as a reader) or None."""
        value = self._get(key)
        return None if value is None else SnapshotReader(value, f"{self._path}.{key}")
