import contextlib
from datetime import datetime, timedelta, timezone

import pytest
from gurux_dlms import GXByteBuffer, GXDLMSNotify, GXReplyData
from gurux_dlms.enums import Command, InterfaceType
from hypothesis import given
from hypothesis import strategies as st

from hes_sim.errors import CodecError
from hes_sim.protocols import frame, push
from hes_sim.protocols.block_load import (
    LAYOUTS,
    MAX_VALUE,
    SINGLE_PHASE_BLOCK_LOAD,
    THREE_PHASE_BLOCK_LOAD,
    BlockLoadEntry,
    Quantity,
)

IST = timezone(timedelta(hours=5, minutes=30))
CLOCK = datetime(2026, 11, 28, 0, 15, tzinfo=IST)
NOTIFICATION = push.DataNotification(
    invoke_id=7,
    sent_at=datetime(2026, 11, 28, 0, 15, 9, tzinfo=IST),
    entry=BlockLoadEntry(SINGLE_PHASE_BLOCK_LOAD, CLOCK, (2301, 512, 123, 0, 130, 0)),
)
FRAME = bytes.fromhex(
    "0001 0001 0066 003c"  # wrapper: version 1, meter wPort 1, HES wPort 0x66, 60 bytes
    "0f c0000007"  # DATA-NOTIFICATION, priority high + confirmed, long invoke id 7
    "0c 07ea0b1c06000f0900feb600"  # date-time of the push: 2026-11-28 00:15:09 +05:30
    "02 07"  # structure of 7
    "09 0c 07ea0b1c06000f0000feb600"  # clock: interval end 00:15:00 +05:30
    "12 08fd"  # average voltage 230.1 V (scaler -1)
    "12 0200"  # average current 5.12 A (scaler -2)
    "06 0000007b"  # block kWh import: 123 Wh
    "06 00000000"  # block kWh export
    "06 00000082"  # block kVAh import: 130 VAh
    "06 00000000"  # block kVAh export
)


def test_encode_gives_the_exact_bytes():
    assert frame.encode_push_frame(NOTIFICATION) == FRAME


def test_decode_gives_the_value_back():
    decoded = frame.decode_push_frame(FRAME)
    assert decoded == NOTIFICATION
    assert decoded.entry.scaled(Quantity.VOLTAGE) == pytest.approx(230.1)
    assert decoded.entry.scaled(Quantity.CURRENT) == pytest.approx(5.12)


def test_gurux_reads_our_frame_as_a_data_notification():
    # gurux's notify, when receiving, checks the frame's source wPort (the meter's, 1)
    # against its "client address" and the destination against its "server address"
    notify = GXDLMSNotify(True, 1, 0x66, InterfaceType.WRAPPER)
    reply = GXReplyData()
    notify.getData(GXByteBuffer(FRAME), reply)
    assert reply.command == Command.DATA_NOTIFICATION
    assert list(reply.value[1:]) == [2301, 512, 123, 0, 130, 0]
    assert reply.time.value == NOTIFICATION.sent_at


def test_push_without_time_uses_an_empty_date_time():
    bare = push.DataNotification(1, None, NOTIFICATION.entry)
    apdu = push.encode(bare)
    assert apdu[5] == 0
    assert push.decode(apdu) == bare


def test_three_phase_entry_roundtrips_and_averages_its_phases():
    values = (1000, 1100, 1200, 2300, 2310, 2320, 5000, 0, 900, 0, 0, 0, 5200, 0)
    entry = BlockLoadEntry(THREE_PHASE_BLOCK_LOAD, CLOCK, values)
    notification = push.DataNotification(99, None, entry)
    assert frame.decode_push_frame(frame.encode_push_frame(notification)) == notification
    assert entry.average_current() == pytest.approx(11.0)
    assert entry.average_voltage() == pytest.approx(231.0)


