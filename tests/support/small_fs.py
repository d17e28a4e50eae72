"""A real, small filesystem for disk-full tests: a tmpfs the test mounts, or a loop device.

``SmallFilesystem(path, size_mb).mount()`` mounts a tmpfs of that size at
``path`` (root, or CAP_SYS_ADMIN); when that is refused it tries an ext4 image
on a loop device. When neither can be made the test FAILS with both reasons:
a disk-full test that silently skipped would prove nothing.

``fill()`` writes a filler file until the filesystem refuses (ENOSPC), keeping
no descriptor open, so ``free()`` (deleting it) gives the space back at once.
The fixture ``small_fs`` makes them and unmounts them at teardown (lazily:
a bridge process killed at teardown may still hold files there).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

FILLER = ".filler"


class SmallFilesystemUnavailable(RuntimeError):
    """Neither a tmpfs nor a loop device could be mounted here."""


class SmallFilesystem:
    """A mounted filesystem of ``size_mb`` MiB at ``path``."""

    def __init__(self, path: Path, size_mb: int) -> None:
        self.path = path
        self.size_mb = size_mb
        self.kind: str | None = None
        self._loop_image: Path | None = None

    def mount(self) -> SmallFilesystem:
        """Mount a tmpfs (or a loop ext4); ``SmallFilesystemUnavailable`` with the reasons."""
        self.path.mkdir(parents=True, exist_ok=True)
        tmpfs = _run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m", "tmpfs", str(self.path)]
        )
        if tmpfs is None:
            self.kind = "tmpfs"
            return self
        loop = self._mount_loop()
        if loop is None:
            self.kind = "loop-ext4"
            return self
        raise SmallFilesystemUnavailable(
            f"cannot mount a small filesystem at {self.path}: tmpfs: {tmpfs}; loop device: {loop}"
        )

    def _mount_loop(self) -> str | None:
        image = self.path.with_name(self.path.name + ".img")
        try:
            with image.open("wb") as handle:
                handle.truncate(self.size_mb * 1024 * 1024)
        except OSError as err:
            return f"cannot create the image: {err}"
        self._loop_image = image
        made = _run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)])
        if made is not None:
            return made
        return _run(["mount", "-o", "loop", str(image), str(self.path)])

    def mount_read_only(self) -> SmallFilesystem:
        """Mount it read-only instead (a tmpfs): every write fails with EROFS."""
        self.path.mkdir(parents=True, exist_ok=True)
        error = _run(
            ["mount", "-t", "tmpfs", "-o", f"ro,size={self.size_mb}m", "tmpfs", str(self.path)]
        )
        if error is not None:
            raise SmallFilesystemUnavailable(f"cannot mount a read-only tmpfs: {error}")
        self.kind = "tmpfs-ro"
        return self

    def free_bytes(self) -> int:
        """What the filesystem has left."""
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize

    def fill(self) -> int:
        """Write a filler until the filesystem is full; returns the bytes written."""
        written = 0
        fd = os.open(self.path / FILLER, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (1024 * 1024, 64 * 1024, 4096, 512):
                block = bytes(chunk)
                while True:
                    try:
                        written += os.write(fd, block)
                    except OSError as err:
                        if err.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        """Delete the filler: the space is back at once."""
        with contextlib.suppress(FileNotFoundError):
            (self.path / FILLER).unlink()

    def unmount(self) -> None:
        """Unmount (lazily) and drop the loop image."""
        if self.kind is not None:
            _run(["umount", "-l", str(self.path)])
            self.kind = None
        if self._loop_image is not None:
            self._loop_image.unlink(missing_ok=True)
            self._loop_image = None


def _run(command: list[str]) -> str | None:
    """None when ``command`` succeeded, else why not (one line)."""
    if shutil.which(command[0]) is None:
        return f"{command[0]} is not installed"
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except OSError as err:
        return str(err)
    if done.returncode == 0:
        return None
    output = (done.stderr or done.stdout).strip()
    return output.splitlines()[-1] if output else f"exit {done.returncode}"


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Callable[..., SmallFilesystem]]:
    """Mounts small filesystems under ``tmp_path`` (``small_fs(size_mb=16)``); a test that
    cannot have one fails with the reason. Unmounted at teardown."""
    made: list[SmallFilesystem] = []

    def make(size_mb: int = 16, name: str = "card", read_only: bool = False) -> SmallFilesystem:
        fs = SmallFilesystem(tmp_path / name, size_mb)
        made.append(fs)
        try:
            return fs.mount_read_only() if read_only else fs.mount()
        except SmallFilesystemUnavailable as err:
            pytest.fail(str(err))

    yield make
    for fs in made:
        fs.unmount()
