"""A restarted head-end keeps its prepaid accounts: the journal in the store is replayed,
and what a crash kept from it (reads stored unseen, commands ended unseen, midnights
passed) is caught up once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from functools import partial
from pathlib import Path

import pytest

from hes_sim.clock import SimClock
from hes_sim.events import EventBus, LowBalance, ReadStored
from hes_sim.hes.billing import load_tariff
from hes_sim.hes.commands import store as command_rows
from hes_sim.hes.commands.lifecycle import INDIA, Command, CommandType
from hes_sim.hes.prepaid.account import AccountState
from hes_sim.hes.prepaid.book import AccountBook
from hes_sim.hes.prepaid.engine import PrepaidEngine
from hes_sim.hes.prepaid.policy import DisconnectionPolicy
from hes_sim.hes.records import ReadRecord
from hes_sim.hes.store import SqlStore
from hes_sim.hes.store_factory import open_store

ROOT = Path(__file__).resolve().parents[2]
UP = load_tariff(ROOT / "config" / "tariffs" / "up-lmv1-domestic-urban.yaml")
NOON = datetime(2026, 3, 2, 12, tzinfo=INDIA).timestamp()  # a Monday, inside 11-16
METERS = ["SP01", "SP02"]


class Submitter:
    """Stands in for the dispatcher: stores each command as created, sends nothing."""

    def __init__(self, store: SqlStore, clock: SimClock) -> None:
        self.store, self.clock = store, clock
        self.submitted: list[Command] = []
        self.asked = asyncio.Event()

    @property
    def open_count(self) -> int:
        return len(self.submitted)

    async def submit(self, meter_id: str, kind: CommandType, *, idempotency_key: str | None = None,
                     deadline_s: float = 3600.0, parameters: dict[str, object] | None = None,
                     reason: str = "") -> Command:  # fmt: skip
        now = self.clock.now()
        command = Command(f"cmd-{len(self.submitted)}", meter_id, kind,
                          idempotency_key or "", now, now + deadline_s)  # fmt: skip
        await self.store.run_sql(partial(command_rows.insert, command=command))
        self.submitted.append(command)
        self.asked.set()
        return command


@pytest.fixture
async def store(store_location: str) -> AsyncIterator[SqlStore]:
    async with open_store(store_location) as opened:  # SQLite, then PostgreSQL
        yield opened


def engine(store: SqlStore, clock: SimClock, bus: EventBus) -> PrepaidEngine:
    prepaid = PrepaidEngine(Submitter(store, clock), clock, bus, store, tariff=UP,
                            policy=DisconnectionPolicy(), tz=INDIA,
                            sanctioned_kw=lambda _meter: Decimal(2))  # fmt: skip
    prepaid.open(METERS)
    return prepaid


def read(meter_id: str, interval_end: int, wh: int) -> ReadRecord:
    return ReadRecord(meter_id, interval_end, "single_phase", 230.0, 1.0, wh, 0, wh, 0, {}, 0.0)


async def store_reads(store: SqlStore, bus: EventBus | None, reads: list[ReadRecord]) -> None:
    """As ingest does; with no bus, stored while nobody listened."""
    await store.add_reads(reads, NOON)
    for r in reads if bus is not None else []:
        bus.emit(ReadStored(r.meter_id, r.interval_end, 60.0, r.wh_import))


def standing(prepaid: PrepaidEngine) -> dict[str, tuple[AccountState, Decimal, int]]:
    return {m: (a.state, a.balance, len(a.ledger)) for m, a in prepaid.accounts.items()}


START = int(NOON) // 900 * 900


async def test_balances_survive_a_restart_and_alerts_are_not_raised_again(
    store: SqlStore,
) -> None:
    clock, bus = SimClock(NOON, 60), EventBus()  # stands still: never started
    alerts: list[object] = []
    bus.subscribe(lambda e: alerts.append(e) if isinstance(e, LowBalance) else None)
    async with engine(store, clock, bus) as first:
        first.switch_to_prepaid(METERS, Decimal("100.00"), grace_s=0)
        await store_reads(store, bus, [read("SP01", START + 900 * i, 4_000) for i in range(1, 5)])
        await first.recharge("SP02", Decimal("250.00"), "UPI-1")
        before = standing(first)
        raised = len(alerts)
    assert raised > 0  # 16 kWh leaves under 30% of ₹100
    assert before["SP01"][1] < Decimal("100.00")
    async with engine(store, clock, EventBus()) as second:
        assert standing(second) == before
        assert second.alerts("SP01") == first.alerts("SP01") != []
        again = await second.recharge("SP02", Decimal("250.00"), "UPI-1")  # a repeat
        assert again.balance == before["SP02"][1]
    assert len(alerts) == raised


async def test_reads_stored_while_nobody_listened_are_charged_once_at_start(
    store: SqlStore,
) -> None:
    clock = SimClock(NOON, 60)
    reads = [read("SP01", START + 900 * i, 3_000) for i in range(1, 7)]
    witness = AccountBook(UP, DisconnectionPolicy(), INDIA)
    witness.open(["SP01"], NOON)
    witness.switch("SP01", NOON, Decimal("100.00"), NOON)
    for r in reads:
        witness.charge_read("SP01", NOON, r.interval_end, r.wh_import)
    async with engine(store, clock, EventBus()) as first:
        first.switch_to_prepaid(["SP01"], Decimal("100.00"), grace_s=0)
        await store_reads(store, None, reads[:3])  # a crash ate these events
    for start in range(2):  # the second start finds nothing more to charge
        bus = EventBus()
        async with engine(store, clock, bus) as again:
            if start == 0:
                await store_reads(store, bus, reads[3:])
            assert again.accounts["SP01"].balance == witness.accounts["SP01"].balance
            assert again.accounts["SP01"].balance < Decimal("100.00")


async def test_a_disconnect_that_ended_while_down_is_taken_at_start(store: SqlStore) -> None:
    clock = SimClock(NOON, 60)
    async with engine(store, clock, EventBus()) as first:
        first.switch_to_prepaid(["SP01"], Decimal("-400.00"), grace_s=0)  # over the limit
        submitter = first._dispatcher
        assert isinstance(submitter, Submitter)
        async with asyncio.timeout(5):
            await submitter.asked.wait()
    assert [c.type for c in submitter.submitted] == [CommandType.DISCONNECT]
    command = submitter.submitted[0]
    command.queue(NOON)
    command.send(NOON)
    command.acknowledge(NOON)
    command.confirm(NOON + 30)
    await store.run_sql(partial(command_rows.save, command=command))
    async with engine(store, clock, EventBus()) as second:
        assert second.accounts["SP01"].state is AccountState.DISCONNECTED
        again = second._dispatcher
        assert isinstance(again, Submitter)
        assert again.submitted == []  # not judged into a second disconnect
