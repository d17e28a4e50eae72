"""``BRIDGE_SHARD=i/N``: which devices of a pushed config this instance takes (CONTRACT §2).

Several bridges share one broker and one Odoo; Odoo pushes the same whole
config to each, and each takes only its shard: the devices whose stable hash
of ``device_id`` falls in shard ``i`` of ``N`` (1-based). The hash is SHA-1 of
the UTF-8 ``device_id`` read as a big-endian integer, modulo ``N``, plus one,
so any tool (Odoo included) can compute which instance owns a device, and it
never changes between runs, machines or Python versions (unlike ``hash()``).
Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

MAX_SHARDS: Final = 1024
_SHARD_TEXT: Final = re.compile(r"\s*(\d{1,9})\s*/\s*(\d{1,9})\s*")


class _HasDeviceId(Protocol):
    @property
    def device_id(self) -> str: ...


DeviceT = TypeVar("DeviceT", bound=_HasDeviceId)


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count`` (1 <= index <= count); ``str()`` is ``"i/N"``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"the number of shards must be between 1 and {MAX_SHARDS}")
        if not 1 <= self.index <= self.count:
            raise ValueError(f"the shard must be between 1 and {self.count} (shards count from 1)")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def takes(self, device_id: str) -> bool:
        """True when ``device_id`` belongs to this shard."""
        return shard_of(device_id, self.count) == self.index

    def select(self, devices: Iterable[DeviceT]) -> list[DeviceT]:
        """The devices of this shard, in their order."""
        return [device for device in devices if self.takes(device.device_id)]

    def client_id(self, client_id: str) -> str:
        """The MQTT client id of this instance: ``<client_id>-shard<i>``.

        Every instance is usually pushed the same ``mqtt.client_id``; two
        bridges with one id would take each other's persistent session over,
        so each shard gets its own, stable as long as its index is.
        """
        return f"{client_id}-shard{self.index}"


def shard_of(device_id: str, count: int) -> int:
    """The shard (1..count) of ``device_id``: SHA-1 of its UTF-8 bytes, mod ``count``, plus 1."""
    digest = hashlib.sha1(device_id.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest, "big") % count + 1


def parse_shard(text: str) -> Shard:
    """``"2/3"`` -> ``Shard(2, 3)``; ``ValueError`` with a sentence saying what is wrong."""
    match = _SHARD_TEXT.fullmatch(text)
    if match is None:
        raise ValueError("must be i/N, e.g. 2/3 for the second of three instances")
    return Shard(int(match.group(1)), int(match.group(2)))
