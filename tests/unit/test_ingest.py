"""Ingest logic over a real store (SQLite and PostgreSQL); the wire is covered by the
integration tests."""

from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from hes_sim.clock import ManualClock
from hes_sim.errors import StoreError
from hes_sim.events import DecodeFailed, Event, EventBus, ReadDuplicate, ReadStored
from hes_sim.hes.ingest import InboundPush, Ingest
from hes_sim.hes.store import SqlStore
from hes_sim.meter_sim.meter import MeterKind, VirtualMeter
from hes_sim.protocols import frame, push

IST = timezone(timedelta(hours=5, minutes=30))
END = datetime(2026, 11, 28, 0, 15, tzinfo=IST).timestamp()


def push_frame(meter: VirtualMeter, end: float) -> bytes:
    return frame.encode_push_frame(push.DataNotification(1, None, meter.close_interval(end, 900)))


@pytest.fixture
def store(any_store: SqlStore) -> SqlStore:
    return any_store


def recorder(bus: EventBus) -> list[Event]:
    events: list[Event] = []
    bus.subscribe(events.append)
    return events


async def test_stores_once_and_counts_duplicates(store: SqlStore):
    clock, bus = ManualClock(END + 30), EventBus()
    events = recorder(bus)
    ingest = Ingest(store, clock, bus)
    meter = VirtualMeter.create("SP0000001", MeterKind.SINGLE_PHASE, 1, IST)
    payload = push_frame(meter, END)
    await ingest.process([InboundPush("SP0000001", payload, END + 20)])
    await ingest.process(
        [InboundPush("SP0000001", payload, END + 40), InboundPush("SP0000001", payload, END + 41)]
    )
    assert await store.count_reads() == 1
    assert [type(e) for e in events] == [ReadStored, ReadDuplicate, ReadDuplicate]
    first = events[0]
    assert isinstance(first, ReadStored)
    assert first.delivery_delay == 30
    [record] = await store.reads_for("SP0000001")
    assert record.interval_end == END
    assert record.received_at == END + 20
    assert record.wh_import > 0
    assert record.registers["voltage"] == round(record.voltage_v * 10)


async def test_stored_reads_go_where_the_owner_says_and_duplicates_stay_events(store: SqlStore):
    clock, bus = ManualClock(END + 30), EventBus()
    events = recorder(bus)
    reported: list[tuple[list[str], float]] = []
    ingest = Ingest(
        store, clock, bus,
        report_stored=lambda reads, at: reported.append(([r.meter_id for r in reads], at)),
    )  # fmt: skip
    one = VirtualMeter.create("SP0000001", MeterKind.SINGLE_PHASE, 1, IST)
    two = VirtualMeter.create("SP0000002", MeterKind.SINGLE_PHASE, 1, IST)
    await ingest.process([InboundPush("SP0000001", push_frame(one, END), END + 20)])
    again = push_frame(one, END)
    await ingest.process(
        [
            InboundPush("SP0000001", again, END + 25),
            InboundPush("SP0000002", push_frame(two, END), END + 26),
        ]
    )
    assert reported == [(["SP0000001"], END + 30), (["SP0000002"], END + 30)]
    assert [type(e) for e in events] == [ReadDuplicate]  # no ReadStored: reported instead
    assert await store.count_reads() == 2


async def test_bad_pushes_are_counted_by_reason_and_the_good_one_still_stored(
    store: SqlStore,
):
    clock, bus = ManualClock(END + 30), EventBus()
    events = recorder(bus)
    ingest = Ingest(store, clock, bus)
    meter = VirtualMeter.create("SP0000002", MeterKind.SINGLE_PHASE, 1, IST)
    good = push_frame(meter, END)
    future = push_frame(meter, END + 86_400)
    unaligned = push_frame(meter, END + 60)
    batch = [
        InboundPush("SP0000002", b"\x00\x01garbage", END),
        InboundPush("SP0000002", good[:-3], END),
        InboundPush("SP0000002", future, END),
        InboundPush("SP0000002", unaligned, END),
        InboundPush("SP0000002", good, END),
    ]
    await ingest.process(batch)
    reasons = Counter(e.reason for e in events if isinstance(e, DecodeFailed))
    assert reasons == Counter({"wrapper": 2, "future_timestamp": 1, "unaligned_interval": 1})
    assert await store.count_reads() == 1


class FlakyStore:
    """Fails the first writes, as a locked or full disk would, then recovers."""

    def __init__(self, inner: SqlStore, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    async def add_reads(self, reads, stored_at):
        if self.failures:
            self.failures -= 1
            raise StoreError("disk I/O error")
        return await self.inner.add_reads(reads, stored_at)


async def test_a_failing_store_is_retried_and_nothing_is_lost(store: SqlStore):
    clock, bus = ManualClock(END + 30), EventBus()
    events = recorder(bus)
    flaky = FlakyStore(store, failures=2)
    ingest = Ingest(flaky, clock, bus)  # type: ignore[arg-type]
    meter = VirtualMeter.create("SP0000003", MeterKind.SINGLE_PHASE, 1, IST)
    await ingest.process([InboundPush("SP0000003", push_frame(meter, END), END)])
    assert flaky.failures == 0
    assert [type(e) for e in events] == [ReadStored]
    assert await store.count_reads() == 1
