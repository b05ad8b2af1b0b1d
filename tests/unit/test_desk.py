"""The operator desk over a real store (SQLite and PostgreSQL): filters, detail, silence,
relay states."""

from __future__ import annotations

import pytest

from hes_sim.clock import ManualClock
from hes_sim.events import CommandFinished, EventBus, MeterEventReceived
from hes_sim.hes import inventory
from hes_sim.hes.commands import store as command_rows
from hes_sim.hes.commands.lifecycle import Command, CommandType
from hes_sim.hes.desk import OperatorDesk
from hes_sim.hes.inventory import Inventory, MeterInfo
from hes_sim.hes.operations import (
    Connectivity,
    InvalidRequestError,
    MeterFilter,
    NotFoundError,
    RelayState,
)
from hes_sim.hes.presence import MeterPresence
from hes_sim.hes.records import ReadRecord
from hes_sim.hes.store_factory import open_store
from hes_sim.protocols.topics import MeterState

DAY = 86_400.0
REGISTER = [
    MeterInfo("SP0000001", "single_phase", "CELL0001", "FD0000001", "DT0000001"),
    MeterInfo("SP0000002", "single_phase", "CELL0001", "FD0000001", "DT0000001"),
    MeterInfo("TP0000001", "three_phase", "CELL0002", "FD0000001", "DT0000002"),
]


class FakeDispatcher:
    open_count = 0

    def __init__(self) -> None:
        self.submitted: list[tuple[str, CommandType, str | None]] = []

    async def submit(self, meter_id, kind, *, idempotency_key, deadline_s, parameters):
        self.submitted.append((meter_id, kind, idempotency_key))
        return Command("c1", meter_id, kind, idempotency_key or "k", 0.0, deadline_s, parameters)


def read(meter_id: str, end: int) -> ReadRecord:
    return ReadRecord(meter_id, end, "single_phase", 230.0, 1.0, 250, 0, 260, 0, {}, end + 30.0)


@pytest.fixture
async def desk(store_location: str):
    clock = ManualClock(10 * DAY)
    bus = EventBus()
    async with open_store(store_location) as store:
        await store.run_sql(lambda db: inventory.register(db, REGISTER))
        presence = MeterPresence(clock)
        dispatcher = FakeDispatcher()
        desk = OperatorDesk(
            store=store,
            inventory=Inventory(await store.run_sql(inventory.load)),
            presence=presence,
            dispatcher=dispatcher,
            clock=clock,
            bus=bus,
            broker_connected=lambda: True,
            ingest_queue_depth=lambda: 3,
        )
        yield desk, store, presence, clock, bus, dispatcher


async def test_meters_filter_by_cell_dt_and_state(desk):
    ops, _store, presence, _clock, _bus, _d = desk
    presence.update("SP0000001", MeterState.ONLINE)
    presence.update("TP0000001", MeterState.OFFLINE)
    cell = await ops.meters(MeterFilter(cell="CELL0001"))
    assert [m.meter_id for m in cell] == ["SP0000001", "SP0000002"]
    assert [m.state for m in cell] == [Connectivity.ONLINE, Connectivity.UNKNOWN]
    assert [m.meter_id for m in await ops.meters(MeterFilter(dt="DT0000002"))] == ["TP0000001"]
    offline = await ops.meters(MeterFilter(state=Connectivity.OFFLINE))
    assert [m.meter_id for m in offline] == ["TP0000001"]
    page = await ops.meters(MeterFilter(limit=1, offset=1))
    assert [m.meter_id for m in page] == ["SP0000002"]


async def test_meter_detail_has_last_read_link_figures_and_relay_from_events(desk):
    ops, store, presence, clock, bus, _d = desk
    presence.update("SP0000001", MeterState.ONLINE)
    await store.add_reads([read("SP0000001", 900), read("SP0000001", 1800)], stored_at=1900.0)
    clock.advance(600)
    presence.update("SP0000001", MeterState.OFFLINE)
    clock.advance(600)
    bus.emit(MeterEventReceived("SP0000001", 201, at=int(clock.now()), new=True))
    detail = await ops.meter("SP0000001")
    assert detail.last_read is not None
    assert detail.last_read.interval_end == 1800
    assert detail.link.reads_stored == 2
    assert detail.link.uptime_share == 0.5
    assert detail.link.transitions == 1
    assert detail.link.delivery_delay_p95_s == 1000.0
    assert detail.summary.relay is RelayState.DISCONNECTED
    bus.emit(CommandFinished("c9", "SP0000001", "reconnect", "confirmed", 12.0))
    assert (await ops.meter("SP0000001")).summary.relay is RelayState.CONNECTED
    with pytest.raises(NotFoundError):
        await ops.meter("SP9999999")


async def test_reads_in_a_range_half_open(desk):
    ops, store, *_ = desk
    await store.add_reads([read("SP0000002", end) for end in (900, 1800, 2700)], 3000.0)
    got = await ops.reads("SP0000002", start=900, end=2700, limit=10)
    assert [r.interval_end for r in got] == [900, 1800]
    with pytest.raises(NotFoundError):
        await ops.reads("XX0000001", 0, 1, 10)


async def test_non_communicating_lists_exactly_the_meters_silent_past_the_threshold(desk):
    ops, _store, presence, clock, _bus, _d = desk
    for meter in ("SP0000001", "SP0000002", "TP0000001"):
        presence.update(meter, MeterState.ONLINE)
    clock.advance(DAY - 3600)
    presence.touch("SP0000001")
    clock.advance(3600)  # SP0000002 and TP0000001 silent for exactly a day
    silent = await ops.non_communicating(DAY)
    assert [s.meter_id for s in silent] == ["SP0000002", "TP0000001"]
    assert all(s.silent_for_s == DAY for s in silent)
    assert await ops.non_communicating(DAY + 1) == []


async def test_submit_checks_the_meter_and_deadline_then_hands_over(desk):
    ops, _store, _p, _c, _b, dispatcher = desk
    with pytest.raises(NotFoundError):
        await ops.submit("SP0000404", CommandType.RECONNECT, idempotency_key=None,
                         deadline_s=60, parameters={})  # fmt: skip
    with pytest.raises(InvalidRequestError):
        await ops.submit("SP0000001", CommandType.RECONNECT, idempotency_key=None,
                         deadline_s=0, parameters={})  # fmt: skip
    await ops.submit("SP0000001", CommandType.RECONNECT, idempotency_key="k7",
                     deadline_s=60, parameters={})  # fmt: skip
    assert dispatcher.submitted == [("SP0000001", CommandType.RECONNECT, "k7")]


async def test_commands_listed_newest_first_and_found_by_id(desk):
    ops, store, *_ = desk
    for n, meter in enumerate(("SP0000001", "SP0000002", "SP0000001")):
        command = Command(f"c{n}", meter, CommandType.DISCONNECT, f"k{n}", float(n), 99.0)
        await store.run_sql(lambda db, c=command: command_rows.insert(db, c))
    listed = await ops.commands("SP0000001", None, 10)
    assert [c.command_id for c in listed] == ["c2", "c0"]
    assert (await ops.command("c1")).meter_id == "SP0000002"
    with pytest.raises(NotFoundError):
        await ops.command("nope")
    health = ops.health()
    assert (health.meters_known, health.ingest_queue_depth) == (3, 3)
