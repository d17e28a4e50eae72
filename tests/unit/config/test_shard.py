"""BRIDGE_SHARD: parsing i/N and which devices an instance takes (config/shard.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iot_bridge.config.shard import MAX_SHARDS, Shard, parse_shard, shard_of

device_ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)


@dataclass(frozen=True)
class Device:
    """Anything with a device_id, like a DeviceSpec or a DeviceConfig."""

    device_id: str


@pytest.mark.parametrize(
    ("text", "shard"),
    [("1/1", Shard(1, 1)), ("2/3", Shard(2, 3)), (" 3 / 3 ", Shard(3, 3)), ("07/10", Shard(7, 10))],
)
def test_valid_shards_parse(text: str, shard: Shard) -> None:
    """i/N with 1 <= i <= N parses; str() gives the canonical "i/N" back."""
    assert parse_shard(text) == shard
    assert str(parse_shard(text)) == f"{shard.index}/{shard.count}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0/3", "between 1 and 3"),
        ("4/3", "between 1 and 3"),
        ("1/0", "number of shards"),
        ("0/0", "number of shards"),
        (f"1/{MAX_SHARDS + 1}", "number of shards"),
        ("x", "must be i/N"),
        ("2", "must be i/N"),
        ("-1/3", "must be i/N"),
        ("1/3/5", "must be i/N"),
        ("1.5/3", "must be i/N"),
        ("a/b", "must be i/N"),
    ],
)
def test_invalid_shards_say_what_is_wrong(text: str, message: str) -> None:
    """0/3, 4/3, 1/0, x ...: a ValueError with a sentence, never a silent default."""
    with pytest.raises(ValueError, match=message):
        parse_shard(text)


def test_the_hash_is_stable_sha1_of_the_utf8_device_id() -> None:
    """Known values pin the hash: any tool computing SHA-1 mod N + 1 agrees, on every run."""
    assert [shard_of(device_id, 3) for device_id in ("mill", "lathe", "press", "drill")] == [
        shard_of_reference(device_id, 3) for device_id in ("mill", "lathe", "press", "drill")
    ]
    assert shard_of("shelly-pm-workshop", 1) == 1
    # printf mill | sha1sum -> be37ec2e...81bc; that number mod 3 is 0, so shard 1
    assert [shard_of(device_id, 3) for device_id in ("mill", "lathe", "press")] == [1, 3, 2]


def shard_of_reference(device_id: str, count: int) -> int:
    """The documented formula, written out independently."""
    import hashlib

    return int(hashlib.sha1(device_id.encode("utf-8")).hexdigest(), 16) % count + 1


@given(st.lists(device_ids, unique=True, max_size=60), st.integers(1, 12))
def test_every_device_is_taken_by_exactly_one_shard(ids: list[str], count: int) -> None:
    """Property: the N shards partition any device list: each device in exactly one, order kept."""
    devices = [Device(device_id) for device_id in ids]
    taken = [Shard(index, count).select(devices) for index in range(1, count + 1)]
    assert sorted(d.device_id for part in taken for d in part) == sorted(ids)
    for part in taken:
        assert part == [d for d in devices if d in part]  # the config's order


def test_shards_are_roughly_balanced() -> None:
    """1,200 sequential ids over 3 shards: each gets a fair share (a good hash, not crc-like runs)."""
    ids = [f"plug-{number:04d}" for number in range(1200)]
    sizes = [len(Shard(index, 3).select([Device(i) for i in ids])) for index in (1, 2, 3)]
    assert all(340 <= size <= 460 for size in sizes), sizes


def test_one_shard_takes_everything() -> None:
    """1/1 is the same as no shard."""
    devices = [Device("a"), Device("b"), Device("c")]
    assert Shard(1, 1).select(devices) == devices


def test_each_shard_has_its_own_client_id() -> None:
    """The same pushed client_id gives every instance its own, stable MQTT session."""
    assert Shard(2, 3).client_id("iot_bridge") == "iot_bridge-shard2"
    assert Shard(2, 4).client_id("iot_bridge") == "iot_bridge-shard2"
    assert Shard(1, 3).client_id("iot_bridge") != Shard(2, 3).client_id("iot_bridge")
