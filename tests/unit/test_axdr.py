import contextlib

import pytest
from gurux_dlms import GXByteBuffer
from gurux_dlms.enums import DataType
from gurux_dlms.GXDLMSSettings import GXDLMSSettings
from gurux_dlms.internal._GXCommon import _GXCommon
from gurux_dlms.internal._GXDataInfo import _GXDataInfo
from hypothesis import given
from hypothesis import strategies as st

from hes_sim.errors import CodecError
from hes_sim.protocols import axdr
from hes_sim.protocols.axdr import Data, Tag

# a capture-object definition: structure {class u16, logical name, attribute i8, version u16}
CAPTURE = axdr.structure(
    Data(Tag.LONG_UNSIGNED, 8),
    axdr.octets(bytes([0, 0, 1, 0, 0, 255])),
    Data(Tag.INTEGER, 2),
    Data(Tag.LONG_UNSIGNED, 0),
)
CAPTURE_BYTES = bytes.fromhex("0204 120008 0906000001 0000ff 0f02 120000")


def test_vector_both_ways():
    assert axdr.encode(CAPTURE) == CAPTURE_BYTES
    assert axdr.decode(CAPTURE_BYTES) == CAPTURE


def gurux_encode(tag: DataType, value) -> bytes:
    buffer = GXByteBuffer()
    _GXCommon.setData(GXDLMSSettings(True, None), buffer, tag, value)
    return bytes(buffer)[: buffer.size]


@pytest.mark.parametrize(
    ("data", "gurux_type", "gurux_value"),
    [
        (Data(Tag.DOUBLE_LONG_UNSIGNED, 123456), DataType.UINT32, 123456),
        (Data(Tag.DOUBLE_LONG, -5), DataType.INT32, -5),
        (Data(Tag.LONG, -330), DataType.INT16, -330),
        (Data(Tag.UNSIGNED, 7), DataType.UINT8, 7),
        (Data(Tag.ENUM, 2), DataType.ENUM, 2),
        (Data(Tag.LONG64_UNSIGNED, 2**40), DataType.UINT64, 2**40),
        (axdr.boolean(True), DataType.BOOLEAN, True),
        (axdr.octets(b"\x01" * 200), DataType.OCTET_STRING, b"\x01" * 200),
        (axdr.visible("HSM-1P"), DataType.STRING, "HSM-1P"),
        (axdr.null(), DataType.NONE, None),
    ],
)
def test_matches_gurux(data: Data, gurux_type: DataType, gurux_value):
    assert axdr.encode(data) == gurux_encode(gurux_type, gurux_value)


def test_gurux_reads_our_nested_values():
    encoded = axdr.encode(axdr.array(CAPTURE, CAPTURE))
    value = _GXCommon.getData(GXDLMSSettings(True, None), GXByteBuffer(encoded), _GXDataInfo())
    assert len(value) == 2
    assert list(value[0]) == [8, bytearray(b"\x00\x00\x01\x00\x00\xff"), 2, 0]


leaves = st.one_of(
    st.builds(lambda v: Data(Tag.DOUBLE_LONG_UNSIGNED, v), st.integers(0, 2**32 - 1)),
    st.builds(lambda v: Data(Tag.LONG, v), st.integers(-(2**15), 2**15 - 1)),
    st.builds(lambda v: Data(Tag.ENUM, v), st.integers(0, 255)),
    st.builds(axdr.octets, st.binary(max_size=300)),
    st.builds(axdr.boolean, st.booleans()),
    st.just(axdr.null()),
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5).map(lambda xs: axdr.structure(*xs)),
        st.lists(inner, max_size=5).map(lambda xs: axdr.array(*xs)),
    ),
    max_leaves=20,
)


@given(values)
def test_roundtrip(data: Data):
    assert axdr.decode(axdr.encode(data)) == data


@given(st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_codec_error(raw: bytes):
    with contextlib.suppress(CodecError):
        axdr.decode(raw)


@pytest.mark.parametrize(
    "raw", [b"", b"\x06\x00", b"\x09\x05ab", b"\x02\x02\x00", b"\x07", b"\x00\x00"]
)
def test_malformed(raw: bytes):
    with pytest.raises(CodecError):
        axdr.decode(raw)


def test_values_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match="fit"):
        Data(Tag.UNSIGNED, 256)
