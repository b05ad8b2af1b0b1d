"""DATA-NOTIFICATION APDUs carrying one block-load entry or one event.

APDU: tag 0x0F, long-invoke-id-and-priority (u32), date-time (0x00 when absent, else its
length 0x0C and 12 octets), notification body: a structure of the profile's captured
values (the clock as a 12-octet octet-string first), or of an event's log name, clock,
code and status word.

``encode`` and ``decode`` take the precompiled templates of ``push_fast`` for the shapes
this project sends, and gurux-dlms (``encode_gurux``, ``decode_gurux``) for anything
else. The gurux path is the reference: the tests prove the fast one gives its bytes and
its values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gurux_dlms import GXBitString, GXByteBuffer, GXDLMSNotify, GXReplyData
from gurux_dlms.enums import Command, DataType, InterfaceType
from gurux_dlms.GXDLMSSettings import GXDLMSSettings
from gurux_dlms.internal._GXCommon import _GXCommon

from hes_sim.errors import CodecError
from hes_sim.protocols import axdr, cosem_datetime, push_fast
from hes_sim.protocols.block_load import (
    LAYOUT_BY_SIGNATURE,
    BlockLoadEntry,
    DlmsType,
    ProfileLayout,
)
from hes_sim.protocols.push_fast import (
    DATA_NOTIFICATION_TAG,
    INVOKE_ID_MASK,
    LOGICAL_NAME_SIZE,
    STATUS_WORD_SIZE,
)

_HEADER_SIZE = 1 + 4 + 1  # tag, long-invoke-id-and-priority, date-time length
_ITEM_SIZE = {DlmsType.LONG_UNSIGNED: 3, DlmsType.DOUBLE_LONG_UNSIGNED: 5}
_CLOCK_ITEM_SIZE = 2 + cosem_datetime.SIZE  # octet-string tag, length, 12 octets
EVENT_BODY_SIZE = 2 + (2 + LOGICAL_NAME_SIZE) + _CLOCK_ITEM_SIZE + 3 + (3 + STATUS_WORD_SIZE)
# gurux returns its int subclasses GXUInt16 / GXUInt32, which remember their wire type
_WIRE_TYPES = {"GXUInt16": DlmsType.LONG_UNSIGNED, "GXUInt32": DlmsType.DOUBLE_LONG_UNSIGNED}


@dataclass(frozen=True, slots=True)
class EventEntry:
    """An event pushed as it happens: which event log, when, and the IS 15959 code."""

    log: bytes  # logical name of the event log, e.g. 0.0.99.98.6.255 (control)
    clock: datetime
    code: int
    status_word: bytes = bytes(STATUS_WORD_SIZE)  # the 128-bit event status word


@dataclass(frozen=True, slots=True)
class DataNotification:
    invoke_id: int  # 24 bits; the meter counts its pushes with it
    sent_at: datetime | None
    entry: BlockLoadEntry | EventEntry


class _Gurux:
    """The gurux objects a codec call needs. One instance per process; not shared by threads."""

    def __init__(self) -> None:
        self.notify = GXDLMSNotify(True, 1, 1, InterfaceType.PDU)
        self.settings = GXDLMSSettings(True, None)


_gurux = _Gurux()


def encoded_size(layout: ProfileLayout, *, with_time: bool) -> int:
    body = 2 + _CLOCK_ITEM_SIZE + sum(_ITEM_SIZE[c.dlms_type] for c in layout.columns)
    return _HEADER_SIZE + (cosem_datetime.SIZE if with_time else 0) + body


def _body(entry: BlockLoadEntry | EventEntry) -> GXByteBuffer:
    body = GXByteBuffer()
    body.setUInt8(DataType.STRUCTURE)
    settings = _gurux.settings
    clock = cosem_datetime.encode(entry.clock)
    if isinstance(entry, EventEntry):
        _GXCommon.setObjectCount(4, body)
        _GXCommon.setData(settings, body, DataType.OCTET_STRING, entry.log)
        _GXCommon.setData(settings, body, DataType.OCTET_STRING, clock)
        _GXCommon.setData(settings, body, DataType.UINT16, entry.code)
        _GXCommon.setData(settings, body, DataType.BITSTRING, GXBitString(entry.status_word, 0))
        return body
    _GXCommon.setObjectCount(1 + len(entry.values), body)
    _GXCommon.setData(settings, body, DataType.OCTET_STRING, clock)
    for column, value in zip(entry.layout.columns, entry.values, strict=True):
        _GXCommon.setData(settings, body, DataType(int(column.dlms_type)), value)
    return body


def encode(notification: DataNotification) -> bytes:
    entry = notification.entry
    if isinstance(entry, EventEntry):
        event = (entry.log, entry.clock, entry.code, entry.status_word)
        apdu = push_fast.encode_event(notification.invoke_id, notification.sent_at, event)
    else:
        apdu = push_fast.encode_block_load(notification.invoke_id, notification.sent_at, entry)
    return apdu if apdu is not None else encode_gurux(notification)


def decode(apdu: bytes) -> DataNotification:
    """The notification in ``apdu``; CodecError, and only that, for anything else."""
    fields = push_fast.decode(apdu)
    if fields is None:
        return decode_gurux(apdu)
    invoke_id, sent_at, body = fields
    entry = body if isinstance(body, BlockLoadEntry) else EventEntry(*body)
    return DataNotification(invoke_id, sent_at, entry)


def encode_gurux(notification: DataNotification) -> bytes:
    """The reference encoder, through gurux-dlms's own A-XDR."""
    body = _body(notification.entry)
    notify = _gurux.notify
    notify.settings.setLongInvokeID(notification.invoke_id & INVOKE_ID_MASK)
    messages = notify.generateDataNotificationMessages(None, body)
    apdu = bytes(messages[0])
    if notification.sent_at is None:
        return apdu
    # Gurux encodes the optional date-time with its own day-of-week rules; the field is
    # placed here so that header time and clock column share one codec.
    return (
        apdu[:5]
        + bytes([cosem_datetime.SIZE])
        + cosem_datetime.encode(notification.sent_at)
        + apdu[6:]
    )