@pytest.mark.parametrize("cut", range(1, len(FRAME) - 8))
def test_every_truncation_of_the_apdu_raises_codec_error(cut: int):
    apdu = FRAME[8:-cut]
    with pytest.raises(CodecError):
        push.decode(apdu)


@pytest.mark.parametrize(
    ("apdu", "reason"),
    [
        (b"", "not_data_notification"),
        (FRAME[8:13] + bytes.fromhex("00 0202 0905"), "body_shape"),  # value cut short
        (bytes.fromhex("c001c1000800000100ff0200"), "not_data_notification"),  # a GET request
        (FRAME[8:] + b"\x00", "body_shape"),  # a trailing byte, read by gurux as more data
        (FRAME[8:13] + bytes.fromhex("05 07ea0b1c06") + FRAME[26:], "length"),  # a date only
        (FRAME[8:13] + bytes.fromhex("00 0202 0906000102030405 1200ff"), "body_shape"),
        (FRAME[8:13] + bytes.fromhex("00 1200ff"), "body_shape"),  # body is not a structure
        # one flipped bit makes a long-unsigned (0x12) a compact array (0x13), from which
        # gurux would allocate gigabytes; the body is checked before gurux sees it
        (FRAME[8:45] + b"\x13" + FRAME[46:], "body_shape"),
    ],
)
def test_wrong_apdus_raise_codec_error_with_reason(apdu: bytes, reason: str):
    with pytest.raises(CodecError) as caught:
        push.decode(apdu)
    assert caught.value.reason == reason


def _values(layout):
    return st.tuples(*(st.integers(0, MAX_VALUE[c.dlms_type]) for c in layout.columns))


entries = st.sampled_from(LAYOUTS).flatmap(
    lambda layout: st.builds(
        BlockLoadEntry,
        st.just(layout),
        st.datetimes(
            min_value=datetime(2000, 1, 1),  # noqa: DTZ001
            max_value=datetime(2099, 1, 1),  # noqa: DTZ001
            timezones=st.just(IST),
        ).map(lambda d: d.replace(microsecond=0)),
        _values(layout),
    )
)
notifications = st.builds(
    push.DataNotification,
    st.integers(0, 0xFF_FFFF),
    st.none() | st.just(CLOCK),
    entries,
)


@given(notifications)
def test_roundtrip(notification: push.DataNotification):
    assert frame.decode_push_frame(frame.encode_push_frame(notification)) == notification


@given(st.binary(max_size=120))
def test_arbitrary_bytes_raise_only_codec_error(data: bytes):
    with contextlib.suppress(CodecError):
        push.decode(data)


@given(st.binary(min_size=1, max_size=8), st.integers(0, len(FRAME) - 9))
def test_corrupted_frames_raise_only_codec_error_or_decode(patch: bytes, at: int):
    data = FRAME[: 8 + at] + patch + FRAME[8 + at + len(patch) :]
    with contextlib.suppress(CodecError):
        frame.decode_push_frame(data)


def test_event_notification_roundtrips_and_gurux_reads_it():
    event = push.EventEntry(bytes([0, 0, 99, 98, 6, 255]), CLOCK, 201, b"\x40" + bytes(15))
    notification = push.DataNotification(3, None, event)
    data = frame.encode_push_frame(notification)
    assert frame.decode_push_frame(data) == notification
    notify = GXDLMSNotify(True, 1, 0x66, InterfaceType.WRAPPER)
    reply = GXReplyData()
    notify.getData(GXByteBuffer(data), reply)
    assert list(reply.value)[2] == 201


@pytest.mark.parametrize("cut", [1, 3, 10])
def test_truncated_event_notifications_raise_codec_error(cut: int):
    event = push.EventEntry(bytes([0, 0, 99, 98, 6, 255]), CLOCK, 201)
    apdu = push.encode(push.DataNotification(3, None, event))
    with pytest.raises(CodecError):
        push.decode(apdu[:-cut])
