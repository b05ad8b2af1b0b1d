"""Ciphered pushes at the head-end: forged, tampered, replayed and misdirected APDUs are
rejected and counted by reason; genuine ones are stored."""

from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hes_sim.clock import ManualClock
from hes_sim.events import DecodeFailed, Event, EventBus, ReadStored
from hes_sim.hes.ingest import InboundPush, Ingest, PushPolicy
from hes_sim.hes.store import SqliteStore
from hes_sim.keyring import FleetKeyring
from hes_sim.meter_sim.meter import MeterKind, VirtualMeter
from hes_sim.protocols import frame, push
from tests.unit.test_sealed_push import long_form

IST = timezone(timedelta(hours=5, minutes=30))
END = datetime(2026, 11, 28, 0, 15, tzinfo=IST).timestamp()
KEYRING = FleetKeyring(b"a fleet secret for tests only")


def ciphered(meter_id: str, end: float, counter: int, keyring: FleetKeyring = KEYRING) -> bytes:
    meter = VirtualMeter.create(meter_id, MeterKind.SINGLE_PHASE, 1, IST)
    notification = push.DataNotification(1, None, meter.close_interval(end, 900))
    sender = frame.Sender(keyring.system_title_for(meter_id), keyring.keys_for(meter_id), counter)
    return frame.encode_push_frame(notification, sender)


@pytest.fixture
async def setup(tmp_path: Path):
    async with SqliteStore(tmp_path / "reads.sqlite") as store:
        bus = EventBus()
        events: list[Event] = []
        bus.subscribe(events.append)
        policy = PushPolicy(keyring=KEYRING, require_ciphered=True)
        yield Ingest(store, ManualClock(END + 60), bus, policy), store, events


def reasons(events: list[Event]) -> Counter[str]:
    return Counter(e.reason for e in events if isinstance(e, DecodeFailed))


async def test_genuine_pushes_are_stored(setup):
    ingest, store, events = setup
    await ingest.process(
        [
            InboundPush("SP0000001", ciphered("SP0000001", END, 1), END),
            InboundPush("SP0000001", ciphered("SP0000001", END - 900, 2), END),
        ]
    )
    assert await store.count_reads() == 2
    assert not reasons(events)


async def test_replayed_push_is_rejected(setup):
    ingest, store, events = setup
    genuine = ciphered("SP0000001", END, 5)
    await ingest.process([InboundPush("SP0000001", genuine, END)])
    await ingest.process([InboundPush("SP0000001", genuine, END)])
    older = ciphered("SP0000001", END - 900, 4)  # authentic, but its counter went backwards
    await ingest.process([InboundPush("SP0000001", older, END)])
    assert reasons(events) == Counter({"replayed": 2})
    assert await store.count_reads() == 1


async def test_tampered_push_is_rejected_and_does_not_move_the_counter(setup):
    ingest, _store, events = setup
    tampered = bytearray(ciphered("SP0000001", END, 100))
    tampered[-15] ^= 0x80  # a bit of the ciphertext
    await ingest.process([InboundPush("SP0000001", bytes(tampered), END)])
    await ingest.process([InboundPush("SP0000001", ciphered("SP0000001", END, 7), END)])
    assert reasons(events) == Counter({"auth_failed": 1})
    assert [type(e) for e in events][-1] is ReadStored


async def test_forged_with_other_keys_is_rejected(setup):
    ingest, _store, events = setup
    forger = FleetKeyring(b"somebody else's fleet secret")
    await ingest.process([InboundPush("SP0000001", ciphered("SP0000001", END, 1, forger), END)])
    assert reasons(events) == Counter({"auth_failed": 1})


async def test_a_push_from_another_meter_is_rejected(setup):
    ingest, _store, events = setup
    await ingest.process([InboundPush("SP0000002", ciphered("SP0000001", END, 1), END)])
    assert reasons(events) == Counter({"system_title": 1})


async def test_plain_push_is_refused_when_ciphering_is_required(setup):
    ingest, _store, events = setup
    meter = VirtualMeter.create("SP0000001", MeterKind.SINGLE_PHASE, 1, IST)
    plain = frame.encode_push_frame(push.DataNotification(1, None, meter.close_interval(END, 900)))
    await ingest.process([InboundPush("SP0000001", plain, END)])
    assert reasons(events) == Counter({"security_policy": 1})


async def test_ciphered_push_without_a_keyring_is_refused(tmp_path: Path):
    async with SqliteStore(tmp_path / "r.sqlite") as store:
        bus = EventBus()
        events: list[Event] = []
        bus.subscribe(events.append)
        ingest = Ingest(store, ManualClock(END + 60), bus)
        await ingest.process([InboundPush("SP0000001", ciphered("SP0000001", END, 1), END)])
    assert reasons(events) == Counter({"security_policy": 1})


async def test_a_push_in_the_long_form_is_stored_as_the_usual_one(setup):
    ingest, store, events = setup
    short = ciphered("SP0000001", END, 1)
    await ingest.process([InboundPush("SP0000001", long_form(short), END)])
    assert not reasons(events)
    [stored] = await store.reads_for("SP0000001")
    fresh = Ingest(store, ManualClock(END + 60), EventBus(), PushPolicy(KEYRING, True))
    assert fresh.decode(InboundPush("SP0000001", short, END)) == stored


async def test_replays_and_tampering_are_caught_across_both_forms(setup):
    ingest, store, events = setup
    first = ciphered("SP0000001", END, 5)
    await ingest.process([InboundPush("SP0000001", first, END)])
    # the same push again, in the other form: one counter per meter, whatever the form
    await ingest.process([InboundPush("SP0000001", long_form(first), END)])
    tampered = bytearray(long_form(ciphered("SP0000001", END - 900, 6)))
    tampered[-15] ^= 0x01
    await ingest.process([InboundPush("SP0000001", bytes(tampered), END)])
    assert reasons(events) == Counter({"replayed": 1, "auth_failed": 1})
    assert await store.count_reads() == 1
