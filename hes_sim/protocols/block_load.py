"""Block-load profile entries (profile generic 1.0.99.1.0.255) as typed values.

A layout is the profile's capture-object list: the clock first, then registers with
their DLMS type and scaler. Layouts are data, shared by every meter of a kind; an entry
holds only its clock and raw register values, as sent on the wire.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Self

from hes_sim.protocols.obis import Obis


class DlmsType(IntEnum):
    """The A-XDR data-type tags used in these layouts."""

    OCTET_STRING = 0x09
    DOUBLE_LONG_UNSIGNED = 0x06  # u32
    LONG_UNSIGNED = 0x12  # u16


class Quantity(StrEnum):
    VOLTAGE = "voltage"
    CURRENT = "current"
    VOLTAGE_R = "voltage_r"
    VOLTAGE_Y = "voltage_y"
    VOLTAGE_B = "voltage_b"
    CURRENT_R = "current_r"
    CURRENT_Y = "current_y"
    CURRENT_B = "current_b"
    WH_IMPORT = "wh_import"
    WH_EXPORT = "wh_export"
    VARH_Q1 = "varh_q1"
    VARH_Q2 = "varh_q2"
    VARH_Q3 = "varh_q3"
    VARH_Q4 = "varh_q4"
    VAH_IMPORT = "vah_import"
    VAH_EXPORT = "vah_export"


MAX_VALUE = {DlmsType.LONG_UNSIGNED: 0xFFFF, DlmsType.DOUBLE_LONG_UNSIGNED: 0xFFFF_FFFF}


@dataclass(frozen=True, slots=True)
class Column:
    quantity: Quantity
    obis: Obis
    dlms_type: DlmsType
    scaler: int  # value on the wire times 10**scaler is the value in ``unit``
    unit: str


_PHASE_VOLTAGES = (Quantity.VOLTAGE_R, Quantity.VOLTAGE_Y, Quantity.VOLTAGE_B)
_PHASE_CURRENTS = (Quantity.CURRENT_R, Quantity.CURRENT_Y, Quantity.CURRENT_B)


@dataclass(frozen=True, slots=True)
class ProfileLayout:
    name: str
    columns: tuple[Column, ...]  # the registers after the clock, in capture order
    # derived once: the head-end looks registers up for every read it stores
    positions: dict[Quantity, int] = field(init=False, repr=False, compare=False, hash=False)
    quantity_names: tuple[str, ...] = field(init=False, repr=False, compare=False, hash=False)
    position_of_name: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)
    # Wh import, Wh export, VAh import, VAh export out of a row's values, in one call;
    # None for a layout that lacks one of them
    energy: Callable[[Sequence[int]], tuple[int, int, int, int]] | None = field(
        init=False, repr=False, compare=False, hash=False
    )
    # a row's average voltage (V) and current (A), out of its values: the captured
    # average's column, or the mean of the phases'
    voltage_of: Callable[[Sequence[int]], float] = field(
        init=False, repr=False, compare=False, hash=False
    )
    current_of: Callable[[Sequence[int]], float] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        positions = {column.quantity: i for i, column in enumerate(self.columns)}
        object.__setattr__(self, "positions", positions)
        object.__setattr__(self, "quantity_names", tuple(c.quantity.value for c in self.columns))
        object.__setattr__(self, "position_of_name", {q.value: i for q, i in positions.items()})
        for name, single, phases in (
            ("voltage_of", Quantity.VOLTAGE, _PHASE_VOLTAGES),
            ("current_of", Quantity.CURRENT, _PHASE_CURRENTS),
        ):
            averaged = (single,) if single in positions else phases
            # (position, scale) of each column averaged
            terms = tuple(
                (positions[q], 10.0 ** self.columns[positions[q]].scaler)
                for q in averaged
                if q in positions
            )
            object.__setattr__(self, name, self._averager(terms))
        energy = (Quantity.WH_IMPORT, Quantity.WH_EXPORT, Quantity.VAH_IMPORT, Quantity.VAH_EXPORT)
        getter = (
            operator.itemgetter(*(positions[q] for q in energy))
            if all(q in positions for q in energy)
            else None
        )
        object.__setattr__(self, "energy", getter)

    def __reduce__(self) -> tuple[type[ProfileLayout], tuple[str, tuple[Column, ...]]]:
        # by the fields that define it: the derived ones are rebuilt (the averages are
        # closures, which pickle cannot carry)
        return ProfileLayout, (self.name, self.columns)

    def _averager(self, terms: tuple[tuple[int, float], ...]) -> Callable[[Sequence[int]], float]:
        """The mean of the scaled values at ``terms``: one column's (the captured average)
        or the phases'. Built once per layout: a read's two averages cost a call each."""
        if not terms:

            def lacking(_values: Sequence[int]) -> float:
                raise KeyError(f"{self.name} captures no such quantity")

            return lacking
        if len(terms) == 1:
            ((position, scale),) = terms
            return lambda values: values[position] * scale
        count = len(terms)
        return lambda values: sum(values[at] * scale for at, scale in terms) / count

    def index(self, quantity: Quantity) -> int:
        try:
            return self.positions[quantity]
        except KeyError:
            raise KeyError(f"{quantity} is not captured by {self.name}") from None

    @property
    def signature(self) -> tuple[DlmsType, ...]:
        return tuple(column.dlms_type for column in self.columns)


def _v(quantity: Quantity, obis: Obis) -> Column:
    return Column(quantity, obis, DlmsType.LONG_UNSIGNED, -1, "V")


def _a(quantity: Quantity, obis: Obis) -> Column:
    return Column(quantity, obis, DlmsType.LONG_UNSIGNED, -2, "A")


def _energy(quantity: Quantity, obis: Obis, unit: str) -> Column:
    return Column(quantity, obis, DlmsType.DOUBLE_LONG_UNSIGNED, 0, unit)


SINGLE_PHASE_BLOCK_LOAD = ProfileLayout(
    "block_load_single_phase",
    (
        _v(Quantity.VOLTAGE, Obis.AVERAGE_VOLTAGE),
        _a(Quantity.CURRENT, Obis.AVERAGE_CURRENT),
        _energy(Quantity.WH_IMPORT, Obis.BLOCK_KWH_IMPORT, "Wh"),
        _energy(Quantity.WH_EXPORT, Obis.BLOCK_KWH_EXPORT, "Wh"),
        _energy(Quantity.VAH_IMPORT, Obis.BLOCK_KVAH_IMPORT, "VAh"),
        _energy(Quantity.VAH_EXPORT, Obis.BLOCK_KVAH_EXPORT, "VAh"),
    ),
)

THREE_PHASE_BLOCK_LOAD = ProfileLayout(
    "block_load_three_phase",
    (
        _a(Quantity.CURRENT_R, Obis.CURRENT_R),
        _a(Quantity.CURRENT_Y, Obis.CURRENT_Y),
        _a(Quantity.CURRENT_B, Obis.CURRENT_B),
        _v(Quantity.VOLTAGE_R, Obis.VOLTAGE_R),
        _v(Quantity.VOLTAGE_Y, Obis.VOLTAGE_Y),
        _v(Quantity.VOLTAGE_B, Obis.VOLTAGE_B),
        _energy(Quantity.WH_IMPORT, Obis.BLOCK_KWH_IMPORT, "Wh"),
        _energy(Quantity.WH_EXPORT, Obis.BLOCK_KWH_EXPORT, "Wh"),
        _energy(Quantity.VARH_Q1, Obis.BLOCK_KVARH_Q1, "varh"),
        _energy(Quantity.VARH_Q2, Obis.BLOCK_KVARH_Q2, "varh"),
        _energy(Quantity.VARH_Q3, Obis.BLOCK_KVARH_Q3, "varh"),
        _energy(Quantity.VARH_Q4, Obis.BLOCK_KVARH_Q4, "varh"),
        _energy(Quantity.VAH_IMPORT, Obis.BLOCK_KVAH_IMPORT, "VAh"),
        _energy(Quantity.VAH_EXPORT, Obis.BLOCK_KVAH_EXPORT, "VAh"),
    ),
)

LAYOUTS = (SINGLE_PHASE_BLOCK_LOAD, THREE_PHASE_BLOCK_LOAD)
LAYOUT_BY_SIGNATURE: dict[tuple[DlmsType | None, ...], ProfileLayout] = {
    layout.signature: layout for layout in LAYOUTS
}
if len(LAYOUT_BY_SIGNATURE) != len(LAYOUTS):  # pragma: no cover - guards the table above
    raise RuntimeError("two block-load layouts share a wire signature")


@dataclass(frozen=True, slots=True)
class BlockLoadEntry:
    """One row of the block-load profile: the interval's end and its raw register values."""

    layout: ProfileLayout
    clock: datetime
    values: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.values) != len(self.layout.columns):
            raise ValueError(
                f"{self.layout.name} has {len(self.layout.columns)} registers, "
                f"got {len(self.values)} values"
            )
        for column, value in zip(self.layout.columns, self.values, strict=True):
            if isinstance(value, bool) or not 0 <= value <= MAX_VALUE[column.dlms_type]:
                raise ValueError(f"{column.quantity}={value} does not fit {column.dlms_type.name}")

    @classmethod
    def trusted(cls, layout: ProfileLayout, clock: datetime, values: tuple[int, ...]) -> Self:
        """An entry whose values are known to fit ``layout``: a fast decoder's, which read
        each with a struct code of the register's own width. Skips checks that cost more
        than the rest of that decode."""
        entry = object.__new__(cls)
        object.__setattr__(entry, "layout", layout)
        object.__setattr__(entry, "clock", clock)
        object.__setattr__(entry, "values", values)
        return entry

    def raw(self, quantity: Quantity) -> int:
        return self.values[self.layout.index(quantity)]

    def scaled(self, quantity: Quantity) -> float:
        column = self.layout.columns[self.layout.index(quantity)]
        return self.raw(quantity) * 10.0**column.scaler

    def average_voltage(self) -> float:
        """Average voltage in V: the captured average, or the mean of the phase voltages."""
        return self.layout.voltage_of(self.values)

    def average_current(self) -> float:
        """Average current in A: the captured average, or the mean of the phase currents."""
        return self.layout.current_of(self.values)
