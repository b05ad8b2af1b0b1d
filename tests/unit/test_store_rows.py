"""How the SQL stores write a read's registers: exactly the JSON a generic encoder gives,
from a dict or from the registers a read is decoded with."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hes_sim.hes.records import ReadRecord, Registers
from hes_sim.hes.store import _registers_json
from hes_sim.protocols.block_load import LAYOUTS, MAX_VALUE, ProfileLayout

_KEYS = st.text(min_size=1, max_size=12)
_VALUES = st.one_of(st.integers(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False))


@given(st.dictionaries(_KEYS, st.integers(min_value=-(2**40), max_value=2**40), max_size=14))
def test_integer_registers_are_the_json_the_encoder_writes(registers: dict[str, int]) -> None:
    expected = json.dumps(registers, separators=(",", ":"))
    assert _registers_json(registers) == expected
    assert json.loads(_registers_json(registers)) == registers


@given(st.dictionaries(_KEYS, _VALUES, max_size=8))
def test_other_values_are_written_as_json_too(registers: dict[str, object]) -> None:
    assert _registers_json(registers) == json.dumps(registers, separators=(",", ":"))  # type: ignore[arg-type]


def test_a_key_needing_escapes_is_escaped() -> None:
    registers = {'quote"d': 1, "back\\slash": 2, "ü": 3}
    assert json.loads(_registers_json(registers)) == registers


@st.composite
def _layout_and_values(draw: st.DrawFn) -> tuple[ProfileLayout, tuple[int, ...]]:
    layout = draw(st.sampled_from(LAYOUTS))
    values = tuple(
        draw(st.integers(min_value=0, max_value=MAX_VALUE[column.dlms_type]))
        for column in layout.columns
    )
    return layout, values


@given(_layout_and_values())
def test_a_reads_registers_are_the_dict_of_its_layout_and_values(
    drawn: tuple[ProfileLayout, tuple[int, ...]],
) -> None:
    layout, values = drawn
    registers = Registers(layout, values)
    as_dict = dict(zip(layout.quantity_names, values, strict=True))
    assert registers == as_dict
    assert as_dict == registers
    assert list(registers.items()) == list(as_dict.items())
    assert _registers_json(registers) == json.dumps(as_dict, separators=(",", ":"))
    record = ReadRecord.from_values("SP1", layout, values, 900, 1.0)
    assert record == replace(record, registers=as_dict)


def test_registers_refuse_what_their_layout_lacks() -> None:
    layout = LAYOUTS[0]
    registers = Registers(layout, (0,) * len(layout.columns))
    assert "no_such_quantity" not in registers
    with pytest.raises(KeyError):
        registers["no_such_quantity"]
    with pytest.raises(ValueError, match="registers"):
        Registers(layout, (0,) * (len(layout.columns) + 1))


@given(_layout_and_values())
def test_a_read_and_its_layout_cross_a_pipe(drawn: tuple[ProfileLayout, tuple[int, ...]]) -> None:
    layout, values = drawn
    record = ReadRecord.from_values("SP1", layout, values, 900, 1.0)
    copied = pickle.loads(pickle.dumps(record))  # noqa: S301 - our own bytes
    assert copied == record
    assert copied.registers.layout == layout
    assert copied.registers.layout.voltage_of(values) == layout.voltage_of(values)
