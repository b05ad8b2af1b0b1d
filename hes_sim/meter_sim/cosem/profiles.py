"""Profile-generic objects (class 7): block load, daily load, billing, instantaneous, the
seven event logs, the scaler profiles and the name plate.

A profile is its capture objects plus a row source; rows are made only for the entries a
request selects (by range on the first column, or by entry), so reading a day of a month's
buffer does not compute the month.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial

from hes_sim.errors import CodecError
from hes_sim.meter_sim.billing import TOU_ZONE_STARTS, BillingRecord, DailyRecord
from hes_sim.meter_sim.cosem.model import Attribute, Context, CosemObject, Level, obis
from hes_sim.meter_sim.cosem.values import (
    APPARENT_IMPORT,
    CLOCK,
    CURRENT,
    ENERGY_IMPORT,
    FIRMWARE_VERSION,
    MANUFACTURER_NAME,
    METER_CATEGORY,
    SERIAL_NUMBER,
    TAG_OF,
    VOLTAGE,
    axdr_datetime,
    capture,
    enum,
    logical_name,
    meter_time,
    name_plate_values,
    scaler_unit_value,
    u16,
    u32,
)
from hes_sim.meter_sim.event_logs import EventLog, MeterEvent, event_log_name
from hes_sim.meter_sim.meter import KIND_SPECS, MeterKind
from hes_sim.protocols import axdr, cosem_datetime
from hes_sim.protocols.axdr import Data, Tag
from hes_sim.protocols.obis import Obis
from hes_sim.protocols.xdlms import Selection

Row = tuple[float, Callable[[], Data]]  # the row's time (first column) and how to make it
Rows = Callable[[Context], Sequence[Row]]

BLOCK_LOAD = obis(Obis.BLOCK_LOAD_PROFILE)
DAILY_LOAD = obis("1.0.99.2.0.255")
BILLING = obis("1.0.98.1.0.255")
INSTANTANEOUS = obis("1.0.94.91.0.255")
NAME_PLATE = obis("0.0.94.91.10.255")
FREQUENCY = obis("1.0.14.7.0.255")
POWER_FACTOR = obis("1.0.13.7.0.255")
ACTIVE_POWER = obis("1.0.1.7.0.255")
APPARENT_POWER = obis("1.0.9.7.0.255")
BILLING_COUNT = obis("0.0.0.1.0.255")
AVERAGE_PF = obis("1.0.13.0.0.255")
MD_KW = obis("1.0.1.6.0.255")
MD_KVA = obis("1.0.9.6.0.255")
POWER_ON_DURATION = obis("0.0.94.91.13.255")
TOU_REGISTERS = tuple(obis(f"1.0.1.8.{zone + 1}.255") for zone in range(len(TOU_ZONE_STARTS)))


def _stamp(ctx: Context, at: float) -> Data:
    return axdr.octets(axdr_datetime(datetime.fromtimestamp(at, tz=ctx.meter.tz)))


def select(rows: Sequence[Row], selection: Selection | None) -> Sequence[Row]:
    """Selective access: by range (1) on the first column, or by entry (2)."""
    if selection is None:
        return rows
    parameters = selection.parameters.items
    if selection.selector == 1:
        if len(parameters) < 3:
            raise CodecError("type_unmatched", "range needs restricting object, from and to")
        low = cosem_datetime.decode(parameters[1].bytes_value).timestamp()
        high = cosem_datetime.decode(parameters[2].bytes_value).timestamp()
        return [row for row in rows if low <= row[0] <= high]
    if selection.selector == 2:
        if len(parameters) < 2:
            raise CodecError("type_unmatched", "entry selection needs from and to")
        first = max(1, parameters[0].int_value)
        last = parameters[1].int_value or len(rows)
        return rows[first - 1 : last]
    raise CodecError("scope_of_access", f"selector {selection.selector} is not supported")


def profile(
    code: bytes,
    name: str,
    columns: Sequence[Data],
    rows: Rows,
    *,
    period: int,
    depth: int,
    level: Level = Level.MANAGEMENT,
) -> CosemObject:
    capture_objects = axdr.array(*columns)

    def buffer(ctx: Context, selection: Selection | None) -> Data:
        return axdr.array(*(make() for _at, make in select(rows(ctx), selection)))

    return CosemObject(
        7,
        1,
        code,
        name,
        {
            1: logical_name(code),
            2: Attribute(buffer, level, selective=True),
            3: Attribute(lambda _ctx, _sel: capture_objects, level),
            4: Attribute(lambda _ctx, _sel: u32(period)),
            5: Attribute(lambda _ctx, _sel: enum(1)),  # sort method: FIFO
            7: Attribute(lambda ctx, _sel: u32(len(rows(ctx)))),
            8: Attribute(lambda _ctx, _sel: u32(depth)),
        },
    )


Scaled = tuple[int, bytes, int, str]  # class id, logical name, scaler, unit


def scaler_profile(code: bytes, name: str, registers: Sequence[Scaled]) -> CosemObject:
    """IS 15959 scaler profiles: one row holding the {scaler, unit} (attribute 3) of every
    register its profile captures."""
    columns = [capture(class_id, ln, 3) for class_id, ln, _scaler, _unit in registers]
    row = axdr.structure(*(scaler_unit_value(scaler, unit) for _c, _ln, scaler, unit in registers))
    return profile(code, name, columns, lambda _ctx: [(0.0, lambda: row)], period=0, depth=1)


# ------------------------------------------------------------------ block load


def block_load_profile(kind: MeterKind) -> tuple[CosemObject, CosemObject]:
    layout = KIND_SPECS[kind].layout
    columns = [capture(8, CLOCK, 2), *(capture(3, obis(c.obis), 2) for c in layout.columns)]

    def rows(ctx: Context) -> list[Row]:
        meter = ctx.meter

        def make(end: float) -> Callable[[], Data]:
            def row() -> Data:
                entry = meter.entry_for(end, meter.interval_s)
                values = zip(entry.layout.columns, entry.values, strict=True)
                return axdr.structure(
                    axdr.octets(axdr_datetime(entry.clock)),
                    *(Data(TAG_OF[column.dlms_type], value) for column, value in values),
                )

            return row

        return [(end, make(end)) for end in meter.buffered_interval_ends()]

    scaled = [(3, obis(c.obis), c.scaler, c.unit) for c in layout.columns]
    return (
        profile(BLOCK_LOAD, "block load profile", columns, rows, period=900, depth=2880),
        scaler_profile(obis("1.0.94.91.4.255"), "block load scaler profile", scaled),
    )


# ------------------------------------------------------------------ daily load and billing


def _daily_row(ctx: Context, record: DailyRecord) -> Data:
    return axdr.structure(
        _stamp(ctx, record.at), u32(record.cumulative_wh), u32(record.cumulative_vah)
    )


def _daily_rows(ctx: Context) -> list[Row]:
    return [(record.at, partial(_daily_row, ctx, record)) for record in ctx.meter.ledger.daily]


DAILY_COLUMNS = (capture(8, CLOCK, 2), capture(3, ENERGY_IMPORT, 2), capture(3, APPARENT_IMPORT, 2))


def _billing_row(ctx: Context, record: BillingRecord) -> Data:
    return axdr.structure(
        _stamp(ctx, record.reset_at),
        u16(round(record.average_pf * 1000)),
        u32(record.cumulative_wh),
        *(u32(value) for value in record.tou_wh),
        u32(record.cumulative_vah),
        u32(record.md_w),
        _stamp(ctx, record.md_w_at),
        u32(record.md_va),
        _stamp(ctx, record.md_va_at),
        u32(record.power_on_minutes),
    )


def _billing_rows(ctx: Context) -> list[Row]:
    return [
        (record.reset_at, partial(_billing_row, ctx, record)) for record in ctx.meter.ledger.billing
    ]


BILLING_COLUMNS = (
    capture(8, CLOCK, 2),
    capture(3, AVERAGE_PF, 2),
    capture(3, ENERGY_IMPORT, 2),
    *(capture(3, code, 2) for code in TOU_REGISTERS),
    capture(3, APPARENT_IMPORT, 2),
    capture(4, MD_KW, 2),
    capture(4, MD_KW, 5),
    capture(4, MD_KVA, 2),
    capture(4, MD_KVA, 5),
    capture(3, POWER_ON_DURATION, 2),
)
BILLING_SCALED: tuple[Scaled, ...] = (
    (3, AVERAGE_PF, -3, "none"),
    (3, ENERGY_IMPORT, 0, "Wh"),
    *((3, code, 0, "Wh") for code in TOU_REGISTERS),
    (3, APPARENT_IMPORT, 0, "VAh"),
    (4, MD_KW, 0, "W"),
    (4, MD_KVA, 0, "VA"),
    (3, POWER_ON_DURATION, 0, "min"),
)

# ------------------------------------------------------------------ instantaneous


def _instantaneous_rows(ctx: Context) -> list[Row]:
    meter = ctx.meter

    def row() -> Data:
        voltage = current = active = apparent = 0.0
        if meter.last_closed_end is not None:
            _load, energy = meter.block_for(meter.last_closed_end, meter.interval_s)
            entry = meter.entry_for(meter.last_closed_end, meter.interval_s)
            voltage, current = entry.average_voltage(), entry.average_current()
            active = energy.wh_import * 3600 / meter.interval_s
            apparent = energy.vah_import * 3600 / meter.interval_s
        pf = round(1000 * active / apparent) if apparent else 1000
        return axdr.structure(
            axdr.octets(axdr_datetime(meter_time(ctx))),
            u16(round(voltage * 10)),
            u16(round(current * 100)),
            u16(5000),  # 50.00 Hz
            Data(Tag.LONG, pf),
            u32(round(apparent)),
            u32(round(active)),
            u32(meter.ledger.cumulative_wh),
            u32(meter.ledger.cumulative_vah),
            u32(len(meter.ledger.billing)),
        )

    return [(ctx.now, row)]


INSTANTANEOUS_COLUMNS = (
    capture(8, CLOCK, 2),
    capture(3, VOLTAGE, 2),
    capture(3, CURRENT, 2),
    capture(3, FREQUENCY, 2),
    capture(3, POWER_FACTOR, 2),
    capture(3, APPARENT_POWER, 2),
    capture(3, ACTIVE_POWER, 2),
    capture(3, ENERGY_IMPORT, 2),
    capture(3, APPARENT_IMPORT, 2),
    capture(1, BILLING_COUNT, 2),
)
INSTANTANEOUS_SCALED: tuple[Scaled, ...] = (
    (3, VOLTAGE, -1, "V"),
    (3, CURRENT, -2, "A"),
    (3, FREQUENCY, -2, "Hz"),
    (3, POWER_FACTOR, -3, "none"),
    (3, APPARENT_POWER, 0, "VA"),
    (3, ACTIVE_POWER, 0, "W"),
    (3, ENERGY_IMPORT, 0, "Wh"),
    (3, APPARENT_IMPORT, 0, "VAh"),
)

# ------------------------------------------------------------------ event logs


def _event_row(ctx: Context, event: MeterEvent) -> Data:
    return axdr.structure(_stamp(ctx, event.at), u16(int(event.code)))


def event_log(log: EventLog) -> CosemObject:
    code = event_log_name(log)
    columns = (capture(8, CLOCK, 2), capture(1, obis(f"0.0.96.11.{int(log)}.255"), 2))

    def rows(ctx: Context) -> list[Row]:
        return [
            (event.at, partial(_event_row, ctx, event)) for event in ctx.meter.events.entries(log)
        ]

    return profile(code, f"{log.name.lower()} event log", columns, rows, period=0, depth=50)


# ------------------------------------------------------------------ name plate


def name_plate_profile() -> CosemObject:
    columns = (
        capture(1, SERIAL_NUMBER, 2),
        capture(1, MANUFACTURER_NAME, 2),
        capture(1, FIRMWARE_VERSION, 2),
        capture(1, METER_CATEGORY, 2),
    )

    def rows(ctx: Context) -> list[Row]:
        return [(0.0, lambda: axdr.structure(*name_plate_values(ctx)))]

    return profile(
        NAME_PLATE, "name plate details", columns, rows, period=0, depth=1, level=Level.PUBLIC
    )


def profiles(kind: MeterKind) -> tuple[CosemObject, ...]:
    block_load, block_load_scalers = block_load_profile(kind)
    return (
        block_load,
        block_load_scalers,
        profile(DAILY_LOAD, "daily load profile", DAILY_COLUMNS, _daily_rows, period=86_400,
                depth=62),
        scaler_profile(obis("1.0.94.91.5.255"), "daily load scaler profile",
                       ((3, ENERGY_IMPORT, 0, "Wh"), (3, APPARENT_IMPORT, 0, "VAh"))),
        profile(BILLING, "billing profile", BILLING_COLUMNS, _billing_rows, period=0, depth=13),
        scaler_profile(obis("1.0.94.91.6.255"), "billing scaler profile", BILLING_SCALED),
        profile(INSTANTANEOUS, "instantaneous profile", INSTANTANEOUS_COLUMNS,
                _instantaneous_rows, period=0, depth=1),
        scaler_profile(obis("1.0.94.91.3.255"), "instantaneous scaler profile",
                       INSTANTANEOUS_SCALED),
        *(event_log(log) for log in EventLog),
        name_plate_profile(),
    )  # fmt: skip
