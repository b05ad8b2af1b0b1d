"""The simulated clock every component shares.

Simulated time is expressed as Unix seconds in the simulated world. One wall second is
``time_scale`` simulated seconds. The anchor is wall-clock time (``time.time``), not the
monotonic clock, so that processes started separately agree on simulated time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """What domain code needs to know about time: the current simulated instant."""

    def now(self) -> float: ...


class SimClock:
    """Simulated time running ``time_scale`` times faster than the wall clock.

    Until :meth:`start` (or a ``wall_anchor`` given up front) the clock stands still at
    ``sim_start``, so that a fleet can connect before the scenario's first second.
    """

    def __init__(
        self, sim_start: float, time_scale: float, wall_anchor: float | None = None
    ) -> None:
        if time_scale <= 0:
            raise ValueError(f"time_scale must be positive, got {time_scale}")
        self.sim_start = sim_start
        self.time_scale = time_scale
        self.wall_anchor = wall_anchor
        self._running = asyncio.Event()
        if wall_anchor is not None:
            self._running.set()

    def start(self, wall_anchor: float | None = None) -> None:
        """From now, or from ``wall_anchor`` (a fleet process joins its run's clock)."""
        self.wall_anchor = time.time() if wall_anchor is None else wall_anchor
        self._running.set()

    async def started(self) -> None:
        """Return once the clock runs."""
        await self._running.wait()

    @property
    def running(self) -> bool:
        return self.wall_anchor is not None

    def now(self) -> float:
        if self.wall_anchor is None:
            return self.sim_start
        return self.sim_start + (time.time() - self.wall_anchor) * self.time_scale

    def elapsed(self) -> float:
        """Simulated seconds since the start of the run."""
        return self.now() - self.sim_start

    def wall_seconds(self, sim_seconds: float) -> float:
        return sim_seconds / self.time_scale

    async def sleep_until(self, sim_time: float) -> None:
        """Sleep until the simulated instant ``sim_time`` (returns at once if it has passed).

        While the clock stands still (before ``start``) it waits for the start first, so it
        never wakes before ``sim_time``."""
        if sim_time <= self.now():
            return
        await self._running.wait()
        delay = (sim_time - self.now()) / self.time_scale
        if delay > 0:
            await asyncio.sleep(delay)


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds
