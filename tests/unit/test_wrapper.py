import contextlib

import pytest
from gurux_dlms import GXByteBuffer, GXDLMSNotify
from gurux_dlms.enums import InterfaceType
from hypothesis import given
from hypothesis import strategies as st

from hes_sim.errors import CodecError
from hes_sim.protocols import wrapper

APDU = bytes.fromhex("0fc000000100120005")
FRAME = bytes.fromhex("0001000100660009") + APDU  # version, src, dst, length


def test_wrap_gives_the_exact_bytes():
    assert wrapper.wrap(APDU, 1, 0x66) == FRAME


def test_unwrap_gives_header_and_apdu_back():
    header, apdu = wrapper.unwrap(FRAME)
    assert header == wrapper.WrapperHeader(source_wport=1, destination_wport=0x66, length=9)
    assert apdu == APDU


def test_wrapper_matches_gurux():
    notify = GXDLMSNotify(True, 0x66, 1, InterfaceType.WRAPPER)
    body = GXByteBuffer()
    body.setUInt8(0x12)
    body.setUInt16(5)
    gurux_frame = bytes(notify.generateDataNotificationMessages(None, body)[0])
    header, apdu = wrapper.unwrap(gurux_frame)
    assert (header.source_wport, header.destination_wport) == (1, 0x66)
    assert wrapper.wrap(apdu, 1, 0x66) == gurux_frame


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        (b"", "shorter than the header"),
        (FRAME[:7], "shorter than the header"),
        (FRAME[:-1], "announces 9 bytes"),
        (FRAME + b"\x00", "announces 9 bytes"),
        (b"\x00\x02" + FRAME[2:], "version 2"),
        (bytes.fromhex("0001000100660000"), "empty"),
    ],
)
def test_bad_frames_raise_codec_error(frame: bytes, why: str):
    with pytest.raises(CodecError, match=why):
        wrapper.unwrap(frame)


@given(st.binary(min_size=1, max_size=2000), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_roundtrip(apdu: bytes, source: int, destination: int):
    header, back = wrapper.unwrap(wrapper.wrap(apdu, source, destination))
    assert back == apdu
    assert (header.source_wport, header.destination_wport) == (source, destination)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_codec_error(data: bytes):
    with contextlib.suppress(CodecError):
        wrapper.unwrap(data)
