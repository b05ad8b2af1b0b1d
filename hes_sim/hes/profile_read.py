"""Reading profiles (COSEM class 7) from a meter in an open association.

``read_block_load`` reads the block-load buffer by time range and builds each entry into
the ``ReadRecord`` the push path builds (same layout, same validation, same
``ReadRecord.from_entry``), so a read recovered this way is the read that was pushed.
``read_instantaneous`` reads the instantaneous profile into values named after what
they are. Both first read the profile's capture objects and its scaler profile: a meter
whose profile is not laid out as the head-end expects is refused, never misread.

Whatever the meter answers, a malformed answer raises ``ProfileReadError`` or
``CodecError`` (both ``HesSimError``: the dispatcher's retriable ``bad_answer``), never a
ValueError or the like, which the dispatcher takes for a bug of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from enum import IntEnum, StrEnum

import structlog

from hes_sim.errors import CodecError, HesSimError
from hes_sim.hes.meter_sessions import MeterConnection
from hes_sim.hes.records import ReadRecord
from hes_sim.hes.validation import validate_entry
from hes_sim.protocols import axdr, cosem_datetime
from hes_sim.protocols.axdr import Data, Tag
from hes_sim.protocols.block_load import LAYOUTS, BlockLoadEntry, ProfileLayout
from hes_sim.protocols.obis import Obis
from hes_sim.protocols.xdlms import Reference, Selection

log = structlog.get_logger(__name__)

PROFILE_CLASS = 7
BUFFER, CAPTURE_OBJECTS = 2, 3  # profile generic attributes
RANGE_SELECTOR = 1
SCALER_RANGE = (-128, 127)  # a scaler is an A-XDR integer: 10**scaler stays a sane number


class ProfileObis(StrEnum):
    BLOCK_LOAD = Obis.BLOCK_LOAD_PROFILE.value
    BLOCK_LOAD_SCALERS = "1.0.94.91.4.255"
    INSTANTANEOUS = "1.0.94.91.0.255"
    INSTANTANEOUS_SCALERS = "1.0.94.91.3.255"


class InstantaneousObis(StrEnum):
    """What the instantaneous profile captures, and the name each value is reported by."""

    CLOCK = Obis.CLOCK.value
    VOLTAGE = "1.0.12.7.0.255"
    CURRENT = "1.0.11.7.0.255"
    FREQUENCY = "1.0.14.7.0.255"
    POWER_FACTOR = "1.0.13.7.0.255"
    APPARENT_POWER = "1.0.9.7.0.255"
    ACTIVE_POWER = "1.0.1.7.0.255"
    ENERGY_IMPORT = "1.0.1.8.0.255"
    APPARENT_ENERGY_IMPORT = "1.0.9.8.0.255"
    BILLING_COUNT = "0.0.0.1.0.255"


class Unit(IntEnum):
    """DLMS unit codes (Blue Book 4.3.2) of the registers these profiles capture."""

    MINUTE = 6
    W = 27
    VA = 28
    VAR = 29
    WH = 30
    VAH = 31
    VARH = 32
    A = 33
    V = 35
    HZ = 44
    NONE = 255  # a count or a ratio


# the unit strings of protocols.block_load layouts
LAYOUT_UNITS = {"V": Unit.V, "A": Unit.A, "Wh": Unit.WH, "VAh": Unit.VAH, "varh": Unit.VARH}
# the name suffix of a value in that unit (a power factor or a count has none)
SUFFIX = {Unit.MINUTE: "min", Unit.W: "w", Unit.VA: "va", Unit.VAR: "var", Unit.WH: "wh",
          Unit.VAH: "vah", Unit.VARH: "varh", Unit.A: "a", Unit.V: "v", Unit.HZ: "hz"}  # fmt: skip


class ProfileReadError(HesSimError):
    """The meter's profile is not laid out as expected, or its rows do not match it."""


def _fields(value: Data, count: int, what: str) -> tuple[Data, ...]:
    """The ``count`` items of a structure the meter sent, or ProfileReadError."""
    items = value.items
    if len(items) != count:
        raise ProfileReadError(f"{what} of {len(items)} values, expected {count}")
    return items


