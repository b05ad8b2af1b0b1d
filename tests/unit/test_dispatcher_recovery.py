"""The dispatcher through a crash and a failing store: a command stored but never queued
still runs after a restart, a store that fails writes for a while stops nothing (and a
meter is not asked before the store knows), and a submit during the scheduler's scan is
not left waiting for its next idle wake. Each test on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from hes_sim.clock import ManualClock, SimClock
from hes_sim.errors import StoreError
from hes_sim.events import EventBus
from hes_sim.hes.commands import store as rows
from hes_sim.hes.commands.dispatcher import CommandDispatcher
from hes_sim.hes.commands.lifecycle import Command, CommandState, CommandType
from hes_sim.hes.presence import MeterPresence
from hes_sim.hes.sql import Connection
from hes_sim.hes.store_factory import open_store
from hes_sim.protocols.axdr import Data, Tag
from hes_sim.protocols.topics import MeterState
from hes_sim.protocols.xdlms import ActionResponse, DataAccessResult, Reference

S = CommandState
T = TypeVar("T")


class Relay:
    """Every meter's relay: counts the switches; switches once ``gate`` is open."""

    def __init__(self) -> None:
        self.closed: dict[str, bool] = {}
        self.actions = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.asked = asyncio.Event()

    @contextlib.asynccontextmanager
    async def associate(self, meter_id: str) -> AsyncIterator[Relay.Connection]:
        yield Relay.Connection(self, meter_id)

    @dataclass
    class Connection:
        relay: Relay
        meter_id: str

        async def action(self, ref: Reference, _params: Data | None = None) -> ActionResponse:
            self.relay.actions += 1
            self.relay.asked.set()
            await self.relay.gate.wait()
            self.relay.closed[self.meter_id] = ref.index == 2
            return ActionResponse(0xC1, DataAccessResult.SUCCESS)

        async def get(self, _ref: Reference, _selection: object = None) -> Data:
            return Data(Tag.BOOLEAN, self.relay.closed.get(self.meter_id, True))


class FlakyStore:
    """A store whose command writes fail while ``broken`` (a full disk), and whose writes
    of one command can be held; every write, done or failed, is signalled."""

    def __init__(self, location: str) -> None:
        self.inner = open_store(location)
        self.broken = False
        self.writes = 0
        self.failed = 0
        self.changed = asyncio.Event()
        self.held: dict[str, asyncio.Event] = {}  # command id -> released when set
        self.holding = asyncio.Event()

    async def __aenter__(self) -> FlakyStore:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.inner.__aexit__(*exc_info)

    async def run_sql(self, work: Callable[[Connection], T]) -> T:
        if isinstance(work, partial) and work.func in (rows.insert, rows.save):
            command: Command = work.keywords["command"]
            if command.command_id in self.held:
                self.holding.set()
                self.changed.set()
                await self.held[command.command_id].wait()
            self.writes += 1
            if self.broken:
                self.failed += 1
                self.changed.set()
                raise StoreError("store query failed: database or disk is full")
        try:
            return await self.inner.run_sql(work)
        finally:
            self.changed.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(5):
            while not condition():
                self.changed.clear()
                await self.changed.wait()

    async def until_stored(self, command_id: str, state: CommandState) -> Command:
        async with asyncio.timeout(5):
            while True:
                self.changed.clear()  # before the read: a write after it is not missed
                stored = await self.stored(command_id)
                if stored.state is state:
                    return stored
                await self.changed.wait()

    async def stored(self, command_id: str) -> Command:
        found = await self.inner.run_sql(partial(rows.load, command_id=command_id))
        assert found is not None
        return found


@contextlib.asynccontextmanager
async def dispatcher(
    store: FlakyStore, relay: Relay, time_scale: float = 10_000
) -> AsyncIterator[CommandDispatcher]:
    clock = SimClock(time.time(), time_scale=time_scale)
    clock.start()
    presence = MeterPresence(ManualClock())
    for meter_id in ("SP1", "SP2"):
        presence.update(meter_id, MeterState.ONLINE)
    async with CommandDispatcher(store, relay, presence, clock, EventBus()) as running:  # type: ignore[arg-type]
        yield running


