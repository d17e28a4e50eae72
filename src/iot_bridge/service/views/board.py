"""The live board's read model: what the page shows, kept apart from the write path.

``Board`` consumes the in-process feed (its own subscription, its own task)
and keeps, per device, the last hour of power readings (bounded in time and in
count), the state bands of that hour, and the running session's working and
standby time; for all devices, the recent completed sessions. ``snapshot``
answers ``GET /board``; ``StreamThrottle`` turns feed batches into at most a
few stream updates per second per machine, whatever the devices' rate.

Decisions:

- **Today** is the bridge host's local calendar day. Today's working and
  standby time is the sum of the sessions that ended today (their events'
  ``working_s``/``standby_s``, the authoritative figures) plus the running
  session's time as seen live since the board started (a session running
  across a bridge restart counts from the restart).
- **Stopping** counts as the state before it (as the detector does for a dip).
- The board never reads the clock: every call takes ``now``.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final, cast

from iot_bridge.domain.events import Event, EventType, SessionEndedData, iso_utc
from iot_bridge.logs import get_logger
from iot_bridge.service.feed import Feed, FeedBatch, ReadingAccepted, StateChanged, Subscription
from iot_bridge.service.replay.tuning import tunable_settings
from iot_bridge.service.views.types import MachineDirectory, MachineStatus

log = get_logger(__name__)

WINDOW_S: Final = 3600.0
MAX_POINTS_PER_DEVICE: Final = 7200  # two a second for an hour; a faster one keeps its latest
# All devices together keep at most about this many readings (16 bytes each), so a
# bridge with thousands of devices keeps less per device; never under the minimum.
TOTAL_POINTS: Final = 2_000_000
MIN_POINTS_PER_DEVICE: Final = 360
RECENT_SESSIONS: Final = 20
STREAM_INTERVAL_S: Final = 0.25  # at most 4 updates a second per machine
_ENDED: Final = frozenset({EventType.SESSION_STOPPED, EventType.SESSION_TIMEOUT})
_CLASS_OF_STATE: Final[Mapping[str, str | None]] = {
    "idle": None,
    "starting": None,
    "standby": "standby",
    "working": "working",
}


def local_day(ts: float) -> date:
    """The bridge host's local calendar day of ``ts``."""
    return datetime.fromtimestamp(ts).date()


