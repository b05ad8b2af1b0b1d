"""The fleet's shared wake-ups: the pure heap on a hand clock, then on the running loop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from hes_sim.meter_sim.wakeups import WakeHeap, WakeScheduler


@dataclass(eq=False)
class Sleeper:
    name: str
    woken: list[str] = field(default_factory=list)
    at: list[float] = field(default_factory=list)
    clock: WakeScheduler | None = None
    done: asyncio.Event | None = None

    def wake(self) -> None:
        self.woken.append(self.name)
        if self.clock is not None:
            self.at.append(self.clock.now())
        if self.done is not None:
            self.done.set()


def test_the_due_are_handed_back_earliest_first_and_ties_in_filing_order() -> None:
    heap, log = WakeHeap(), []
    for name, when in (("c", 3.0), ("a", 1.0), ("b1", 2.0), ("b2", 2.0), ("d", 4.0)):
        heap.add(when, Sleeper(name, log))
    assert heap.next_due() == 1.0
    assert heap.pop_due(0.5) == []
    for sleeper in heap.pop_due(3.0):
        sleeper.wake()
    assert log == ["a", "b1", "b2", "c"]
    assert heap.pending == 1
    assert heap.next_due() == 4.0


def test_a_cancelled_wake_up_is_never_handed_back_and_cancelling_is_idempotent() -> None:
    heap, log = WakeHeap(), []
    keep = heap.add(1.0, Sleeper("keep", log))
    drop = heap.add(1.0, Sleeper("drop", log))
    heap.cancel(drop)
    heap.cancel(drop)
    assert heap.pending == 1
    assert [s.name for s in heap.pop_due(2.0)] == ["keep"]  # type: ignore[attr-defined]
    heap.cancel(keep)  # after its wake: nothing left to cancel, the count stays right
    assert heap.pending == 0


def test_cancelling_the_last_wake_up_forgets_every_entry() -> None:
    heap = WakeHeap()
    entries = [heap.add(float(n), Sleeper(str(n))) for n in range(3)]
    for entry in entries:
        heap.cancel(entry)
    assert heap.pending == 0
    assert heap.next_due() is None


def test_a_sleeper_filed_again_is_woken_at_its_new_time_only() -> None:
    heap, log = WakeHeap(), []
    sleeper = Sleeper("meter", log)
    first = heap.add(5.0, sleeper)
    heap.cancel(first)  # woken early for something else, it parks until later
    heap.add(9.0, sleeper)
    assert heap.pop_due(5.0) == []
    assert heap.pop_due(9.0) == [sleeper]


async def test_on_the_loop_each_is_woken_in_order_and_not_before_its_time() -> None:
    wakeups, last = WakeScheduler(), asyncio.Event()
    log: list[str] = []
    sleepers = [Sleeper(name, log, clock=wakeups) for name in ("late", "early", "middle")]
    sleepers[0].done = last
    filed_at = wakeups.now()
    wants = {"late": 0.06, "early": 0.02, "middle": 0.04}
    for sleeper in sleepers:
        wakeups.wake_in(wants[sleeper.name], sleeper)
    cancelled = Sleeper("cancelled", log)
    wakeups.cancel(wakeups.wake_in(0.01, cancelled))
    assert wakeups.armed
    async with asyncio.timeout(5):
        await last.wait()
    assert log == ["early", "middle", "late"]
    for sleeper in sleepers:
        assert sleeper.at[0] >= filed_at + wants[sleeper.name]
    assert not wakeups.armed  # no timer left when nobody waits


async def test_one_failing_sleeper_does_not_cost_the_others_their_wake_up() -> None:
    wakeups, log, last = WakeScheduler(), [], asyncio.Event()

    class Broken:
        def wake(self) -> None:
            raise RuntimeError("a bug in one meter")

    wakeups.wake_in(0.0, Broken())
    wakeups.wake_in(0.0, Sleeper("after", log))
    wakeups.wake_in(0.03, Sleeper("later", log, done=last))
    async with asyncio.timeout(5):
        await last.wait()
    assert log == ["after", "later"]


async def test_clear_drops_every_wake_up_and_the_timer() -> None:
    wakeups, log = WakeScheduler(), []
    entry = wakeups.wake_in(0.01, Sleeper("never", log))
    wakeups.clear()
    wakeups.cancel(entry)  # a cancel after the clear changes nothing
    assert not wakeups.armed
    assert wakeups.pending == 0
    assert log == []


async def test_the_scheduler_files_on_its_injected_clock() -> None:
    now = [100.0]
    wakeups = WakeScheduler(clock=lambda: now[0])
    sleeper = Sleeper("x")
    wakeups.wake_in(30, sleeper)
    assert wakeups.next_due() == pytest.approx(130.0)
    assert wakeups.pop_due(129.9) == []
    now[0] = 130.0
    assert wakeups.pop_due(wakeups.now()) == [sleeper]
    wakeups.clear()
