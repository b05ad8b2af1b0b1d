"""Which commands run at once: a global bound, one per meter, a bound per cell, and
reconnects first. The slot logic alone, then the dispatcher with meters that hold each
command until the test lets it go."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hes_sim.clock import ManualClock, SimClock
from hes_sim.events import CommandFinished, Event, EventBus
from hes_sim.hes.commands.dispatcher import CommandDispatcher
from hes_sim.hes.commands.lifecycle import Command, CommandState, CommandType
from hes_sim.hes.commands.scheduling import Slots, routine_share
from hes_sim.hes.presence import MeterPresence
from hes_sim.hes.store import SqliteStore
from hes_sim.protocols.axdr import Data, Tag
from hes_sim.protocols.topics import MeterState
from hes_sim.protocols.xdlms import ActionResponse, DataAccessResult, Reference

CELLS = {"A1": "cell-a", "A2": "cell-a", "A3": "cell-a", "A4": "cell-a", "B1": "cell-b"}


def cell_of(meter_id: str) -> str | None:
    return CELLS.get(meter_id)


def cmd(meter: str, kind: CommandType = CommandType.DISCONNECT, at: float = 0.0) -> Command:
    return Command(f"{kind}-{meter}-{at}", meter, kind, f"key-{kind}-{meter}-{at}", at, 9e9)


# ---------------------------------------------------------------- the slots alone


def test_a_cell_takes_no_more_than_its_limit_while_other_cells_go_on():
    slots = Slots(concurrency=10, per_cell_limit=2, cell_of=cell_of)
    due = [cmd("A1", at=1), cmd("A2", at=2), cmd("A3", at=3), cmd("B1", at=4), cmd("X9", at=5)]
    started = slots.take(due)
    assert [c.meter_id for c in started] == ["A1", "A2", "B1", "X9"]
    assert slots.in_cell("cell-a") == 2
    assert slots.take([cmd("A3", at=3), cmd("A4", at=6)]) == []  # cell a is full
    slots.release(started[0].command_id)
    assert [c.meter_id for c in slots.take([cmd("A3", at=3), cmd("A4", at=6)])] == ["A3"]


def test_meters_without_a_cell_are_bound_by_the_global_limit_only():
    slots = Slots(concurrency=3, per_cell_limit=1, cell_of=lambda _: None)
    started = slots.take([cmd(f"M{i}", at=i) for i in range(5)])
    assert [c.meter_id for c in started] == ["M0", "M1", "M2"]
    assert slots.running == 3


def test_one_command_per_meter_at_a_time():
    slots = Slots(concurrency=10, per_cell_limit=10, cell_of=cell_of)
    first = cmd("A1", at=1)
    assert slots.take([first, cmd("A1", CommandType.TIME_SYNC, at=2)]) == [first]
    assert slots.take([cmd("A1", CommandType.TIME_SYNC, at=2)]) == []
    slots.release(first.command_id)
    slots.release(first.command_id)  # a second release changes nothing
    assert slots.running == 0
    assert len(slots.take([cmd("A1", CommandType.TIME_SYNC, at=2)])) == 1


def test_a_reconnect_takes_the_next_free_slot_of_its_cell():
    slots = Slots(concurrency=10, per_cell_limit=1, cell_of=cell_of)
    (running,) = slots.take([cmd("A1", at=1)])
    waiting = [
        cmd("A2", CommandType.READ_PROFILE, at=2),
        cmd("A3", CommandType.DISCONNECT, at=3),
        cmd("A4", CommandType.RECONNECT, at=9),
    ]
    assert slots.take(waiting) == []
    slots.release(running.command_id)
    assert [c.meter_id for c in slots.take(waiting)] == ["A4"]


def test_reads_leave_half_the_slots_to_relay_commands():
    slots = Slots(concurrency=4, per_cell_limit=10, cell_of=lambda _: None)
    reads = [cmd(f"R{i}", CommandType.READ_PROFILE, at=i) for i in range(6)]
    started = slots.take(reads)
    assert [c.meter_id for c in started] == ["R0", "R1"]
    assert slots.take(reads[2:]) == []  # two slots free, but not for reads…
    relay = [cmd("X1", CommandType.RECONNECT, at=9), cmd("X2", CommandType.DISCONNECT, at=10)]
    assert slots.take(relay) == relay  # …for relay commands, which find them at once
    assert (slots.running, slots.routine_running) == (4, 2)
    slots.release(relay[0].command_id)
    assert slots.take(reads[2:]) == []  # a relay slot freed stays a relay slot
    slots.release(started[0].command_id)
    assert [c.meter_id for c in slots.take(reads[2:])] == ["R2"]


def test_routine_commands_hold_at_most_half_of_a_cells_slots():
    slots = Slots(concurrency=10, per_cell_limit=2, cell_of=cell_of)
    routine = [
        cmd("A1", CommandType.READ_PROFILE, at=1),
        cmd("A2", CommandType.PUSH_SETUP, at=2),
        cmd("A3", CommandType.TIME_SYNC, at=3),
        cmd("B1", CommandType.READ_INSTANTANEOUS, at=4),
    ]
    # by priority: the time sync takes cell a's one routine slot, b's read takes b's
    assert [c.meter_id for c in slots.take(routine)] == ["A3", "B1"]
    assert slots.in_cell("cell-a") == 1
    # cell a's other slot was kept: a reconnect there starts though the cell has reads due
    assert [c.meter_id for c in slots.take([*routine[:2], cmd("A4", CommandType.RECONNECT)])] == [
        "A4"
    ]


def test_a_limit_of_one_cannot_be_halved_and_is_shared():
    slots = Slots(concurrency=1, per_cell_limit=1, cell_of=cell_of)
    assert routine_share(1) == 1
    assert [routine_share(n) for n in (2, 3, 8, 32)] == [1, 1, 4, 16]
    (read,) = slots.take([cmd("A1", CommandType.READ_PROFILE)])
    slots.release(read.command_id)
    assert slots.running == slots.routine_running == 0


def test_limits_must_allow_something():
    with pytest.raises(ValueError, match="at least 1"):
        Slots(concurrency=0, per_cell_limit=1, cell_of=cell_of)


# ---------------------------------------------------------------- the dispatcher


class HeldMeter:
    """Switches its relay only when the test opens ``gate``; counts who runs at once."""

    def __init__(self, meter_id: str, rig: Held) -> None:
        self.meter_id = meter_id
        self.rig = rig
        self.closed = True

    async def action(self, ref: Reference, _params: Data | None = None) -> ActionResponse:
        self.rig.started(self.meter_id)
        try:
            await self.rig.gate.wait()
        finally:
            self.rig.running[cell_of(self.meter_id)] -= 1
        self.closed = ref.index == 2  # method 2: remote reconnect
        return ActionResponse(0xC1, DataAccessResult.SUCCESS)

    async def get(self, _ref: Reference, _selection: object = None) -> Data:
        return Data(Tag.BOOLEAN, self.closed)


class Held:
    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.order: list[str] = []
        self.running: Counter[str | None] = Counter()
        self.most: Counter[str | None] = Counter()
        self.changed = asyncio.Event()
        self.meters: dict[str, HeldMeter] = {}

    def started(self, meter_id: str) -> None:
        cell = cell_of(meter_id)
        self.order.append(meter_id)
        self.running[cell] += 1
        self.most[cell] = max(self.most[cell], self.running[cell])
        self.changed.set()

    async def until_started(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.order) < count:
                self.changed.clear()
                await self.changed.wait()

    @contextlib.asynccontextmanager
    async def associate(self, meter_id: str) -> AsyncIterator[HeldMeter]:
        yield self.meters.setdefault(meter_id, HeldMeter(meter_id, self))


@contextlib.asynccontextmanager
async def dispatcher(
    tmp_path: Path, held: Held, limit: int, bus: EventBus | None = None
) -> AsyncIterator[CommandDispatcher]:
    clock = SimClock(time.time(), time_scale=10_000)
    clock.start()
    presence = MeterPresence(ManualClock())
    for meter_id in [*CELLS, "X1", "X2"]:
        presence.update(meter_id, MeterState.ONLINE)
    async with (
        SqliteStore(tmp_path / "hes.sqlite") as store,
        CommandDispatcher(
            store,
            held,
            presence,
            clock,
            bus or EventBus(),
            cell_of=cell_of,  # type: ignore[arg-type]
            per_cell_limit=limit,
        ) as running,  # fmt: skip
    ):
        yield running


async def wait_all(d: CommandDispatcher, commands: list[Command]) -> list[Command]:
    async with asyncio.timeout(10):
        return [await d.wait(c.command_id) for c in commands]


async def test_no_more_than_the_cell_limit_run_at_once_in_one_cell(tmp_path: Path):
    held = Held()
    async with dispatcher(tmp_path, held, limit=2) as d:
        submitted = [await d.submit(m, CommandType.DISCONNECT) for m in [*CELLS, "X1", "X2"]]
        # everything the limits allow starts in one pass: 2 of cell a, b's one, both cell-less
        await held.until_started(5)
        assert held.running["cell-a"] == 2
        assert {m for m in held.order if not m.startswith("A")} == {"B1", "X1", "X2"}
        held.gate.set()
        done = await wait_all(d, submitted)
    assert all(c.state is CommandState.CONFIRMED for c in done)
    assert held.most["cell-a"] == 2  # never more, though four were due at once
    assert held.most[None] == 2


async def test_reconnects_go_first_within_a_full_cell(tmp_path: Path):
    held = Held()
    async with dispatcher(tmp_path, held, limit=1) as d:
        first = await d.submit("A1", CommandType.DISCONNECT)
        await held.until_started(1)
        later = [
            await d.submit("A2", CommandType.DISCONNECT),
            await d.submit("A3", CommandType.DISCONNECT),
            await d.submit("A4", CommandType.RECONNECT),
        ]
        held.gate.set()
        done = await wait_all(d, [first, *later])
    assert held.order == ["A1", "A4", "A2", "A3"]
    assert held.most["cell-a"] == 1
    assert all(c.state is CommandState.CONFIRMED for c in done)


async def test_a_finished_command_frees_its_cell_slot(tmp_path: Path):
    held = Held()
    held.gate.set()  # nothing is held: each ends as soon as it runs
    finished: list[Event] = []
    bus = EventBus()
    bus.subscribe(finished.append)
    async with dispatcher(tmp_path, held, limit=1, bus=bus) as d:
        commands = [await d.submit(m, CommandType.DISCONNECT) for m in ("A1", "A2", "A3")]
        done = await wait_all(d, commands)
    assert [c.state for c in done] == [CommandState.CONFIRMED] * 3
    assert len([e for e in finished if isinstance(e, CommandFinished)]) == 3
