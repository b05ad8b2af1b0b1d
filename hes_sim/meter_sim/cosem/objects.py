"""The objects every simulated meter exposes (IS 15959 Part 2), built once per meter kind.

Units are DLMS unit codes; energies are kept in Wh/VAh/varh with scaler 0, voltages in
0.1 V and currents in 0.01 A, as in the block-load profile.
"""

from __future__ import annotations

import functools
from datetime import datetime

from hes_sim.errors import CodecError
from hes_sim.meter_sim.cosem.model import (
    Attribute,
    Context,
    CosemObject,
    Level,
    MethodDef,
    ObjectModel,
    obis,
)
from hes_sim.meter_sim.meter import KIND_SPECS, MeterKind
from hes_sim.meter_sim.relay import Outcome, Trigger
from hes_sim.protocols import axdr, cosem_datetime
from hes_sim.protocols.axdr import Data, Tag
from hes_sim.protocols.block_load import Column, DlmsType
from hes_sim.protocols.obis import Obis
from hes_sim.protocols.xdlms import DataAccessResult, Selection

UNIT = {"V": 35, "A": 33, "Wh": 30, "VAh": 31, "varh": 32, "W": 27}
TAG_OF = {
    DlmsType.LONG_UNSIGNED: Tag.LONG_UNSIGNED,
    DlmsType.DOUBLE_LONG_UNSIGNED: Tag.DOUBLE_LONG_UNSIGNED,
}
MANUFACTURER = "HES-SIM"
FIRMWARE = "hes-sim-fw-1.0"
METER_TYPE = {MeterKind.SINGLE_PHASE: 5, MeterKind.THREE_PHASE: 6}  # IS 15959 category codes

CLOCK = obis(Obis.CLOCK)
ASSOCIATION = obis("0.0.40.0.0.255")
DISCONNECT_CONTROL = obis("0.0.96.3.10.255")
BLOCK_LOAD = obis(Obis.BLOCK_LOAD_PROFILE)
CONTROL_EVENTS = obis("0.0.99.98.6.255")
EVENT_CODE = obis("0.0.96.11.6.255")
PUSH_SETUP = obis("0.0.25.9.0.255")
LOAD_LIMIT = obis("0.0.17.0.0.255")
ENERGY_IMPORT = obis("1.0.1.8.0.255")
APPARENT_IMPORT = obis("1.0.9.8.0.255")
VOLTAGE = obis("1.0.12.7.0.255")
CURRENT = obis("1.0.11.7.0.255")
SERIAL_NUMBER = obis("0.0.96.1.0.255")
MANUFACTURER_NAME = obis("0.0.96.1.1.255")
FIRMWARE_VERSION = obis("1.0.0.2.0.255")
METER_CATEGORY = obis("0.0.94.91.9.255")


def _ln(code: bytes) -> Attribute:
    return Attribute(lambda _ctx, _sel: axdr.octets(code), Level.PUBLIC)


def _u16(value: int) -> Data:
    return Data(Tag.LONG_UNSIGNED, value)


def _u32(value: int) -> Data:
    return Data(Tag.DOUBLE_LONG_UNSIGNED, value)


def _enum(value: int) -> Data:
    return Data(Tag.ENUM, value)


def _capture(class_id: int, logical_name: bytes, attribute: int) -> Data:
    return axdr.structure(
        _u16(class_id), axdr.octets(logical_name), Data(Tag.INTEGER, attribute), _u16(0)
    )


def _scaler_unit(scaler: int, unit: str) -> Attribute:
    return Attribute(
        lambda _ctx, _sel: axdr.structure(Data(Tag.INTEGER, scaler), _enum(UNIT[unit])),
        Level.PUBLIC,
    )


def meter_time(ctx: Context) -> datetime:
    return datetime.fromtimestamp(ctx.now + ctx.meter.clock_offset_s, tz=ctx.meter.tz)


# ------------------------------------------------------------------ clock (class 8)


def _set_clock(ctx: Context, value: Data) -> DataAccessResult:
    try:
        wanted = cosem_datetime.decode(value.bytes_value)
    except CodecError:
        return DataAccessResult.TYPE_UNMATCHED
    ctx.meter.clock_offset_s = wanted.timestamp() - ctx.now
    return DataAccessResult.SUCCESS


