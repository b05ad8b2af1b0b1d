"""The precompiled push templates against the gurux-dlms reference codec.

Each property runs the fast path and the reference on the same input and compares them
exactly: bytes for encoding; values, value types and UTC offsets for decoding; the
reason of the CodecError when both refuse.
"""

import contextlib
import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hes_sim.errors import CodecError
from hes_sim.protocols import cosem_datetime, push, push_fast
from hes_sim.protocols.block_load import (
    LAYOUTS,
    MAX_VALUE,
    SINGLE_PHASE_BLOCK_LOAD,
    THREE_PHASE_BLOCK_LOAD,
    BlockLoadEntry,
    Column,
    DlmsType,
    ProfileLayout,
)

IST = timezone(timedelta(hours=5, minutes=30))
BRT = timezone(timedelta(hours=-3))
CONTROL_LOG = bytes([0, 0, 99, 98, 6, 255])
MANY = settings(max_examples=400, deadline=None)

# ---------------------------------------------------------------- byte-exact vectors

THREE_PHASE = push.DataNotification(
    invoke_id=0x12_3456,
    sent_at=datetime(2026, 11, 28, 0, 15, 9, tzinfo=IST),
    entry=BlockLoadEntry(
        THREE_PHASE_BLOCK_LOAD,
        datetime(2026, 11, 27, 15, 45, tzinfo=BRT),
        (
            *(0, 0xFFFF, 1, 2320, 2310, 2300),
            *(0xFFFF_FFFF, 0, 1, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF, 0x1_0000, 0x1234_5678),
        ),
    ),
)
THREE_PHASE_APDU = bytes.fromhex(
    "0f c0123456"  # DATA-NOTIFICATION, priority high + confirmed, long invoke id 0x123456
    "0c 07ea0b1c06000f0900feb600"  # sent 2026-11-28 (Sat) 00:15:09 +05:30
    "02 0f"  # structure of 15: the clock and 14 registers
    "09 0c 07ea0b1b050f2d0000 00b4 00"  # clock 2026-11-27 (Fri) 15:45 -03:00: deviation +180
    "12 0000  12 ffff  12 0001"  # phase currents
    "12 0910  12 0906  12 08fc"  # phase voltages
    "06 ffffffff  06 00000000  06 00000001  06 7fffffff"  # Wh import, export, varh Q1, Q2
    "06 80000000  06 0000ffff  06 00010000  06 12345678"  # varh Q3, Q4, VAh import, export
)
EVENT = push.DataNotification(
    invoke_id=0xFF_FFFF,
    sent_at=datetime(2026, 11, 28, 0, 15, 9, tzinfo=UTC),
    entry=push.EventEntry(
        CONTROL_LOG,
        datetime(2026, 11, 28, 0, 15, tzinfo=IST),
        0xFFFF,
        b"\x80" + bytes(14) + b"\x01",
    ),
)
EVENT_APDU = bytes.fromhex(
    "0f c0ffffff"  # long invoke id 0xFFFFFF, the largest
    "0c 07ea0b1c06000f0900 0000 00"  # sent 00:15:09 UTC: deviation 0
    "02 04"  # structure of 4
    "09 06 0000636206ff"  # the control event log, 0.0.99.98.6.255
    "09 0c 07ea0b1c06000f0000feb600"  # when: 00:15 +05:30
    "12 ffff"  # event code
    "04 8180 80000000000000000000000000000001"  # status word: 128 bits, first and last set
)


@pytest.mark.parametrize(
    ("notification", "apdu"), [(THREE_PHASE, THREE_PHASE_APDU), (EVENT, EVENT_APDU)]
)
def test_vector_both_ways_on_both_paths(notification: push.DataNotification, apdu: bytes):
    assert push.encode(notification) == apdu
    assert push.encode_gurux(notification) == apdu
    assert _exact(push.decode(apdu)) == _exact(notification)
    assert _exact(push.decode_gurux(apdu)) == _exact(notification)


def test_the_vectors_take_the_fast_path(monkeypatch: pytest.MonkeyPatch):
    def refuse(_: object) -> object:
        raise AssertionError("went to gurux")

    monkeypatch.setattr(push, "encode_gurux", refuse)
    monkeypatch.setattr(push, "decode_gurux", refuse)
    assert push.encode(THREE_PHASE) == THREE_PHASE_APDU
    assert push.decode(EVENT_APDU) == EVENT


# ---------------------------------------------------------------- strategies

# fixed UTC offsets as the project makes them (whole minutes) and, for encoding only,
# odd ones with seconds that the deviation has to floor
zones = st.sampled_from([IST, BRT, UTC]) | st.integers(-720, 720).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
odd_zones = st.timedeltas(timedelta(hours=-23, minutes=-59), timedelta(hours=23, minutes=59)).map(
    timezone
)


