"""A fleet's cold start spread over ``start_spread``: each meter's first connect at its
seeded point of the window, filed in the fleet's one wake-up scheduler (no task or timer
a meter). In-memory links stand in for MQTT; the run's clock is a fast SimClock, and
what is asserted is the order and the lower bound of each connect (never early), never
how late the loop was."""

from __future__ import annotations

import asyncio

import pytest

from hes_sim.meter_sim.fleet import Fleet, build_meters, first_connect_delay
from hes_sim.meter_sim.meter import MeterKind
from hes_sim.meter_sim.runtime import RunPlan
from hes_sim.meter_sim.schedule import IntervalSchedule
from tests.unit.test_idle_meter import IST, SCALE, START, MemoryLink, Rig, only_this_task

SPREAD_S = 600.0  # simulated: 0.67 wall s at x900


class ConnectLog:
    """A link factory that notes which meter began to connect, and when (loop time)."""

    def __init__(self, rig: Rig) -> None:
        self._rig = rig
        self.began: list[tuple[str, float]] = []

    def __call__(self, meter_id: str) -> MemoryLink:
        self.began.append((meter_id, asyncio.get_running_loop().time()))
        return self._rig.factory(meter_id)

    @property
    def order(self) -> list[str]:
        return [meter_id for meter_id, _ in self.began]


def spread_fleet(rig: Rig, links: ConnectLog, meters: int, spread_s: float, seed: int = 1) -> Fleet:
    return Fleet(
        build_meters({MeterKind.SINGLE_PHASE: meters}, seed, IST),
        links,
        rig.bus,
        seed=seed,
        time_scale=SCALE,
        push_randomisation_s=0,
        start_spread_s=spread_s,
        clock=rig.clock,
    )


def test_first_connects_are_seeded_and_spread_over_the_window() -> None:
    ids = [f"SP{n:07d}" for n in range(1, 2001)]
    draws = [first_connect_delay(7, meter_id, SPREAD_S) for meter_id in ids]
    assert draws == [first_connect_delay(7, meter_id, SPREAD_S) for meter_id in ids]
    assert draws != [first_connect_delay(8, meter_id, SPREAD_S) for meter_id in ids]
    assert all(0 <= draw < SPREAD_S for draw in draws)
    tenths = [0] * 10
    for draw in draws:
        tenths[int(draw / SPREAD_S * 10)] += 1
    assert min(tenths) > 150  # about 200 in each tenth of the window: uniform, not bunched
    # the same meter and seed scale with the window: one draw, not a new one per spread
    assert first_connect_delay(7, ids[0], 2 * SPREAD_S) == pytest.approx(2 * draws[0])
    assert first_connect_delay(7, ids[0], 0.0) == 0.0


async def test_a_spread_cold_start_files_every_meter_and_connects_each_at_its_draw() -> None:
    rig = Rig()
    links = ConnectLog(rig)
    fleet = spread_fleet(rig, links, 40, SPREAD_S)
    loop = asyncio.get_running_loop()
    entering = loop.time()
    async with fleet:
        entered = loop.time()
        # waiting for their turn: no link, no task, one wake-up each in the shared heap
        assert links.began == []
        assert only_this_task()
        assert fleet._wakeups.pending == 40
        due: dict[str, float] = {}
        for runtime in fleet.runtimes:
            meter_id = runtime.meter.meter_id
            wall = first_connect_delay(1, meter_id, SPREAD_S) / SCALE
            entry = runtime._wake_entry
            assert entry is not None
            when = float(entry[0])  # type: ignore[arg-type]
            assert entering + wall <= when <= entered + wall
            due[meter_id] = when
        await fleet.wait_connected()
    # each began to connect at its turn, never before, in the order of the draws
    assert links.order == sorted(due, key=due.__getitem__)
    for meter_id, began in links.began:
        assert began >= due[meter_id]
    assert [link.exited for link in rig.links] == [None] * 40  # a goodbye each at the stop
    # drawn on a generator of their own: the meters' kept ones (back-off, restoration)
    # were neither built (2.5 KB each) nor moved
    assert all(runtime._rng._rng is None for runtime in fleet.runtimes)


async def test_the_run_start_does_not_hasten_meters_waiting_for_their_turn() -> None:
    rig = Rig()
    links = ConnectLog(rig)
    day = 86_400.0  # 96 wall s at x900: no meter's turn comes during the test
    async with spread_fleet(rig, links, 5, day) as fleet:
        # a shard run alone (hes-sim fleet) starts its meters at once, before they connect
        fleet.start(RunPlan(IntervalSchedule(START, START + 3600, 900)))
        assert only_this_task()
        assert fleet._wakeups.pending == 5
        fleet.runtimes[0].wake()  # any other wake-up (a frame, power) is not its turn
        assert only_this_task()
    # the stop drops the turns: the meters leave without ever connecting, and no task stays
    assert links.began == []
    assert fleet.connected == 0
    assert fleet._wakeups.pending == 0
    assert only_this_task()


async def test_without_a_spread_every_meter_begins_to_connect_at_once() -> None:
    rig = Rig()
    links = ConnectLog(rig)
    async with spread_fleet(rig, links, 5, 0.0) as fleet:
        # as before the spread existed: a worker each, started by entering the fleet
        assert all(runtime._worker is not None for runtime in fleet.runtimes)
        assert fleet._wakeups.pending == 0
        await fleet.wait_connected()
        assert links.order == [runtime.meter.meter_id for runtime in fleet.runtimes]


async def test_a_negative_spread_is_refused() -> None:
    with pytest.raises(ValueError, match="start_spread_s"):
        spread_fleet(Rig(), ConnectLog(Rig()), 1, -1.0)


async def test_the_fleets_counts_follow_its_meters() -> None:
    """The counts a fleet process reports, kept as flags change, are what a count of its
    meters gives, through connects and power cuts."""
    rig = Rig()
    links = ConnectLog(rig)

    def scanned(fleet: Fleet) -> tuple[int, int, int]:
        runtimes = fleet.runtimes
        return (
            sum(r.connected.is_set() for r in runtimes),
            sum(r.finished.is_set() for r in runtimes),
            sum(r.meter.powered for r in runtimes),
        )

    async with spread_fleet(rig, links, 6, 0.0) as fleet:
        await fleet.wait_connected()
        assert (fleet.connected, fleet.finished, fleet.powered()) == scanned(fleet) == (6, 0, 6)
        ids = [runtime.meter.meter_id for runtime in fleet.runtimes]
        assert fleet.power_off(ids[:4]) == 4
        assert fleet.power_off(ids[:2]) == 0  # off already: nothing changes
        assert fleet.power_on(ids[1:3]) == 2
        assert (fleet.connected, fleet.finished, fleet.powered()) == scanned(fleet) == (6, 0, 4)
