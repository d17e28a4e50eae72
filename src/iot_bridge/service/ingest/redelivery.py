"""Recognising the broker's redelivery of messages whose effects are already committed.

The bridge acknowledges a QoS 1 message only after the commit that holds its
effects. If the connection (or the process) dies between that commit and the
PUBACK, the broker sends the message again, with the DUP flag and the same
packet id. Processed twice, a reading could invent a session (a high reading
again after the stop it already caused). Each commit therefore records a
fingerprint of its messages (packet id and CRC-32 of the payload, in one
integer); a DUP message matching one of the last committed batches is only
acknowledged.

A false match needs the broker to reuse the packet id for a message with the
very same payload, delivered and lost again within two batches: the skipped
message would then repeat a reading just processed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar
from zlib import crc32


class Redeliverable(Protocol):
    """What the check needs of an MQTT message."""

    @property
    def payload(self) -> bytes: ...

    @property
    def duplicate(self) -> bool: ...

    @property
    def ack_token(self) -> tuple[int, int] | None: ...


M = TypeVar("M", bound=Redeliverable)


def fingerprint(packet_id: int, payload: bytes) -> int:
    """Packet id and CRC-32 of the payload in one int: cheap, stable across processes."""
    return packet_id << 32 | crc32(payload)


def split_redelivered(
    batch: Sequence[M], committed: Iterable[set[int]]
) -> tuple[list[M], list[int]]:
    """The messages still to process, and the fingerprints of the QoS 1 ones among them."""
    recent = list(committed)
    fresh: list[M] = []
    fingerprints: list[int] = []
    for message in batch:
        token = message.ack_token
        if token is None:  # QoS 0: never redelivered
            fresh.append(message)
            continue
        mark = token[1] << 32 | crc32(message.payload)
        if message.duplicate and any(mark in seen for seen in recent):
            continue
        fresh.append(message)
        fingerprints.append(mark)
    return fresh, fingerprints
