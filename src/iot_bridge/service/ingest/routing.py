"""Maps a concrete MQTT topic to the devices (and the role) it feeds."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from iot_bridge.topics import topic_matches

DATA = "data"
AVAILABILITY = "availability"


@dataclass(frozen=True, slots=True)
class Route:
    """One device reached by a topic, and whether the topic carries data or availability."""

    device_id: str
    role: str


class Router:
    """Exact topics by dict lookup; wildcard filters matched once per new topic and cached."""

    _CACHE_LIMIT = 50_000

    def __init__(self, entries: Iterable[tuple[str, Route]] = ()) -> None:
        exact: dict[str, list[Route]] = {}
        self._wildcard: list[tuple[str, Route]] = []
        self._cache: dict[str, tuple[Route, ...]] = {}
        for topic_filter, route in entries:
            if "+" in topic_filter or "#" in topic_filter:
                self._wildcard.append((topic_filter, route))
            else:
                exact.setdefault(topic_filter, []).append(route)
        # Tuples (one allocation, no spare room) shared with the answers: without
        # wildcards a topic's routes are the exact ones and need no cache entry.
        self._exact: dict[str, tuple[Route, ...]] = {
            topic: tuple(routes) for topic, routes in exact.items()
        }

    @property
    def filters(self) -> frozenset[str]:
        """Every topic filter to subscribe."""
        return frozenset(self._exact) | frozenset(f for f, _ in self._wildcard)

    def routes(self, topic: str) -> tuple[Route, ...]:
        """The devices a topic feeds; empty when none."""
        if not self._wildcard:
            return self._exact.get(topic, ())
        cached = self._cache.get(topic)
        if cached is not None:
            return cached
        found = list(self._exact.get(topic, ()))
        found.extend(route for f, route in self._wildcard if topic_matches(f, topic))
        result = tuple(found)
        if len(self._cache) >= self._CACHE_LIMIT:
            self._cache.clear()
        self._cache[topic] = result
        return result