@dataclass(frozen=True, slots=True)
class Capture:
    """One capture-object definition: which attribute of which object a column holds."""

    class_id: int
    obis: str  # dotted, e.g. "1.0.99.1.0.255"
    attribute: int


CLOCK_COLUMN = Capture(8, Obis.CLOCK.value, 2)
_LAYOUT_BY_REGISTERS: dict[tuple[Capture, ...], ProfileLayout] = {
    tuple(Capture(3, column.obis.value, 2) for column in layout.columns): layout
    for layout in LAYOUTS
}


def logical_name(dotted: str) -> bytes:
    return bytes(int(part) for part in dotted.split("."))


def dotted(name: bytes) -> str:
    return ".".join(str(b) for b in name)


# ------------------------------------------------------------------ capture objects and scalers


async def capture_objects(meter: MeterConnection, profile: str) -> list[Capture]:
    definitions = await meter.get(Reference(PROFILE_CLASS, logical_name(profile), CAPTURE_OBJECTS))
    try:
        return [_capture(definition) for definition in definitions.items]
    except CodecError as exc:
        raise ProfileReadError(f"capture objects of {profile}: {exc}") from exc


def _capture(definition: Data) -> Capture:
    class_id, name, attribute, _data_index = _fields(definition, 4, "a capture object")
    if len(name.bytes_value) != 6:
        raise CodecError("type_unmatched", f"a logical name of {len(name.bytes_value)} octets")
    return Capture(class_id.int_value, dotted(name.bytes_value), attribute.int_value)


async def scalers(meter: MeterConnection, scaler_profile: str) -> dict[str, tuple[int, Unit]]:
    """{scaler, unit} by register OBIS, from an IS 15959 scaler profile (one row holding
    attribute 3 of every register the profile it describes captures)."""
    columns = await capture_objects(meter, scaler_profile)
    rows = (await meter.get(Reference(PROFILE_CLASS, logical_name(scaler_profile), BUFFER))).items
    if len(rows) != 1 or len(rows[0].items) != len(columns):
        raise ProfileReadError(f"{scaler_profile} does not hold one row of {len(columns)} values")
    found: dict[str, tuple[int, Unit]] = {}
    for column, pair in zip(columns, rows[0].items, strict=True):
        scaler, unit = _fields(pair, 2, f"{scaler_profile}, {column.obis}: a scaler and unit")
        if not SCALER_RANGE[0] <= scaler.int_value <= SCALER_RANGE[1]:
            raise ProfileReadError(f"{scaler_profile}, {column.obis}: scaler {scaler.int_value}")
        try:
            found[column.obis] = (scaler.int_value, Unit(unit.int_value))
        except ValueError as exc:  # a unit code this head-end does not know
            raise ProfileReadError(f"{scaler_profile}, {column.obis}: {exc}") from exc
    return found


# ------------------------------------------------------------------ block load


async def block_load_layout(meter: MeterConnection) -> ProfileLayout:
    """The layout the meter's block-load profile has, checked against its scaler profile."""
    columns = await capture_objects(meter, ProfileObis.BLOCK_LOAD)
    if not columns or columns[0] != CLOCK_COLUMN:
        raise ProfileReadError("the block-load profile's first column is not the clock")
    layout = _LAYOUT_BY_REGISTERS.get(tuple(columns[1:]))
    if layout is None:
        registers = ", ".join(c.obis for c in columns[1:])
        raise ProfileReadError(f"no known block-load layout captures {registers}")
    scaled = await scalers(meter, ProfileObis.BLOCK_LOAD_SCALERS)
    for column in layout.columns:
        expected = (column.scaler, LAYOUT_UNITS[column.unit])
        if scaled.get(column.obis.value) != expected:
            raise ProfileReadError(
                f"{column.obis.value} has scaler and unit {scaled.get(column.obis.value)}, "
                f"{layout.name} expects {expected}"
            )
    return layout


def range_selection(start: float, end: float, tz: tzinfo) -> Selection:
    """Selective access by range (selector 1) on the clock column, both ends included."""
    return Selection(
        RANGE_SELECTOR,
        axdr.structure(
            axdr.structure(
                Data(Tag.LONG_UNSIGNED, CLOCK_COLUMN.class_id),
                axdr.octets(logical_name(CLOCK_COLUMN.obis)),
                Data(Tag.INTEGER, CLOCK_COLUMN.attribute),
                Data(Tag.LONG_UNSIGNED, 0),
            ),
            axdr.octets(cosem_datetime.encode(datetime.fromtimestamp(start, tz=tz))),
            axdr.octets(cosem_datetime.encode(datetime.fromtimestamp(end, tz=tz))),
            axdr.array(),  # every column
        ),
    )


