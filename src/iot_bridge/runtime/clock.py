"""The clock port's real implementation: wall-clock time and ``asyncio.sleep``."""

from __future__ import annotations

import asyncio
import time


class SystemClock:
    """Wall-clock time and ``asyncio.sleep``."""

    def now(self) -> float:
        """Unix seconds."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """Sleep for real."""
        await asyncio.sleep(max(0.0, seconds))
