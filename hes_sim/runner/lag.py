"""Event-loop lag, reported in simulated seconds: how faithful the run's timing was.

A scale too high for the machine shows up here instead of silently distorting figures.
"""

from __future__ import annotations

import asyncio
import time

TICK_S = 0.05  # wall seconds between probes


class LoopLagMonitor:
    def __init__(self, time_scale: float) -> None:
        self._time_scale = time_scale
        self.samples: list[float] = []  # simulated seconds late, one per probe

    async def run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(TICK_S)
            late = time.perf_counter() - before - TICK_S
            self.samples.append(max(0.0, late) * self._time_scale)
