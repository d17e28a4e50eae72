"""Many HTTP clients in a process of their own, for the server's crowd tests and benchmark.

    python -m tests.support.http_crowd --port P --count N --mode idle|drip|sse
                                       [--drip-interval S] [--reconnect-after S]

``idle`` clients connect and send nothing; ``drip`` clients send a request head
one byte per ``--drip-interval`` that never ends (the first byte of all of them
once they all connected); ``sse`` clients ask
``GET /stream`` and read what comes. With ``--reconnect-after`` a client the
server closed connects again that long after (an attacker who keeps coming back).

It prints one JSON line when every client has connected (``ready``: how many did,
how many failed, how long it took), then waits on its stdin: at its end it closes
every connection; at a line ``wait`` it waits for the server to end every
connection instead. Then it prints a last line (``done``): how each connection ended
(the status the server answered, ``closed`` for an end without an answer,
``reset`` (or a broken pipe), ``open`` when it was still open) and, for drip clients the server
ended, the seconds from their first byte to that end (min and max). A separate
process: the clients' sockets and their work are not the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
DRIP_HEAD = b"GET /drip HTTP/1.1\r\nHost: crowd\r\nX-Pad: " + b"a" * 100_000
SSE_REQUEST = b"GET /stream HTTP/1.1\r\nHost: crowd\r\n\r\n"


class Crowd:
    """The clients and what happened to them."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.outcomes: Counter[str] = Counter()
        self.ended_after: list[float] = []  # drip: first byte -> the server's end, seconds
        self.ended = 0  # connections the server ended
        self.writers: dict[asyncio.StreamWriter, int] = {}  # drip clients: next byte's index
        self.first_byte_at: dict[asyncio.StreamWriter, float] = {}
        self.failed = 0
        self.stopping = False
        self.tasks: set[asyncio.Task[None]] = set()

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            return await asyncio.open_connection("127.0.0.1", self.args.port)
        except OSError:
            self.failed += 1
            return None

    async def client(self, opened: asyncio.Future[None] | None) -> None:
        while True:
            connection = await self.connect()
            if opened is not None and not opened.done():
                opened.set_result(None)
            if connection is None:
                return
            await self.serve_one(*connection)
            if self.stopping or self.args.reconnect_after is None:
                return
            await asyncio.sleep(self.args.reconnect_after)
            opened = None

    async def serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.args.mode == "drip":
            self.writers[writer] = 0  # the drip loop sends its bytes
        elif self.args.mode == "sse":
            writer.write(SSE_REQUEST)
        outcome = "open"
        try:
            data = await reader.read(65536)
            if data.startswith(b"HTTP/1.1 "):
                outcome = data.split(b" ", 2)[1].decode()
                if self.args.mode == "sse":
                    outcome = "open"
                    while data:  # the stream goes on until the process is killed
                        data = await reader.read(65536)
                    outcome = "closed"
            elif not data:
                outcome = "closed"
            else:
                outcome = "garbage"
        except (ConnectionResetError, BrokenPipeError):
            # A drip byte written after the server closed (a 503 then a close at once) can
            # fail before the answer was read: the server ended it, by a reset or a close.
            outcome = "reset"
        finally:
            if outcome != "open":
                self.ended += 1
                first = self.first_byte_at.get(writer)
                if first is not None:
                    self.ended_after.append(time.monotonic() - first)
            self.writers.pop(writer, None)
            self.first_byte_at.pop(writer, None)
            writer.close()
            self.outcomes[outcome] += 1

    def drip_once(self) -> None:
        """The next byte of every dripping client's head."""
        now = time.monotonic()
        for writer, index in list(self.writers.items()):
            if writer.is_closing():
                continue
            if index == 0:
                self.first_byte_at[writer] = now
            writer.write(DRIP_HEAD[index : index + 1])
            self.writers[writer] = index + 1

    async def drip(self) -> None:
        """One byte to every dripping client per interval (one loop for all: cheap)."""
        while True:
            await asyncio.sleep(self.args.drip_interval)
            self.drip_once()

    async def run(self) -> dict[str, Any]:
        started = time.monotonic()
        gate = asyncio.Semaphore(self.args.connect_concurrency)
        opened: list[asyncio.Future[None]] = []
        loop = asyncio.get_running_loop()
        for _ in range(self.args.count):
            await gate.acquire()
            future: asyncio.Future[None] = loop.create_future()
            future.add_done_callback(lambda _: gate.release())
            opened.append(future)
            task = asyncio.create_task(self.client(future))
            self.tasks.add(task)
        await asyncio.gather(*opened)
        return {
            "connected": self.args.count - self.failed,
            "failed": self.failed,
            "seconds": round(time.monotonic() - started, 3),
        }

    async def finish(self) -> dict[str, Any]:
        self.stopping = True
        for writer in list(self.writers):
            writer.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        ended = self.ended_after
        return {
            "outcomes": dict(self.outcomes),
            "ended_after_s": [min(ended), max(ended)] if ended else None,
            "ended": self.ended,
        }


class CrowdProcess:
    """The test's side: ``async with CrowdProcess(port, count, mode) as crowd`` starts the
    clients and waits until they connected (``crowd.ready``); leaving closes them and
    reads how they ended (``crowd.done``). ``kill()`` ends them all at once instead."""

    def __init__(self, port: int, count: int, mode: str, *options: str) -> None:
        self.argv = ["--port", str(port), "--count", str(count), "--mode", mode, *options]
        self.process: asyncio.subprocess.Process | None = None
        self.ready: dict[str, Any] = {}
        self.done: dict[str, Any] = {}

    async def __aenter__(self) -> CrowdProcess:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.support.http_crowd", *self.argv,
            cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self.ready = (await self._line(60.0))["ready"]
        return self

    async def _line(self, timeout_s: float) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout_s)
        assert line, "the crowd process ended without a report"
        return dict(json.loads(line))

    async def ended(self, timeout_s: float) -> dict[str, Any]:
        """Wait until the server has ended every connection; how they ended."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(b"wait\n")
        await self.process.stdin.drain()
        self.done = (await self._line(timeout_s))["done"]
        return self.done

    async def kill(self) -> None:
        """SIGKILL: the kernel closes every client socket at once."""
        assert self.process is not None
        self.process.kill()
        await self.process.wait()

    async def __aexit__(self, *exc: object) -> None:
        assert self.process is not None and self.process.stdin is not None
        if self.process.returncode is not None:
            return  # killed
        self.process.stdin.close()
        try:
            if not self.done:
                self.done = (await self._line(60.0))["done"]
        finally:
            await asyncio.wait_for(self.process.wait(), 60.0)


def _print(**line: Any) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def main(args: argparse.Namespace) -> None:
    crowd = Crowd(args)
    ready = await crowd.run()
    dripping = None
    if args.mode == "drip":  # every client's first byte at once: their deadlines start together
        crowd.drip_once()
        dripping = asyncio.create_task(crowd.drip())
    _print(ready=ready)
    command = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if command.strip() == "wait":
        await asyncio.gather(*crowd.tasks, return_exceptions=True)
    if dripping is not None:
        dripping.cancel()
    _print(done=await crowd.finish())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--mode", choices=("idle", "drip", "sse"), required=True)
    parser.add_argument("--drip-interval", type=float, default=0.5)
    parser.add_argument("--reconnect-after", type=float, default=None)
    parser.add_argument("--connect-concurrency", type=int, default=64)
    return parser.parse_args(argv)


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main(parse_args()))
