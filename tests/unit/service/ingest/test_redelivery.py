"""Redeliveries of already committed QoS 1 messages are recognised, nothing else is."""

import zlib
from dataclasses import dataclass

from iot_bridge.service.ingest.redelivery import fingerprint, split_redelivered


@dataclass
class Msg:
    topic: str
    payload: bytes
    duplicate: bool = False
    ack_token: tuple[int, int] | None = (1, 7)


def test_a_dup_of_a_committed_message_is_skipped() -> None:
    """Same packet id, same topic and payload, DUP set, in a committed batch: not processed."""
    committed = [{fingerprint(7, b'{"apower":100}')}]
    again = Msg("a/status/pm1:0", b'{"apower":100}', duplicate=True)
    fresh, marks = split_redelivered([again], committed)
    assert fresh == [] and marks == []


def test_new_messages_are_processed_and_fingerprinted() -> None:
    """Without DUP, with other content, or with another packet id, a message is processed."""
    committed = [{fingerprint(7, b'{"apower":100}')}]
    batch = [
        Msg("a/status/pm1:0", b'{"apower":100}'),  # id reused after the ack: no DUP
        Msg("a/status/pm1:0", b'{"apower":0}', duplicate=True),
        Msg("a/status/pm1:0", b'{"apower":100}', duplicate=True, ack_token=(1, 8)),
        Msg("a/status/pm1:0", b'{"apower":5}', ack_token=None),  # QoS 0
    ]
    fresh, marks = split_redelivered(batch, committed)
    assert fresh == batch
    assert len(marks) == 3  # the QoS 0 message has no packet id


def test_fingerprints_are_stable_across_processes() -> None:
    """CRC-32, not hash(): a restart recognises what the previous process committed."""
    assert fingerprint(3, b"p") == 3 << 32 | zlib.crc32(b"p")
