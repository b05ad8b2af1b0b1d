"""Wake-ups for every meter of a fleet from one timer, instead of a sleeping task each.

A connected meter that waits for its next push holds no task and no timer handle: it
files itself here under the (wall) time it wants to run again and is woken then. An
entry is a three-item list, so a hundred thousand waiting meters cost a heap of small
lists and one ``call_at`` handle on the loop.

:class:`WakeHeap` is the pure logic (time is passed in, so it is tested with a hand
clock); :class:`WakeScheduler` drives it from one handle on the running loop, armed for
the earliest entry and dropped when none is left.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Protocol

import structlog

from hes_sim.meter_sim.loop_timer import EarliestTimer

log = structlog.get_logger(__name__)


class Sleeper(Protocol):
    def wake(self) -> None:
        """Its time has come (it must not block: start work, don't do it)."""
        ...


# [when, sequence, sleeper or None once cancelled]: lists compare by time, then by the
# order of filing, so the sleeper itself is never compared
Entry = list[float | int | Sleeper | None]


def still_filed(entry: Entry) -> bool:
    """Whether ``entry`` still waits for its time: neither woken, cancelled nor cleared."""
    return entry[2] is not None


class WakeHeap:
    """Sleepers by the time they want to be woken; ``pop_due(now)`` hands back the due."""

    def __init__(self) -> None:
        self._heap: list[Entry] = []
        self._order = itertools.count()
        self.pending = 0  # entries filed and neither woken nor cancelled

    def add(self, when: float, sleeper: Sleeper) -> Entry:
        entry: Entry = [when, next(self._order), sleeper]
        heapq.heappush(self._heap, entry)
        self.pending += 1
        return entry

    def cancel(self, entry: Entry) -> None:
        """The sleeper no longer wants this wake-up; the entry stays filed, inert, until
        its time comes (a cancel costs no search). Cancelling twice, or after the wake,
        does nothing."""
        if entry[2] is not None:
            entry[2] = None
            self.pending -= 1
            if not self.pending:
                self.clear()

    def clear(self) -> None:
        for entry in self._heap:
            entry[2] = None  # a later cancel of a forgotten entry does nothing
        self._heap.clear()
        self.pending = 0

    def next_due(self) -> float | None:
        """The time of the earliest entry filed (a cancelled one counts until dropped)."""
        return float(self._heap[0][0]) if self._heap else None  # type: ignore[arg-type]

    def pop_due(self, now: float) -> list[Sleeper]:
        """Sleepers whose time is ``now`` or earlier, earliest first (ties in filing order)."""
        due: list[Sleeper] = []
        heap = self._heap
        while heap and heap[0][0] <= now:  # type: ignore[operator]
            entry = heapq.heappop(heap)
            sleeper, entry[2] = entry[2], None  # woken: a later cancel does nothing
            if sleeper is not None:
                due.append(sleeper)  # type: ignore[arg-type]
        self.pending -= len(due)
        return due


class WakeScheduler(WakeHeap):
    """The heap on the running loop: one timer handle for all sleepers, none when idle."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        super().__init__()
        self._clock = clock
        self._timer = EarliestTimer(self.now, self._fire)

    def now(self) -> float:
        """The scheduler's clock: the loop's, unless another was given."""
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    @property
    def armed(self) -> bool:
        return self._timer.armed

    def wake_in(self, delay_s: float, sleeper: Sleeper) -> Entry:
        """Wake ``sleeper`` ``delay_s`` (wall) seconds from now."""
        entry = self.add(self.now() + max(0.0, delay_s), sleeper)
        self._arm()
        return entry

    def clear(self) -> None:
        """Forget every sleeper and drop the timer (the sleepers are not woken)."""
        super().clear()
        self._disarm()

    def _arm(self) -> None:
        self._timer.arm(self.next_due())

    def _disarm(self) -> None:
        self._timer.disarm()

    def _fire(self) -> None:
        try:
            for sleeper in self.pop_due(self.now()):
                try:
                    sleeper.wake()
                except Exception:
                    # one sleeper's bug must not cost the others due now their wake-up
                    log.exception("wake_failed", sleeper=repr(sleeper))
        finally:
            self._arm()
