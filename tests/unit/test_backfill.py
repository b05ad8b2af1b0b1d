"""The backfill scanner against a real store (SQLite and PostgreSQL) and a fake
dispatcher: who is asked, how often, and what it counts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import pytest

from hes_sim.clock import ManualClock
from hes_sim.events import (
    BackfillRequested,
    CommandFinished,
    Event,
    EventBus,
    MeterOnline,
    ReadsRecovered,
)
from hes_sim.hes.backfill import Backfill, BackfillSettings
from hes_sim.hes.commands.lifecycle import Command, CommandType, FailureReason, RetryPolicy
from hes_sim.hes.gaps import Window
from hes_sim.hes.presence import MeterPresence
from hes_sim.hes.records import ReadRecord
from hes_sim.hes.store import SqlStore
from hes_sim.hes.store_factory import open_store
from hes_sim.meter_sim.schedule import IntervalSchedule
from hes_sim.protocols.topics import MeterState

H = 900
T0 = 1_800_000_000.0  # on the 15-minute grid
SCHEDULE = IntervalSchedule(T0, T0 + 24 * 3600, H)
GRACE = 2 * H + 300
NOW = T0 + 12 * H + GRACE  # intervals 1..12 are settled


class StepClock(ManualClock):
    def wall_seconds(self, sim_seconds: float) -> float:
        return sim_seconds / 10_000


class FakeDispatcher:
    """Keeps commands by idempotency key, as the real one does; never runs them."""

    def __init__(self, refuse: bool = False) -> None:
        self.by_key: dict[str, Command] = {}
        self.submitted: list[Command] = []
        self.refuse = refuse
        self.changed = asyncio.Event()

    async def submit(
        self,
        meter_id: str,
        kind: CommandType,
        *,
        idempotency_key: str | None = None,
        deadline_s: float = 3600.0,
        parameters: dict[str, object] | None = None,
    ) -> Command:
        assert idempotency_key is not None
        if idempotency_key in self.by_key:
            return self.by_key[idempotency_key]
        command = Command(
            f"c{len(self.submitted) + 1}", meter_id, kind, idempotency_key, NOW, NOW + deadline_s,
            parameters or {},
        )  # fmt: skip
        if self.refuse:
            command.fail(NOW, FailureReason.REJECTED, RetryPolicy(), None, "not supported")  # type: ignore[arg-type]
        else:
            command.queue(NOW)
        self.by_key[idempotency_key] = command
        self.submitted.append(command)
        self.changed.set()
        return command

    def ranges(self) -> list[tuple[str, object, object]]:
        return [(c.meter_id, c.parameters["start"], c.parameters["end"]) for c in self.submitted]


@dataclass
class Rig:
    store: SqlStore
    dispatcher: FakeDispatcher
    presence: MeterPresence
    clock: StepClock
    bus: EventBus
    events: list[Event]
    fleet: list[str]

    def backfill(self, **settings: float) -> Backfill:
        options = {"scan_period_s": 1e9, "grace_s": GRACE, **settings}
        return Backfill(
            self.store, self.dispatcher, self.presence, self.clock, self.bus,
            schedule=SCHEDULE, settings=BackfillSettings(**options),  # type: ignore[arg-type]
            meters=lambda: self.fleet,
        )  # fmt: skip

    async def reads(self, meter_id: str, ks: Iterable[int]) -> None:
        await self.store.add_reads([read(meter_id, T0 + k * H) for k in ks], NOW)

    def online(self, *meter_ids: str) -> None:
        for meter_id in meter_ids:
            self.presence.update(meter_id, MeterState.ONLINE)

    def finish(self, command: Command, outcome: str) -> None:
        self.bus.emit(CommandFinished(command.command_id, command.meter_id, "read_profile",
                                      outcome, 60.0))  # fmt: skip


def read(meter_id: str, interval_end: float) -> ReadRecord:
    return ReadRecord(meter_id, int(interval_end), "sp", 230.0, 1.0, 10, 0, 11, 0, {}, NOW)


@pytest.fixture
async def rig(store_location: str) -> AsyncIterator[Rig]:
    clock = StepClock(NOW)
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    async with open_store(store_location) as store:
        yield Rig(store, FakeDispatcher(), MeterPresence(clock), clock, bus, events, [])


def all_but(*missing: int) -> list[int]:
    return [k for k in range(1, 13) if k not in missing]


async def test_only_online_meters_with_gaps_are_asked(rig: Rig):
    rig.fleet[:] = ["A", "B", "C"]
    await rig.reads("A", all_but(5, 6))
    await rig.reads("B", all_but(3))  # offline: its gap waits
    await rig.reads("C", all_but())  # complete
    rig.online("A", "C")
    rig.presence.update("B", MeterState.OFFLINE)
    async with rig.backfill() as backfill:
        requested = await backfill.scan_once()
    assert [(g.meter_id, g.intervals) for g in requested] == [("A", 2)]
    [command] = rig.dispatcher.submitted
    assert command.type is CommandType.READ_PROFILE
    # a range read includes both bounds: from the first missing entry to the last
    assert command.parameters == {"profile": "block_load", "start": T0 + 5 * H, "end": T0 + 6 * H}
    assert [e for e in rig.events if isinstance(e, BackfillRequested)] == [
        BackfillRequested("A", T0 + 4 * H, T0 + 6 * H, 2)
    ]


async def test_at_most_n_per_scan_one_gap_per_meter_in_turn(rig: Rig):
    rig.fleet[:] = ["A", "B", "C"]
    await rig.reads("A", all_but(2, 7))  # two gaps
    await rig.reads("B", all_but(4))
    await rig.reads("C", all_but(9))
    rig.online("A", "B", "C")
    async with rig.backfill(max_requests_per_scan=2) as backfill:
        await backfill.scan_once()
        assert rig.dispatcher.ranges() == [
            ("A", T0 + 2 * H, T0 + 2 * H),
            ("B", T0 + 4 * H, T0 + 4 * H),
        ]
        await backfill.scan_once()
        assert rig.dispatcher.ranges()[2:] == [
            ("C", T0 + 9 * H, T0 + 9 * H),
            ("A", T0 + 7 * H, T0 + 7 * H),
        ]
        await backfill.scan_once()
    assert len(rig.dispatcher.submitted) == 4  # every gap asked once, none twice


async def test_reads_in_flight_are_bounded(rig: Rig):
    rig.fleet[:] = ["A", "B", "C"]
    rig.online("A", "B", "C")  # none has any read yet
    async with rig.backfill(max_in_flight=2) as backfill:
        await backfill.scan_once()
        await backfill.scan_once()
        assert len(rig.dispatcher.submitted) == 2
        rig.finish(rig.dispatcher.submitted[0], "confirmed")
        await backfill.scan_once()
    assert len(rig.dispatcher.submitted) == 3


async def test_a_pending_gap_is_not_asked_again_a_failed_one_is(rig: Rig):
    rig.fleet[:] = ["A"]
    await rig.reads("A", all_but(3, 4))
    rig.online("A")
    async with rig.backfill() as backfill:
        await backfill.scan_once()
        await backfill.scan_once()  # still pending
        await rig.reads("A", [4])  # a late push fills part of it: the gap shrinks
        await backfill.scan_once()  # but a read covering it is still in flight
        [first] = rig.dispatcher.submitted
        rig.finish(first, "expired")
        await backfill.scan_once()
    first_key, second_key = (c.idempotency_key for c in rig.dispatcher.submitted)
    assert second_key != first_key  # a new attempt, not the expired command handed back
    assert rig.dispatcher.ranges()[1] == ("A", T0 + 3 * H, T0 + 3 * H)


async def test_a_range_still_missing_after_a_successful_read_is_given_up(rig: Rig):
    rig.fleet[:] = ["A"]
    await rig.reads("A", all_but(6))
    rig.online("A")
    async with rig.backfill() as backfill:
        await backfill.scan_once()
        rig.finish(rig.dispatcher.submitted[0], "confirmed")  # the meter had nothing there
        await backfill.scan_once()
        await backfill.scan_once()
        figures = await backfill.figures()
    assert len(rig.dispatcher.submitted) == 1
    assert (figures.gaps_found, figures.requests, figures.gaps_given_up) == (1, 1, 1)


async def test_a_refused_read_is_retried_up_to_max_attempts(rig: Rig):
    rig.dispatcher.refuse = True
    rig.fleet[:] = ["A"]
    await rig.reads("A", all_but(6))
    rig.online("A")
    async with rig.backfill(max_attempts=2) as backfill:
        for _ in range(4):
            await backfill.scan_once()
        figures = await backfill.figures()
    assert [c.idempotency_key[-2:] for c in rig.dispatcher.submitted] == [":1", ":2"]
    assert (figures.requests, figures.gaps_given_up, figures.in_flight) == (2, 1, 0)


async def test_figures_before_and_after_backfill(rig: Rig):
    rig.fleet[:] = ["A", "B"]
    await rig.reads("A", all_but(5, 6, 7))
    await rig.reads("B", all_but())
    rig.online("A", "B")
    async with rig.backfill() as backfill:
        empty = await backfill.figures()
        assert empty.completeness_before is None
        await backfill.scan_once()
        [command] = rig.dispatcher.submitted
        # the read lands: the reads are stored, the dispatcher says so, the command ends
        await rig.reads("A", [5, 6, 7])
        rig.bus.emit(ReadsRecovered("A", command.command_id, 3))
        rig.bus.emit(ReadsRecovered("A", "someone-else", 5))
        rig.finish(command, "confirmed")
        rig.clock.advance(4 * H)  # later scans see a wider window ...
        await rig.reads("A", range(13, 17))
        await rig.reads("B", range(13, 17))
        await backfill.scan_once()
        figures = await backfill.figures()
        # over a window of the whole run: before is what the pushes alone achieved
        run = await backfill.figures(over=Window(int(T0 + H), int(T0 + 16 * H), H))
    assert figures.completeness_before == pytest.approx(21 / 24)
    assert figures.completeness_after == 1.0  # ... but the figures keep the first one's
    assert figures.window is not None
    assert figures.window.last_end == T0 + 12 * H
    assert (figures.gaps_found, figures.requests, figures.reads_recovered) == (1, 1, 3)
    assert "before 0.8750, after 1.0000" in figures.line()
    assert (run.completeness_before, run.completeness_after) == (29 / 32, 1.0)


async def test_a_meter_back_online_is_looked_at_soon(rig: Rig):
    await rig.reads("A", all_but(8))
    async with rig.backfill(online_delay_s=0) as backfill:  # no periodic scan will come
        rig.online("A")
        rig.bus.emit(MeterOnline("A"))  # a meter not in the fleet list, heard on the bus
        async with asyncio.timeout(5):
            await rig.dispatcher.changed.wait()
        assert backfill.requests == 1
    assert rig.dispatcher.ranges() == [("A", T0 + 8 * H, T0 + 8 * H)]


async def test_the_scanner_scans_every_period(rig: Rig):
    rig.fleet[:] = ["A"]
    rig.online("A")
    async with rig.backfill(scan_period_s=H):
        rig.clock.advance(H)  # the first scan is one period after the start
        async with asyncio.timeout(5):
            await rig.dispatcher.changed.wait()
    assert rig.dispatcher.ranges() == [("A", T0 + H, T0 + 13 * H)]  # nothing stored at all
