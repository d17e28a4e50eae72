"""The running bridge: its parts wired together and supervised in one ``asyncio.TaskGroup``.

The parts, each in its own module:

- ``pipeline`` (``service/ingest/pipeline.py``): receive -> route -> parse -> detect
  -> commit -> acknowledge, and the timers;
- ``configs`` (``service/config_push/use_case.py``): ``POST /config``;
- ``status`` (``service/views/status.py``): health, devices, events read models;
- ``feed`` (``service/feed.py``): what the pipeline committed, for views;
- ``link`` (``service/ingest/broker_link.py``): the current MQTT source, the switch;
- ``delivery`` (``service/delivery/worker.py``): outbox -> Odoo;
- ``housekeeping`` (``service/housekeeping.py``): retention, the disk budget,
  the data dir's size.

The task tree of ``run()``: ``pipeline``, ``delivery``, ``prune`` (the
housekeeping), ``mqtt``
(one per source; ``mqtt-close`` for a replaced one) and every task added with
``add_task``. A stop takes the pipeline's lock first, so nothing is cut
mid-commit. The bridge only knows ports: ``bootstrap.py`` builds the adapters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from iot_bridge.config.sources import (
    EnvSettings,
    LoadedConfig,
    StoreLimits,
    effective_mqtt,
    effective_odoo,
    effective_store,
)
from iot_bridge.logs import get_logger, task_stack
from iot_bridge.service.config_push.use_case import ConfigUseCase
from iot_bridge.service.delivery.worker import DeliveryWorker
from iot_bridge.service.feed import Feed
from iot_bridge.service.housekeeping import Housekeeping
from iot_bridge.service.ingest.broker_link import BrokerLink
from iot_bridge.service.ingest.ingestor import Ingestor, device_specs
from iot_bridge.service.ingest.pipeline import Pipeline
from iot_bridge.service.ports import (
    Clock,
    ConfigRepository,
    EventSenderFactory,
    MessageSourceFactory,
    Outbox,
)
from iot_bridge.service.views.metrics import Metrics
from iot_bridge.service.views.state_out import state_out_will
from iot_bridge.service.views.status import StatusQueries

log = get_logger(__name__)

# Each step of the stop (the cancelled tasks, each closer, delivery, the MQTT link)
# gets this long; past it the step is logged with where it waits, and the stop goes on.
SHUTDOWN_STEP_TIMEOUT_S = 5.0
SHUTDOWN_CANCEL_ROUNDS = 3
TaskFactory = Callable[[], Coroutine[Any, Any, None]]


async def _finish_cancelled(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for cancelled tasks, bounded; one that ignores its cancel is logged and cancelled again.

    A task that swallows its cancel would otherwise keep the TaskGroup, and the
    process, from ever ending.
    """
    pending = {task for task in tasks if not task.done()}
    for _ in range(SHUTDOWN_CANCEL_ROUNDS):
        if not pending:
            return
        _, pending = await asyncio.wait(pending, timeout=SHUTDOWN_STEP_TIMEOUT_S)
        for task in pending:
            log.error(
                "shutdown_task_stuck",
                task=task.get_name(),
                seconds=SHUTDOWN_STEP_TIMEOUT_S,
                stack=task_stack(task),
            )
            task.cancel()


async def _bounded(step: str, awaitable: Coroutine[Any, Any, None]) -> None:
    """Await one shutdown step for at most ``SHUTDOWN_STEP_TIMEOUT_S``; log when it takes longer."""
    try:
        async with asyncio.timeout(SHUTDOWN_STEP_TIMEOUT_S):
            await awaitable
    except TimeoutError:
        log.error("shutdown_step_timeout", step=step, seconds=SHUTDOWN_STEP_TIMEOUT_S)


