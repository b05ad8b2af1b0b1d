"""Building blocks of the object model: logical names, typed values, capture definitions."""

from __future__ import annotations

from datetime import datetime

from hes_sim.meter_sim.cosem.model import Attribute, Context, Level, obis
from hes_sim.meter_sim.meter import KIND_SPECS
from hes_sim.protocols import axdr, cosem_datetime
from hes_sim.protocols.axdr import Data, Tag
from hes_sim.protocols.block_load import DlmsType
from hes_sim.protocols.obis import Obis

UNIT = {"V": 35, "A": 33, "Wh": 30, "VAh": 31, "varh": 32, "W": 27, "VA": 28, "Hz": 44,
        "min": 6, "none": 255}  # fmt: skip
TAG_OF = {
    DlmsType.LONG_UNSIGNED: Tag.LONG_UNSIGNED,
    DlmsType.DOUBLE_LONG_UNSIGNED: Tag.DOUBLE_LONG_UNSIGNED,
}

CLOCK = obis(Obis.CLOCK)
ASSOCIATION = obis("0.0.40.0.0.255")
DISCONNECT_CONTROL = obis("0.0.96.3.10.255")
PUSH_SETUP = obis("0.0.25.9.0.255")
ALERT_PUSH_SETUP = obis("0.0.25.9.1.255")
LOAD_LIMIT = obis("0.0.17.0.0.255")
ENERGY_IMPORT = obis("1.0.1.8.0.255")
APPARENT_IMPORT = obis("1.0.9.8.0.255")
VOLTAGE = obis("1.0.12.7.0.255")
CURRENT = obis("1.0.11.7.0.255")
SERIAL_NUMBER = obis("0.0.96.1.0.255")
MANUFACTURER_NAME = obis("0.0.96.1.1.255")
FIRMWARE_VERSION = obis("1.0.0.2.0.255")
METER_CATEGORY = obis("0.0.94.91.9.255")
EVENT_STATUS_WORD = obis("0.0.94.91.18.255")


def logical_name(code: bytes) -> Attribute:
    return Attribute(lambda _ctx, _sel: axdr.octets(code), Level.PUBLIC)


def u16(value: int) -> Data:
    return Data(Tag.LONG_UNSIGNED, value)


def u32(value: int) -> Data:
    return Data(Tag.DOUBLE_LONG_UNSIGNED, max(0, min(0xFFFF_FFFF, value)))


def enum(value: int) -> Data:
    return Data(Tag.ENUM, value)


def axdr_datetime(value: datetime) -> bytes:
    return cosem_datetime.encode(value)


def capture(class_id: int, code: bytes, attribute: int) -> Data:
    """A capture-object definition: {class id, logical name, attribute, data index}."""
    return axdr.structure(u16(class_id), axdr.octets(code), Data(Tag.INTEGER, attribute), u16(0))


def scaler_unit_value(scaler: int, unit: str) -> Data:
    return axdr.structure(Data(Tag.INTEGER, scaler), enum(UNIT[unit]))


def scaler_unit(scaler: int, unit: str) -> Attribute:
    value = scaler_unit_value(scaler, unit)
    return Attribute(lambda _ctx, _sel: value, Level.PUBLIC)


def meter_time(ctx: Context) -> datetime:
    return datetime.fromtimestamp(ctx.now + ctx.meter.clock_offset_s, tz=ctx.meter.tz)


MANUFACTURER = "HES-SIM"
FIRMWARE = "hes-sim-fw-1.0"


def name_plate_values(ctx: Context) -> tuple[Data, ...]:
    """Serial number, manufacturer, firmware version, meter type."""
    return (
        axdr.visible(ctx.meter.meter_id),
        axdr.visible(MANUFACTURER),
        axdr.visible(FIRMWARE),
        Data(Tag.UNSIGNED, KIND_SPECS[ctx.meter.kind].category_code),
    )
