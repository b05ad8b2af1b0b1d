"""How the SQL stores write a read's registers: exactly the JSON a generic encoder gives."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from hes_sim.hes.store import _registers_json

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
