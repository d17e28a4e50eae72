"""The data dir: created and proved writable, and locked for one process at a time."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from iot_bridge.errors import StoreError

LOCK_FILENAME = ".lock"


def prepare_dir(data_dir: Path) -> None:
    """Create the data dir if missing and prove a file can be written in it."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StoreError(f"data dir {data_dir} cannot be created: {err.strerror or err}") from err
    if not data_dir.is_dir():
        raise StoreError(f"data dir {data_dir} is not a directory")
    probe = data_dir / f".write-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as err:
        raise StoreError(f"data dir {data_dir} is not writable: {err.strerror or err}") from err


def lock_dir(data_dir: Path) -> int:
    """Hold ``<data-dir>/.lock`` for the life of the store: one process per data dir.

    Two bridges on one outbox would send the same events twice and break the
    per-device order. The lock is released when the store closes or the
    process dies (kill -9 included).
    """
    fd = os.open(data_dir / LOCK_FILENAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        raise StoreError(
            f"data dir {data_dir} is in use by another iot-bridge process"
            " (stop it, or give this one its own --data-dir)"
        ) from err
    return fd
