"""Precompiled templates for the pushes this project sends: one ``struct`` per shape.

A shape is a block-load layout, or the event entry, each with or without the header
date-time. Every such APDU has a fixed size and fixed tags, so one ``struct.Struct``
packs or unpacks it whole, in a few microseconds where gurux-dlms takes tens to
hundreds (``scripts/bench.py codec``). The bytes are those of the gurux reference codec
in ``push``, which the tests prove over random values.

This module only knows shapes and fields; ``push`` builds its notifications from them.
Whatever is not one of these shapes, byte for byte, gets ``None`` here and goes to the
reference codec, which either reads it or names what is wrong with it.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hes_sim.errors import CodecError
from hes_sim.protocols import cosem_datetime
from hes_sim.protocols.block_load import LAYOUTS, BlockLoadEntry, DlmsType, ProfileLayout

DATA_NOTIFICATION_TAG = 0x0F
# Priority high (bit 31) and service class confirmed (bit 30), as Gurux sets them.
INVOKE_ID_FLAGS = 0xC000_0000
INVOKE_ID_MASK = 0x00FF_FFFF
LOGICAL_NAME_SIZE = 6
STATUS_WORD_SIZE = 16  # 128 bits
_STRUCTURE = 0x02
_BIT_STRING = 0x04
_OCTET_STRING = 0x09
_LONG_UNSIGNED = 0x12
# the A-XDR length of a 128-bit bit-string: 0x81 (one length octet follows), then 128
_STATUS_WORD_LENGTH = (0x81, STATUS_WORD_SIZE * 8)
_DATETIME = f"{cosem_datetime.SIZE}s"
_VALUE_CODE = {DlmsType.LONG_UNSIGNED: "H", DlmsType.DOUBLE_LONG_UNSIGNED: "I"}

# The fields of a decoded event entry: log name, clock, code, status word.
EventFields = tuple[bytes, datetime, int, bytes]
Decoded = tuple[int, datetime | None, BlockLoadEntry | EventFields]
# A block-load entry's layout, clock, the clock's Unix time and its register values.
BlockLoadFields = tuple[ProfileLayout, datetime, float, tuple[int, ...]]


@dataclass(frozen=True, slots=True)
class _Template:
    """One shape: its struct, every field with the fixed ones filled in, where things are."""

    layout: ProfileLayout | None  # None for the event entry
    with_time: bool
    packer: struct.Struct
    fields: tuple[int | bytes, ...]  # the variable fields hold a placeholder
    fixed: Callable[[Sequence[object]], tuple[object, ...]]  # picks the fixed fields out
    expected: tuple[object, ...]  # ... which must be these
    body_at: tuple[int, ...]  # the body's variable fields, in wire order
    clock_at: int  # the entry's clock, one of body_at
    values_at: int  # block load: the first register value, then every other field


_INVOKE_ID_AT = 1
_SENT_AT_AT = 3  # after the tag, the invoke id and the date-time's length


class _Shape:
    """Collects a template's struct codes and fields, front to back."""

    def __init__(self, *, with_time: bool) -> None:
        self.codes = [">"]
        self.fields: list[int | bytes] = []
        self.fixed_at: list[int] = []
        self.body_at: list[int] = []
        self.clock_at = -1
        self.with_time = with_time
        self.fix("B", DATA_NOTIFICATION_TAG)
        self.slot("I")  # long-invoke-id-and-priority
        self.fix("B", cosem_datetime.SIZE if with_time else 0)
        if with_time:
            self.slot(_DATETIME)

    def fix(self, code: str, value: int) -> None:
        self.fixed_at.append(len(self.fields))
        self.codes.append(code)
        self.fields.append(int(value))

    def slot(self, code: str) -> int:
        self.codes.append(code)
        self.fields.append(b"" if code.endswith("s") else 0)
        return len(self.fields) - 1

    def body(self, code: str) -> None:
        self.body_at.append(self.slot(code))

    def clock(self) -> None:
        self.fix("B", _OCTET_STRING)
        self.fix("B", cosem_datetime.SIZE)
        self.body(_DATETIME)
        self.clock_at = self.body_at[-1]

    def template(self, layout: ProfileLayout | None, values_at: int = -1) -> _Template:
        fixed = operator.itemgetter(*self.fixed_at)  # several indices: it gives a tuple
        return _Template(
            layout,
            self.with_time,
            struct.Struct("".join(self.codes)),
            tuple(self.fields),
            fixed,
            fixed(self.fields),
            tuple(self.body_at),
            self.clock_at,
            values_at,
        )


def _block_load_template(layout: ProfileLayout, *, with_time: bool) -> _Template:
    shape = _Shape(with_time=with_time)
    shape.fix("B", _STRUCTURE)
    shape.fix("B", 1 + len(layout.columns))
    shape.clock()
    for column in layout.columns:
        shape.fix("B", column.dlms_type)
        shape.body(_VALUE_CODE[column.dlms_type])
    return shape.template(layout, values_at=shape.body_at[1])


