"""One loop timer armed for the earliest deadline of a schedule, none while nothing waits.

What the fleet's wake-ups and the lean links' keep-alive wheel share: each keeps its own
entries and asks this timer to fire at the earliest; arming for a later deadline than
the one set changes nothing, and firing hands control back to the owner, which arms
again for what is left.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable


class EarliestTimer:
    __slots__ = ("_at", "_fire", "_handle", "_now")

    def __init__(self, now: Callable[[], float], fire: Callable[[], None]) -> None:
        self._now = now  # the owner's clock (the deadlines' time base)
        self._fire = fire
        self._handle: asyncio.TimerHandle | None = None
        self._at = math.inf

    @property
    def armed(self) -> bool:
        return self._handle is not None

    def arm(self, deadline: float | None) -> None:
        """Fire at ``deadline`` unless set to fire earlier already; None: disarm."""
        if deadline is None:
            self.disarm()
            return
        if self._handle is not None and self._at <= deadline:
            return  # due no later than this already
        self.disarm()
        self._at = deadline
        delay = max(0.0, deadline - self._now())
        self._handle = asyncio.get_running_loop().call_later(delay, self._fired)

    def disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._at = math.inf

    def _fired(self) -> None:
        self._handle = None
        self._at = math.inf
        self._fire()
