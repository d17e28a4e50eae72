"""The sender's lifecycle: the current one, and replaced ones closed once no lane uses them."""

from __future__ import annotations

from collections.abc import Iterable

from iot_bridge.logs import get_logger
from iot_bridge.service.ports import EventSender

log = get_logger(__name__)


class Senders:
    """The worker owns its senders: each is closed (its ``aclose()``, if any) exactly once."""

    def __init__(self, current: EventSender | None) -> None:
        self.current = current
        self._retired: list[EventSender] = []

    def replace(self, sender: EventSender | None) -> None:
        """``sender`` is current from now on; the previous one is closed when idle."""
        if self.current is not None:
            self._retired.append(self.current)
        self.current = sender

    async def close_idle(self, busy: Iterable[EventSender]) -> None:
        """Close the replaced senders that no delivery under way uses any more."""
        if not self._retired:
            return
        busy_ids = {id(sender) for sender in busy}
        idle = [sender for sender in self._retired if id(sender) not in busy_ids]
        self._retired = [sender for sender in self._retired if id(sender) in busy_ids]
        for sender in idle:
            await close_sender(sender)

    async def close_all(self) -> None:
        """Close the replaced senders and the current one."""
        senders, self._retired = self._retired, []
        if self.current is not None:
            senders.append(self.current)
        for sender in senders:
            await close_sender(sender)


async def close_sender(sender: EventSender) -> None:
    """Close ``sender`` if it has an ``aclose()``; a failure is logged, never raised."""
    aclose = getattr(sender, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except Exception:  # closing a connection pool must not break shutdown
        log.exception("delivery_sender_close_failed")
