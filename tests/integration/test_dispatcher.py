"""Commands followed to their end over a real mosquitto: confirmed, once per key, expired."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hes_sim.events import CommandFinished, MeterEventReceived
from hes_sim.hes.commands.dispatcher import CommandDispatcher
from hes_sim.hes.commands.lifecycle import CommandState, CommandType
from hes_sim.hes.store import SqliteStore
from hes_sim.meter_sim.event_logs import EventLog
from hes_sim.meter_sim.fleet import Fleet
from hes_sim.runner.broker import PrivateMosquitto
from tests.integration.conftest import EventWaiter, live_fleet

IST = timezone(timedelta(hours=5, minutes=30))
START = datetime(2026, 11, 28, 18, tzinfo=IST).timestamp()


@dataclass
class Rig:
    dispatcher: CommandDispatcher
    fleet: Fleet
    events: EventWaiter
    store: SqliteStore
    restart: Callable[[], CommandDispatcher]


@pytest.fixture
async def rig(tmp_path: Path, mosquitto: PrivateMosquitto) -> AsyncIterator[Rig]:
    async with live_fleet(tmp_path, mosquitto, START, time_scale=60, hours=4) as live:
        store, clock, bus, sessions = live.store, live.clock, live.bus, live.sessions
        fleet, events, hes = live.fleet, live.events, live.hes

        def restart() -> CommandDispatcher:
            return CommandDispatcher(store, sessions, hes.presence, clock, bus)

        async with restart() as dispatcher:
            yield Rig(dispatcher, fleet, events, store, restart)


async def test_disconnect_then_reconnect_confirmed_with_an_audit_trail(rig: Rig):
    off = await rig.dispatcher.submit("SP0000002", CommandType.DISCONNECT)
    done = await asyncio.wait_for(rig.dispatcher.wait(off.command_id), 30)
    assert done.state is CommandState.CONFIRMED
    assert [t.state for t in done.history] == [
        CommandState.CREATED, CommandState.QUEUED, CommandState.SENT,
        CommandState.ACKNOWLEDGED, CommandState.CONFIRMED,
    ]  # fmt: skip
    meter = next(r.meter for r in rig.fleet.runtimes if r.meter.meter_id == "SP0000002")
    assert not meter.relay.output_state

    on = await rig.dispatcher.submit("SP0000002", CommandType.RECONNECT)
    assert (await asyncio.wait_for(rig.dispatcher.wait(on.command_id), 30)).state is (
        CommandState.CONFIRMED
    )
    assert meter.relay.output_state
    finished = rig.events.of(CommandFinished)
    assert [(e.type, e.outcome) for e in finished] == [  # type: ignore[attr-defined]
        ("disconnect", "confirmed"), ("reconnect", "confirmed"),
    ]  # fmt: skip
    assert all(e.duration > 0 for e in finished)  # type: ignore[attr-defined]


async def test_the_same_idempotency_key_acts_once(rig: Rig):
    first = await rig.dispatcher.submit("SP0000001", CommandType.DISCONNECT, idempotency_key="k1")
    again = await rig.dispatcher.submit("SP0000001", CommandType.DISCONNECT, idempotency_key="k1")
    assert again.command_id == first.command_id
    await asyncio.wait_for(rig.dispatcher.wait(first.command_id), 30)
    await rig.events.until(lambda ev: any(isinstance(e, MeterEventReceived) for e in ev), 30)
    meter = next(r.meter for r in rig.fleet.runtimes if r.meter.meter_id == "SP0000001")
    assert [e.code for e in meter.events.entries(EventLog.CONTROL)] == [201]  # switched once


async def test_a_command_to_a_meter_that_never_comes_online_expires(rig: Rig):
    ghost = await rig.dispatcher.submit("SP0000099", CommandType.RECONNECT, deadline_s=120)
    assert ghost.state is CommandState.QUEUED
    done = await asyncio.wait_for(rig.dispatcher.wait(ghost.command_id), 30)
    assert done.state is CommandState.EXPIRED


async def test_a_restarted_dispatcher_resumes_open_commands(rig: Rig):
    async with rig.restart() as first:
        queued = await first.submit("SP0000098", CommandType.DISCONNECT, deadline_s=180)
    async with rig.restart() as second:  # a head-end restarted with the same store
        done = await asyncio.wait_for(second.wait(queued.command_id), 30)
    assert done.state is CommandState.EXPIRED
    assert done.history[0].state is CommandState.CREATED  # the trail came from the store
