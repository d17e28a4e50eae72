"""The MQTT client's pieces that need no broker: backoff, topics, settings, input checks."""

from __future__ import annotations

import random
from typing import Any

import pytest

from iot_bridge.errors import ConfigError
from iot_bridge.net.mqtt import (
    Backoff,
    MqttClient,
    MqttSettings,
    WillMessage,
    topic_filter_problem,
    topic_matches,
    topic_name_problem,
)

# --- backoff -------------------------------------------------------------------------


def test_backoff_starts_at_half_a_second_and_doubles_within_jitter() -> None:
    """Delay n lies in [nominal/2, nominal], nominal = 0.5 * 2**(n+1): the first in [0.5, 1] s."""
    backoff = Backoff(rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(6)]
    for attempt, delay in enumerate(delays):
        nominal = min(30.0, 0.5 * 2 ** (attempt + 1))
        assert max(0.5, nominal / 2) <= delay <= nominal
    assert backoff.attempts == 6


def test_the_first_retry_is_jittered_too() -> None:
    """Bridges that lost the broker together do not all come back at +0.5 s."""
    firsts = {Backoff(rng=random.Random(seed)).next_delay() for seed in range(50)}
    assert len(firsts) > 40
    assert all(0.5 <= delay <= 1.0 for delay in firsts)


def test_backoff_is_capped_at_30_seconds_even_after_a_very_long_outage() -> None:
    """However many attempts, no delay exceeds max_s, and the cap is really reached."""
    backoff = Backoff(rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(5000)]
    assert max(delays) <= 30.0
    assert all(15.0 <= delay <= 30.0 for delay in delays[10:])
    assert backoff.nominal_s(10**9) == 30.0


def test_backoff_reset_starts_over() -> None:
    """After a successful connect the next delay is the initial one again."""
    backoff = Backoff(rng=random.Random(3))
    for _ in range(8):
        backoff.next_delay()
    backoff.reset()
    assert backoff.attempts == 0
    assert 0.5 <= backoff.next_delay() <= 1.0


def test_backoff_jitter_differs_between_clients_and_repeats_with_a_seed() -> None:
    """Two bridges do not reconnect in lockstep; a seeded rng is reproducible."""

    def run(seed: int) -> list[float]:
        backoff = Backoff(rng=random.Random(seed))
        return [backoff.next_delay() for _ in range(8)]

    assert run(1) == run(1)
    assert run(1) != run(2)


@pytest.mark.parametrize(
    "kwargs", [{"initial_s": 0}, {"initial_s": 5, "max_s": 1}, {"multiplier": 0.5}]
)
def test_backoff_rejects_bad_parameters(kwargs: dict[str, Any]) -> None:
    """Nonsense bounds raise ValueError at construction."""
    with pytest.raises(ValueError, match="backoff"):
        Backoff(**kwargs)


def test_client_uses_the_given_rng_for_its_backoff() -> None:
    """MqttClient(rng=...) seeds the default backoff."""
    client = MqttClient(MqttSettings(), rng=random.Random(5))
    assert client._backoff.next_delay() == Backoff(rng=random.Random(5)).next_delay()


# --- topics ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "topic_filter", ["a", "a/b", "+", "#", "a/+/c", "a/#", "+/+/#", "/", "$SYS/#", "a b/c"]
)
def test_valid_topic_filters(topic_filter: str) -> None:
    """Wildcards as whole levels ('#' last) are accepted."""
    assert topic_filter_problem(topic_filter) is None


@pytest.mark.parametrize(
    ("topic_filter", "reason"),
    [
        ("", "empty"),
        ("a/#/b", "'#'"),
        ("a#", "'#'"),
        ("a/b+", "'+'"),
        ("a/\x00", "NUL"),
        ("x" * 70000, "bytes"),
        (None, "string"),
    ],
)
def test_invalid_topic_filters_say_why(topic_filter: Any, reason: str) -> None:
    """Each malformed filter gets a reason naming the rule it breaks."""
    problem = topic_filter_problem(topic_filter)
    assert problem is not None
    assert reason in problem


