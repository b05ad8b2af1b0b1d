"""The objects every simulated meter exposes (IS 15959 Parts 2 and 3), built once per kind.

Units are DLMS unit codes; energies are kept in Wh/VAh/varh with scaler 0, voltages in
0.1 V and currents in 0.01 A, as in the block-load profile. Profiles are in profiles.py.
"""

from __future__ import annotations

import functools

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
from hes_sim.meter_sim.cosem.profiles import BLOCK_LOAD, profiles
from hes_sim.meter_sim.cosem.values import (
    ALERT_PUSH_SETUP,
    APPARENT_IMPORT,
    ASSOCIATION,
    CLOCK,
    CURRENT,
    DISCONNECT_CONTROL,
    ENERGY_IMPORT,
    EVENT_STATUS_WORD,
    FIRMWARE_VERSION,
    LOAD_LIMIT,
    MANUFACTURER_NAME,
    METER_CATEGORY,
    PUSH_SETUP,
    SERIAL_NUMBER,
    VOLTAGE,
    capture,
    enum,
    logical_name,
    meter_time,
    name_plate_values,
    scaler_unit,
    u16,
    u32,
)
from hes_sim.meter_sim.event_logs import EventCode
from hes_sim.meter_sim.meter import MeterKind
from hes_sim.meter_sim.relay import Outcome, Trigger
from hes_sim.protocols import axdr, cosem_datetime
from hes_sim.protocols.axdr import Data, Tag
from hes_sim.protocols.xdlms import DataAccessResult, Selection

# ------------------------------------------------------------------ clock (class 8)

MAX_CLOCK_STEP_S = 366 * 86_400


def _set_clock(ctx: Context, value: Data) -> DataAccessResult:
    try:
        wanted = cosem_datetime.decode(value.bytes_value)
    except CodecError:
        return DataAccessResult.TYPE_UNMATCHED
    if abs(wanted.timestamp() - ctx.now) > MAX_CLOCK_STEP_S:
        return DataAccessResult.OTHER_REASON  # a meter refuses a clock years away
    ctx.meter.clock_offset_s = wanted.timestamp() - ctx.now
    ctx.meter.events.record(EventCode.REAL_TIME_CLOCK_SET, ctx.now)
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
        1: logical_name(CLOCK),
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
        1: logical_name(DISCONNECT_CONTROL),
        2: Attribute(lambda ctx, _sel: axdr.boolean(ctx.meter.relay.output_state)),
        3: Attribute(lambda ctx, _sel: enum(ctx.meter.relay.state)),
        4: Attribute(lambda ctx, _sel: enum(ctx.meter.relay.control_mode), write=_set_control_mode),
    },
    {1: _relay_method(Trigger.REMOTE_DISCONNECT), 2: _relay_method(Trigger.REMOTE_RECONNECT)},
)

# ------------------------------------------------------------------ registers (class 3)


def _register(code: bytes, name: str, value: Attribute, scaler: int, unit: str) -> CosemObject:
    return CosemObject(
        3, 0, code, name, {1: logical_name(code), 2: value, 3: scaler_unit(scaler, unit)}
    )


def _last_entry_value(quantity_of: str) -> Attribute:
    def read(ctx: Context, _sel: Selection | None) -> Data:
        meter = ctx.meter
        if meter.last_closed_end is None:
            return u16(0)
        entry = meter.entry_for(meter.last_closed_end, meter.interval_s)
        value = entry.average_voltage() if quantity_of == "voltage" else entry.average_current()
        return u16(round(value * (10 if quantity_of == "voltage" else 100)))

    return Attribute(read)


REGISTERS = (
    _register(
        ENERGY_IMPORT,
        "cumulative energy kWh import",
        Attribute(lambda ctx, _sel: u32(ctx.meter.registers.wh_import)),
        0,
        "Wh",
    ),
    _register(
        APPARENT_IMPORT,
        "cumulative energy kVAh import",
        Attribute(lambda ctx, _sel: u32(ctx.meter.registers.vah_import)),
        0,
        "VAh",
    ),
    _register(VOLTAGE, "voltage", _last_entry_value("voltage"), -1, "V"),
    _register(CURRENT, "current", _last_entry_value("current"), -2, "A"),
)