async def wait(d: CommandDispatcher, command: Command) -> Command:
    async with asyncio.timeout(5):
        return await d.wait(command.command_id)


# ---------------------------------------------------------------- stored, never queued


async def test_a_command_is_stored_queued_in_one_write(store_location: str):
    async with FlakyStore(store_location) as store, dispatcher(store, Relay()) as d:
        command = await d.submit("SP9", CommandType.DISCONNECT)  # offline: stays queued
        assert store.writes == 1  # no window in which it is stored but not queued
        stored = await store.stored(command.command_id)
    assert stored.state is S.QUEUED
    assert [t.state for t in stored.history] == [S.CREATED, S.QUEUED]


async def test_a_command_a_crash_left_created_runs_after_the_restart(store_location: str):
    relay = Relay()
    async with FlakyStore(store_location) as store:
        now = time.time()
        left = Command("c-created", "SP1", CommandType.DISCONNECT, "k-created", now, now + 3600)
        await store.run_sql(partial(rows.insert, command=left))  # the queueing never came
        async with dispatcher(store, relay) as d:
            done = await wait(d, left)
        stored = await store.stored("c-created")
    assert done.state is S.CONFIRMED
    assert done.history[1].detail == "head-end restarted before queueing it"
    assert relay.actions == 1
    assert stored.history == done.history


# ---------------------------------------------------------------- a store failing for a while


async def test_writes_failing_mid_command_stop_nothing_and_are_caught_up(store_location: str):
    relay = Relay()
    relay.gate.clear()
    async with FlakyStore(store_location) as store, dispatcher(store, relay) as d:
        first = await d.submit("SP1", CommandType.DISCONNECT)
        async with asyncio.timeout(5):
            await relay.asked.wait()  # "sent" is stored; the meter is switching
        store.broken = True  # from now on: disk full
        relay.gate.set()
        done = await wait(d, first)  # the command goes on in memory
        assert done.state is S.CONFIRMED
        assert store.failed >= 2  # acknowledged and confirmed, neither stored
        assert (await store.stored(first.command_id)).state is S.SENT

        store.broken = False
        stored = await store.until_stored(first.command_id, S.CONFIRMED)  # the retry
        assert stored.history == done.history  # the audit trail whole
        second = await d.submit("SP2", CommandType.DISCONNECT)  # the dispatcher still runs
        assert (await wait(d, second)).state is S.CONFIRMED
    assert relay.actions == 2


async def test_a_meter_is_not_asked_before_the_store_knows(store_location: str):
    relay = Relay()
    async with FlakyStore(store_location) as store, dispatcher(store, relay) as d:
        command = await d.submit("SP1", CommandType.DISCONNECT)
        store.broken = True  # from the first write after the submit: "sent"
        await store.until(lambda: store.failed >= 3)  # sent, then retried in the schedule
        assert relay.actions == 0
        assert "not sent: the store failed" in command.history[3].detail
        store.broken = False
        done = await wait(d, command)
        stored = await store.until_stored(command.command_id, S.CONFIRMED)
    assert done.attempts == 1  # a withdrawn attempt does not count
    assert relay.actions == 1
    assert stored.history == done.history


# ---------------------------------------------------------------- wake-ups


async def test_a_submit_during_the_scan_is_not_left_to_the_idle_wake(store_location: str):
    relay = Relay()
    async with FlakyStore(store_location) as store:
        # a command past its deadline: the scheduler's first scan expires it and awaits
        # the store to write that, which the test holds
        now = time.time()
        due = Command("c-due", "SP9", CommandType.RECONNECT, "k-due", now - 10, now - 5)
        due.queue(now - 10)
        await store.run_sql(partial(rows.insert, command=due))
        store.held["c-due"] = asyncio.Event()
        # in real time: the idle wake is a minute away, far beyond the test's patience
        async with dispatcher(store, relay, time_scale=1) as d:
            await store.until(store.holding.is_set)
            submitted = await d.submit("SP1", CommandType.DISCONNECT)  # wakes the scheduler
            store.held["c-due"].set()
            done = await wait(d, submitted)
    assert done.state is S.CONFIRMED
