import contextlib
from datetime import datetime, timedelta, timezone

import pytest
from gurux_dlms import GXByteBuffer, GXDLMSClient, GXReplyData
from gurux_dlms.enums import Authentication, InterfaceType
from gurux_dlms.objects import (
    GXDLMSCaptureObject,
    GXDLMSClock,
    GXDLMSDisconnectControl,
    GXDLMSProfileGeneric,
)
from hypothesis import given
from hypothesis import strategies as st

from hes_sim.errors import CodecError
from hes_sim.protocols import axdr, cosem_datetime, wrapper, xdlms
from hes_sim.protocols.axdr import Data, Tag
from hes_sim.protocols.xdlms import DataAccessResult as Dar
from hes_sim.protocols.xdlms import Reference

IST = timezone(timedelta(hours=5, minutes=30))
CLOCK = bytes([0, 0, 1, 0, 0, 255])
DISCONNECT = bytes([0, 0, 96, 3, 10, 255])
BLOCK_LOAD = bytes([1, 0, 99, 1, 0, 255])
GET_CLOCK = bytes.fromhex("c001c1 0008 0000010000ff 02 00")
REMOTE_DISCONNECT = bytes.fromhex("c301c1 0046 0000600 30aff 01 01 0f00".replace(" ", ""))


def client() -> GXDLMSClient:
    return GXDLMSClient(True, 16, 1, Authentication.NONE, None, InterfaceType.WRAPPER)


def gurux_apdu(frames) -> bytes:
    return wrapper.unwrap(bytes(frames[0]))[1]


def test_get_request_vector_both_ways_and_as_gurux_writes_it():
    request = xdlms.GetRequest(0xC1, Reference(8, CLOCK, 2))
    assert xdlms.encode(request) == GET_CLOCK
    assert xdlms.decode(GET_CLOCK) == request
    assert gurux_apdu(client().read(GXDLMSClock("0.0.1.0.0.255"), 2)) == GET_CLOCK


def test_action_request_as_gurux_writes_it():
    apdu = gurux_apdu(GXDLMSDisconnectControl("0.0.96.3.10.255").remoteDisconnect(client()))
    assert apdu == REMOTE_DISCONNECT
    request = xdlms.decode(apdu)
    assert request == xdlms.ActionRequest(0xC1, Reference(70, DISCONNECT, 1), Data(Tag.INTEGER, 0))
    assert xdlms.encode(request) == apdu


def test_range_read_as_gurux_writes_it():
    profile = GXDLMSProfileGeneric("1.0.99.1.0.255")
    profile.captureObjects.append((GXDLMSClock("0.0.1.0.0.255"), GXDLMSCaptureObject(2, 0)))
    start, end = datetime(2026, 11, 28, 0, tzinfo=IST), datetime(2026, 11, 28, 1, tzinfo=IST)
    apdu = gurux_apdu(client().readRowsByRange(profile, start, end))
    request = xdlms.decode(apdu)
    assert isinstance(request, xdlms.GetRequest)
    assert request.attribute == Reference(7, BLOCK_LOAD, 2)
    assert request.selection is not None
    assert request.selection.selector == 1
    restricting, low, high, columns = request.selection.parameters.items
    assert restricting.items[1].bytes_value == CLOCK
    assert cosem_datetime.decode(low.bytes_value) == start
    assert cosem_datetime.decode(high.bytes_value) == end
    assert columns.items == ()
    assert xdlms.encode(request) == apdu


def gurux_reads(response: xdlms.Response) -> GXReplyData:
    frame = wrapper.wrap(xdlms.encode(response), 1, 16)
    reply = GXReplyData()
    client().getData(GXByteBuffer(frame), reply)
    return reply


def test_gurux_reads_our_get_response():
    value = axdr.octets(cosem_datetime.encode(datetime(2026, 11, 28, 10, tzinfo=IST)))
    reply = gurux_reads(xdlms.GetResponse(0xC1, value))
    assert reply.error == 0
    assert bytes(reply.value) == value.value


def test_gurux_reads_our_error_and_action_responses():
    assert gurux_reads(xdlms.GetResponse(0xC1, Dar.OBJECT_UNDEFINED)).error == Dar.OBJECT_UNDEFINED
    assert gurux_reads(xdlms.ActionResponse(0xC1, Dar.SUCCESS)).error == 0
    assert gurux_reads(xdlms.SetResponse(0xC1, Dar.READ_WRITE_DENIED)).error == 3


@pytest.mark.parametrize(
    "apdu",
    [
        xdlms.GetNextRequest(0xC1, 7),
        xdlms.SetRequest(0xC1, Reference(8, CLOCK, 2), axdr.octets(bytes(12))),
        xdlms.ActionRequest(0xC2, Reference(70, DISCONNECT, 2)),
        xdlms.GetResponse(0xC1, Data(Tag.DOUBLE_LONG_UNSIGNED, 5)),
        xdlms.GetBlockResponse(0xC1, False, 1, b"\x01\x02" * 100),
        xdlms.GetBlockResponse(0xC1, True, 2, Dar.DATA_BLOCK_UNAVAILABLE),
        xdlms.SetResponse(0xC1, Dar.SUCCESS),
        xdlms.ActionResponse(0xC1, Dar.SUCCESS, axdr.octets(b"\x10" * 17)),
        xdlms.ActionResponse(0xC1, Dar.TEMPORARY_FAILURE),
        xdlms.ExceptionResponse(
            xdlms.StateError.SERVICE_NOT_ALLOWED, xdlms.ServiceError.INVOCATION_COUNTER_ERROR, 41
        ),
        xdlms.ExceptionResponse(
            xdlms.StateError.SERVICE_UNKNOWN, xdlms.ServiceError.SERVICE_NOT_SUPPORTED
        ),
    ],
)
def test_roundtrip(apdu):
    assert xdlms.decode(xdlms.encode(apdu)) == apdu


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xc0",
        b"\xc0\x01\xc1\x00\x08",
        GET_CLOCK + b"\x00",
        GET_CLOCK[:-1],
        b"\xc0\x03\xc1",
        b"\xc4\x01\xc1\x01",
        b"\xd8\x09\x09",
        b"\xc5\x01\xc1\x07",
    ],
)
def test_malformed_apdus_raise_codec_error(raw: bytes):
    with pytest.raises(CodecError):
        xdlms.decode(raw)


@given(st.binary(max_size=80))
def test_arbitrary_bytes_raise_only_codec_error(raw: bytes):
    with contextlib.suppress(CodecError):
        xdlms.decode(raw)


@given(st.binary(min_size=1, max_size=20))
def test_arbitrary_bytes_after_a_get_prefix_raise_only_codec_error(tail: bytes):
    with contextlib.suppress(CodecError):
        xdlms.decode(b"\xc0\x01\xc1" + tail)
