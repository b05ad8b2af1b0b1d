"""COSEM date-time (12 octets, DLMS Blue Book 4.1.6.1) to and from aware datetimes.

year (u16), month, day of month, day of week (1 = Monday, 0xFF unspecified), hour,
minute, second, hundredths (0xFF unspecified), deviation (i16, minutes; 0x8000
unspecified), clock status. Following Gurux and most meters, the deviation is the
negated UTC offset: India (UTC+05:30) is -330.

Only fully specified instants are decoded; wildcards other than day of week and
hundredths are rejected, since a read's time stamp must name one instant.
"""

from __future__ import annotations

import functools
import struct
from datetime import datetime, timedelta, timezone

from hes_sim.errors import CodecError

COSEM_DATETIME = struct.Struct(">HBBBBBBBhB")
SIZE = COSEM_DATETIME.size
UNSPECIFIED_DEVIATION = -0x8000


def encode(value: datetime, clock_status: int = 0) -> bytes:
    offset = value.utcoffset()
    if offset is None:
        raise ValueError("a COSEM date-time needs an aware datetime")
    deviation = -int(offset.total_seconds() // 60)
    return COSEM_DATETIME.pack(
        value.year,
        value.month,
        value.day,
        value.isoweekday(),
        value.hour,
        value.minute,
        value.second,
        value.microsecond // 10_000,
        deviation,
        clock_status,
    )


def decode(data: bytes) -> datetime:
    return _instant(bytes(data))[0]  # bytes of bytes is the same object; a bytearray hashes not


def decode_instant(data: bytes) -> tuple[datetime, float]:
    """The date-time in ``data`` and its Unix time: what the head-end checks of every read,
    where ``datetime.timestamp`` alone costs more than the lookup of both."""
    return _instant(bytes(data))


# A fleet's pushes for one interval carry the same 12 octets: the head-end decodes each
# once. Only fully decoded instants are kept (an error is raised, never cached), and
# datetimes are immutable, so sharing one is safe.
@functools.lru_cache(maxsize=4096)
def _instant(data: bytes) -> tuple[datetime, float]:
    value = _decode(data)
    return value, value.timestamp()


def _decode(data: bytes) -> datetime:
    if len(data) != SIZE:
        raise CodecError("datetime", f"date-time of {len(data)} octets, expected {SIZE}")
    year, month, day, _dow, hour, minute, second, hundredths, deviation, _status = (
        COSEM_DATETIME.unpack(data)
    )
    if deviation == UNSPECIFIED_DEVIATION or not -720 <= deviation <= 720:
        raise CodecError("datetime", f"deviation {deviation} does not name a UTC offset")
    if hundredths == 0xFF:
        hundredths = 0
    try:
        return datetime(
            year,
            month,
            day,
            hour,
            minute,
            second,
            hundredths * 10_000,
            tzinfo=timezone(timedelta(minutes=-deviation)),
        )
    except ValueError as exc:
        raise CodecError("datetime", f"not a date-time: {data.hex()} ({exc})") from exc
