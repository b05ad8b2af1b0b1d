"""The export outbox in the store, and the exporter draining it (with a sink in memory);
each test on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Sequence
from functools import partial

import pytest

from hes_sim.clock import SimClock
from hes_sim.errors import StoreError
from hes_sim.events import Event, EventBus, ExportDelivered, ExportFailed
from hes_sim.hes.export import outbox
from hes_sim.hes.export.exporter import Exporter
from hes_sim.hes.export.outbox import ExportRecord, Failure, Settlement
from hes_sim.hes.export.policy import ExportSettings, retry_delay
from hes_sim.hes.export.reconcile import reconcile
from hes_sim.hes.export.sinks import DeliveryResult
from hes_sim.hes.records import ReadRecord
from hes_sim.hes.store import SqlStore

T0 = 1_800_000_000


def record(key: str, created_at: float = T0, kind: str = "monthly_bill") -> ExportRecord:
    return ExportRecord(key, kind, {"amount": 12.5, "key": key}, created_at, meter_id="SP1")


def read(meter_id: str, k: int) -> ReadRecord:
    return ReadRecord(meter_id, T0 + k * 900, "single_phase", 230.1, 1.5, 100 + k, 0,
                      110 + k, 0, {"wh_import": 100 + k}, T0 + k * 900 + 60.0)  # fmt: skip


@pytest.fixture
def store(any_store: SqlStore) -> SqlStore:
    return any_store


async def test_a_record_enqueued_twice_is_stored_once(store: SqlStore):
    first = await store.run_sql(partial(outbox.enqueue, records=[record("a"), record("b")]))
    again = await store.run_sql(
        partial(outbox.enqueue, records=[record("a", created_at=T0 + 99), record("c")])
    )
    assert (first, again) == (2, 1)
    due = await store.run_sql(partial(outbox.due, now=T0 + 100, limit=10))
    assert sorted(r.key for r in due) == ["a", "b", "c"]
    [a] = [r for r in due if r.key == "a"]
    assert a.created_at == T0  # the first enqueue stands
    assert a.payload == {"amount": 12.5, "key": "a"}


async def test_enqueue_is_all_or_nothing(store: SqlStore):
    bad = ExportRecord("x", "monthly_bill", {"n": object()}, T0)  # not JSON
    with pytest.raises(TypeError):
        await store.run_sql(partial(outbox.enqueue, records=[record("ok"), bad]))
    assert (await store.run_sql(outbox.counts)).pending == 0


async def test_reads_enqueued_in_the_transaction_that_stores_them(store: SqlStore):
    reads = [read("SP1", 1), read("SP1", 2)]

    def store_reads(db, fail: bool) -> None:  # what the store's read insert does
        with db.transaction():
            db.executemany(
                "INSERT INTO block_load_reads (meter_id, interval_end, layout, voltage_v,"
                " current_a, wh_import, wh_export, vah_import, vah_export, registers,"
                " received_at, stored_at) VALUES (?, ?, ?, 0, 0, ?, 0, ?, 0, '{}', ?, ?)",
                [
                    (
                        r.meter_id,
                        r.interval_end,
                        r.layout,
                        r.wh_import,
                        r.vah_import,
                        r.received_at,
                        T0 + 5000.0,
                    )
                    for r in reads
                ],
            )
            outbox.enqueue_reads(db, reads, created_at=T0 + 5000.0)
            if fail:
                db.execute("SELECT no_such_function()")  # the store failing mid-transaction

    with pytest.raises(StoreError):
        await store.run_sql(partial(store_reads, fail=True))
    assert (await store.run_sql(outbox.counts)).pending == 0  # rolled back with the reads
    assert await store.count_reads() == 0
    await store.run_sql(partial(store_reads, fail=False))
    due = await store.run_sql(partial(outbox.due, now=T0 + 5000.0, limit=10))
    assert [r.key for r in due] == [f"read:SP1:{T0 + 900}", f"read:SP1:{T0 + 1800}"]
    assert due[0].kind == "interval_read"
    assert due[0].payload["wh_import"] == 101
    assert due[0].payload["interval_s"] == 900


async def test_due_takes_the_longest_due_first_and_not_what_waits(store: SqlStore):
    await store.run_sql(
        partial(outbox.enqueue, records=[record(k, T0 + i) for i, k in enumerate("abcd")])
    )
    # a fails and waits until T0 + 50; b fails and waits until T0 + 20
    await store.run_sql(partial(outbox.failed, key="a", at=T0 + 10, error="503",
                                next_attempt_at=T0 + 50))  # fmt: skip
    await store.run_sql(partial(outbox.failed, key="b", at=T0 + 10, error="503",
                                next_attempt_at=T0 + 20))  # fmt: skip
    keys = [r.key for r in await store.run_sql(partial(outbox.due, now=T0 + 10, limit=10))]
    assert keys == ["c", "d"]
    keys = [r.key for r in await store.run_sql(partial(outbox.due, now=T0 + 60, limit=10))]
    assert keys == ["c", "d", "b", "a"]  # by when due: c, d were due from their creation
    assert [r.key for r in await store.run_sql(partial(outbox.due, now=T0 + 60, limit=2))] == [
        "c",
        "d",
    ]
    due = await store.run_sql(partial(outbox.due, now=T0 + 60, limit=10))
    [b] = [r for r in due if r.key == "b"]
    assert b.attempts == 1
    assert await store.run_sql(partial(outbox.last_error, key="b")) == "503 (at 1800000010.000)"
    backlog = await store.run_sql(outbox.backlog)
    assert (backlog.pending, backlog.next_due_at) == (4, T0 + 2)


async def test_delivered_records_are_not_due_and_keep_their_first_delivery(store: SqlStore):
    await store.run_sql(partial(outbox.enqueue, records=[record("a"), record("b")]))
    assert await store.run_sql(partial(outbox.delivered, keys=["a"], at=T0 + 5)) == 1
    assert await store.run_sql(partial(outbox.delivered, keys=["a"], at=T0 + 9)) == 0
    # a failure reported late for a delivered record changes nothing
    await store.run_sql(partial(outbox.failed, key="a", at=T0 + 9, error="late",
                                next_attempt_at=T0 + 10))  # fmt: skip
    assert [r.key for r in await store.run_sql(partial(outbox.due, now=T0 + 99, limit=10))] == ["b"]
    counts = await store.run_sql(outbox.counts)
    assert (counts.pending, counts.delivered, counts.failed_attempts) == (1, 1, 0)


async def test_counts_for_metrics(store: SqlStore):
    await store.run_sql(
        partial(outbox.enqueue, records=[record(k, T0 + i * 10) for i, k in enumerate("abcde")])
    )
    settlement = Settlement(
        delivered=["a"],
        failures=[Failure("b", "timeout", T0 + 100), Failure("c", "HTTP 400", None)],
    )
    await store.run_sql(partial(outbox.settle, at=T0 + 50, settlement=settlement))
    await store.run_sql(partial(outbox.failed, key="b", at=T0 + 100, error="timeout",
                                next_attempt_at=T0 + 300))  # fmt: skip
    await store.run_sql(partial(outbox.delivered, keys=["b"], at=T0 + 300))
    counts = await store.run_sql(outbox.counts)
    assert counts.pending == 2  # d, e
    assert counts.delivered == 2  # a, b
    assert counts.parked == 1  # c
    assert counts.failed_attempts == 3  # b twice, c once
    assert counts.oldest_pending_at == T0 + 30  # d
    assert counts.oldest_pending_age(T0 + 100) == 70
    # a parked record goes again once an operator requeues it
    assert await store.run_sql(partial(outbox.requeue_parked, now=T0 + 400)) == 1
    assert (await store.run_sql(outbox.counts)).parked == 0


async def test_reconciliation_per_meter(store: SqlStore):
    reads = [read("SP1", k) for k in (1, 2, 3)] + [read("SP2", 1)]
    await store.add_reads(reads, stored_at=T0 + 5000.0)
    await store.run_sql(partial(outbox.enqueue_reads, reads=reads[:3], created_at=T0 + 5000.0))
    await store.run_sql(partial(outbox.enqueue_reads, reads=[read("SP3", 1)], created_at=T0))
    await store.run_sql(partial(outbox.delivered, keys=[f"read:SP1:{T0 + 900}"], at=T0 + 6000))
    by_meter = {r.meter_id: r for r in await store.run_sql(reconcile)}
    assert (by_meter["SP1"].stored, by_meter["SP1"].enqueued, by_meter["SP1"].exported) == (3, 3, 1)
    assert by_meter["SP1"].pending == 2
    assert not by_meter["SP1"].complete
    assert by_meter["SP2"].not_enqueued == 1
    assert by_meter["SP3"].orphaned == 1  # exported a read the store does not have
    [only] = await store.run_sql(partial(reconcile, meter_ids=["SP2"]))
    assert only.meter_id == "SP2"


def test_retry_delays_grow_are_capped_and_never_collapse():
    rng = random.Random(7)
    for failures in range(12):
        ceiling = min(600.0, 30.0 * 2**failures)
        for _ in range(50):
            assert ceiling / 2 <= retry_delay(failures, 30.0, 600.0, rng) <= ceiling


# ------------------------------------------------------------------------ the exporter


class MemorySink:
    """Answers each batch with the next scripted outcome: "ok", "down" or "refuse"."""

    name = "memory"

    def __init__(self, script: Sequence[str] = ()) -> None:
        self.script = list(script)
        self.received: list[list[str]] = []

    async def deliver(self, records: Sequence[ExportRecord]) -> list[DeliveryResult]:
        self.received.append([r.key for r in records])
        outcome = self.script.pop(0) if self.script else "ok"
        if outcome == "down":
            return [DeliveryResult.failed(r.key, "connection refused", retriable=True)
                    for r in records]  # fmt: skip
        if outcome == "refuse":
            return [DeliveryResult.failed(r.key, "HTTP 422", retriable=False) for r in records]
        return [DeliveryResult.delivered(r.key) for r in records]


class Events:
    def __init__(self, bus: EventBus) -> None:
        self.seen: list[Event] = []
        self.changed = asyncio.Event()
        bus.subscribe(self._on)

    def _on(self, event: Event) -> None:
        self.seen.append(event)
        self.changed.set()

    def delivered(self) -> int:
        return sum(e.count for e in self.seen if isinstance(e, ExportDelivered))

    async def until(self, condition, within_s: float = 10.0) -> None:
        async with asyncio.timeout(within_s):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


def clock() -> SimClock:
    return SimClock(T0, time_scale=1000.0, wall_anchor=None)


async def test_the_exporter_delivers_in_batches_and_wakes_on_notify(store: SqlStore):
    bus, sink, sim = EventBus(), MemorySink(), clock()
    sim.start()
    events = Events(bus)
    settings = ExportSettings(batch_size=2, poll_s=86_400.0)  # a poll would not help here
    async with Exporter(store, sink, sim, settings=settings, bus=bus) as exporter:
        await store.run_sql(partial(outbox.enqueue, records=[record(k, sim.now()) for k in "abc"]))
        exporter.notify()
        await events.until(lambda: events.delivered() == 3)
        await store.run_sql(partial(outbox.enqueue, records=[record("d", sim.now())]))
        exporter.notify()
        await events.until(lambda: events.delivered() == 4)
        figures = await exporter.figures()
    assert sink.received == [["a", "b"], ["c"], ["d"]]
    assert (figures.exported, figures.pending, figures.failed_attempts) == (4, 0, 0)
    assert figures.lag_max_s is not None
    assert figures.lag_max_s >= 0
    assert "4 delivered, 0 pending" in figures.line()


async def test_a_refused_record_is_parked_not_retried(store: SqlStore):
    bus, sink, sim = EventBus(), MemorySink(["refuse"]), clock()
    sim.start()
    events = Events(bus)
    await store.run_sql(partial(outbox.enqueue, records=[record("a", sim.now())]))
    async with Exporter(store, sink, sim, bus=bus) as exporter:
        await events.until(lambda: any(isinstance(e, ExportFailed) for e in events.seen))
        assert await exporter.drain_once() == 0  # nothing due: parked, not pending
    [failed] = [e for e in events.seen if isinstance(e, ExportFailed)]
    assert (failed.retriable, failed.reason) == (False, "HTTP 422")
    counts = await store.run_sql(outbox.counts)
    assert (counts.parked, counts.pending, counts.failed_attempts) == (1, 0, 1)
    assert exporter.paused_until is None  # the sink answered: no reason to pause it


async def test_a_sink_down_pauses_the_export_and_loses_nothing(store: SqlStore):
    bus, sink, sim = EventBus(), MemorySink(["down", "down", "down"]), clock()
    sim.start()
    events = Events(bus)
    await store.run_sql(partial(outbox.enqueue, records=[record(k, sim.now()) for k in "ab"]))
    settings = ExportSettings(batch_size=1, retry_base_s=40.0, retry_cap_s=400.0)
    async with Exporter(store, sink, sim, settings=settings, bus=bus) as exporter:
        await events.until(lambda: events.delivered() == 2)
    failures = [e for e in events.seen if isinstance(e, ExportFailed)]
    assert [f.retriable for f in failures] == [True, True, True]
    # each retry waited at least half its back-off: 20, 40, 80 simulated seconds
    gaps = [b.at - a.at for a, b in itertools.pairwise(failures)]
    assert gaps[0] >= 20
    assert gaps[1] >= 40
    assert exporter.failed_attempts == 3
    assert exporter.sink_failures == 3
    # the sink was only tried after each pause: never two batches inside one
    assert len(sink.received) == 5
    counts = await store.run_sql(outbox.counts)
    assert (counts.delivered, counts.pending, counts.failed_attempts) == (2, 0, 3)


async def test_a_sink_that_raises_is_a_retriable_failure(store: SqlStore):
    class Broken(MemorySink):
        async def deliver(self, records: Sequence[ExportRecord]) -> list[DeliveryResult]:
            await super().deliver(records)
            if len(self.received) == 1:
                raise ValueError("bug")
            return [DeliveryResult.delivered(r.key) for r in records]

    bus, sink, sim = EventBus(), Broken(), clock()
    sim.start()
    events = Events(bus)
    await store.run_sql(partial(outbox.enqueue, records=[record("a", sim.now())]))
    settings = ExportSettings(retry_base_s=10.0, retry_cap_s=10.0)
    async with Exporter(store, sink, sim, settings=settings, bus=bus):
        await events.until(lambda: events.delivered() == 1)
    reasons = [e.reason for e in events.seen if isinstance(e, ExportFailed)]
    assert reasons == ["sink raised ValueError: bug"]
