"""The data dir's housekeeping: retention, the disk budget, and its size for the views.

One task (``prune`` in the bridge's task tree) runs ``Housekeeping.check``
every ``CHECK_INTERVAL_S``, and sooner after ``BUDGET_CHECK_EVERY_EVENTS``
committed events while a disk budget is set. Each pass, in a thread:

- measures the data dir (``Outbox.usage``): its files on disk, the free
  pages inside the database, the filesystem's free room. A database file
  that was removed or replaced under the running bridge (the data dir
  vanished, or was remounted) is fatal: what the bridge committed from then
  on would be lost at the next start;
- once an hour (``RETENTION_INTERVAL_S``), deletes the delivered events past
  the retention (``store.retention_days``, ``BRIDGE_RETENTION_DAYS``);
- with a disk budget (``store.disk_budget_mb``, ``BRIDGE_DISK_BUDGET_MB``):
  when what the data dir stores passes ``PRUNE_AT_SHARE`` of it, deletes the
  oldest delivered events until it is down to ``PRUNE_TO_SHARE``; pending and
  dead events are never deleted. When they alone pass ``KEPT_WARNING_SHARE``
  of the budget, ``/health`` carries a warning and the log says so, once.

How the budget is shared out: "stored" counts the data dir's files but the
write-ahead log, less the free pages inside the database (SQLite reuses them
before the file grows, so pruning stops the file growing rather than
shrinking it; ``VACUUM``, with the bridge stopped, gives the space back).
The WAL is bounded apart: the writer checkpoints it at a sixteenth of the
budget (``Outbox.limit_wal``), and deletes go in chunks whose pages fit in
that share (a deleted event touches a page of the random ``event_uid`` index:
4 KiB of WAL), so that the prune itself cannot swell it. The database's file
at most about 72 % (stored, plus what comes between two passes), the WAL at
most about an eighth (its share, plus one transaction past it): the data dir
stays under the budget, with room for the persisted config.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass

from iot_bridge.config.sources import StoreLimits
from iot_bridge.errors import DiskFullError, StoreError
from iot_bridge.logs import get_logger
from iot_bridge.service.ports import WAL_SHARE_OF_BUDGET, Clock, Outbox, StoreUsage
from iot_bridge.service.views.metrics import Metrics

log = get_logger(__name__)

CHECK_INTERVAL_S = 30.0
RETENTION_INTERVAL_S = 3600.0
PRUNE_AT_SHARE = 0.7
PRUNE_TO_SHARE = 0.6
KEPT_WARNING_SHARE = 0.8
# Each round deletes what the estimate says frees the excess, then measures again.
MAX_PRUNE_ROUNDS = 8
MB = 1024 * 1024
# Sizes derived from the budget use this for an event (a stored event takes 0.7-1 KB).
EVENT_BYTES_ESTIMATE = 1024
# With a budget, a pass also comes after a sixty-fourth of it in events committed
# (256 events at 16 MB, 1,000 from 64 MB on).
BUDGET_SHARE_BETWEEN_CHECKS = 64
# WAL bytes a deleted event costs: a page of the event_uid index (random UUIDs: one
# page each) and its share of the table's and the other index's pages.
DELETE_WAL_BYTES_PER_EVENT = 5 * 1024
MAX_EVENTS_BETWEEN_CHECKS = 1000
MAX_DELETE_CHUNK = 10_000
MIN_CHUNK = 100


def events_between_checks(budget_bytes: int) -> int:
    """With this budget, a pass after this many committed events."""
    share = budget_bytes // BUDGET_SHARE_BETWEEN_CHECKS // EVENT_BYTES_ESTIMATE
    return max(MIN_CHUNK, min(MAX_EVENTS_BETWEEN_CHECKS, share))


def delete_chunk(budget_bytes: int | None) -> int:
    """Events deleted per transaction: as many as fit the WAL's share of the budget."""
    if budget_bytes is None:
        return MAX_DELETE_CHUNK
    share = budget_bytes // WAL_SHARE_OF_BUDGET // DELETE_WAL_BYTES_PER_EVENT
    return max(MIN_CHUNK, min(MAX_DELETE_CHUNK, share))


@dataclass(frozen=True, slots=True)
class DiskReport:
    """What the last pass found: the data dir's usage and a warning, if any."""

    usage: StoreUsage | None = None
    kept_bytes: int | None = None
    warning: str | None = None