def _adjust_to_quarter(ctx: Context, _param: Data | None) -> tuple[DataAccessResult, None]:
    now = ctx.now + ctx.meter.clock_offset_s
    ctx.meter.clock_offset_s += round(now / 900) * 900 - now
    return DataAccessResult.SUCCESS, None


def _shift_time(ctx: Context, param: Data | None) -> tuple[DataAccessResult, None]:
    if param is None or param.tag is not Tag.LONG or not -900 <= param.int_value <= 900:
        return DataAccessResult.TYPE_UNMATCHED, None
    ctx.meter.clock_offset_s += param.int_value
    return DataAccessResult.SUCCESS, None


def _deviation(ctx: Context) -> int:
    offset = ctx.meter.tz.utcoffset(None)
    return -int(offset.total_seconds() // 60)


CLOCK_OBJECT = CosemObject(
    8,
    0,
    CLOCK,
    "clock",
    {
        1: _ln(CLOCK),
        2: Attribute(
            lambda ctx, _sel: axdr.octets(cosem_datetime.encode(meter_time(ctx))),
            Level.PUBLIC,
            write=_set_clock,
        ),
        3: Attribute(lambda ctx, _sel: Data(Tag.LONG, _deviation(ctx)), Level.PUBLIC),
        4: Attribute(lambda _ctx, _sel: Data(Tag.UNSIGNED, 0), Level.PUBLIC),
    },
    {1: MethodDef(_adjust_to_quarter), 6: MethodDef(_shift_time)},
)

# ------------------------------------------------------------------ disconnect control (70)


def _relay_method(trigger: Trigger) -> MethodDef:
    def invoke(ctx: Context, param: Data | None) -> tuple[DataAccessResult, None]:
        if param is not None and param.tag is not Tag.INTEGER:
            return DataAccessResult.TYPE_UNMATCHED, None
        outcome, _change = ctx.meter.operate_relay(trigger, ctx.now)
        if outcome is Outcome.NOT_ENABLED:
            return DataAccessResult.READ_WRITE_DENIED, None
        return DataAccessResult.SUCCESS, None

    return MethodDef(invoke)


def _set_control_mode(ctx: Context, value: Data) -> DataAccessResult:
    if value.tag is not Tag.ENUM or not 0 <= value.int_value <= 6:
        return DataAccessResult.TYPE_UNMATCHED
    ctx.meter.relay.control_mode = value.int_value
    return DataAccessResult.SUCCESS


DISCONNECT_OBJECT = CosemObject(
    70,
    0,
    DISCONNECT_CONTROL,
    "disconnect control",
    {
        1: _ln(DISCONNECT_CONTROL),
        2: Attribute(lambda ctx, _sel: axdr.boolean(ctx.meter.relay.output_state)),
        3: Attribute(lambda ctx, _sel: _enum(ctx.meter.relay.state)),
        4: Attribute(
            lambda ctx, _sel: _enum(ctx.meter.relay.control_mode), write=_set_control_mode
        ),
    },
    {1: _relay_method(Trigger.REMOTE_DISCONNECT), 2: _relay_method(Trigger.REMOTE_RECONNECT)},
)

# ------------------------------------------------------------------ registers (class 3)


def _register(code: bytes, name: str, value: Attribute, scaler: int, unit: str) -> CosemObject:
    return CosemObject(3, 0, code, name, {1: _ln(code), 2: value, 3: _scaler_unit(scaler, unit)})


def _last_entry_value(quantity_of: str) -> Attribute:
    def read(ctx: Context, _sel: Selection | None) -> Data:
        meter = ctx.meter
        if meter.last_closed_end is None:
            return _u16(0)
        entry = meter.entry_for(meter.last_closed_end, meter.interval_s)
        value = entry.average_voltage() if quantity_of == "voltage" else entry.average_current()
        return _u16(round(value * (10 if quantity_of == "voltage" else 100)))

    return Attribute(read)


REGISTERS = (
    _register(
        ENERGY_IMPORT,
        "cumulative energy kWh import",
        Attribute(lambda ctx, _sel: _u32(ctx.meter.registers.wh_import)),
        0,
        "Wh",
    ),
    _register(
        APPARENT_IMPORT,
        "cumulative energy kVAh import",
        Attribute(lambda ctx, _sel: _u32(ctx.meter.registers.vah_import)),
        0,
        "VAh",
    ),
    _register(VOLTAGE, "voltage", _last_entry_value("voltage"), -1, "V"),
    _register(CURRENT, "current", _last_entry_value("current"), -2, "A"),
)

# ------------------------------------------------------------------ name plate (class 1)


def _data(code: bytes, name: str, value: Data) -> CosemObject:
    return CosemObject(
        1, 0, code, name, {1: _ln(code), 2: Attribute(lambda _c, _s: value, Level.PUBLIC)}
    )


def _name_plate(kind: MeterKind) -> tuple[CosemObject, ...]:
    serial = CosemObject(
        1,
        0,
        SERIAL_NUMBER,
        "meter serial number",
        {
            1: _ln(SERIAL_NUMBER),
            2: Attribute(lambda ctx, _sel: axdr.visible(ctx.meter.meter_id), Level.PUBLIC),
        },
    )
    return (
        serial,
        _data(MANUFACTURER_NAME, "manufacturer name", axdr.visible(MANUFACTURER)),
        _data(FIRMWARE_VERSION, "firmware version", axdr.visible(FIRMWARE)),
        _data(METER_CATEGORY, "meter type", Data(Tag.UNSIGNED, METER_TYPE[kind])),
    )


# ------------------------------------------------------------------ profiles (class 7)


def _block_load_columns(kind: MeterKind) -> tuple[Column, ...]:
    return KIND_SPECS[kind].layout.columns


def _row(ctx: Context, interval_end: float) -> Data:
    meter = ctx.meter
    entry = meter.entry_for(interval_end, meter.interval_s)
    return axdr.structure(
        axdr.octets(cosem_datetime.encode(entry.clock)),
        *(
            Data(TAG_OF[column.dlms_type], value)
            for column, value in zip(entry.layout.columns, entry.values, strict=True)
        ),
    )


def _select_rows(ends: list[float], selection: Selection | None) -> list[float]:
    """Selective access: by range (1) on the clock column, or by entry (2)."""
    if selection is None:
        return ends
    parameters = selection.parameters.items
    if selection.selector == 1:
        if len(parameters) < 3:
            raise CodecError("type_unmatched", "range needs restricting object, from and to")
        low = cosem_datetime.decode(parameters[1].bytes_value).timestamp()
        high = cosem_datetime.decode(parameters[2].bytes_value).timestamp()
        return [end for end in ends if low <= end <= high]
    if selection.selector == 2:
        if len(parameters) < 2:
            raise CodecError("type_unmatched", "entry selection needs from and to")
        first = max(1, parameters[0].int_value)
        last = parameters[1].int_value or len(ends)
        return ends[first - 1 : last]
    raise CodecError("scope_of_access", f"selector {selection.selector} is not supported")


def _block_load_buffer(ctx: Context, selection: Selection | None) -> Data:
    ends = _select_rows(ctx.meter.buffered_interval_ends(), selection)
    return axdr.array(*(_row(ctx, end) for end in ends))


def _block_load(kind: MeterKind) -> CosemObject:
    columns = _block_load_columns(kind)
    capture = axdr.array(
        _capture(8, CLOCK, 2),
        *(_capture(3, obis(column.obis), 2) for column in columns),
    )
    return CosemObject(
        7,
        1,
        BLOCK_LOAD,
        "block load profile",
        {
            1: _ln(BLOCK_LOAD),
            2: Attribute(_block_load_buffer, selective=True),
            3: Attribute(lambda _ctx, _sel: capture),
            4: Attribute(lambda ctx, _sel: _u32(ctx.meter.interval_s)),
            5: Attribute(lambda _ctx, _sel: _enum(1)),  # sort method: FIFO
            7: Attribute(lambda ctx, _sel: _u32(len(ctx.meter.buffered_interval_ends()))),
            8: Attribute(lambda _ctx, _sel: _u32(2880)),
        },
    )


def _control_event_buffer(ctx: Context, selection: Selection | None) -> Data:
    events = list(ctx.meter.control_events)
    if selection is not None and selection.selector == 1:
        parameters = selection.parameters.items
        low = cosem_datetime.decode(parameters[1].bytes_value).timestamp()
        high = cosem_datetime.decode(parameters[2].bytes_value).timestamp()
        events = [(at, code) for at, code in events if low <= at <= high]
    elif selection is not None:
        raise CodecError("scope_of_access", f"selector {selection.selector} is not supported")
    return axdr.array(
        *(
            axdr.structure(
                axdr.octets(cosem_datetime.encode(datetime.fromtimestamp(at, tz=ctx.meter.tz))),
                _u16(int(code)),
            )
            for at, code in events
        )
    )


CONTROL_EVENT_LOG = CosemObject(
    7,
    1,
    CONTROL_EVENTS,
    "control event log",
    {
        1: _ln(CONTROL_EVENTS),
        2: Attribute(_control_event_buffer, selective=True),
        3: Attribute(
            lambda _ctx, _sel: axdr.array(_capture(8, CLOCK, 2), _capture(1, EVENT_CODE, 2))
        ),
        7: Attribute(lambda ctx, _sel: _u32(len(ctx.meter.control_events))),
    },
)

# ------------------------------------------------------------------ push setup (class 40)


def _set_push(field_name: str, tag: Tag, maximum: int) -> Attribute:
    def read(ctx: Context, _sel: Selection | None) -> Data:
        return Data(tag, getattr(ctx.meter.push, field_name))

    def write(ctx: Context, value: Data) -> DataAccessResult:
        if value.tag is not tag or not 0 <= value.int_value <= maximum:
            return DataAccessResult.TYPE_UNMATCHED
        setattr(ctx.meter.push, field_name, value.int_value)
        return DataAccessResult.SUCCESS

    return Attribute(read, write=write)


PUSH_SETUP_OBJECT = CosemObject(
    40,
    0,
    PUSH_SETUP,
    "push setup (block load)",
    {
        1: _ln(PUSH_SETUP),
        2: Attribute(lambda _ctx, _sel: axdr.array(_capture(7, BLOCK_LOAD, 2))),
        3: Attribute(
            lambda ctx, _sel: axdr.structure(
                _enum(0), axdr.octets(f"mtr/v1/{ctx.meter.meter_id}/up".encode()), _enum(0)
            )
        ),
        5: _set_push("randomisation_start_interval", Tag.LONG_UNSIGNED, 0xFFFF),
        6: _set_push("number_of_retries", Tag.UNSIGNED, 0xFF),
        7: _set_push("repetition_delay", Tag.LONG_UNSIGNED, 0xFFFF),
    },
)

# ------------------------------------------------------------------ load limit (class 71)


def _set_load_limit(ctx: Context, value: Data) -> DataAccessResult:
    if value.tag is not Tag.DOUBLE_LONG_UNSIGNED:
        return DataAccessResult.TYPE_UNMATCHED
    ctx.meter.load_limit_w = value.int_value
    return DataAccessResult.SUCCESS


LOAD_LIMIT_OBJECT = CosemObject(
    71,
    0,
    LOAD_LIMIT,
    "load limit",
    {
        1: _ln(LOAD_LIMIT),
        2: Attribute(lambda _ctx, _sel: _capture(3, obis("1.0.1.7.0.255"), 2)),
        3: Attribute(lambda ctx, _sel: _u32(ctx.meter.load_limit_w), write=_set_load_limit),
    },
)

# ------------------------------------------------------------------ association (class 15)

ASSOCIATION_OBJECT = CosemObject(
    15,
    1,
    ASSOCIATION,
    "current association",
    {1: _ln(ASSOCIATION)},
    # method 1 (reply_to_HLS_authentication) is handled by the session itself
)


@functools.cache
def object_model(kind: MeterKind) -> ObjectModel:
    """The one model for every meter of ``kind``."""
    objects = (
        ASSOCIATION_OBJECT,
        CLOCK_OBJECT,
        DISCONNECT_OBJECT,
        *REGISTERS,
        *_name_plate(kind),
        _block_load(kind),
        CONTROL_EVENT_LOG,
        PUSH_SETUP_OBJECT,
        LOAD_LIMIT_OBJECT,
    )
    return ObjectModel({o.obis: o for o in objects})
