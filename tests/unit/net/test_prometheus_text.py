"""/metrics text: the bridge's own writer against prometheus_client's, on the same operations.

prometheus_client is a test dependency only: it is the reference for the
text format the bridge wrote before it dropped the library.
"""

from __future__ import annotations

import math

import prometheus_client
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iot_bridge.net.prometheus import Counter, Gauge, go_float
from iot_bridge.service.views.metrics import Metrics


def _reference(ours: Metrics) -> tuple[prometheus_client.CollectorRegistry, dict[str, object]]:
    registry = prometheus_client.CollectorRegistry(auto_describe=True)
    twins: dict[str, object] = {}
    for metric in ours.exposed:
        if isinstance(metric, Counter):
            twins[metric.name] = prometheus_client.Counter(
                metric.name, metric.documentation, list(metric.labelnames), registry=registry
            )
        else:
            twins[metric.name] = prometheus_client.Gauge(
                metric.name, metric.documentation, registry=registry
            )
    return registry, twins


def _same_operations(ours: Metrics, twins: dict[str, object]) -> None:
    """Mirror our children (values and creation times) onto the reference metrics."""
    for metric in ours.exposed:
        twin = twins[metric.name]
        if isinstance(metric, Counter):
            assert isinstance(twin, prometheus_client.Counter)
            for key, child in metric._children.items():
                theirs = twin.labels(**dict(zip(metric.labelnames, key, strict=True)))
                theirs.inc(child.value)
                theirs._created = child.created
        else:
            assert isinstance(metric, Gauge)
            assert isinstance(twin, prometheus_client.Gauge)
            twin.set(metric.value)


def _compare(ours: Metrics) -> None:
    registry, twins = _reference(ours)
    _same_operations(ours, twins)
    assert ours.exposition().decode() == prometheus_client.generate_latest(registry).decode()


def test_a_fresh_bridge_writes_what_prometheus_client_wrote() -> None:
    _compare(Metrics())


label_values = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=0, max_size=12
) | st.sampled_from(['a"b', "back\\slash", "new\nline", "shelly_pm", "é"])
amounts = st.floats(min_value=0, max_value=1e22, allow_nan=False) | st.integers(0, 10**9)
gauge_values = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**12), 10**12)


_GAUGES = [m for m in Metrics().exposed if isinstance(m, Gauge)]


@settings(max_examples=150, deadline=None)
@given(
    received=st.lists(st.tuples(label_values, amounts), max_size=5),
    rejected=st.lists(st.tuples(label_values, label_values, amounts), max_size=5),
    gauges=st.lists(gauge_values, min_size=len(_GAUGES), max_size=len(_GAUGES)),
)
def test_any_counts_and_gauges_are_written_the_same(
    received: list[tuple[str, float]],
    rejected: list[tuple[str, str, float]],
    gauges: list[float],
) -> None:
    ours = Metrics()
    for parser, amount in received:
        ours.messages_received.labels(parser=parser).inc(amount)
    for parser, reason, amount in rejected:
        ours.messages_rejected.labels(parser=parser, reason=reason).inc(amount)
    ours.deliveries.labels(result="ok").inc()
    plain = [m for m in ours.exposed if isinstance(m, Gauge)]
    for gauge, value in zip(plain, gauges, strict=True):
        gauge.set(value)
    _compare(ours)


@pytest.mark.parametrize(
    "value",
    [0.0, -0.0, 1.0, 0.5, 1e-9, 123456.0, 1234567.0, 1.796214769170305e09, 1e22, -5e10, math.inf],
)
def test_floats_as_go_writes_them(value: float) -> None:
    assert go_float(value) == prometheus_client.utils.floatToGoString(value)


def test_a_counter_refuses_to_go_down() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        Metrics().deliveries.labels(result="ok").inc(-1)
