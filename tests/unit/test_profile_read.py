"""Profiles read from a meter (the real DLMS server in memory, behind a ciphered HLS
association): a block-load entry read back is the record its push gave, for every
layout; the instantaneous profile comes back scaled and named."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone

import pytest

from hes_sim.clock import ManualClock
from hes_sim.events import EventBus
from hes_sim.hes import profile_read
from hes_sim.hes.ingest import InboundPush, Ingest, PushPolicy
from hes_sim.hes.meter_sessions import MeterConnection, MeterSessions
from hes_sim.hes.profile_read import ProfileReadError, read_block_load, read_instantaneous
from hes_sim.hes.records import ReadRecord
from hes_sim.keyring import FleetKeyring
from hes_sim.meter_sim.cosem.objects import object_model
from hes_sim.meter_sim.cosem.server import DlmsSession, Identity
from hes_sim.meter_sim.meter import KIND_SPECS, MeterKind, VirtualMeter
from hes_sim.protocols import axdr, cosem_datetime, frame, push
from hes_sim.protocols.axdr import Data, Tag
from hes_sim.protocols.block_load import BlockLoadEntry, Quantity
from hes_sim.protocols.xdlms import Reference, Selection

IST = timezone(timedelta(hours=5, minutes=30))
START = datetime(2026, 11, 28, tzinfo=IST).timestamp()
KEYRING = FleetKeyring(b"profile read test fleet secret")


class InMemoryMeter:
    """A virtual meter with ``intervals`` closed, answering over its DLMS server."""

    def __init__(self, kind: MeterKind, intervals: int) -> None:
        meter_id = f"{KIND_SPECS[kind].id_prefix}0000007"
        self.meter = VirtualMeter.create(meter_id, kind, 7, IST)
        ends = [START + 900 * k for k in range(1, intervals + 1)]
        self.entries = [self.meter.close_interval(end, 900) for end in ends]
        self.now = START + 900 * intervals + 45
        identity = Identity(KEYRING.system_title_for(meter_id), KEYRING.keys_for(meter_id))
        self.session = DlmsSession(self.meter, object_model(kind), identity)
        self.sessions = MeterSessions(self.exchange, KEYRING)
        self.answers: list[bytes] = []

    async def exchange(self, _meter_id: str, apdu: bytes) -> bytes:
        answer = self.session.handle(apdu, self.now)
        assert answer is not None
        self.answers.append(answer)
        return answer

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[MeterConnection]:
        async with self.sessions.associate(self.meter.meter_id) as connection:
            yield connection


def pushed(meter: InMemoryMeter, entries: list[BlockLoadEntry], at: float) -> list[ReadRecord]:
    """The records the push path makes of ``entries``: ciphered frames through Ingest."""
    ingest = Ingest(None, ManualClock(at), EventBus(), PushPolicy(KEYRING, True))  # type: ignore[arg-type]
    meter_id = meter.meter.meter_id
    records = []
    for counter, entry in enumerate(entries, start=1):
        title, keys = KEYRING.system_title_for(meter_id), KEYRING.keys_for(meter_id)
        sender = frame.Sender(title, keys, counter)
        payload = frame.encode_push_frame(push.DataNotification(counter, None, entry), sender)
        record = ingest.decode(InboundPush(meter_id, payload, at))
        assert isinstance(record, ReadRecord)
        records.append(record)
    return records


@pytest.mark.parametrize(
    ("kind", "layout"),
    [
        (MeterKind.SINGLE_PHASE, "block_load_single_phase"),
        (MeterKind.THREE_PHASE, "block_load_three_phase"),
        (MeterKind.HT_CT, "block_load_three_phase"),
    ],
)
async def test_a_read_entry_is_the_record_its_push_gave(kind: MeterKind, layout: str):
    meter = InMemoryMeter(kind, intervals=96)  # a day: too big for one APDU
    async with meter.connected() as connection:
        read = await read_block_load(connection, START, meter.now, IST, received_at=meter.now)
    assert [r.layout for r in read] == [layout] * 96
    assert read == pushed(meter, meter.entries, meter.now)
    assert any(a[0] == 0xCC for a in meter.answers)  # ciphered GET-Response…
    blocks = [a for a in meter.answers if len(a) > 900]
    assert len(blocks) >= 3, "the day came back in several blocks"


async def test_the_range_includes_both_ends():
    meter = InMemoryMeter(MeterKind.THREE_PHASE, intervals=10)
    async with meter.connected() as connection:
        read = await read_block_load(
            connection, START + 900 * 3, START + 900 * 5, IST, received_at=meter.now
        )
        one = await read_block_load(
            connection, START + 900 * 7, START + 900 * 7, IST, received_at=meter.now
        )
    assert [r.interval_end for r in read] == [START + 900 * k for k in (3, 4, 5)]
    assert [r.interval_end for r in one] == [START + 900 * 7]
    assert read == pushed(meter, meter.entries[2:5], meter.now)


async def test_entries_ingest_would_refuse_are_left_out():
    meter = InMemoryMeter(MeterKind.SINGLE_PHASE, intervals=8)
    head_end_now = START + 900 * 5  # the meter's clock runs 45 minutes ahead of ours
    async with meter.connected() as connection:
        read = await read_block_load(connection, START, meter.now, IST, received_at=head_end_now)
    assert [r.interval_end for r in read] == [START + 900 * k for k in range(1, 6)]


class Doctored:
    """A connection whose answers to some references are replaced."""

    def __init__(self, real: MeterConnection, answers: dict[Reference, Data]) -> None:
        self.meter_id = real.meter_id
        self._real = real
        self._answers = answers

    async def get(self, ref: Reference, selection: Selection | None = None) -> Data:
        if ref in self._answers:
            return self._answers[ref]
        return await self._real.get(ref, selection)


def capture(class_id: int, dotted: str) -> Data:
    return axdr.structure(
        Data(Tag.LONG_UNSIGNED, class_id),
        axdr.octets(profile_read.logical_name(dotted)),
        Data(Tag.INTEGER, 2),
        Data(Tag.LONG_UNSIGNED, 0),
    )


BLOCK_LOAD_COLUMNS = Reference(7, profile_read.logical_name("1.0.99.1.0.255"), 3)
BLOCK_LOAD_SCALERS = Reference(7, profile_read.logical_name("1.0.94.91.4.255"), 2)


async def test_a_profile_laid_out_otherwise_is_refused_not_misread():
    meter = InMemoryMeter(MeterKind.SINGLE_PHASE, intervals=4)
    async with meter.connected() as connection:
        columns = (await connection.get(BLOCK_LOAD_COLUMNS)).items
        swapped = axdr.array(columns[0], columns[2], columns[1], *columns[3:])  # I before V
        doctored = Doctored(connection, {BLOCK_LOAD_COLUMNS: swapped})
        with pytest.raises(ProfileReadError, match="no known block-load layout"):
            await read_block_load(doctored, START, meter.now, IST, received_at=meter.now)  # type: ignore[arg-type]

        no_clock = axdr.array(capture(1, "0.0.96.1.0.255"), *columns[1:])
        doctored = Doctored(connection, {BLOCK_LOAD_COLUMNS: no_clock})
        with pytest.raises(ProfileReadError, match="clock"):
            await read_block_load(doctored, START, meter.now, IST, received_at=meter.now)  # type: ignore[arg-type]

        (row,) = (await connection.get(BLOCK_LOAD_SCALERS)).items
        volts_in_v = axdr.structure(Data(Tag.INTEGER, 0), Data(Tag.ENUM, 35))  # not 0.1 V
        rescaled = axdr.array(axdr.structure(volts_in_v, *row.items[1:]))
        doctored = Doctored(connection, {BLOCK_LOAD_SCALERS: rescaled})
        with pytest.raises(ProfileReadError, match="scaler"):
            await read_block_load(doctored, START, meter.now, IST, received_at=meter.now)  # type: ignore[arg-type]


async def test_a_row_that_does_not_fit_the_layout_is_refused():
    layout = KIND_SPECS[MeterKind.SINGLE_PHASE].layout
    good = axdr.structure(
        axdr.octets(cosem_datetime.encode(datetime.fromtimestamp(START + 900, tz=IST))),
        *(Data(Tag.LONG_UNSIGNED, 2300), Data(Tag.LONG_UNSIGNED, 120)),
        *(Data(Tag.DOUBLE_LONG_UNSIGNED, v) for v in (100, 0, 110, 0)),
    )
    assert profile_read.block_load_entry(layout, good).values == (2300, 120, 100, 0, 110, 0)
    wrong_type = axdr.structure(*good.items[:3], Data(Tag.LONG_UNSIGNED, 100), *good.items[4:])
    with pytest.raises(ProfileReadError, match="wh_import"):
        profile_read.block_load_entry(layout, wrong_type)
    with pytest.raises(ProfileReadError, match="a row of 6 values"):
        profile_read.block_load_entry(layout, axdr.structure(*good.items[:-1]))


async def test_instantaneous_values_are_scaled_and_named():
    meter = InMemoryMeter(MeterKind.THREE_PHASE, intervals=6)
    async with meter.connected() as connection:
        values = await read_instantaneous(connection)
    last = meter.entries[-1]
    assert values["meter_time"] == pytest.approx(meter.now, abs=0.01)
    assert values["voltage_v"] == round(last.average_voltage(), 1)
    assert 200 < values["voltage_v"] < 260  # type: ignore[operator]
    assert values["current_a"] == round(last.average_current(), 2)
    assert values["frequency_hz"] == 50.0
    assert 0 < values["power_factor"] <= 1  # type: ignore[operator]
    assert values["energy_import_wh"] == meter.meter.registers.wh_import > 0
    assert values["apparent_energy_import_vah"] == meter.meter.registers.vah_import
    assert values["active_power_w"] == last.raw(Quantity.WH_IMPORT) * 4  # the Wh of 15 minutes
    assert values["billing_count"] == 0
    assert set(values) == {
        "meter_time", "voltage_v", "current_a", "frequency_hz", "power_factor",
        "apparent_power_va", "active_power_w", "energy_import_wh",
        "apparent_energy_import_vah", "billing_count",
    }  # fmt: skip


async def test_malformed_answers_are_refused_as_the_meters_not_as_a_bug():
    meter = InMemoryMeter(MeterKind.SINGLE_PHASE, intervals=4)
    async with meter.connected() as connection:
        columns = (await connection.get(BLOCK_LOAD_COLUMNS)).items
        short = axdr.array(axdr.structure(*columns[0].items[:3]), *columns[1:])
        doctored = Doctored(connection, {BLOCK_LOAD_COLUMNS: short})
        with pytest.raises(ProfileReadError, match="a capture object of 3 values, expected 4"):
            await read_block_load(doctored, START, meter.now, IST, received_at=meter.now)  # type: ignore[arg-type]

        (row,) = (await connection.get(BLOCK_LOAD_SCALERS)).items
        triple = axdr.structure(*row.items[0].items, Data(Tag.INTEGER, 0))
        doctored = Doctored(connection, {BLOCK_LOAD_SCALERS: axdr.array(
            axdr.structure(triple, *row.items[1:]))})  # fmt: skip
        with pytest.raises(ProfileReadError, match="a scaler and unit of 3 values"):
            await read_block_load(doctored, START, meter.now, IST, received_at=meter.now)  # type: ignore[arg-type]


async def test_a_scaler_no_integer_holds_is_refused_not_computed():
    meter = InMemoryMeter(MeterKind.THREE_PHASE, intervals=2)
    scalers = Reference(7, profile_read.logical_name("1.0.94.91.3.255"), 2)
    async with meter.connected() as connection:
        (row,) = (await connection.get(scalers)).items
        huge = axdr.structure(Data(Tag.DOUBLE_LONG, 2**31 - 1), row.items[1].items[1])
        doctored = Doctored(connection, {scalers: axdr.array(
            axdr.structure(row.items[0], huge, *row.items[2:]))})  # fmt: skip
        with pytest.raises(ProfileReadError, match="scaler 2147483647"):
            await read_instantaneous(doctored)  # type: ignore[arg-type]
