"""Pushes lost on the wire, found missing and read back from the meter over a real
mosquitto: the store ends up holding exactly what the meter recorded."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hes_sim.clock import SimClock
from hes_sim.events import BackfillRequested, CommandFinished, Event, EventBus, ReadStored
from hes_sim.hes.backfill import Backfill, BackfillSettings
from hes_sim.hes.commands.dispatcher import CommandDispatcher
from hes_sim.hes.ingest import PushPolicy
from hes_sim.hes.meter_sessions import MeterSessions
from hes_sim.hes.records import ReadRecord
from hes_sim.hes.service import HeadEnd
from hes_sim.hes.store import SqliteStore
from hes_sim.keyring import FleetKeyring
from hes_sim.meter_sim.fleet import Fleet, build_meters
from hes_sim.meter_sim.meter import MeterKind, VirtualMeter
from hes_sim.meter_sim.runtime import RunPlan
from hes_sim.meter_sim.schedule import IntervalSchedule
from hes_sim.meter_sim.transport import aiomqtt_link_factory
from hes_sim.runner.broker import PrivateMosquitto
from tests.integration.conftest import EventWaiter
from tests.lossy_link import LossyPushes

IST = timezone(timedelta(hours=5, minutes=30))
START = datetime(2026, 11, 28, 18, tzinfo=IST).timestamp()
H = 900
SCALE = 900  # one interval a wall second
RANDOMISATION_S = 30
PUSHES = 8  # two hours of 15-minute intervals, for each of the three meters
LOSSY = "SP0000002"
LOST = (START + 2 * H, START + 4 * H)  # its pushes of intervals 2, 3 and 4 never arrive


@dataclass
class Rig:
    backfill: Backfill
    losses: LossyPushes
    meter: VirtualMeter
    store: SqliteStore
    events: EventWaiter
    fleet: Fleet


@pytest.fixture
async def rig(tmp_path: Path, mosquitto: PrivateMosquitto) -> AsyncIterator[Rig]:
    keyring = FleetKeyring(b"integration test fleet secret")
    bus = EventBus()
    events = EventWaiter(bus)
    clock = SimClock(START, time_scale=SCALE)
    meters = build_meters({MeterKind.SINGLE_PHASE: 3}, 5, IST)
    schedule = IntervalSchedule(START, START + PUSHES * H, H)
    losses = LossyPushes(keyring, LOSSY, *LOST)
    links = losses.factory(aiomqtt_link_factory(mosquitto.address))
    settings = BackfillSettings(
        scan_period_s=H / 3,
        grace_s=RANDOMISATION_S + 2 * H,  # a push may be that late; older ones are lost
        deadline_s=4 * 3600,
    )
    async with (
        SqliteStore(tmp_path / "hes.sqlite") as store,
        HeadEnd(mosquitto.address, store, clock, bus, policy=PushPolicy(keyring, True)) as hes,
        Fleet(
            meters,
            links,
            bus,
            seed=5,
            time_scale=SCALE,
            push_randomisation_s=RANDOMISATION_S,
            clock=clock,
            keyring=keyring,
        ) as fleet,
    ):
        async with asyncio.timeout(20):
            await hes.subscribed.wait()
            await fleet.wait_connected()
        await events.until(lambda _: hes.presence.online == len(meters))
        sessions = MeterSessions(lambda meter, apdu: hes.exchange(meter, apdu, 10.0), keyring)
        async with (
            CommandDispatcher(store, sessions, hes.presence, clock, bus) as dispatcher,
            Backfill(store, dispatcher, hes.presence, clock, bus, schedule=schedule,
                     settings=settings, meters=lambda: [m.meter_id for m in meters]) as backfill,
        ):  # fmt: skip
            clock.start()
            fleet.start(RunPlan(schedule))
            meter = next(m for m in meters if m.meter_id == LOSSY)
            yield Rig(backfill, losses, meter, store, events, fleet)


async def test_pushes_lost_on_the_wire_are_read_back_from_the_meter(rig: Rig):
    async with asyncio.timeout(60):
        await rig.fleet.wait_finished()  # every push sent (or lost) ...
    lost = len(rig.losses.dropped)
    assert rig.losses.dropped == [LOST[0], LOST[0] + H, LOST[1]]

    def settled(events: list[Event]) -> bool:
        # pushed reads only: the ones read back are ReadStored too (recovered), and with
        # them counted the wait could end while a pushed read was still on its way
        stored = sum(1 for e in events if isinstance(e, ReadStored) and not e.recovered)
        asked = {e.meter_id for e in events if isinstance(e, BackfillRequested)}
        reads = [e for e in events if isinstance(e, CommandFinished) and e.type == "read_profile"]
        return (
            stored >= 3 * PUSHES - lost  # ... the pushes that went out are stored ...
            and rig.backfill.reads_recovered >= lost  # ... and the lost ones read back
            and asked == {LOSSY}
            and len(reads) == rig.backfill.requests
        )

    await rig.events.until(settled, within_s=60)

    def as_stored(read: ReadRecord) -> ReadRecord:
        return dataclasses.replace(read, received_at=0.0)

    recorded = [
        as_stored(ReadRecord.from_entry(LOSSY, rig.meter.entry_for(end, H), 0.0))
        for end in rig.meter.buffered_interval_ends()
    ]
    assert len(recorded) == PUSHES
    stored = [as_stored(read) for read in await rig.store.reads_for(LOSSY)]
    assert [r.interval_end for r in stored] == [r.interval_end for r in recorded]
    assert stored == recorded  # interval by interval, every register

    figures = await rig.backfill.figures()
    assert figures.completeness_before is not None
    assert figures.completeness_before < 1.0
    assert figures.completeness_after == 1.0
    assert figures.reads_recovered == lost == 3
    assert figures.gaps_given_up == 0
    # over the whole run, for the report: the pushes alone reached 21 of 24
    run = await rig.backfill.figures(over=rig.backfill.run_window())
    assert (run.completeness_before, run.completeness_after) == (21 / 24, 1.0)
    # asked for as each lost interval settled (one gap, or several), never twice
    requests = [e for e in rig.events.events if isinstance(e, BackfillRequested)]
    asked = [e.start + k * H for e in requests for k in range(1, e.intervals + 1)]
    assert asked == rig.losses.dropped
