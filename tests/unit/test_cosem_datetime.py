import contextlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from gurux_dlms import GXByteBuffer, GXDateTime
from gurux_dlms.enums import DataType
from gurux_dlms.GXDLMSSettings import GXDLMSSettings
from gurux_dlms.internal._GXCommon import _GXCommon
from hypothesis import given
from hypothesis import strategies as st

from hes_sim.errors import CodecError
from hes_sim.protocols import cosem_datetime

IST = timezone(timedelta(hours=5, minutes=30))
# 2026-11-28 (a Saturday) 00:15:09.00 at UTC+05:30: deviation -330 = 0xFEB6, status 0
VECTOR = bytes.fromhex("07ea0b1c06000f0900feb600")
VALUE = datetime(2026, 11, 28, 0, 15, 9, tzinfo=IST)


def test_encode_gives_the_exact_bytes():
    assert cosem_datetime.encode(VALUE) == VECTOR


def test_decode_gives_the_value_back():
    decoded = cosem_datetime.decode(VECTOR)
    assert decoded == VALUE
    assert decoded.utcoffset() == timedelta(hours=5, minutes=30)


def test_decodes_what_gurux_encodes():
    buffer = GXByteBuffer()
    _GXCommon.setData(GXDLMSSettings(True, None), buffer, DataType.DATETIME, GXDateTime(VALUE))
    encoded = bytes(buffer)[: buffer.size]
    assert encoded[0] == DataType.DATETIME
    assert cosem_datetime.decode(encoded[1:]) == VALUE


def test_naive_datetime_is_refused():
    with pytest.raises(ValueError, match="aware"):
        cosem_datetime.encode(datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test


@pytest.mark.parametrize(
    "data",
    [
        VECTOR[:-1],
        VECTOR + b"\x00",
        VECTOR[:9] + b"\x80\x00" + VECTOR[11:],  # deviation not specified
        VECTOR[:2] + b"\x0d" + VECTOR[3:],  # month 13
        VECTOR[:3] + b"\xff" + VECTOR[4:],  # day not specified
        VECTOR[:5] + b"\x18" + VECTOR[6:],  # hour 24
    ],
)
def test_bad_date_times_raise_codec_error(data: bytes):
    with pytest.raises(CodecError):
        cosem_datetime.decode(data)


offsets = st.integers(-720, 720).map(lambda m: timezone(timedelta(minutes=m)))
instants = st.builds(
    lambda dt, tz, hundredths: dt.replace(tzinfo=tz, microsecond=hundredths * 10_000),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)),  # noqa: DTZ001
    offsets,
    st.integers(0, 99),
)


@given(instants)
def test_roundtrip(value: datetime):
    back = cosem_datetime.decode(cosem_datetime.encode(value))
    assert back == value
    assert back.utcoffset() == value.utcoffset()


@given(st.binary(max_size=16))
def test_arbitrary_bytes_raise_only_codec_error(data: bytes):
    with contextlib.suppress(CodecError):
        cosem_datetime.decode(data)


def test_utc_is_deviation_zero():
    assert cosem_datetime.encode(datetime(2026, 1, 1, tzinfo=UTC))[9:11] == b"\x00\x00"


def test_a_bytearray_or_memoryview_decodes_as_its_bytes():
    raw = cosem_datetime.encode(datetime(2026, 11, 28, 10, 15, tzinfo=IST))
    assert cosem_datetime.decode(bytearray(raw)) == cosem_datetime.decode(raw)  # type: ignore[arg-type]
    assert cosem_datetime.decode(memoryview(raw)) == cosem_datetime.decode(raw)  # type: ignore[arg-type]