def _event_template(*, with_time: bool) -> _Template:
    shape = _Shape(with_time=with_time)
    shape.fix("B", _STRUCTURE)
    shape.fix("B", 4)
    shape.fix("B", _OCTET_STRING)
    shape.fix("B", LOGICAL_NAME_SIZE)
    shape.body(f"{LOGICAL_NAME_SIZE}s")
    shape.clock()
    shape.fix("B", _LONG_UNSIGNED)
    shape.body("H")
    shape.fix("B", _BIT_STRING)
    for octet in _STATUS_WORD_LENGTH:
        shape.fix("B", octet)
    shape.body(f"{STATUS_WORD_SIZE}s")
    return shape.template(None)


# Keyed by the layout object's identity: hashing a ProfileLayout by value would cost more
# than the whole encode. Each template holds its layout, so no other object can take that
# id; another, equal layout object goes to gurux.
_BLOCK_LOAD = {
    (id(layout), with_time): _block_load_template(layout, with_time=with_time)
    for layout in LAYOUTS
    for with_time in (False, True)
}
_EVENT = {with_time: _event_template(with_time=with_time) for with_time in (False, True)}
_BY_SIZE: dict[int, list[_Template]] = {}
for _template in (*_BLOCK_LOAD.values(), *_EVENT.values()):
    _BY_SIZE.setdefault(_template.packer.size, []).append(_template)


def _fields(template: _Template, invoke_id: int, sent_at: datetime | None) -> list[int | bytes]:
    fields = list(template.fields)
    fields[_INVOKE_ID_AT] = INVOKE_ID_FLAGS | invoke_id & INVOKE_ID_MASK
    if sent_at is not None:
        fields[_SENT_AT_AT] = cosem_datetime.encode(sent_at)
    return fields


def encode_block_load(
    invoke_id: int, sent_at: datetime | None, entry: BlockLoadEntry
) -> bytes | None:
    template = _BLOCK_LOAD.get((id(entry.layout), sent_at is not None))
    if template is None:
        return None
    fields = _fields(template, invoke_id, sent_at)
    fields[template.clock_at] = cosem_datetime.encode(entry.clock)
    fields[template.values_at :: 2] = entry.values  # in range: BlockLoadEntry checks them
    return template.packer.pack(*fields)


def encode_event(invoke_id: int, sent_at: datetime | None, event: EventFields) -> bytes | None:
    log, clock, code, status_word = event
    # struct pads or cuts an "Ns" field silently, so the sizes are checked here
    if len(log) != LOGICAL_NAME_SIZE or len(status_word) != STATUS_WORD_SIZE:
        return None
    template = _EVENT[sent_at is not None]
    fields = _fields(template, invoke_id, sent_at)
    body: tuple[int | bytes, ...] = (log, cosem_datetime.encode(clock), code, status_word)
    for at, value in zip(template.body_at, body, strict=True):
        fields[at] = value
    try:
        return template.packer.pack(*fields)
    except struct.error:  # a code beyond 16 bits, which gurux cuts to its low bits
        return None


def decode(apdu: bytes) -> Decoded | None:
    """The fields of an APDU of one of the shapes above, or None for anything else."""
    matched = _match(apdu)
    if matched is None:
        return None
    template, fields, sent_at, clock, _unix = matched
    invoke_id = fields[_INVOKE_ID_AT] & INVOKE_ID_MASK
    if template.layout is None:
        log, _, code, status_word = (fields[at] for at in template.body_at)
        return invoke_id, sent_at, (log, clock, code, status_word)
    values = fields[template.values_at :: 2]
    # each value was read with its register's struct code, so it fits
    return invoke_id, sent_at, BlockLoadEntry.trusted(template.layout, clock, values)


def decode_block_load(apdu: bytes) -> BlockLoadFields | None:
    """The entry of a block-load push of one of the shapes above, as fields (the head-end
    stores them, building no entry); None for anything else, events included."""
    matched = _match(apdu)
    if matched is None:
        return None
    template, fields, _sent_at, clock, unix = matched
    if template.layout is None:
        return None
    return template.layout, clock, unix, fields[template.values_at :: 2]


def _match(
    apdu: bytes,
) -> tuple[_Template, tuple[Any, ...], datetime | None, datetime, float] | None:
    """The template ``apdu`` fits, its fields (each of its struct code's type), header time,
    and the entry's clock and its Unix time; None when it fits none, or a date-time in it
    does not decode."""
    for template in _BY_SIZE.get(len(apdu), ()):
        fields = template.packer.unpack(apdu)
        if template.fixed(fields) != template.expected:
            continue
        try:
            sent_at = cosem_datetime.decode(fields[_SENT_AT_AT]) if template.with_time else None
            clock, unix = cosem_datetime.decode_instant(fields[template.clock_at])
        except CodecError:
            return None  # the reference codec names the fault, with its own reason
        return template, fields, sent_at, clock, unix
    return None
