"""Commands followed to their end over a real mosquitto: confirmed, once per key, expired;
reads, push setup and parameters; offline meters; a restart that does not switch twice."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path

import pytest

from hes_sim.clock import SimClock
from hes_sim.events import CommandFinished, EventBus, MeterEventReceived, ReadsRecovered, ReadStored
from hes_sim.hes.commands import store as rows
from hes_sim.hes.commands.dispatcher import CommandDispatcher
from hes_sim.hes.commands.lifecycle import Command, CommandState, CommandType
from hes_sim.hes.meter_sessions import MeterSessions
from hes_sim.hes.operations import InvalidRequestError
from hes_sim.hes.profile_read import read_block_load
from hes_sim.hes.store import SqliteStore
from hes_sim.keyring import FleetKeyring
from hes_sim.meter_sim.event_logs import EventLog
from hes_sim.meter_sim.fleet import Fleet, build_meters
from hes_sim.meter_sim.meter import MeterKind, VirtualMeter
from hes_sim.meter_sim.relay import Outcome, RelayChange, Trigger
from hes_sim.meter_sim.transport import aiomqtt_link_factory
from hes_sim.runner.broker import PrivateMosquitto
from tests.integration.conftest import EventWaiter, live_fleet

IST = timezone(timedelta(hours=5, minutes=30))
START = datetime(2026, 11, 28, 18, tzinfo=IST).timestamp()
FLEET_SECRET = b"integration test fleet secret"  # the one live_fleet's keyring is made from
S = CommandState


@dataclass
class Rig:
    dispatcher: CommandDispatcher
    fleet: Fleet
    events: EventWaiter
    store: SqliteStore
    restart: Callable[[], CommandDispatcher]
    clock: SimClock
    bus: EventBus
    sessions: MeterSessions

    def meter(self, meter_id: str) -> VirtualMeter:
        return next(r.meter for r in self.fleet.runtimes if r.meter.meter_id == meter_id)

    async def run(self, command: Command, within_s: float = 30) -> Command:
        async with asyncio.timeout(within_s):
            return await self.dispatcher.wait(command.command_id)

    async def stored_up_to(self, meter_id: str, interval_end: float) -> None:
        """Until every interval of the run up to ``interval_end`` is stored for the meter."""

        def stored(events: list[object]) -> int:
            return len({e.interval_end for e in events if isinstance(e, ReadStored)
                        and e.meter_id == meter_id and e.interval_end <= interval_end})  # fmt: skip

        await self.events.until(lambda ev: stored(ev) == (interval_end - START) // 900, 30)


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, mosquitto: PrivateMosquitto, time_scale: float
) -> AsyncIterator[Rig]:
    async with live_fleet(tmp_path, mosquitto, START, time_scale=time_scale, hours=4) as live:
        store, clock, bus, sessions = live.store, live.clock, live.bus, live.sessions
        fleet, events, hes = live.fleet, live.events, live.hes

        def restart() -> CommandDispatcher:
            return CommandDispatcher(store, sessions, hes.presence, clock, bus, tz=IST)

        async with restart() as dispatcher:
            yield Rig(dispatcher, fleet, events, store, restart, clock, bus, sessions)


@pytest.fixture
async def rig(tmp_path: Path, mosquitto: PrivateMosquitto) -> AsyncIterator[Rig]:
    async with running(tmp_path, mosquitto, time_scale=60) as r:
        yield r


@pytest.fixture
async def fast_rig(tmp_path: Path, mosquitto: PrivateMosquitto) -> AsyncIterator[Rig]:
    """Ten times faster: a 15-minute interval every 1.5 wall seconds."""
    async with running(tmp_path, mosquitto, time_scale=600) as r:
        yield r


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


# ---------------------------------------------------------------- reads and push setup


async def test_read_instantaneous_gives_plausible_named_values(fast_rig: Rig):
    await fast_rig.stored_up_to("SP0000001", START + 900)
    command = await fast_rig.dispatcher.submit(
        "SP0000001", CommandType.READ_INSTANTANEOUS, deadline_s=86_400
    )
    done = await fast_rig.run(command)
    assert done.state is S.CONFIRMED
    values = done.result
    assert values is not None
    assert 200 < values["voltage_v"] < 260  # type: ignore[operator]
    assert values["current_a"] >= 0  # type: ignore[operator]
    assert values["frequency_hz"] == 50.0
    assert 0 < values["power_factor"] <= 1  # type: ignore[operator]
    pushed_wh = sum(r.wh_import for r in await fast_rig.store.reads_for("SP0000001"))
    assert 0 < pushed_wh <= values["energy_import_wh"]  # type: ignore[operator]
    assert values["energy_import_wh"] <= fast_rig.meter("SP0000001").registers.wh_import  # type: ignore[operator]
    assert abs(values["meter_time"] - done.history[-1].at) < 600  # type: ignore[operator]


async def test_read_profile_recovers_exactly_what_was_pushed(fast_rig: Rig):
    rig, meter_id = fast_rig, "SP0000002"
    last = START + 4 * 900
    await rig.stored_up_to(meter_id, last)
    window = {"profile": "block_load", "start": last - 7200, "end": last}  # two hours
    pushed = [r for r in await rig.store.reads_for(meter_id) if r.interval_end <= last]
    assert [r.interval_end for r in pushed] == [START + 900 * k for k in range(1, 5)]

    # read over MQTT, decoded as a push is: the same records
    async with rig.sessions.associate(meter_id) as meter:
        read = await read_block_load(meter, last - 7200, last, IST, received_at=rig.clock.now())
    assert [dataclasses.replace(r, received_at=0) for r in read] == [
        dataclasses.replace(r, received_at=0) for r in pushed
    ]

    # through the dispatcher: nothing new while every interval is stored…
    first = await rig.run(await rig.dispatcher.submit(
        meter_id, CommandType.READ_PROFILE, parameters=window, deadline_s=86_400))  # fmt: skip
    assert first.state is S.CONFIRMED
    assert first.result == {"entries": 4, "stored_new": 0}

    # …and, with two of them lost from the store, exactly those two stored again
    lost = (START + 2 * 900, START + 3 * 900)
    await rig.store.run_sql(lambda db: db.execute(
        "DELETE FROM block_load_reads WHERE meter_id = ? AND interval_end IN (?, ?)",
        (meter_id, *lost)))  # fmt: skip
    second = await rig.run(await rig.dispatcher.submit(
        meter_id, CommandType.READ_PROFILE, parameters=window, deadline_s=86_400))  # fmt: skip
    assert second.result == {"entries": 4, "stored_new": 2}
    recovered = [e for e in rig.events.of(ReadsRecovered) if e.command_id == second.command_id]  # type: ignore[attr-defined]
    assert recovered == [ReadsRecovered(meter_id, second.command_id, 2)]
    again = [r for r in await rig.store.reads_for(meter_id) if r.interval_end <= last]
    assert [dataclasses.replace(r, received_at=0) for r in again] == [
        dataclasses.replace(r, received_at=0) for r in pushed
    ]
    assert [r.received_at == p.received_at for r, p in zip(again, pushed, strict=True)] == [
        True, False, False, True,
    ]  # fmt: skip


async def test_push_setup_changes_the_meters_settings(rig: Rig):
    command = await rig.dispatcher.submit(
        "SP0000003",
        CommandType.PUSH_SETUP,
        parameters={"randomisation_start_interval": 45, "number_of_retries": 5,
                    "repetition_delay": 90},
    )  # fmt: skip
    done = await rig.run(command)
    assert done.state is S.CONFIRMED
    settings = rig.meter("SP0000003").push
    assert (settings.randomisation_start_interval, settings.number_of_retries,
            settings.repetition_delay) == (45, 5, 90)  # fmt: skip
    assert rig.meter("SP0000001").push.number_of_retries == 3  # the others untouched


async def test_a_bad_parameter_is_refused_and_nothing_is_stored(rig: Rig):
    def count(db: object) -> int:
        return int(db.execute("SELECT count(*) FROM commands").fetchone()[0])  # type: ignore[attr-defined]

    before = await rig.store.run_sql(count)
    with pytest.raises(InvalidRequestError, match="number_of_retries"):
        await rig.dispatcher.submit(
            "SP0000001", CommandType.PUSH_SETUP, parameters={"number_of_retries": 1000}
        )
    with pytest.raises(InvalidRequestError, match="start"):
        await rig.dispatcher.submit(
            "SP0000001",
            CommandType.READ_PROFILE,
            parameters={"profile": "block_load", "start": START + 3600, "end": START},
        )
    assert await rig.store.run_sql(count) == before


# ---------------------------------------------------------------- offline meters


async def test_a_command_to_an_offline_meter_waits_then_completes_when_it_comes_online(
    fast_rig: Rig, mosquitto: PrivateMosquitto
):
    rig = fast_rig
    late = build_meters({MeterKind.SINGLE_PHASE: 4}, 5, IST)[3]
    command = await rig.dispatcher.submit(late.meter_id, CommandType.DISCONNECT, deadline_s=86_400)
    assert command.state is S.QUEUED
    assert command.history[-1].detail == "meter offline: waiting"
    # an interval passes for the fleet; the command is still waiting, never sent
    await rig.events.until(lambda ev: any(isinstance(e, ReadStored) for e in ev), 30)
    assert command.state is S.QUEUED
    assert command.attempts == 0

    keyring = FleetKeyring(FLEET_SECRET)
    link = aiomqtt_link_factory(mosquitto.address)
    async with Fleet([late], link, rig.bus, seed=5, time_scale=600, push_randomisation_s=30,
                     clock=rig.clock, keyring=keyring):  # fmt: skip
        done = await rig.run(command)
    assert done.state is S.CONFIRMED
    assert done.attempts == 1
    assert not late.relay.output_state
    assert [e.code for e in late.events.entries(EventLog.CONTROL)] == [201]


# ---------------------------------------------------------------- resumed without acting twice


@pytest.fixture
def switches(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Relay operations each meter performed, whatever their outcome."""
    counted: Counter[str] = Counter()
    operate = VirtualMeter.operate_relay

    def counting(
        self: VirtualMeter, trigger: Trigger, at: float
    ) -> tuple[Outcome, RelayChange | None]:
        counted[self.meter_id] += 1
        return operate(self, trigger, at)

    monkeypatch.setattr(VirtualMeter, "operate_relay", counting)
    return counted


