"""A full disk on fakes of the ports: the commit waits and is retried, nothing is acknowledged
meanwhile, the bridge stays up and says so, and carries on by itself when space returns."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from iot_bridge.domain.events import iso_utc
from iot_bridge.errors import StoreError
from iot_bridge.service.housekeeping import CHECK_INTERVAL_S
from iot_bridge.service.ingest.pipeline import DISK_FULL_RETRY_CAP_S, DISK_FULL_RETRY_FIRST_S
from tests.unit.service.fakes import FakeOutbox, Rig, config, shelly


def _retry_delays(rig: Rig) -> list[float]:
    """The sleeps the waiting commit asked for (the housekeeping's are left out)."""
    return [s for s in rig.clock.sleeps if s != CHECK_INTERVAL_S]


def _asleep(rig: Rig) -> bool:
    """The waiting commit sleeps: one sleep for each failed try so far."""
    waiting = rig.bridge.pipeline.disk_full
    return waiting is not None and len(_retry_delays(rig)) == waiting.attempts


async def _retry(rig: Rig) -> None:
    """Let the waiting commit sleep its delay out and try once more."""
    await rig.until(lambda: _asleep(rig), "the retry's sleep")
    before = rig.outbox.commit_attempts
    rig.clock.advance(_retry_delays(rig)[-1])
    await rig.until(lambda: rig.outbox.commit_attempts > before, "another try")


async def _full_disk_during_a_session(rig: Rig) -> None:
    """mill runs (acked 1), then the disk fills and the reading that starts the session waits."""
    rig.source.push(shelly("mill", 500.0, 1))
    await rig.until(lambda: rig.source.acked == [1], "the first ack")
    rig.outbox.disk_full = True
    rig.clock.time += 10.0
    rig.source.push(shelly("mill", 600.0, 2))  # past the start debounce: session_started
    await rig.until(lambda: rig.bridge.pipeline.disk_full is not None, "the wait for space")
    await rig.until(lambda: len(_retry_delays(rig)) == 1, "the first retry's sleep")


async def test_a_full_disk_acknowledges_nothing_and_carries_on_when_space_returns() -> None:
    """Disk full: stays up, nothing acked, degraded with since when; space back: once, acked."""
    rig = await Rig(config("mill")).start()
    with capture_logs() as logs:
        await _full_disk_during_a_session(rig)
        started_waiting = rig.clock.time
        before = list(rig.outbox.events)
        health = await rig.bridge.status.health()
        assert health["status"] == "degraded"
        assert health["store"]["disk_full"] is True
        assert health["store"]["since"] == iso_utc(started_waiting)
        assert "disk holding the data dir is full" in health["store"]["error"]
        assert "the commit of 1 messages and 1 events waits" in health["store"]["error"]
        metrics = rig.bridge.metrics.exposition().decode()
        assert "iot_bridge_store_disk_full 1.0" in metrics
        for _ in range(3):  # still full: each try fails, nothing is acknowledged
            await _retry(rig)
        assert rig.source.acked == [1]
        assert rig.outbox.events == before
        assert rig.task is not None and not rig.task.done()
        rig.outbox.disk_full = False
        await _retry(rig)
        await rig.until(lambda: rig.source.acked == [1, 2], "the ack after the commit")
    kinds = [str(e.event_type) for e in rig.outbox.events]
    assert kinds.count("session_started") == 1
    assert [e["event"] for e in logs if e["event"].startswith("store_disk_full")] == [
        "store_disk_full",
        "store_disk_full_ended",
    ]
    health = await rig.bridge.status.health()
    assert health["status"] == "ok"
    assert health["store"]["disk_full"] is False and health["store"]["error"] is None
    assert "iot_bridge_store_disk_full 0.0" in rig.bridge.metrics.exposition().decode()
    await rig.stop()


async def test_the_retries_back_off_doubling_to_a_cap() -> None:
    """The waiting commit is tried again after 0.5 s, doubling up to 10 s."""
    rig = await Rig(config("mill")).start()
    await _full_disk_during_a_session(rig)
    for _ in range(7):
        await _retry(rig)
    await rig.until(lambda: _asleep(rig), "the eighth sleep")
    assert _retry_delays(rig) == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert DISK_FULL_RETRY_FIRST_S == 0.5 and DISK_FULL_RETRY_CAP_S == 10.0
    assert rig.source.acked == [1]
    await rig.stop()


async def test_a_stop_while_waiting_for_space_is_clean_and_acknowledges_nothing() -> None:
    """SIGTERM during the wait: run() ends without error, the batch stays with the broker."""
    rig = await Rig(config("mill")).start()
    await _full_disk_during_a_session(rig)
    before_snapshots = rig.outbox.load_snapshots()
    with capture_logs() as logs:
        await rig.stop()  # would hang on the pipeline's lock, or raise, if the wait held on
    assert rig.source.acked == [1]
    assert rig.outbox.load_snapshots() == before_snapshots
    assert any(e["event"] == "store_disk_full_abandoned" for e in logs)
    restarted = await Rig(config("mill"), outbox=_copy(rig.outbox)).start()
    detector = restarted.bridge.ingestor.detector("mill")
    assert detector is not None and detector.session_id is None  # the durable state
    await restarted.stop()


async def test_another_store_error_while_waiting_stops_the_bridge() -> None:
    """An error that cannot heal (an I/O error) during the wait is fatal, as before."""
    rig = await Rig(config("mill")).start()
    await _full_disk_during_a_session(rig)
    rig.outbox.disk_full = False
    rig.outbox.fail_commits = True
    rig.clock.advance(_retry_delays(rig)[-1])
    assert rig.task is not None
    with pytest.raises(StoreError, match="I/O error"):
        await rig.task
    await rig.bridge.close()
    assert rig.source.acked == [1]


async def test_a_config_push_while_the_disk_is_full_is_refused_and_changes_nothing() -> None:
    """POST /config during the wait: StoreError (503) at once; nothing persisted or applied."""
    rig = await Rig(config("mill")).start()
    await _full_disk_during_a_session(rig)
    with pytest.raises(StoreError, match="disk holding the data dir is full"):
        await rig.bridge.configs.apply(config("mill", "lathe"))
    assert rig.repository.persisted == []
    assert rig.bridge.ingestor.device_ids == ["mill"]
    await rig.stop()


async def test_silence_while_waiting_for_space_is_not_the_devices() -> None:
    """A wait longer than message_timeout_s invents no session_timeout: the devices were not heard."""
    rig = await Rig(config("mill")).start()
    await _full_disk_during_a_session(rig)
    for _ in range(5):
        await _retry(rig)
    rig.clock.time += 900.0  # 15 minutes of waiting in all, past the 600 s timeout
    rig.outbox.disk_full = False
    await _retry(rig)
    await rig.until(lambda: rig.source.acked == [1, 2], "the ack after the commit")
    rig.clock.time += 1.0
    rig.source.push(shelly("mill", 610.0, 3))
    await rig.until(lambda: rig.source.acked == [1, 2, 3], "the next reading")
    kinds = [str(e.event_type) for e in rig.outbox.events]
    assert "session_timeout" not in kinds and "device_offline" not in kinds
    detector = rig.bridge.ingestor.detector("mill")
    assert detector is not None and detector.session_id is not None
    await rig.stop()


def _copy(outbox: FakeOutbox) -> FakeOutbox:
    return FakeOutbox(
        events=list(outbox.events), snapshots=dict(outbox.snapshots), batches=list(outbox.batches)
    )
