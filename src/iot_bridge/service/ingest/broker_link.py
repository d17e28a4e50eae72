"""The link to the broker: the current message source, its task, and the broker switch.

The source is built by the factory the composition root provides, so the
service never names the MQTT client class. Its ``run()`` is a named task in
the bridge's ``TaskGroup`` (``mqtt``); a switch starts the new source's task
and closes the old one in the background (``mqtt-close``), never under the
pipeline's lock (a hung TLS peer can take long).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from iot_bridge.config.model import MqttSection
from iot_bridge.errors import MqttError
from iot_bridge.logs import get_logger, task_stack
from iot_bridge.service.ports import LastWill, MessageSource, MessageSourceFactory

log = get_logger(__name__)

# An MQTT source's close() gets this long, and its cancelled run task as long again.
SOURCE_CLOSE_TIMEOUT_S = 5.0


class BrokerLink:
    """Holds the current ``MessageSource`` (``source``) and switches it for another broker."""

    def __init__(
        self,
        *,
        factory: MessageSourceFactory,
        section: MqttSection,
        on_fatal: Callable[[BaseException], None],
        will: LastWill | None = None,
    ) -> None:
        """``on_fatal`` is called when the current source stops by itself (a bug)."""
        self._factory = factory
        self._on_fatal = on_fatal
        self.section = section
        self.will = will
        self.source: MessageSource = factory(section, frozenset(), will)
        # Set when ``source`` was replaced: the pipeline stops waiting on the old one.
        self.switched = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None
        self._runs: dict[int, asyncio.Task[None]] = {}  # id(source) -> its run() task
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def broker_address(self) -> str:
        """``host:port`` of the current broker."""
        return f"{self.section.broker}:{self.section.port}"

    def start(self, group: asyncio.TaskGroup) -> None:
        """Run the current source (and every later one) as tasks of ``group``."""
        self._group = group
        self._run(self.source)

    async def switch(
        self, section: MqttSection, subscriptions: frozenset[str], will: LastWill | None = None
    ) -> None:
        """Replace the source by one for ``section`` (and ``will``); the old one closes apart."""
        old = self.source
        self.section = section
        self.will = will
        self.source = self._factory(section, subscriptions, will)
        self.switched.set()
        if self._group is None:  # not running yet: nothing to hand over
            await self._retire(old)
        else:
            self._run(self.source)
            closing = self._group.create_task(self._retire(old), name="mqtt-close")
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        log.info("mqtt_broker_switched", broker=self.broker_address)

    async def close(self) -> None:
        """Close the current source (no unsubscribe: the session persists); idempotent."""
        if not self._closed:
            self._closed = True
            await self._retire(self.source)
        if self._closing:
            _, late = await asyncio.wait(self._closing, timeout=SOURCE_CLOSE_TIMEOUT_S * 2)
            for closing in late:
                log.error("mqtt_close_stuck", task=closing.get_name(), stack=task_stack(closing))

    def _run(self, source: MessageSource) -> None:
        assert self._group is not None
        self._runs[id(source)] = self._group.create_task(self._serve(source), name="mqtt")

    async def _retire(self, source: MessageSource) -> None:
        try:
            await asyncio.wait_for(source.close(), SOURCE_CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.warning("mqtt_close_timeout", broker=source.broker, seconds=SOURCE_CLOSE_TIMEOUT_S)
        task = self._runs.pop(id(source), None)
        if task is not None and not task.done():
            task.cancel()
            # Not ``await task``: its CancelledError would hide a cancel of ours.
            _, late = await asyncio.wait({task}, timeout=SOURCE_CLOSE_TIMEOUT_S)
            if late:
                log.error("mqtt_task_stuck", broker=source.broker, stack=task_stack(task))

    async def _serve(self, source: MessageSource) -> None:
        # The source reconnects forever by itself; its run() ending while it is
        # still ours and not closed is a bug that would leave the bridge deaf.
        error: BaseException | None = None
        try:
            await source.run()
        except Exception as err:  # reported below, as a stop of the bridge
            error = err
        if source is self.source and not source.closed:
            log.critical("mqtt_client_stopped", error=repr(error) if error else None)
            self._on_fatal(MqttError(f"the MQTT client stopped unexpectedly: {error!r}"))
