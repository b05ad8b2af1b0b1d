"""A-XDR encoding of COSEM data (DLMS Blue Book 4.1.5 / Green Book 9.5): a tag, then the value.

Only the types a meter of this simulator speaks; each decoded value keeps its tag, so it
encodes back to the same bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from hes_sim.errors import CodecError


class Tag(IntEnum):
    NULL = 0
    ARRAY = 1
    STRUCTURE = 2
    BOOLEAN = 3
    BIT_STRING = 4
    DOUBLE_LONG = 5  # i32
    DOUBLE_LONG_UNSIGNED = 6  # u32
    OCTET_STRING = 9
    VISIBLE_STRING = 10
    INTEGER = 15  # i8
    LONG = 16  # i16
    UNSIGNED = 17  # u8
    LONG_UNSIGNED = 18  # u16
    LONG64 = 20
    LONG64_UNSIGNED = 21
    ENUM = 22


_INTS = {
    Tag.DOUBLE_LONG: struct.Struct(">i"),
    Tag.DOUBLE_LONG_UNSIGNED: struct.Struct(">I"),
    Tag.INTEGER: struct.Struct(">b"),
    Tag.LONG: struct.Struct(">h"),
    Tag.UNSIGNED: struct.Struct(">B"),
    Tag.LONG_UNSIGNED: struct.Struct(">H"),
    Tag.LONG64: struct.Struct(">q"),
    Tag.LONG64_UNSIGNED: struct.Struct(">Q"),
    Tag.ENUM: struct.Struct(">B"),
}
_STRINGS = (Tag.OCTET_STRING, Tag.VISIBLE_STRING)
_LISTS = (Tag.ARRAY, Tag.STRUCTURE)
MAX_DEPTH = 16

Value = int | bool | bytes | tuple["Data", ...] | None


@dataclass(frozen=True, slots=True)
class Data:
    tag: Tag
    value: Value = None

    def __post_init__(self) -> None:
        if self.tag in _INTS:
            if not isinstance(self.value, int) or isinstance(self.value, bool):
                raise ValueError(f"{self.tag.name} needs an int")
            fmt = _INTS[self.tag]
            try:
                fmt.pack(self.value)
            except struct.error as exc:
                raise ValueError(f"{self.value} does not fit {self.tag.name}") from exc
        elif self.tag in _STRINGS and not isinstance(self.value, bytes):
            raise ValueError(f"{self.tag.name} needs bytes")
        elif self.tag in _LISTS and not isinstance(self.value, tuple):
            raise ValueError(f"{self.tag.name} needs a tuple of Data")

    @property
    def items(self) -> tuple[Data, ...]:
        if not isinstance(self.value, tuple):
            raise CodecError("type_unmatched", f"{self.tag.name} is not an array or structure")
        return self.value

    @property
    def int_value(self) -> int:
        if not isinstance(self.value, int) or isinstance(self.value, bool):
            raise CodecError("type_unmatched", f"{self.tag.name} is not an integer")
        return self.value

    @property
    def bytes_value(self) -> bytes:
        if not isinstance(self.value, bytes):
            raise CodecError("type_unmatched", f"{self.tag.name} is not a string")
        return self.value


def null() -> Data:
    return Data(Tag.NULL)


def boolean(value: bool) -> Data:
    return Data(Tag.BOOLEAN, value)


def octets(value: bytes) -> Data:
    return Data(Tag.OCTET_STRING, value)


def visible(value: str) -> Data:
    return Data(Tag.VISIBLE_STRING, value.encode("ascii"))


def structure(*items: Data) -> Data:
    return Data(Tag.STRUCTURE, items)


def array(*items: Data) -> Data:
    return Data(Tag.ARRAY, items)


def encode_length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    if size <= 0xFF:
        return bytes([0x81, size])
    if size <= 0xFFFF:
        return b"\x82" + size.to_bytes(2, "big")
    return b"\x84" + size.to_bytes(4, "big")


def decode_length(data: bytes, position: int) -> tuple[int, int]:
    if position >= len(data):
        raise CodecError("axdr", "truncated before a length")
    first = data[position]
    if first < 0x80:
        return first, position + 1
    count = first & 0x7F
    if count not in (1, 2, 4) or position + 1 + count > len(data):
        raise CodecError("axdr", "bad length")
    return int.from_bytes(data[position + 1 : position + 1 + count], "big"), position + 1 + count


def encode(data: Data) -> bytes:
    out = bytearray()
    _encode_into(data, out)
    return bytes(out)


def _encode_into(data: Data, out: bytearray) -> None:
    out.append(data.tag)
    if data.tag is Tag.NULL:
        return
    if data.tag is Tag.BOOLEAN:
        out.append(1 if data.value else 0)
    elif data.tag in _INTS:
        out += _INTS[data.tag].pack(data.value)
    elif data.tag in _STRINGS or data.tag is Tag.BIT_STRING:
        raw = data.bytes_value
        out += encode_length(len(raw) * 8 if data.tag is Tag.BIT_STRING else len(raw)) + raw
    else:
        items = data.items
        out += encode_length(len(items))
        for item in items:
            _encode_into(item, out)


def decode(data: bytes) -> Data:
    """Exactly one value, filling ``data`` to the end."""
    value, position = decode_at(data, 0)
    if position != len(data):
        raise CodecError("axdr", f"{len(data) - position} bytes after the value")
    return value


def decode_at(data: bytes, position: int, depth: int = 0) -> tuple[Data, int]:
    if depth > MAX_DEPTH:
        raise CodecError("axdr", "nested too deeply")
    if position >= len(data):
        raise CodecError("axdr", "truncated before a tag")
    try:
        tag = Tag(data[position])
    except ValueError as exc:
        raise CodecError("axdr", f"unsupported data type {data[position]}") from exc
    position += 1
    if tag is Tag.NULL:
        return Data(tag), position
    if tag is Tag.BOOLEAN:
        _need(data, position, 1)
        return Data(tag, data[position] != 0), position + 1
    if tag in _INTS:
        fmt = _INTS[tag]
        _need(data, position, fmt.size)
        return Data(tag, fmt.unpack_from(data, position)[0]), position + fmt.size
    if tag in _STRINGS or tag is Tag.BIT_STRING:
        size, position = decode_length(data, position)
        if tag is Tag.BIT_STRING:
            size = (size + 7) // 8
        _need(data, position, size)
        return Data(tag, bytes(data[position : position + size])), position + size
    count, position = decode_length(data, position)
    if count > len(data) - position:
        raise CodecError("axdr", f"{count} items cannot fit in what is left")
    items = []
    for _ in range(count):
        item, position = decode_at(data, position, depth + 1)
        items.append(item)
    return Data(tag, tuple(items)), position


def _need(data: bytes, position: int, size: int) -> None:
    if position + size > len(data):
        raise CodecError("axdr", "truncated value")