class Bridge:
    """Owns the pipeline, the config use case, the status queries, the feed and delivery."""

    def __init__(
        self,
        *,
        env: EnvSettings,
        loaded: LoadedConfig,
        outbox: Outbox,
        config_repository: ConfigRepository,
        source_factory: MessageSourceFactory,
        sender_factory: EventSenderFactory,
        clock: Clock,
    ) -> None:
        """Wire the parts from the ports (the adapters come from ``bootstrap.py``)."""
        config = loaded.config
        self.metrics = Metrics()
        self.feed = Feed()
        self.ingestor = Ingestor(feed=self.feed)
        self._outbox = outbox
        self._clock = clock
        self._stopping = asyncio.Event()
        self._fatal: BaseException | None = None
        self._tasks: list[tuple[str, TaskFactory]] = []
        self._closers: list[TaskFactory] = []
        self.link = BrokerLink(
            factory=source_factory,
            section=effective_mqtt(config, env),
            on_fatal=self._fail,
            will=state_out_will(config, env.shard),
        )
        self.delivery = DeliveryWorker(
            store=outbox,
            sender=sender_factory(effective_odoo(config, env)),
            clock=clock,
            on_result=self.metrics.on_delivery_result,
        )
        self.pipeline = Pipeline(
            ingestor=self.ingestor,
            outbox=outbox,
            link=self.link,
            feed=self.feed,
            metrics=self.metrics,
            clock=clock,
            on_events=self._events_committed,
            on_fatal=self._fail,
        )
        self.configs = ConfigUseCase(
            env=env,
            loaded=loaded,
            repository=config_repository,
            sender_factory=sender_factory,
            pipeline=self.pipeline,
            link=self.link,
            delivery=self.delivery,
        )
        self.housekeeping = Housekeeping(
            outbox=outbox,
            limits=self.store_limits,
            now=self.pipeline.now,
            clock=clock,
            metrics=self.metrics,
            on_fatal=self._fail,
        )
        self.configs.add_listener(self.housekeeping.config_changed)
        self.status = StatusQueries(
            housekeeping=self.housekeeping,
            limits=self.store_limits,
            pipeline=self.pipeline,
            link=self.link,
            configs=self.configs,
            outbox=outbox,
            metrics=self.metrics,
            feed=self.feed,
            endpoint=lambda: self.delivery.endpoint,
        )

    def store_limits(self) -> StoreLimits:
        """The retention and the disk budget now: the config's ``store`` section, else
        the environment's, else the defaults."""
        return effective_store(self.configs.config, self.configs.env)

    def add_task(self, name: str, factory: TaskFactory) -> None:
        """Run ``factory()`` as the task ``name`` in ``run()``'s TaskGroup; call before ``run``.

        It is cancelled at the stop, after the pipeline; an exception it raises
        stops the bridge with that error.
        """
        self._tasks.append((name, factory))

    def add_closer(self, closer: TaskFactory) -> None:
        """Await ``closer()`` at the stop, after the tasks and before the MQTT link closes.

        For views that must say goodbye on the connection (the state out's
        ``offline``) or end what waits on them (the board's open streams).
        """
        self._closers.append(closer)

    async def start(self) -> None:
        """Apply the loaded config, restore detectors, subscribe."""
        await self.pipeline.restore(device_specs(self.configs.config, self.configs.env.shard))
        await self.link.source.set_subscriptions(self.ingestor.subscriptions)
        log.info(
            "bridge_started",
            devices=len(self.ingestor.device_ids),
            shard=self.configs.shard,
            config_source=self.configs.config_source,
            broker=self.link.broker_address,
            odoo=self.configs.odoo.base_url if self.configs.odoo else None,
        )

    async def run(self) -> None:
        """Run every task until ``stop()`` (or a failure), then shut down cleanly."""
        try:
            async with asyncio.TaskGroup() as group:
                self.link.start(group)
                workers = [
                    group.create_task(self.pipeline.run(), name="pipeline"),
                    group.create_task(self.delivery.run(), name="delivery"),
                    group.create_task(self.housekeeping.run(), name="prune"),
                    *(group.create_task(factory(), name=name) for name, factory in self._tasks),
                ]
                await self._stopping.wait()
                # Taking the lock waits for a batch being committed; nothing is cut mid-commit.
                async with self.pipeline.lock:
                    for task in workers:
                        task.cancel()
                await _finish_cancelled(workers)
                await self._run_closers()
                await _bounded("delivery_close", self.delivery.close())
                await _bounded("mqtt_close", self.link.close())
        except BaseExceptionGroup as failed:
            await _bounded("delivery_close", self.delivery.close())
            await _bounded("mqtt_close", self.link.close())
            errors = [e for e in failed.exceptions if not isinstance(e, asyncio.CancelledError)]
            raise (self._fatal or errors[0]) from None
        if self._fatal is not None:
            raise self._fatal

    def stop(self) -> None:
        """Ask everything to finish; ``run()`` returns after a clean shutdown."""
        if not self._stopping.is_set():
            log.info("shutdown_requested")
        self._stopping.set()
        self.pipeline.abandon_waits()  # a commit waiting for disk space holds the lock

    async def close(self) -> None:
        """Close the MQTT link (if ``run`` did not) and the store."""
        await self.link.close()
        await asyncio.to_thread(self._outbox.close)

    async def retry_dead(self) -> int:
        """``POST /events/retry-dead``: dead events go back into delivery."""
        count = await asyncio.to_thread(self._outbox.retry_dead, self.pipeline.now())
        self.delivery.wake(reload=True)
        log.info("dead_events_retried", events=count)
        return count

    async def _run_closers(self) -> None:
        for closer in self._closers:
            try:
                await _bounded("closer", closer())
            except Exception:  # a view's goodbye must not block the shutdown
                log.exception("closer_failed")

    def _fail(self, error: BaseException) -> None:
        if self._fatal is None:
            self._fatal = error
        self.stop()

    def _events_committed(self, count: int) -> None:
        self.delivery.wake()
        self.housekeeping.events_committed(count)
