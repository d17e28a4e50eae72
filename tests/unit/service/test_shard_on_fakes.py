"""BRIDGE_SHARD in the service layer, on fakes: the device set, the push, /health."""

from __future__ import annotations

from iot_bridge.config.env import EnvSettings
from iot_bridge.config.shard import Shard, shard_of
from tests.unit.service.fakes import Rig, config, shelly

DEVICES = ("mill", "lathe", "press", "drill", "saw")
SHARD = Shard(1, 2)
MINE = [d for d in DEVICES if shard_of(d, 2) == 1]
OTHERS = [d for d in DEVICES if shard_of(d, 2) == 2]


def _rig() -> Rig:
    return Rig(config(*DEVICES), env=EnvSettings(shard=SHARD))


async def test_an_instance_runs_only_its_shard_and_says_so_in_health() -> None:
    """BRIDGE_SHARD=1/2: the ingestor holds that shard's devices; /health shows shard and protocol."""
    assert MINE and OTHERS
    rig = await _rig().start()
    assert rig.bridge.ingestor.device_ids == MINE
    health = await rig.bridge.status.health()
    assert health["shard"] == "1/2"
    assert health["devices"] == len(MINE)
    assert health["mqtt"]["protocol"] == "5"
    await rig.stop()


async def test_a_push_is_persisted_whole_and_reports_the_devices_taken() -> None:
    """Every instance is pushed the whole config: all of it is kept, only its shard is run."""
    rig = await Rig(config("mill"), env=EnvSettings(shard=SHARD)).start()
    pushed = config(*DEVICES)
    applied = await rig.bridge.configs.apply(pushed)
    assert applied.devices_configured == len(MINE)
    assert rig.repository.persisted == [pushed]
    assert rig.bridge.configs.config == pushed
    assert rig.bridge.ingestor.device_ids == MINE
    await rig.stop()


async def test_readings_of_another_shards_device_change_nothing() -> None:
    """A message on a device of the other shard (a wildcard subscription elsewhere) makes no event."""
    rig = await _rig().start()
    rig.source.push(shelly(OTHERS[0], 500.0, 1), shelly(MINE[0], 500.0, 2))
    await rig.until(lambda: len(rig.source.acked) >= 2, "2 acknowledgements")
    await rig.stop()
    assert {event.device_id for event in rig.outbox.events} == {MINE[0]}


async def test_without_a_shard_every_device_is_run() -> None:
    """BRIDGE_SHARD unset: all devices, and /health says "shard": null."""
    rig = await Rig(config(*DEVICES)).start()
    assert rig.bridge.ingestor.device_ids == list(DEVICES)
    assert (await rig.bridge.status.health())["shard"] is None
    await rig.stop()