def points_per_device(devices: int) -> int:
    """How many readings each device keeps when ``devices`` are configured."""
    return max(MIN_POINTS_PER_DEVICE, min(MAX_POINTS_PER_DEVICE, TOTAL_POINTS // max(1, devices)))


class _Series:
    """A device's readings: two packed float arrays (16 bytes a reading), oldest first.

    Old readings are dropped by moving ``start``; the arrays are compacted when
    the dropped part is as long as the kept one (amortised O(1) per reading).
    """

    __slots__ = ("limit", "power", "start", "ts")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.ts = array("d")
        self.power = array("d")
        self.start = 0

    def __len__(self) -> int:
        return len(self.ts) - self.start

    def append(self, ts: float, power_w: float) -> None:
        if len(self) and ts < self.ts[-1]:
            ts = self.ts[-1]
        self.ts.append(ts)
        self.power.append(power_w)
        if len(self) > self.limit:
            self.start = len(self.ts) - self.limit
        self._compact()

    def drop_before(self, since: float) -> None:
        self.start = max(self.start, bisect_left(self.ts, since, lo=self.start))
        self._compact()

    def items(self) -> list[tuple[float, float]]:
        start = self.start
        return list(zip(self.ts[start:], self.power[start:], strict=True))

    def _compact(self) -> None:
        if self.start and self.start >= len(self):
            del self.ts[: self.start]
            del self.power[: self.start]
            self.start = 0


@dataclass(slots=True)
class _Track:
    """One device's kept hour and its running session's live time."""

    readings: _Series = field(default_factory=lambda: _Series(MAX_POINTS_PER_DEVICE))
    # (since, state); a list, not a deque: an empty deque takes ~600 bytes, and
    # 10,000 devices each keep a few bands.
    bands: list[tuple[float, str]] = field(default_factory=list)
    segment_class: str | None = None
    segment_since: float = 0.0
    run_working_s: float = 0.0
    run_standby_s: float = 0.0
    done_day: date | None = None
    done_working_s: float = 0.0
    done_standby_s: float = 0.0

    def add_reading(self, ts: float, power_w: float) -> None:
        self.readings.append(ts, power_w)

    def change_state(self, ts: float, state: str) -> None:
        self._close_segment(ts)
        if state == "stopping":
            pass  # keeps the class of the state before it
        elif state in ("idle", "starting"):
            self.segment_class = None
            self.run_working_s = self.run_standby_s = 0.0
        else:
            self.segment_class = _CLASS_OF_STATE.get(state)
        self.segment_since = ts
        if self.bands and self.bands[-1][0] >= ts:
            self.bands[-1] = (self.bands[-1][0], state)
        else:
            self.bands.append((ts, state))

    def _close_segment(self, ts: float) -> None:
        elapsed = max(0.0, ts - self.segment_since)
        if self.segment_class == "working":
            self.run_working_s += elapsed
        elif self.segment_class == "standby":
            self.run_standby_s += elapsed
        self.segment_since = ts

    def session_ended(self, day: date, working_s: float, standby_s: float) -> None:
        if self.done_day != day:
            self.done_day = day
            self.done_working_s = self.done_standby_s = 0.0
        self.done_working_s += working_s
        self.done_standby_s += standby_s
        self.run_working_s = self.run_standby_s = 0.0

    def today(self, now: float, today: date) -> tuple[float, float]:
        working, standby = (
            (self.done_working_s, self.done_standby_s) if self.done_day == today else (0.0, 0.0)
        )
        open_s = max(0.0, now - self.segment_since)
        working += self.run_working_s + (open_s if self.segment_class == "working" else 0.0)
        standby += self.run_standby_s + (open_s if self.segment_class == "standby" else 0.0)
        return working, standby

    def prune(self, since: float) -> None:
        self.readings.drop_before(since)
        bands = self.bands
        # Keep the band that was current at ``since``: it colours the chart's left edge.
        drop = 0
        while drop + 1 < len(bands) and bands[drop + 1][0] <= since:
            drop += 1
        if drop:
            del bands[:drop]


def session_view(event: Event) -> dict[str, Any]:
    """A completed session as the board lists it, from its stop/timeout event."""
    data = event.ended_data()
    if data is None:
        raise ValueError(f"{event.event_type} does not end a session")
    # ``.get``: a stored row's data may lack a key (see stored_session_events).
    return {
        "device_id": event.device_id,
        "machine_name": event.machine_name,
        "session_id": event.session_id,
        "started_at": data.get("started_at"),
        "ended_at": data.get("ended_at"),
        "duration_s": data.get("duration_s"),
        "working_s": data.get("working_s"),
        "standby_s": data.get("standby_s"),
        "energy_wh": data.get("energy_wh"),
        "reason": data.get("reason"),
    }


def stored_session_events(stored: Iterable[Any]) -> list[Event]:
    """Completed-session events among stored outbox rows (newest first), oldest first.

    ``stored`` are ``StoredEvent``s: their ``payload`` is the EVENT object.
    """
    events: list[Event] = []
    for row in stored:
        payload = row.payload
        try:
            event_type = EventType(payload["event_type"])
            if event_type not in _ENDED:
                continue
            events.append(
                Event(
                    event_uid=str(payload["event_uid"]),
                    event_type=event_type,
                    device_id=str(payload["device_id"]),
                    machine_name=str(payload["machine_name"]),
                    session_id=payload.get("session_id"),
                    timestamp=datetime.fromisoformat(payload["timestamp"]).timestamp(),
                    # Read back as written; session_view reads it key by key.
                    data=cast(SessionEndedData, dict(payload["data"])),
                )
            )
        except (KeyError, ValueError, TypeError):
            continue  # a damaged row: the board does without it
    events.reverse()
    return events


class Board:
    """The board's read model; see the module docstring."""

    def __init__(
        self,
        directory: MachineDirectory,
        *,
        window_s: float = WINDOW_S,
        day_of: Callable[[float], date] = local_day,
    ) -> None:
        self._directory = directory
        self._window_s = window_s
        self._day_of = day_of
        self._tracks: dict[str, _Track] = {}
        self._points = MAX_POINTS_PER_DEVICE
        self._sessions: deque[dict[str, Any]] = deque(maxlen=RECENT_SESSIONS)

    @property
    def directory(self) -> MachineDirectory:
        """Where the board reads the devices' live state."""
        return self._directory

    @property
    def window_s(self) -> float:
        """How far back readings and bands are kept (s)."""
        return self._window_s

    def start(self, now: float, recent_events: Iterable[Event] = ()) -> None:
        """Begin with every device's current state, and completed sessions from the store.

        ``recent_events`` (oldest first) seeds the session list and today's totals.
        """
        device_ids = self._directory.device_ids()
        self._points = points_per_device(len(device_ids))
        for device_id in device_ids:
            status = self._directory.status(device_id)
            if status is not None:
                self._track(device_id, now, status.state)
        for event in recent_events:
            self._on_event(event)

    def apply(self, batch: FeedBatch) -> None:
        """Take one feed batch (readings, state changes, events)."""
        for reading in batch.readings:
            self._track(reading.device_id, reading.ts).add_reading(reading.ts, reading.power_w)
        for change in batch.changes:
            self._track(change.device_id, change.ts).change_state(change.ts, change.state)
        for event in batch.events:
            self._on_event(event)

    def readings(self, device_id: str, now: float) -> list[tuple[float, float]]:
        """The kept readings of a device, oldest first (the last ``window_s``)."""
        track = self._tracks.get(device_id)
        if track is None:
            return []
        track.prune(now - self._window_s)
        return track.readings.items()

    def snapshot(self, now: float) -> dict[str, Any]:
        """Everything the page draws, as JSON-ready data (``GET /board``)."""
        since = now - self._window_s
        today = self._day_of(now)
        machines = []
        known = set()
        for device_id in self._directory.device_ids():
            status = self._directory.status(device_id)
            if status is None:
                continue
            known.add(device_id)
            track = self._track(device_id, now, status.state)
            track.prune(since)
            working_s, standby_s = track.today(now, today)
            machines.append(
                {
                    **machine_view(status),
                    "today": {"working_s": working_s, "standby_s": standby_s},
                    "readings": track.readings.items(),
                    "bands": [[max(ts, since), state] for ts, state in track.bands],
                }
            )
        for device_id in [d for d in self._tracks if d not in known]:
            del self._tracks[device_id]  # removed from the config
        points = points_per_device(len(known))
        if points != self._points:  # the device count changed: share the budget anew
            self._points = points
            for track in self._tracks.values():
                track.readings.limit = points
        return {
            "now": now,
            "window_s": self._window_s,
            "machines": machines,
            "sessions": list(reversed(self._sessions)),
        }

    def _track(self, device_id: str, now: float, state: str | None = None) -> _Track:
        track = self._tracks.get(device_id)
        if track is None:
            track = self._tracks[device_id] = _Track(readings=_Series(self._points))
            track.change_state(now, state or "idle")
        return track

    def _on_event(self, event: Event) -> None:
        data = event.ended_data()
        if data is None:
            return
        self._sessions.append(session_view(event))
        track = self._track(event.device_id, event.timestamp)
        track.session_ended(
            self._day_of(event.timestamp),
            float(data.get("working_s") or 0.0),
            float(data.get("standby_s") or 0.0),
        )


def machine_view(status: MachineStatus) -> dict[str, Any]:
    """A card's data: the device, its state, its thresholds."""
    config = status.session_config
    return {
        "device_id": status.device_id,
        "machine_name": status.machine_name,
        "state": status.state,
        "online": status.online,
        "last_seen": status.last_seen,
        "power_w": status.power_w,
        "session_id": status.session_id,
        "session_started_at": status.session_started_at,
        "thresholds": {
            "standby_threshold_w": config.standby_threshold_w,
            "working_threshold_w": config.working_threshold_w,
        },
        "session_config": tunable_settings(config),
    }


class StreamThrottle:
    """Coalesces feed batches for one stream client.

    Readings: only the latest of each machine is kept between flushes. State
    changes and events are all kept, in order. ``due(now)`` says a flush may be
    sent: something is pending and ``interval_s`` passed since the last one.
    """

    def __init__(self, *, interval_s: float = STREAM_INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._readings: dict[str, ReadingAccepted] = {}
        self._changes: list[StateChanged] = []
        self._events: list[Event] = []
        self._last_flush = -float("inf")

    @property
    def pending(self) -> bool:
        """Whether anything waits to be sent."""
        return bool(self._readings or self._changes or self._events)

    def add(self, batch: FeedBatch) -> None:
        """Take one feed batch."""
        for reading in batch.readings:
            self._readings[reading.device_id] = reading
        self._changes.extend(batch.changes)
        self._events.extend(batch.events)

    def next_flush_at(self) -> float | None:
        """When the next flush may go (None: nothing pending)."""
        return self._last_flush + self._interval_s if self.pending else None

    def due(self, now: float) -> bool:
        """A flush may be sent now."""
        at = self.next_flush_at()
        return at is not None and now >= at

    def flush(self, now: float) -> list[tuple[str, dict[str, Any]]]:
        """The pending updates as (SSE event name, data), oldest kind of news first."""
        updates: list[tuple[str, dict[str, Any]]] = []
        for change in self._changes:
            updates.append(
                (
                    "state",
                    {
                        "device_id": change.device_id,
                        "ts": change.ts,
                        "previous": change.previous,
                        "state": change.state,
                        "session_id": change.session_id,
                    },
                )
            )
        for event in self._events:
            updates.append(("event", event.to_dict()))
        for reading in self._readings.values():
            updates.append(
                (
                    "reading",
                    {"device_id": reading.device_id, "ts": reading.ts, "power_w": reading.power_w},
                )
            )
        self._readings = {}
        self._changes = []
        self._events = []
        self._last_flush = now
        return updates


class BoardService:
    """The board off the feed: ``run()`` is its task, streams subscribe here; one per bridge."""

    def __init__(self, board: Board, feed: Feed, *, clock: Callable[[], float]) -> None:
        self.board = board
        self.feed = feed
        self._clock = clock
        self._subscription = feed.subscribe("board", max_batches=4096)
        self._streams: set[Subscription] = set()

    def seed(self, recent_events: Iterable[Event] = ()) -> None:
        """Start from every device's current state and the stored sessions (after restore)."""
        self.board.start(self._clock(), recent_events)

    async def run(self) -> None:
        """Follow the feed until cancelled or closed."""
        async for batch in self._subscription:
            try:
                self.board.apply(batch)
            except Exception:  # a view must never stop: log, skip the batch, go on
                log.exception("board_apply_failed")

    def subscribe_stream(self, name: str, max_batches: int) -> Subscription:
        """A feed subscription for one stream client; ``close`` ends it."""
        subscription = self.feed.subscribe(name, max_batches=max_batches)
        self._streams = {s for s in self._streams if not s.closed}
        self._streams.add(subscription)
        return subscription

    async def close(self) -> None:
        """Stop following the feed; open streams end (so the HTTP server can stop at once)."""
        for subscription in self._streams:
            subscription.close()
        self._streams.clear()
        self._subscription.close()

    def now(self) -> float:
        """The service's clock."""
        return self._clock()


def iso_or_none(ts: float | None) -> str | None:
    """ISO-8601 UTC, or None."""
    return None if ts is None else iso_utc(ts)
