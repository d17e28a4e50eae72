"""Builds the feed's batches from what a pipeline commit holds.

Until the pipeline publishes readings and state changes itself (issue 9, the
``seams`` refactor), ``Bridge._commit`` hands this probe the detector snapshots
it commits: a device whose ``last_seen`` is the batch's time sent a message in
it (one ``ReadingAccepted`` with the power it holds), and a state that differs
from the one seen at the previous commit is a ``StateChanged``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from iot_bridge.domain.events import Event
from iot_bridge.service.feed import FeedBatch, ReadingAccepted, StateChanged


class FeedProbe:
    """Remembers each device's last committed state, to tell changes apart."""

    def __init__(self) -> None:
        self._states: dict[str, str] = {}

    def batch(
        self,
        changes: Mapping[str, Mapping[str, Any] | None],
        events: Sequence[Event],
        now: float,
        *,
        build: bool = True,
    ) -> FeedBatch | None:
        """The ``FeedBatch`` of one commit (``changes``: device id -> snapshot, None = removed).

        With ``build`` false (nobody listens) only the known states are kept up
        to date, and None is returned: the pipeline pays for batches only when read.
        """
        readings: list[ReadingAccepted] = []
        state_changes: list[StateChanged] = []
        states = self._states
        for device_id, stored in changes.items():
            if stored is None:
                states.pop(device_id, None)
                continue
            detector = stored["detector"]
            state = detector["state"]
            if build:
                power = detector["power_w"]
                if power is not None and detector["last_seen"] == now:
                    readings.append(ReadingAccepted(device_id, now, power))
            previous = states.get(device_id, "idle")
            if state != previous:
                states[device_id] = state
                if build:
                    session = detector["session"]
                    session_id = session["session_id"] if session else None
                    state_changes.append(StateChanged(device_id, now, previous, state, session_id))
        if not build:
            return None
        return FeedBatch(ts=now, readings=readings, changes=state_changes, events=tuple(events))