def _datetimes(tz: st.SearchStrategy[timezone], *, whole_hundredths: bool) -> st.SearchStrategy:
    instants = st.datetimes(
        min_value=datetime(1, 1, 2),  # noqa: DTZ001 - the zone is added by the strategy
        max_value=datetime(9999, 12, 30),  # noqa: DTZ001
        timezones=tz,
    )
    if whole_hundredths:  # what a COSEM date-time can carry
        instants = instants.map(lambda d: d.replace(microsecond=d.microsecond // 10_000 * 10_000))
    return instants


def _register(dlms_type: DlmsType) -> st.SearchStrategy[int]:
    top = MAX_VALUE[dlms_type]
    return st.sampled_from([0, 1, top - 1, top]) | st.integers(0, top)


def _notifications(
    clocks: st.SearchStrategy, invoke_ids: st.SearchStrategy[int]
) -> st.SearchStrategy[push.DataNotification]:
    block_loads = st.sampled_from(LAYOUTS).flatmap(
        lambda layout: st.builds(
            BlockLoadEntry,
            st.just(layout),
            clocks,
            st.tuples(*(_register(c.dlms_type) for c in layout.columns)),
        )
    )
    events = st.builds(
        push.EventEntry,
        st.just(CONTROL_LOG) | st.binary(min_size=6, max_size=6),
        clocks,
        st.sampled_from([0, 0xFFFF]) | st.integers(0, 0xFFFF),
        st.sampled_from([bytes(16), b"\xff" * 16]) | st.binary(min_size=16, max_size=16),
    )
    return st.builds(push.DataNotification, invoke_ids, st.none() | clocks, block_loads | events)


# what the project sends: 24-bit invoke ids, whole minutes of offset, whole hundredths
notifications = _notifications(
    _datetimes(zones, whole_hundredths=True),
    st.sampled_from([0, 0xFF_FFFF]) | st.integers(0, 0xFF_FFFF),
)
# anything the encoder accepts: ids it must mask, any microsecond, any offset
any_notifications = _notifications(
    _datetimes(zones | odd_zones, whole_hundredths=False), st.integers(-(2**40), 2**40)
)


def _fast_encode(notification: push.DataNotification) -> bytes | None:
    entry = notification.entry
    if isinstance(entry, push.EventEntry):
        fields = (entry.log, entry.clock, entry.code, entry.status_word)
        return push_fast.encode_event(notification.invoke_id, notification.sent_at, fields)
    return push_fast.encode_block_load(notification.invoke_id, notification.sent_at, entry)


def _exact(notification: push.DataNotification) -> tuple[object, ...]:
    """Everything a notification says, down to UTC offsets and the values' exact types."""

    def when(value: datetime | None) -> object:
        return None if value is None else (value.isoformat(), value.utcoffset())

    entry = notification.entry
    if isinstance(entry, push.EventEntry):
        body: tuple[object, ...] = (
            "event",
            entry.log,
            when(entry.clock),
            int(entry.code),
            entry.status_word,
        )
    else:
        body = (entry.layout.name, when(entry.clock), tuple(int(v) for v in entry.values))
    return (notification.invoke_id, when(notification.sent_at), *body)


def _outcome(decoder, apdu: bytes) -> tuple[object, ...]:
    try:
        return _exact(decoder(apdu))
    except CodecError as exc:
        return ("CodecError", exc.reason)


# ---------------------------------------------------------------- encoding


@MANY
@given(any_notifications)
def test_fast_encode_is_gurux_encode_byte_for_byte(notification: push.DataNotification):
    fast = _fast_encode(notification)
    assert fast is not None, "one of the project's shapes must take the fast path"
    assert fast == push.encode_gurux(notification)
    assert push.encode(notification) == fast


@given(
    notifications,
    st.binary(max_size=5) | st.binary(min_size=7, max_size=9),
    st.binary(max_size=15) | st.binary(min_size=17, max_size=20),
)
def test_events_of_other_sizes_go_to_gurux(notification, log: bytes, status: bytes):
    event = push.EventEntry(log, datetime(2026, 1, 1, tzinfo=IST), 1, status)
    odd = dataclasses.replace(notification, entry=event)
    assert _fast_encode(odd) is None
    assert push.encode(odd) == push.encode_gurux(odd)
    with pytest.raises(CodecError):  # and it is not a push this project reads
        push.decode(push.encode(odd))


@pytest.mark.parametrize("code", [-1, 0x1_0000, 2**40])
def test_an_event_code_beyond_16_bits_goes_to_gurux(code: int):
    # EventEntry does not check its code; gurux keeps the low 16 bits, and so must we
    event = push.EventEntry(CONTROL_LOG, datetime(2026, 1, 1, tzinfo=IST), code)
    notification = push.DataNotification(2, None, event)
    assert _fast_encode(notification) is None
    assert push.encode(notification) == push.encode_gurux(notification)


def test_a_layout_without_a_template_goes_to_gurux():
    equal_copy = dataclasses.replace(SINGLE_PHASE_BLOCK_LOAD)
    entry = BlockLoadEntry(equal_copy, datetime(2026, 1, 1, tzinfo=IST), (1, 2, 3, 4, 5, 6))
    notification = push.DataNotification(5, None, entry)
    assert _fast_encode(notification) is None
    assert push.encode(notification) == push.encode_gurux(notification)
    assert push.decode(push.encode(notification)).entry.layout is SINGLE_PHASE_BLOCK_LOAD

    other = ProfileLayout("two_registers", SINGLE_PHASE_BLOCK_LOAD.columns[:2])
    lone = push.DataNotification(5, None, BlockLoadEntry(other, entry.clock, (1, 2)))
    assert _fast_encode(lone) is None
    apdu = push.encode(lone)
    assert apdu == push.encode_gurux(lone)
    with pytest.raises(CodecError) as caught:
        push.decode(apdu)
    assert caught.value.reason == "body_shape"


def test_a_value_out_of_range_is_refused_before_either_path():
    column: Column = SINGLE_PHASE_BLOCK_LOAD.columns[0]
    with pytest.raises(ValueError, match=column.quantity):
        BlockLoadEntry(SINGLE_PHASE_BLOCK_LOAD, datetime.now(IST), (0x1_0000, 0, 0, 0, 0, 0))
    with pytest.raises(ValueError, match=column.quantity):  # a flag is not a register value
        BlockLoadEntry(SINGLE_PHASE_BLOCK_LOAD, datetime.now(IST), (True, 0, 0, 0, 0, 0))


def test_a_naive_datetime_is_refused_like_gurux_does():
    entry = BlockLoadEntry(SINGLE_PHASE_BLOCK_LOAD, datetime(2026, 1, 1), (0,) * 6)  # noqa: DTZ001
    for encode in (push.encode, push.encode_gurux):
        with pytest.raises(ValueError, match="aware"):
            encode(push.DataNotification(1, None, entry))


# ---------------------------------------------------------------- decoding


@MANY
@given(notifications)
def test_fast_decode_is_gurux_decode_on_gurux_bytes(notification: push.DataNotification):
    apdu = push.encode_gurux(notification)
    assert push_fast.decode(apdu) is not None, "one of the project's shapes"
    fast = push.decode(apdu)
    assert _exact(fast) == _exact(push.decode_gurux(apdu))
    entry = fast.entry
    # plain ints, not gurux's int subclasses
    if isinstance(entry, BlockLoadEntry):
        assert {type(v) for v in entry.values} <= {int}
    else:
        assert type(entry.code) is int


@MANY
@given(notifications)
def test_roundtrip(notification: push.DataNotification):
    assert _exact(push.decode(push.encode(notification))) == _exact(notification)


# the project always encodes day of week and clock status 0 and whole hundredths;
# meters in the field may send 0xFF (unspecified) or a status, or what is not a date
_DATETIME_PATCHES = [
    (3, b"\xff"),  # day of week unspecified
    (3, b"\x00"),  # day of week out of range
    (7, b"\xff"),  # hundredths unspecified
    (7, b"\x63"),  # 99 hundredths
    (7, b"\x64"),  # 100 hundredths: not a time
    (8, b"\x80\x00"),  # deviation unspecified
    (8, b"\x02\xd1"),  # deviation +721: out of range
    (8, b"\xfd\x30"),  # deviation -720
    (10, b"\x01"),  # clock status: invalid value
    (10, b"\x80"),  # clock status: daylight saving active
    (10, b"\xff"),  # clock status: every bit
    (1, b"\x0d"),  # month 13
    (2, b"\x1f"),  # day 31 of a 30-day month
    (0, b"\x00\x00"),  # year 0
    (4, b"\x18"),  # hour 24
]


@MANY
@given(notifications, st.sampled_from(_DATETIME_PATCHES), st.booleans())
def test_date_time_variants_decode_as_gurux_does(
    notification: push.DataNotification, patch: tuple[int, bytes], in_header: bool
):
    apdu = push.encode_gurux(notification)
    if in_header and notification.sent_at is not None:
        start = 6
    else:
        body_start = 6 + (cosem_datetime.SIZE if notification.sent_at is not None else 0)
        log = isinstance(notification.entry, push.EventEntry)
        start = body_start + 2 + (8 if log else 0) + 2
    at, octets = patch
    patched = apdu[: start + at] + octets + apdu[start + at + len(octets) :]
    assert _outcome(push.decode, patched) == _outcome(push.decode_gurux, patched)


def _shaped(data: st.DataObject) -> bytes:
    """An APDU of one of the fast path's shapes: fixed octets right, the rest random."""
    templates = [*push_fast._BLOCK_LOAD.values(), *push_fast._EVENT.values()]
    template = data.draw(st.sampled_from(templates))
    size = template.packer.size
    fields = list(template.packer.unpack(data.draw(st.binary(min_size=size, max_size=size))))
    variable = {1, *template.body_at} | ({3} if template.with_time else set())
    for at in set(range(len(fields))) - variable:
        fields[at] = template.fields[at]
    # mostly valid dates, or the decoders would mostly stop there
    for at in {3, template.clock_at} & variable:
        if data.draw(st.booleans()):
            fields[at] = cosem_datetime.encode(data.draw(_datetimes(zones, whole_hundredths=True)))
    return template.packer.pack(*fields)


@MANY
@given(st.data())
def test_fast_decode_is_gurux_decode_on_any_apdu_of_its_shapes(data: st.DataObject):
    apdu = _shaped(data)
    assert _outcome(push.decode, apdu) == _outcome(push.decode_gurux, apdu)


@MANY
@given(notifications, st.data())
def test_bit_flips_decode_as_gurux_does(notification: push.DataNotification, data: st.DataObject):
    apdu = bytearray(push.encode(notification))
    for _ in range(data.draw(st.integers(1, 3))):
        bit = data.draw(st.integers(0, len(apdu) * 8 - 1))
        apdu[bit // 8] ^= 0x80 >> bit % 8
    assert _outcome(push.decode, bytes(apdu)) == _outcome(push.decode_gurux, bytes(apdu))


@MANY
@given(notifications, st.data())
def test_every_truncation_or_extension_raises_codec_error(
    notification: push.DataNotification, data: st.DataObject
):
    apdu = push.encode(notification)
    cut = data.draw(st.integers(0, len(apdu) - 1))
    with pytest.raises(CodecError):
        push.decode(apdu[:cut])
    extra = data.draw(st.binary(min_size=1, max_size=20))
    with pytest.raises(CodecError):
        push.decode(apdu + extra)


@pytest.mark.parametrize("apdu", [THREE_PHASE_APDU, EVENT_APDU])
def test_each_truncation_of_the_vectors_raises_codec_error(apdu: bytes):
    for cut in range(len(apdu)):
        with pytest.raises(CodecError):
            push.decode(apdu[:cut])


@MANY
@given(st.binary(max_size=120))
@example(THREE_PHASE_APDU[:5] + b"\x00" + THREE_PHASE_APDU[18:])  # time removed, size kept
@example(bytes(len(EVENT_APDU)))  # an event's size, all zeros
def test_arbitrary_bytes_raise_only_codec_error(data: bytes):
    with contextlib.suppress(CodecError):
        push.decode(data)


@given(st.binary(max_size=120))
def test_the_fast_decoder_alone_never_raises(data: bytes):
    push_fast.decode(data)  # None for what it cannot read; the reference codec says why


# ---------------------------------------------------------------- the head-end's read path


def _as_block_load(apdu: bytes) -> tuple[object, ...] | None:
    """What ``push.decode`` says of a block-load APDU, in ``decode_block_load``'s terms;
    None where it says anything else (an event, or a CodecError)."""
    try:
        entry = push.decode(apdu).entry
    except CodecError:
        return None
    if isinstance(entry, push.EventEntry):
        return None
    clock = entry.clock
    return (entry.layout, clock.isoformat(), clock.utcoffset(), clock.timestamp(), entry.values)


def _fields_of(apdu: bytes) -> tuple[object, ...] | None:
    fields = push_fast.decode_block_load(apdu)
    if fields is None:
        return None
    layout, clock, unix_time, values = fields
    return (layout, clock.isoformat(), clock.utcoffset(), unix_time, values)


@MANY
@given(notifications)
def test_decode_block_load_reads_what_decode_reads(notification: push.DataNotification):
    apdu = push.encode(notification)
    expected = _as_block_load(apdu)
    assert _fields_of(apdu) == expected
    assert (expected is None) is isinstance(notification.entry, push.EventEntry)


@MANY
@given(st.data())
def test_decode_block_load_on_any_apdu_of_the_shapes(data: st.DataObject):
    apdu = _shaped(data)
    fields = _fields_of(apdu)
    # it reads what the fast decode reads as a block load, nothing else (None sends the
    # rest down decode's path), and agrees with decode on each one
    fast = push_fast.decode(apdu)
    assert (fields is not None) is (fast is not None and isinstance(fast[2], BlockLoadEntry))
    assert fields is None or fields == _as_block_load(apdu)
