"""Keep-alives for every lean link of a process from one timer, not one per link.

A link only records when it last wrote a packet (a float store per write). The wheel
files each link under the tick its next deadline falls in and looks at it again only
then: a link that wrote since is filed anew at its new deadline; a link idle for a whole
keep-alive gets a PINGREQ; a link whose PINGREQ went unanswered for ``pingresp_timeout_s``
is declared lost. Idle links cost no task, no timer and no CPU between their deadlines.

:class:`KeepAliveWheel` is the pure logic (time is passed in, so it is tested with a hand
clock); :class:`KeepAliveScheduler` drives it from one ``call_later`` handle on the
running loop, armed for the earliest non-empty tick and dropped when no link is left.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from typing import Protocol

import structlog

from hes_sim.meter_sim.loop_timer import EarliestTimer

log = structlog.get_logger(__name__)


class KeepAliveLink(Protocol):
    """What the wheel needs of a link; times are on the wheel's clock."""

    last_sent: float  # when the link last wrote a packet
    ping_sent_at: float | None  # when the unanswered PINGREQ went out, if one is pending

    @property
    def closed(self) -> bool: ...

    def send_ping(self, now: float) -> None:
        """Write a PINGREQ (which sets ``last_sent`` and ``ping_sent_at`` to ``now``)."""
        ...

    def keepalive_lost(self) -> None:
        """The PINGRESP did not come: close the link as lost."""
        ...


class KeepAliveWheel:
    """Links filed by tick; ``run_due(now)`` handles every link whose tick has come.

    Deadlines are rounded up to the tick, so a PINGREQ leaves at most one tick after the
    keep-alive: the tick is kept well under the half keep-alive a broker allows extra.
    """

    def __init__(
        self,
        keepalive_s: float,
        *,
        pingresp_timeout_s: float | None = None,
        tick_s: float | None = None,
    ) -> None:
        if keepalive_s <= 0:
            raise ValueError(f"keep-alive must be positive, not {keepalive_s}")
        self.keepalive_s = keepalive_s
        self.pingresp_timeout_s = pingresp_timeout_s or keepalive_s
        self.tick_s = tick_s or min(1.0, keepalive_s / 8)
        self._slots: dict[int, list[KeepAliveLink]] = {}
        self._ticks: list[int] = []  # heap of the keys of _slots
        self.links = 0  # links added and not yet discarded
        self.pings = 0
        self.missed = 0

    def add(self, link: KeepAliveLink) -> None:
        self.links += 1
        self._file(link, link.last_sent + self.keepalive_s)

    def discard(self, link: KeepAliveLink) -> None:
        """The link closed: it is forgotten when its tick comes (it is not searched for),
        and everything is dropped at once when it was the last."""
        self.links -= 1
        if self.links <= 0:
            self.clear()

    def clear(self) -> None:
        self.links = 0
        self._slots.clear()
        self._ticks.clear()

    def next_deadline(self) -> float | None:
        return self._ticks[0] * self.tick_s if self._ticks else None

    def run_due(self, now: float) -> None:
        while self._ticks and self._ticks[0] * self.tick_s <= now:
            for link in self._slots.pop(heapq.heappop(self._ticks)):
                if not link.closed:
                    self._check(link, now)

    def _check(self, link: KeepAliveLink, now: float) -> None:
        if link.ping_sent_at is not None and now >= link.ping_sent_at + self.pingresp_timeout_s:
            self.missed += 1
            link.keepalive_lost()
            return
        if link.ping_sent_at is None and now >= link.last_sent + self.keepalive_s:
            self.pings += 1
            link.send_ping(now)
        deadline = link.last_sent + self.keepalive_s
        if link.ping_sent_at is not None:
            deadline = min(deadline, link.ping_sent_at + self.pingresp_timeout_s)
        # at least one tick on, so that a link that did not take its ping cannot spin
        self._file(link, max(deadline, now + self.tick_s))

    def _file(self, link: KeepAliveLink, deadline: float) -> None:
        tick = math.ceil(deadline / self.tick_s)
        slot = self._slots.get(tick)
        if slot is None:
            self._slots[tick] = [link]
            heapq.heappush(self._ticks, tick)
        else:
            slot.append(link)


class KeepAliveScheduler(KeepAliveWheel):
    """The wheel on the running loop: one timer handle for all links, none when idle."""

    def __init__(
        self,
        keepalive_s: float,
        *,
        pingresp_timeout_s: float | None = None,
        tick_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(keepalive_s, pingresp_timeout_s=pingresp_timeout_s, tick_s=tick_s)
        self.now = clock
        self._timer = EarliestTimer(self.now, self._fire)

    @property
    def armed(self) -> bool:
        """Whether the one timer is set (it is, exactly while links are filed)."""
        return self._timer.armed

    def add(self, link: KeepAliveLink) -> None:
        super().add(link)
        self._arm()

    def clear(self) -> None:
        """Forget every link and drop the timer (the links themselves are not touched)."""
        super().clear()
        self._disarm()

    def _arm(self) -> None:
        self._timer.arm(self.next_deadline())

    def _disarm(self) -> None:
        self._timer.disarm()

    def _fire(self) -> None:
        try:
            self.run_due(self.now())
        finally:
            # whatever one link did, the others keep their keep-alives
            self._arm()
