"""The process heap after a big change (start-up, a config push): collect, freeze, give back.

``settle()`` runs after the bridge has built its long-lived state: the loaded
modules, the config and one detector per device (at the start without the
full collection, which follows 10 s later; after each config push in full).
It does three things:

- ``gc.collect()`` once, then ``gc.freeze()``: everything alive now moves to
  the collector's permanent generation, so later full collections no longer
  walk it. Without it a full collection of a 1,000-device bridge under load
  took 45 ms on the loop (measured), the tail of an event's latency.
  ``gc.unfreeze()`` first: what an earlier freeze kept and a push has since
  dropped is collected, not kept for ever.
- ``malloc_trim(0)`` (glibc): the free pages that building that state left in
  the C heap go back to the system instead of counting in RSS.

``share_one_arena()``, before the first thread starts, makes every thread
allocate from glibc's main arena: by default each thread that allocates while
another does gets an arena of its own, and each keeps what it once held (5 MiB
of 103 at 10,000 devices, measured). The GIL serialises nearly all of the
bridge's allocations anyway, so one arena costs no waiting worth measuring.

Where the C library is not glibc (musl, macOS) both are skipped.
"""

from __future__ import annotations

import ctypes
import functools
import gc

_M_ARENA_MAX = -8  # glibc's malloc.h


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    try:  # the symbols the process has loaded, the C library's among them
        libc = ctypes.CDLL(None)
        libc.malloc_trim, libc.mallopt  # noqa: B018 - glibc has both, musl neither
    except (OSError, AttributeError):
        return None
    return libc


def share_one_arena() -> None:
    """Make every thread allocate from glibc's main arena (call before starting threads)."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_ARENA_MAX, 1)


def settle(*, collect: bool = True) -> None:
    """Collect, freeze what is alive, and return the free C heap to the system.

    ``collect=False`` freezes without the full collection (about 0.1 s at 10,000
    devices): for the start, where a later ``settle()`` collects what it froze.
    """
    gc.unfreeze()
    if collect:
        gc.collect()
    gc.freeze()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