class Housekeeping:
    """Retention, the disk budget and the data dir's measurements (see the module)."""

    def __init__(
        self,
        *,
        outbox: Outbox,
        limits: Callable[[], StoreLimits],
        now: Callable[[], float],
        clock: Clock,
        metrics: Metrics,
        on_fatal: Callable[[BaseException], None],
    ) -> None:
        """``limits`` gives the current retention and budget (a config push may change
        them); ``now`` the pipeline's time; ``on_fatal`` stops the bridge."""
        self._outbox = outbox
        self._limits = limits
        self._now = now
        self._clock = clock
        self._metrics = metrics
        self._on_fatal = on_fatal
        self._wake = asyncio.Event()
        self._events_since_check = 0
        self._next_retention_at = -float("inf")
        self._wal_budget: int | None = None
        self._warned = False
        self._over_budget = False
        self.report = DiskReport()

    def events_committed(self, count: int) -> None:
        """The pipeline committed ``count`` events: with a budget, check soon enough."""
        budget = self._limits().budget_bytes
        if budget is None:
            return
        self._events_since_check += count
        if self._events_since_check >= events_between_checks(budget):
            self._events_since_check = 0
            self._wake.set()

    def config_changed(self) -> None:
        """A config push may have changed the retention or the budget: a pass now."""
        self._wake.set()

    async def run(self) -> None:
        """A pass now and every ``CHECK_INTERVAL_S`` (or sooner, see ``events_committed``)."""
        while True:
            self._wake.clear()
            await self.check()
            sleep = asyncio.ensure_future(self._clock.sleep(CHECK_INTERVAL_S))
            woken = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({sleep, woken}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleep.cancel()
                woken.cancel()

    async def check(self) -> DiskReport:
        """One pass (in a thread); a data dir that vanished stops the bridge."""
        self._events_since_check = 0
        limits = self._limits()
        try:
            report = await asyncio.to_thread(self._check, self._now(), limits)
        except DiskFullError as err:  # the pipeline reports a full disk; nothing to add
            log.debug("housekeeping_disk_full", error=str(err))
            return self.report
        except StoreError as err:
            log.critical("store_unusable", error=str(err))
            self._on_fatal(err)
            raise
        self.report = report
        return report

    def _check(self, now: float, limits: StoreLimits) -> DiskReport:
        outbox = self._outbox
        budget = limits.budget_bytes
        if budget != self._wal_budget:
            outbox.limit_wal(budget)
            self._wal_budget = budget
        usage = outbox.usage()  # StoreError when the data dir vanished: fatal
        chunk = delete_chunk(budget)
        if now >= self._next_retention_at:
            self._next_retention_at = now + RETENTION_INTERVAL_S
            prune = functools.partial(outbox.prune, now, limits.retention_s, chunk=chunk)
            self._prune("retention", prune)
        if budget is None:
            self._settle_warning(None)
            return DiskReport(usage=usage)
        usage = self._enforce_budget(usage, budget)
        kept = outbox.kept_events_bytes()
        warning = None
        if kept > budget * KEPT_WARNING_SHARE:
            warning = (
                f"pending and dead events take about {kept / MB:.1f} MB, over"
                f" {KEPT_WARNING_SHARE:.0%} of the {budget / MB:.0f} MB disk budget: they are"
                " never pruned; deliver them (is Odoo reachable?) or retry the dead ones"
            )
        elif self._over_budget:
            warning = (
                f"the data dir stores {usage.stored_bytes / MB:.1f} MB, over"
                f" {PRUNE_AT_SHARE:.0%} of its {budget / MB:.0f} MB disk budget, and has no"
                " delivered events left to prune"
            )
        self._settle_warning(warning, kept_bytes=kept, budget_bytes=budget)
        return DiskReport(usage=usage, kept_bytes=kept, warning=warning)

    def _enforce_budget(self, usage: StoreUsage, budget: int) -> StoreUsage:
        if usage.stored_bytes <= budget * PRUNE_AT_SHARE:
            self._over_budget = False
            return usage
        outbox = self._outbox
        target = int(budget * PRUNE_TO_SHARE)
        before = usage.stored_bytes
        chunk = delete_chunk(budget)
        pruned = 0
        # Deleted rows free fewer whole pages than their bytes (the event_uid index's
        # pages empty only in part): each round measures again and deletes the rest.
        for _ in range(MAX_PRUNE_ROUNDS):
            excess = usage.stored_bytes - target
            if excess <= 0:
                break
            prune = functools.partial(outbox.prune_oldest_delivered, excess, chunk=chunk)
            deleted = self._prune("disk_budget", prune, report=False)
            if not deleted:
                break  # nothing delivered is left to delete (or the disk is full)
            pruned += deleted
            usage = outbox.usage()
        over = usage.stored_bytes > budget * PRUNE_AT_SHARE
        if over and not self._over_budget:
            log.warning(
                "disk_budget_exceeded",
                stored_mb=round(usage.stored_bytes / MB, 1),
                budget_mb=round(budget / MB, 1),
                reason="no delivered events left to prune",
            )
        self._over_budget = over
        log.info(
            "disk_budget_enforced",
            events_pruned=pruned,
            stored_mb_before=round(before / MB, 1),
            stored_mb=round(usage.stored_bytes / MB, 1),
            data_dir_mb=round(usage.data_dir_bytes / MB, 1),
            budget_mb=round(budget / MB, 1),
        )
        return usage

    def _prune(self, reason: str, prune: Callable[[], int], *, report: bool = True) -> int:
        try:
            pruned = prune()
        except DiskFullError as err:  # no room even for the deletes: the pipeline waits
            log.debug("outbox_prune_failed", reason=reason, error=str(err))
            return 0
        except StoreError as err:  # housekeeping: try again next time
            log.error("outbox_prune_failed", reason=reason, error=str(err))
            return 0
        if pruned:
            self._metrics.events_pruned.labels(reason=reason).inc(pruned)
            if report:
                log.info("outbox_pruned", events=pruned, reason=reason)
        return pruned

    def _settle_warning(
        self, warning: str | None, *, kept_bytes: int = 0, budget_bytes: int | None = None
    ) -> None:
        if warning is not None and not self._warned:
            log.warning(
                "disk_budget_warning",
                message=warning,
                kept_mb=round(kept_bytes / MB, 1),
                budget_mb=None if budget_bytes is None else round(budget_bytes / MB, 1),
            )
        elif warning is None and self._warned:
            log.info("disk_budget_warning_cleared")
        self._warned = warning is not None