def as_left_by_a_crash(command_id: str, state: CommandState) -> Callable[[object], None]:
    """Rewrite a finished command as a head-end that died in ``state`` would have left it."""

    def rewrite(db: object) -> None:
        execute = db.execute  # type: ignore[attr-defined]
        (seq,) = execute(
            "SELECT min(seq) FROM command_transitions WHERE command_id = ? AND state = ?",
            (command_id, state.value),
        ).fetchone()
        execute("DELETE FROM command_transitions WHERE command_id = ? AND seq > ?",
                (command_id, seq))  # fmt: skip
        execute("UPDATE commands SET state = ?, result = NULL WHERE command_id = ?",
                (state.value, command_id))  # fmt: skip

    return rewrite


@pytest.mark.parametrize("left_in", [S.SENT, S.ACKNOWLEDGED])
async def test_a_switch_done_before_the_crash_is_found_not_repeated(
    rig: Rig, switches: Counter[str], left_in: CommandState
):
    off = await rig.dispatcher.submit("SP0000003", CommandType.DISCONNECT)
    assert (await rig.run(off)).state is S.CONFIRMED
    await rig.store.run_sql(as_left_by_a_crash(off.command_id, left_in))

    async with rig.restart() as restarted:
        async with asyncio.timeout(30):
            done = await restarted.wait(off.command_id)
    assert done.state is S.CONFIRMED
    assert done.history[-1].detail == "found done after restart"
    assert "head-end restarted during attempt 1" in [t.detail for t in done.history]
    assert switches["SP0000003"] == 1  # the ACTION went to the meter once
    meter = rig.meter("SP0000003")
    assert [e.code for e in meter.events.entries(EventLog.CONTROL)] == [201]
    assert not meter.relay.output_state
    stored = await rig.store.run_sql(partial(rows.load, command_id=off.command_id))
    assert stored is not None
    assert stored.state is S.CONFIRMED


async def test_a_switch_the_crash_left_unsent_is_sent_after_the_restart(
    rig: Rig, switches: Counter[str]
):
    # the crash came between storing "sent" and the ACTION leaving: the meter never heard
    now = rig.clock.now()
    command = Command("c-crash", "SP0000001", CommandType.DISCONNECT, "k-crash", now, now + 3600)
    await rig.store.run_sql(partial(rows.insert, command=command))
    command.queue(now)
    command.send(now)
    await rig.store.run_sql(partial(rows.save, command=command))

    async with rig.restart() as restarted:
        async with asyncio.timeout(30):
            done = await restarted.wait("c-crash")
    assert done.state is S.CONFIRMED
    assert done.attempts == 2
    assert switches["SP0000001"] == 1
    meter = rig.meter("SP0000001")
    assert [e.code for e in meter.events.entries(EventLog.CONTROL)] == [201]
    assert not meter.relay.output_state
