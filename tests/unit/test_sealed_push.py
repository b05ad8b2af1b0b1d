"""The head-end's one-struct reading of a ciphered push frame's headers agrees with the
wrapper and ciphering codecs on every frame it takes, and leaves every other frame to
them (``test_ingest_security`` stores and refuses pushes in the other form)."""

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hes_sim.errors import CodecError
from hes_sim.keyring import FleetKeyring
from hes_sim.meter_sim.meter import MeterKind, VirtualMeter
from hes_sim.protocols import frame, push, security, wrapper

IST = timezone(timedelta(hours=5, minutes=30))
END = datetime(2026, 11, 28, 0, 15, tzinfo=IST).timestamp()
KEYRING = FleetKeyring(b"a fleet secret for tests only")


def ciphered(meter_id: str, kind: MeterKind, end: float, counter: int) -> bytes:
    meter = VirtualMeter.create(meter_id, kind, 1, IST)
    notification = push.DataNotification(1, None, meter.close_interval(end, 900))
    sender = frame.Sender(KEYRING.system_title_for(meter_id), KEYRING.keys_for(meter_id), counter)
    return frame.encode_push_frame(notification, sender)


def long_form(short: bytes) -> bytes:
    """The same push with the ciphered body's length in A-XDR's long form (0x81 n), which
    is valid DLMS but not the form the one-struct reading takes."""
    header, apdu = wrapper.unwrap(short)
    title_end = 2 + security.SYSTEM_TITLE_SIZE
    size = apdu[title_end]
    assert size < 0x80
    apdu = apdu[:title_end] + bytes([0x81, size]) + apdu[title_end + 1 :]
    return wrapper.wrap(apdu, header.source_wport, header.destination_wport)


def general_split(data: bytes) -> tuple[bytes | None, int, bytes]:
    _header, apdu = wrapper.unwrap(data)
    parsed = security.parse(apdu)
    return parsed.system_title, parsed.invocation_counter, parsed.payload


@pytest.mark.parametrize("kind", [MeterKind.SINGLE_PHASE, MeterKind.THREE_PHASE])
@given(counter=st.integers(0, 0xFFFF_FFFF), intervals=st.integers(1, 96 * 365))
@settings(max_examples=40, deadline=None)
def test_every_push_we_send_is_read_by_the_struct_as_by_the_codecs(
    kind: MeterKind, counter: int, intervals: int
):
    data = ciphered("SP0000007", kind, END + 900 * intervals, counter)
    split = frame.split_sealed_push(data)
    assert split is not None
    assert split == general_split(data)
    assert frame.split_sealed_push(long_form(data)) is None


# a long-form length (0x81) whose next octet is the A+E security control, 0x30, in a frame
# where 0x81 would also be the right short-form length: only the codecs may read it
LOOKS_SHORT = bytes.fromhex("000100010066008cdb08") + bytes(8) + bytes([0x81, 0x30]) + bytes(128)


@given(st.binary(max_size=160))
@example(LOOKS_SHORT)
def test_any_bytes_the_struct_takes_the_codecs_read_the_same(data: bytes):
    split = frame.split_sealed_push(data)
    if split is None:
        return
    assert split == general_split(data)


@given(st.data())
def test_a_push_with_a_header_byte_changed_is_read_alike_or_refused(data: st.DataObject):
    genuine = bytearray(ciphered("SP0000007", MeterKind.SINGLE_PHASE, END, 9))
    position = data.draw(st.integers(0, 23), label="position")  # the headers
    genuine[position] = data.draw(st.integers(0, 255), label="value")
    changed = bytes(genuine)
    split = frame.split_sealed_push(changed)
    try:
        expected = general_split(changed)
    except CodecError:
        assert split is None
    else:  # one byte cannot turn the short form into another valid one
        assert split == expected
