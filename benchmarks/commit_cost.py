"""What one isolated commit and one wake-up cost in CPU on this machine (the trickle's floor).

    python3 benchmarks/commit_cost.py [--commits 200] [--gap-ms 10]

A trickle (10 devices x 1 message/s) commits each message on its own, as the
contract's section 7 asks (acknowledged only after its detector state is
committed; grouping "a few milliseconds"). This measures, with the store's
own SQLite settings (WAL), the CPU of one small commit (one snapshot row)
with ``synchronous=FULL`` (the bridge's) and ``NORMAL``, back to back and
with ``--gap-ms`` of sleep between commits (as in a trickle: the caches and
the vCPU go cold between two messages), and the CPU of the sleep's wake-up
alone. Process CPU (``time.process_time``), user + system.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time


def _commits(conn: sqlite3.Connection, n: int, gap_s: float) -> float:
    """CPU milliseconds per commit of one 300-byte snapshot row."""
    cpu0 = time.process_time()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT OR REPLACE INTO s VALUES (?, ?)", (f"device-{i % 10}", "x" * 300))
        conn.execute("COMMIT")
        if gap_s:
            time.sleep(gap_s)
    return (time.process_time() - cpu0) / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=200)
    parser.add_argument("--gap-ms", type=float, default=10.0)
    args = parser.parse_args()
    gap_s = args.gap_ms / 1000
    with tempfile.TemporaryDirectory() as directory:
        conn = sqlite3.connect(os.path.join(directory, "bench.db"), isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE s (k TEXT PRIMARY KEY, v TEXT)")
        cpu0 = time.process_time()
        for _ in range(args.commits):
            time.sleep(gap_s)
        wake_ms = (time.process_time() - cpu0) / args.commits * 1000
        print(f"load average: {os.getloadavg()}")
        print("| commit | back to back | after a sleep (minus the wake-up) |")
        print("| --- | ---: | ---: |")
        for synchronous in ("FULL", "NORMAL"):
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            hot = _commits(conn, args.commits, 0.0)
            cold = _commits(conn, args.commits, gap_s) - wake_ms
            print(f"| {synchronous} | {hot:.3f} ms CPU | {cold:.3f} ms CPU |")
        print(f"| a {args.gap_ms:g} ms sleep's wake-up alone | | {wake_ms:.3f} ms CPU |")
        conn.close()


if __name__ == "__main__":
    main()