def block_load_entry(layout: ProfileLayout, row: Data) -> BlockLoadEntry:
    """One buffer row as the push path decodes one pushed entry."""
    items = row.items
    if len(items) != 1 + len(layout.columns):
        raise ProfileReadError(f"a row of {len(items)} values in a {layout.name} profile")
    values = []
    for column, item in zip(layout.columns, items[1:], strict=True):
        if int(item.tag) != int(column.dlms_type):
            raise ProfileReadError(f"{column.quantity} sent as {item.tag.name}")
        values.append(item.int_value)
    clock = cosem_datetime.decode(items[0].bytes_value)
    try:
        return BlockLoadEntry(layout, clock, tuple(values))
    except ValueError as exc:
        raise ProfileReadError(str(exc)) from exc


async def read_block_load(
    meter: MeterConnection, start: float, end: float, tz: tzinfo, *, received_at: float
) -> list[ReadRecord]:
    """The block-load entries stamped in ``[start, end]``, as the records ingest would
    have stored had they been pushed (``received_at``: now, simulated). Entries ingest
    would refuse (unaligned, from the future) are left out, as a pushed one would be."""
    layout = await block_load_layout(meter)
    selection = range_selection(start, end, tz)
    rows = await meter.get(
        Reference(PROFILE_CLASS, logical_name(ProfileObis.BLOCK_LOAD), BUFFER), selection
    )
    records = []
    for row in rows.items:
        entry = block_load_entry(layout, row)
        try:
            interval_end = validate_entry(entry, received_at)
        except CodecError as exc:
            log.warning("profile_entry_rejected", meter_id=meter.meter_id, reason=exc.reason,
                        error=str(exc))  # fmt: skip
            continue
        records.append(ReadRecord.from_entry(meter.meter_id, entry, received_at, interval_end))
    return records


# ------------------------------------------------------------------ instantaneous


async def read_instantaneous(meter: MeterConnection) -> dict[str, object]:
    """The instantaneous profile's one row, each value scaled by its scaler profile and
    named after its register and unit (``voltage_v``, ``active_power_w``, ...); the
    meter's clock as ``meter_time`` in Unix seconds. Registers the head-end has no name
    for are reported by their OBIS code, unscaled when their scaler is not known."""
    columns = await capture_objects(meter, ProfileObis.INSTANTANEOUS)
    buffer = logical_name(ProfileObis.INSTANTANEOUS)
    rows = (await meter.get(Reference(PROFILE_CLASS, buffer, BUFFER))).items
    if len(rows) != 1 or len(rows[0].items) != len(columns):
        raise ProfileReadError(f"the instantaneous profile does not hold one row of {len(columns)}")
    scaled = await scalers(meter, ProfileObis.INSTANTANEOUS_SCALERS)
    values: dict[str, object] = {}
    for column, item in zip(columns, rows[0].items, strict=True):
        if column == CLOCK_COLUMN:
            values["meter_time"] = cosem_datetime.decode(item.bytes_value).timestamp()
            continue
        scaler, unit = scaled.get(column.obis, (0, Unit.NONE))
        values[_name(column, unit)] = _scaled(item, scaler)
    return values


def _name(column: Capture, unit: Unit) -> str:
    try:
        base = InstantaneousObis(column.obis).name.lower()
    except ValueError:
        return column.obis if column.attribute == 2 else f"{column.obis}:{column.attribute}"
    suffix = SUFFIX.get(unit)
    return f"{base}_{suffix}" if suffix else base


def _scaled(item: Data, scaler: int) -> object:
    """A JSON-ready value: numbers scaled, strings in hex."""
    match item.value:
        case bool() | None:
            return item.value
        case int():
            return (
                item.value * 10**scaler
                if scaler >= 0
                else round(item.value * 10.0**scaler, -scaler)
            )
        case bytes():
            return item.value.hex()
        case _:
            return repr(item.value)  # a structure: kept readable, not interpreted
