"""The Prometheus text exposition format (0.0.4), as ``prometheus_client`` writes it.

Counters with labels (and their ``_created`` series) and gauges without, in a
few lines here instead of the library: ``prometheus_client`` cost an idle
bridge 1.4 MiB for two metric kinds. ``tests/unit/net/test_prometheus_text.py``
compares this output with the library's, byte for byte. Pure: no I/O.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator


def go_float(value: float) -> str:
    """A sample value as Prometheus (and ``prometheus_client``) writes it."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(float(value))
    dot = text.find(".")
    if value > 0 and dot > 6:  # Go switches to exponents sooner than Python
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def _escape(text: str) -> str:
    """HELP text escaping: backslash and newline."""
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _label_value(text: str) -> str:
    """Label value escaping: backslash, newline and double quote."""
    return _escape(text).replace('"', r"\"")


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    pairs = sorted(zip(names, values, strict=True))
    inner = ",".join(f'{name}="{_label_value(value)}"' for name, value in pairs)
    return f"{{{inner}}}" if inner else ""


class _CounterChild:
    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.value += amount


class Counter:
    """A counter with labels: ``counter.labels(parser="x").inc(n)``."""

    def __init__(self, name: str, documentation: str, labelnames: list[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], _CounterChild] = {}

    def labels(self, **labels: object) -> _CounterChild:
        """The child for these label values (created at 0 on first use)."""
        if sorted(labels) != sorted(self.labelnames):
            raise ValueError(f"{self.name}: labels must be {self.labelnames}")
        key = tuple(str(labels[name]) for name in self.labelnames)
        child = self._children.get(key)
        if child is None:
            child = self._children.setdefault(key, _CounterChild())
        return child

    def lines(self) -> Iterator[str]:
        doc = _escape(self.documentation)
        children = tuple(self._children.items())  # the loop may add children meanwhile
        yield f"# HELP {self.name}_total {doc}\n# TYPE {self.name}_total counter\n"
        for key, child in children:
            yield f"{self.name}_total{_labels(self.labelnames, key)} {go_float(child.value)}\n"
        if children:
            yield f"# HELP {self.name}_created {doc}\n# TYPE {self.name}_created gauge\n"
            for key, child in children:
                labels = _labels(self.labelnames, key)
                yield f"{self.name}_created{labels} {go_float(child.created)}\n"


class Gauge:
    """A gauge without labels: ``gauge.set(v)``."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        self.value = 0.0

    def set(self, value: float) -> None:
        """Set the gauge to ``value``."""
        self.value = float(value)

    def lines(self) -> Iterator[str]:
        yield f"# HELP {self.name} {_escape(self.documentation)}\n# TYPE {self.name} gauge\n"
        yield f"{self.name} {go_float(self.value)}\n"