# ------------------------------------------------------------------ name plate (class 1)


def _name_plate() -> tuple[CosemObject, ...]:
    codes = (
        (SERIAL_NUMBER, "meter serial number"),
        (MANUFACTURER_NAME, "manufacturer name"),
        (FIRMWARE_VERSION, "firmware version"),
        (METER_CATEGORY, "meter type"),
    )

    def value_of(index: int) -> Attribute:
        return Attribute(lambda ctx, _sel: name_plate_values(ctx)[index], Level.PUBLIC)

    return tuple(
        CosemObject(1, 0, code, name, {1: logical_name(code), 2: value_of(index)})
        for index, (code, name) in enumerate(codes)
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
        1: logical_name(PUSH_SETUP),
        2: Attribute(lambda _ctx, _sel: axdr.array(capture(7, BLOCK_LOAD, 2))),
        3: Attribute(
            lambda ctx, _sel: axdr.structure(
                enum(0), axdr.octets(f"mtr/v1/{ctx.meter.meter_id}/up".encode()), enum(0)
            )
        ),
        5: _set_push("randomisation_start_interval", Tag.LONG_UNSIGNED, 0xFFFF),
        6: _set_push("number_of_retries", Tag.UNSIGNED, 0xFF),
        7: _set_push("repetition_delay", Tag.LONG_UNSIGNED, 0xFFFF),
    },
)

# The alert push goes out as an event happens: no randomisation, no retries to configure.
ALERT_PUSH_SETUP_OBJECT = CosemObject(
    40,
    0,
    ALERT_PUSH_SETUP,
    "push setup (alerts: event, event status word)",
    {
        1: logical_name(ALERT_PUSH_SETUP),
        2: Attribute(
            lambda _ctx, _sel: axdr.array(
                capture(1, EVENT_STATUS_WORD, 2), capture(1, obis("0.0.96.11.6.255"), 2)
            )
        ),
        3: PUSH_SETUP_OBJECT.attributes[3],
        5: Attribute(lambda _ctx, _sel: u16(0)),
        6: Attribute(lambda _ctx, _sel: Data(Tag.UNSIGNED, 0)),
        7: Attribute(lambda _ctx, _sel: u16(0)),
    },
)

# ------------------------------------------------------------------ load limit (class 71)


def _set_load_limit(ctx: Context, value: Data) -> DataAccessResult:
    if value.tag is not Tag.DOUBLE_LONG_UNSIGNED:
        return DataAccessResult.TYPE_UNMATCHED
    ctx.meter.load_limit_w = value.int_value
    ctx.meter.events.record(EventCode.LOAD_LIMIT_SET, ctx.now)
    return DataAccessResult.SUCCESS


LOAD_LIMIT_OBJECT = CosemObject(
    71,
    0,
    LOAD_LIMIT,
    "load limit",
    {
        1: logical_name(LOAD_LIMIT),
        2: Attribute(lambda _ctx, _sel: capture(3, obis("1.0.1.7.0.255"), 2)),
        3: Attribute(lambda ctx, _sel: u32(ctx.meter.load_limit_w), write=_set_load_limit),
    },
)

# ------------------------------------------------------------------ event status word (class 1)


def _event_status_word(ctx: Context, _sel: Selection | None) -> Data:
    return Data(Tag.BIT_STRING, ctx.meter.status_word())


ESW_OBJECT = CosemObject(
    1,
    0,
    EVENT_STATUS_WORD,
    "event status word",
    {1: logical_name(EVENT_STATUS_WORD), 2: Attribute(_event_status_word)},
)

# ------------------------------------------------------------------ association (class 15)

ASSOCIATION_OBJECT = CosemObject(
    15,
    1,
    ASSOCIATION,
    "current association",
    {1: logical_name(ASSOCIATION)},
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
        *_name_plate(),
        *profiles(kind),
        PUSH_SETUP_OBJECT,
        ALERT_PUSH_SETUP_OBJECT,
        LOAD_LIMIT_OBJECT,
        ESW_OBJECT,
    )
    return ObjectModel({o.obis: o for o in objects})
