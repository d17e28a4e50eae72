"""The data dir: created and proved writable, and locked for one process at a time."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from iot_bridge.errors import DiskFullError, StoreError

LOCK_FILENAME = ".lock"
# Errors of a write that heal when space is freed: the filesystem, or the user's quota, is full.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# Below this much free room the filesystem counts as full (SQLite writes a page or more
# at a time, and it may have needed more than what is left).
LOW_SPACE_BYTES = 1024 * 1024
_PROBE_BYTES = 64 * 1024


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
        if err.errno in NO_SPACE_ERRNOS:
            _remove(probe)
            raise DiskFullError(
                f"data dir {data_dir} is on a full disk: {err.strerror or err}"
            ) from err
        raise StoreError(f"data dir {data_dir} is not writable: {err.strerror or err}") from err


def no_space_left(data_dir: Path) -> bool:
    """Whether the filesystem of ``data_dir`` is out of space (or our quota is).

    Asked after a write failed with an error that does not say why: the free
    room the filesystem reports, then a small write of our own (a quota shows
    only there). A read-only, vanished or failing filesystem answers False.
    """
    try:
        fs = os.statvfs(data_dir)
    except OSError:
        return False
    if fs.f_flag & os.ST_RDONLY:
        return False
    if fs.f_bavail * fs.f_frsize < LOW_SPACE_BYTES:
        return True
    probe = data_dir / f".space-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, bytes(_PROBE_BYTES))
        finally:
            os.close(fd)
    except OSError as err:
        return err.errno in NO_SPACE_ERRNOS
    finally:
        _remove(probe)
    return False


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


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