@pytest.mark.parametrize("topic", ["a/+", "#", "", "a/\x00"])
def test_invalid_topic_names(topic: str) -> None:
    """Publishing needs a name without wildcards."""
    assert topic_name_problem(topic) is not None


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "x/y", True),
        ("+/+", "/x", True),
        ("+", "$SYS", False),
        ("#", "$SYS/broker", False),
        ("$SYS/#", "$SYS/broker", True),
        ("shelly/+/status/pm1:0", "shelly/abc/status/pm1:0", True),
    ],
)
def test_topic_matches(topic_filter: str, topic: str, expected: bool) -> None:
    """Matching follows MQTT 5 section 4.7, '$' topics excluded from leading wildcards."""
    assert topic_matches(topic_filter, topic) is expected


# --- settings ------------------------------------------------------------------------------


def test_settings_defaults_are_the_bridge_contract() -> None:
    """Persistent session: clean_start false, one hour expiry, stable client id."""
    defaults = MqttSettings()
    assert (defaults.client_id, defaults.clean_start, defaults.session_expiry_s) == (
        "iot_bridge",
        False,
        3600,
    )
    assert (defaults.keepalive_s, defaults.receive_maximum, defaults.broker) == (
        60,
        1000,
        "localhost:1883",
    )


def test_settings_repr_never_shows_the_password() -> None:
    """repr/str of the settings omit the password."""
    settings_ = MqttSettings(username="u", password="hunter2-secret")
    assert "hunter2-secret" not in repr(settings_)
    assert "hunter2-secret" not in str(settings_)
    assert "username='u'" in repr(settings_)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("host", ""),
        ("host", "bad host"),
        ("port", 0),
        ("port", 70000),
        ("port", "1883"),
        ("port", True),
        ("keepalive_s", -1),
        ("session_expiry_s", 2**32),
        ("receive_maximum", 0),
        ("client_id", ""),
        ("use_tls", "yes"),
        ("ca_file", ""),
        ("username", 5),
        ("will", "offline"),
    ],
)
def test_settings_reject_bad_values_naming_the_field(field: str, value: Any) -> None:
    """Every invalid field raises ConfigError with its name as the issue path."""
    with pytest.raises(ConfigError) as caught:
        MqttSettings(**{field: value})
    assert [issue.path for issue in caught.value.issues] == [field]


def test_settings_report_every_problem_at_once() -> None:
    """Several bad fields give several issues, not just the first."""
    with pytest.raises(ConfigError) as caught:
        MqttSettings(port=0, keepalive_s=-5, client_id="")
    assert {issue.path for issue in caught.value.issues} == {"port", "keepalive_s", "client_id"}


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"topic": "dev/+/status"}, "will.topic"),
        ({"topic": "dev/status", "payload": "offline"}, "will.payload"),
        ({"topic": "dev/status", "qos": 3}, "will.qos"),
    ],
)
def test_will_rejects_bad_values(kwargs: dict[str, Any], path: str) -> None:
    """A will with a wildcard topic, a str payload or QoS 3 is refused."""
    kwargs.setdefault("payload", b"offline")
    with pytest.raises(ConfigError) as caught:
        WillMessage(**kwargs)
    assert path in [issue.path for issue in caught.value.issues]


async def test_invalid_subscriptions_raise_and_change_nothing() -> None:
    """set_subscriptions with a bad filter raises ConfigError; the wanted set stays."""
    client = MqttClient(MqttSettings(), subscriptions=["dev/a"])
    with pytest.raises(ConfigError, match="'#'"):
        await client.set_subscriptions(["dev/b", "dev/#/x"])
    with pytest.raises(ConfigError, match="not one string"):
        await client.set_subscriptions("dev/b")
    assert client.subscriptions == {"dev/a"}
    with pytest.raises(ConfigError):
        MqttClient(MqttSettings(), subscriptions=["a+"])


async def test_receive_batch_and_max_queue_reject_nonsense() -> None:
    """max_messages and max_queue must be at least 1."""
    with pytest.raises(ValueError, match="max_queue"):
        MqttClient(MqttSettings(), max_queue=0)
    with pytest.raises(ValueError, match="max_messages"):
        await MqttClient(MqttSettings()).receive_batch(0)
