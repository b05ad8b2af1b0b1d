"""What a meter keeps lazily: its flags (as asyncio.Event behaves where the runtime uses
it) and its random draws."""

from __future__ import annotations

import asyncio
import random
import sys

import pytest

from hes_sim.backoff import LazyRandom
from hes_sim.meter_sim.flag import Flag, Tally


async def test_waiters_wake_on_set_and_a_set_flag_does_not_block():
    flag = Flag()
    woken: list[int] = []

    async def waiter(n: int) -> None:
        await flag.wait()
        woken.append(n)

    tasks = [asyncio.create_task(waiter(n)) for n in range(3)]
    await asyncio.sleep(0)
    assert woken == []
    flag.set()
    await asyncio.gather(*tasks)
    assert sorted(woken) == [0, 1, 2]
    async with asyncio.timeout(1):
        await flag.wait()  # set: returns at once
    flag.clear()
    assert not flag.is_set()


async def test_a_cancelled_wait_leaves_no_waiter_behind():
    flag = Flag()
    task = asyncio.create_task(flag.wait())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert flag._waiters is None
    flag.set()
    assert flag.is_set()


def test_an_idle_flag_is_far_smaller_than_an_event():
    assert sys.getsizeof(Flag()) < 100
    assert not hasattr(Flag(), "__dict__")


def test_lazy_draws_are_those_of_the_seeded_generator_and_cost_nothing_until_drawn():
    lazy, eager = LazyRandom(1234), random.Random(1234)
    assert lazy._rng is None
    assert [lazy.uniform(0, 10) for _ in range(5)] == [eager.uniform(0, 10) for _ in range(5)]
    assert sys.getsizeof(LazyRandom(1)) < 100


def test_a_tally_counts_the_flags_set_as_they_change():
    tally = Tally()
    flags = [Flag(tally=tally), Flag(value=True, tally=tally), Flag(tally=tally)]
    assert tally.count == 1
    flags[0].set()
    flags[0].set()  # already set: counted once
    assert tally.count == 2
    flags[2].clear()  # already clear: nothing to take away
    flags[1].clear()
    flags[1].clear()
    assert tally.count == 1
    for flag in flags:
        flag.set()
    assert tally.count == sum(flag.is_set() for flag in flags) == 3
