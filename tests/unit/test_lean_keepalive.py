"""The shared keep-alive wheel of the lean transport, on a hand clock."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

from hes_sim.meter_sim.lean.keepalive import KeepAliveScheduler, KeepAliveWheel


@dataclass(eq=False)
class FakeLink:
    last_sent: float = 0.0
    ping_sent_at: float | None = None
    closed: bool = False
    pings: list[float] = field(default_factory=list)
    lost: int = 0

    def send_ping(self, now: float) -> None:
        self.pings.append(now)
        self.last_sent = self.ping_sent_at = now

    def keepalive_lost(self) -> None:
        self.lost += 1
        self.closed = True

    def pong(self) -> None:
        self.ping_sent_at = None


def run(wheel: KeepAliveWheel, until: float, step: float, pong: list[FakeLink] = ()) -> None:
    """Advance the hand clock to ``until``, answering every ping of ``pong`` at once."""
    now = 0.0
    while now <= until:
        wheel.run_due(now)
        for link in pong:
            link.pong()
        now = round(now + step, 6)


def test_an_idle_link_is_pinged_once_a_keepalive_has_passed() -> None:
    wheel = KeepAliveWheel(60, tick_s=1)
    link = FakeLink(last_sent=0.3)
    wheel.add(link)
    wheel.run_due(60.2)
    assert link.pings == []  # 59.9 s idle
    wheel.run_due(61.0)
    assert link.pings == [61.0]  # at most one tick late
    assert wheel.pings == 1


def test_a_link_that_wrote_is_not_pinged_but_filed_again() -> None:
    wheel = KeepAliveWheel(60, tick_s=1)
    link = FakeLink()
    wheel.add(link)
    link.last_sent = 45.0  # it published meanwhile: a float store, nothing else
    wheel.run_due(60)
    assert link.pings == []
    assert wheel.next_deadline() == 105
    wheel.run_due(105)
    assert link.pings == [105]


def test_answered_pings_keep_an_idle_link_for_ever() -> None:
    wheel = KeepAliveWheel(10, tick_s=0.5)
    link = FakeLink()
    wheel.add(link)
    run(wheel, until=100, step=0.25, pong=[link])
    assert link.pings == [10.0 * k for k in range(1, 11)]
    assert link.lost == 0


def test_a_missed_pingresp_loses_the_link_once() -> None:
    wheel = KeepAliveWheel(10, pingresp_timeout_s=4, tick_s=0.5)
    link = FakeLink()
    wheel.add(link)
    run(wheel, until=30, step=0.25)
    assert link.pings == [10.0]
    assert link.lost == 1
    assert wheel.missed == 1
    assert wheel.next_deadline() is None  # not filed again


def test_closed_links_are_dropped_untouched() -> None:
    wheel = KeepAliveWheel(10, tick_s=1)
    kept, closed = FakeLink(), FakeLink()
    wheel.add(kept)
    wheel.add(closed)
    closed.closed = True
    wheel.discard(closed)
    wheel.run_due(10)
    assert closed.pings == []
    assert kept.pings == [10]


def test_discarding_the_last_link_empties_the_wheel() -> None:
    wheel = KeepAliveWheel(10)
    links = [FakeLink() for _ in range(3)]
    for link in links:
        wheel.add(link)
    for link in links:
        link.closed = True
        wheel.discard(link)
    assert wheel.links == 0
    assert wheel.next_deadline() is None


def test_many_links_cost_one_ping_each_per_keepalive_and_few_ticks() -> None:
    wheel = KeepAliveWheel(60, tick_s=1)
    links = [FakeLink(last_sent=i * 0.01) for i in range(5000)]  # connected over 50 s
    for link in links:
        wheel.add(link)
    assert len(wheel._ticks) <= 61
    run(wheel, until=600, step=0.5, pong=links)
    assert {len(link.pings) for link in links} <= {9, 10}
    assert all(b - a == 60 for link in links for a, b in itertools.pairwise(link.pings))


def test_the_default_tick_is_well_inside_the_brokers_grace() -> None:
    # a broker waits 1.5 keep-alives; a ping is at most one tick late
    assert KeepAliveWheel(60).tick_s == 1.0
    assert KeepAliveWheel(2).tick_s == 0.25


async def test_the_scheduler_uses_one_timer_and_none_when_empty() -> None:
    scheduler = KeepAliveScheduler(0.2, tick_s=0.05)
    assert not scheduler.armed
    all_pinged = asyncio.Event()

    class Signalling(FakeLink):
        def send_ping(self, now: float) -> None:
            super().send_ping(now)
            if all(link.pings for link in links):
                all_pinged.set()

    links = [Signalling(last_sent=time.monotonic()) for _ in range(50)]
    for link in links:
        scheduler.add(link)
    assert scheduler.armed
    async with asyncio.timeout(5):
        await all_pinged.wait()
    for link in links:
        link.closed = True
        scheduler.discard(link)
    assert not scheduler.armed


def test_a_link_that_does_not_take_its_ping_is_looked_at_once_a_tick() -> None:
    class Deaf(FakeLink):
        def send_ping(self, now: float) -> None:
            self.pings.append(now)  # writes nothing: last_sent stays in the past

    wheel = KeepAliveWheel(1, tick_s=0.25)
    link = Deaf()
    wheel.add(link)
    run(wheel, until=3, step=0.125)
    assert link.pings == [1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0]
