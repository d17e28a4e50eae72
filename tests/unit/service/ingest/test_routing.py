"""Topic routing: exact topics, wildcard filters, MQTT matching rules."""

from hypothesis import given
from hypothesis import strategies as st

from iot_bridge.service.ingest.routing import AVAILABILITY, DATA, Route, Router
from iot_bridge.topics import topic_matches


def test_exact_and_wildcard_routes_are_both_found() -> None:
    """A topic reaches every device whose exact topic or filter matches it."""
    router = Router(
        [
            ("a/status/pm1:0", Route("exact", DATA)),
            ("a/+/pm1:0", Route("plus", DATA)),
            ("a/#", Route("hash", AVAILABILITY)),
            ("b/status/pm1:0", Route("other", DATA)),
        ]
    )
    assert {r.device_id for r in router.routes("a/status/pm1:0")} == {"exact", "plus", "hash"}
    assert router.routes("c/x") == ()
    assert router.filters == {"a/status/pm1:0", "a/+/pm1:0", "a/#", "b/status/pm1:0"}


def test_routes_are_cached_per_topic() -> None:
    """Asking twice gives the same tuple (the wildcard scan runs once)."""
    router = Router([("x/+", Route("d", DATA))])
    assert router.routes("x/1") is router.routes("x/1")


def test_topic_matching_rules() -> None:
    """'+' is one level, '#' the rest including the parent, '$' topics need a literal first level."""
    assert topic_matches("a/+/c", "a/b/c")
    assert not topic_matches("a/+/c", "a/b/d/c")
    assert topic_matches("a/#", "a")
    assert topic_matches("a/#", "a/b/c")
    assert topic_matches("#", "a/b")
    assert not topic_matches("#", "$SYS/x")
    assert not topic_matches("+/x", "$SYS/x")
    assert topic_matches("$SYS/#", "$SYS/x")
    assert not topic_matches("a/b", "a/b/c")
    assert topic_matches("+", "")


@given(st.lists(st.sampled_from(["a", "b", "", "c:0"]), min_size=1, max_size=5))
def test_a_topic_always_matches_itself_and_hash(levels: list[str]) -> None:
    """Any topic matches itself, '#', and itself with every level replaced by '+'."""
    topic = "/".join(levels)
    assert topic_matches(topic, topic)
    assert topic_matches("#", topic)
    assert topic_matches("/".join("+" for _ in levels), topic)