def decode_gurux(apdu: bytes) -> DataNotification:
    """The reference decoder: any DATA-NOTIFICATION gurux-dlms can read, checked for shape."""
    if len(apdu) < _HEADER_SIZE or apdu[0] != DATA_NOTIFICATION_TAG:
        raise CodecError("not_data_notification", f"APDU starts {apdu[:1].hex() or 'empty'}")
    if apdu[5] not in (0, cosem_datetime.SIZE):
        raise CodecError("length", f"a date-time field of {apdu[5]} octets")
    try:
        # gurux trusts what it reads: one flipped bit (a compact-array tag in the body) has
        # it allocate gigabytes. The project's bounded A-XDR reader checks the body first.
        axdr.decode_at(apdu, _HEADER_SIZE + apdu[5])
    except CodecError as exc:
        raise CodecError("body_shape", f"the body is not one A-XDR value: {exc}") from exc
    reply = GXReplyData()
    try:
        _gurux.notify.getData(GXByteBuffer(apdu), reply)
    except Exception as exc:  # gurux raises bare Exception, ValueError, IndexError…
        raise CodecError("apdu", f"gurux could not parse the APDU: {exc!r}") from exc
    if not reply.isComplete() or reply.command != Command.DATA_NOTIFICATION:
        raise CodecError("apdu", "incomplete DATA-NOTIFICATION")
    body = reply.value
    if not isinstance(body, list) or not body or not isinstance(body[0], bytes | bytearray):
        raise CodecError("body_shape", f"body is not a structure starting with a clock: {body!r}")
    with_time = apdu[5] != 0
    sent_at = cosem_datetime.decode(apdu[6 : 6 + apdu[5]]) if with_time else None
    invoke_id = int(reply.invokeId) & INVOKE_ID_MASK
    if len(body[0]) == LOGICAL_NAME_SIZE:
        event = _event_entry(body, len(apdu), with_time=with_time)
        return DataNotification(invoke_id, sent_at, event)
    values = body[1:]
    if not all(isinstance(v, int) for v in values):
        raise CodecError("body_shape", "body holds non-integer registers")
    layout = LAYOUT_BY_SIGNATURE.get(tuple(_WIRE_TYPES.get(type(v).__name__) for v in values))
    if layout is None:
        raise CodecError("body_shape", f"no block-load layout has {len(values)} such registers")
    if len(apdu) != encoded_size(layout, with_time=with_time):
        raise CodecError("length", f"{len(apdu)} bytes for a {layout.name} notification")
    entry = BlockLoadEntry(layout, cosem_datetime.decode(bytes(body[0])), tuple(values))
    return DataNotification(invoke_id, sent_at, entry)


def _event_entry(body: list[object], size: int, *, with_time: bool) -> EventEntry:
    log, clock, code, status = [*body, None, None, None][:4]
    if (
        len(body) != 4
        or not isinstance(log, bytes | bytearray)
        or not isinstance(clock, bytes | bytearray)
        or type(code).__name__ != "GXUInt16"
        or not isinstance(code, int)
        or not isinstance(status, GXBitString)
        or len(status.value) != STATUS_WORD_SIZE
    ):
        raise CodecError("body_shape", "not an event: {log name, clock, code, status word}")
    expected = _HEADER_SIZE + (cosem_datetime.SIZE if with_time else 0) + EVENT_BODY_SIZE
    if size != expected:
        raise CodecError("length", f"{size} bytes for an event notification")
    return EventEntry(
        bytes(log), cosem_datetime.decode(bytes(clock)), int(code), bytes(status.value)
    )
