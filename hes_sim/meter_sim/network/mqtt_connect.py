"""The first packet a meter sends: an MQTT CONNECT (3.1.1 or 5), parsed just enough for
the link proxy to know which meter is calling and to refuse anything else.

Pure functions over bytes. The proxy reads in two steps, because it must bound what it
buffers before the packet is whole: :func:`packet_length` looks at the fixed header only
(type, remaining length) and :func:`parse_connect` at the whole packet. Both raise
:class:`ConnectPacketError`, and nothing else, for any bytes they cannot accept.
"""

from __future__ import annotations

from dataclasses import dataclass

from hes_sim.errors import CodecError, HesSimError
from hes_sim.protocols.mqtt_codec import FieldReader

CONNECT_HEADER = 0x10  # packet type 1, the four flag bits reserved as 0
PROTOCOL_NAME = "MQTT"
LEVELS = {4: "3.1.1", 5: "5"}  # MQTT 3.1 ("MQIsdp", level 3) is not spoken by the meters
MAX_CONNECT_SIZE = 64 * 1024  # a meter's CONNECT is well under 1 KiB; refuse silly sizes early
_MAX_VARINT_BYTES = 4


class ConnectPacketError(HesSimError):
    """Bytes that are not (or not yet) one acceptable MQTT CONNECT packet.

    ``reason`` is a short, stable label for counters and logs; the message says more.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ConnectPacket:
    protocol_level: int  # 4 (MQTT 3.1.1) or 5
    client_id: str
    keepalive_s: int
    clean_start: bool
    will: bool
    will_qos: int
    will_retain: bool
    username: bool
    password: bool
    size: int  # bytes of the whole packet, fixed header included


def packet_length(head: bytes, max_size: int = MAX_CONNECT_SIZE) -> int | None:
    """Total size of the CONNECT packet starting ``head``, or None while the fixed header
    is still incomplete. Raises on a non-CONNECT first byte, a bad remaining length, or a
    packet larger than ``max_size``."""
    if not head:
        return None
    if head[0] != CONNECT_HEADER:
        raise ConnectPacketError("not_connect", f"first byte 0x{head[0]:02x}, expected 0x10")
    remaining, used = _varint(head, 1, incomplete_ok=True)
    if remaining is None:
        return None
    total = 1 + used + remaining
    if total > max_size:
        raise ConnectPacketError("oversize", f"{total} bytes, at most {max_size} accepted")
    return total


def parse_connect(packet: bytes, max_size: int = MAX_CONNECT_SIZE) -> ConnectPacket:
    """Parse one whole CONNECT packet, ``packet`` holding exactly its bytes."""
    total = packet_length(packet, max_size)
    if total is None or len(packet) < total:
        raise ConnectPacketError("truncated", f"{len(packet)} bytes of a longer packet")
    if len(packet) > total:
        raise ConnectPacketError("trailing", f"{len(packet) - total} bytes after the packet")
    _remaining, length_size = _varint(packet, 1, incomplete_ok=False)
    try:
        return _parse_body(FieldReader(packet, 1 + length_size), total)
    except CodecError as exc:
        raise ConnectPacketError(exc.reason, str(exc).removeprefix(f"{exc.reason}: ")) from exc


def _parse_body(reader: FieldReader, total: int) -> ConnectPacket:
    name = reader.string()
    if name != PROTOCOL_NAME:
        raise ConnectPacketError("protocol_name", f"{name!r}, expected {PROTOCOL_NAME!r}")
    level = reader.byte()
    if level not in LEVELS:
        raise ConnectPacketError("protocol_level", f"level {level}, expected 4 or 5")
    flags = reader.byte()
    will, will_qos, will_retain = bool(flags & 0x04), (flags >> 3) & 0x03, bool(flags & 0x20)
    username, password = bool(flags & 0x80), bool(flags & 0x40)
    _check_flags(flags, level)
    keepalive_s = reader.uint16()
    if level == 5:
        reader.take(reader.varint())  # MQTT 5 properties: not needed here
    client_id = reader.string()
    if will:
        if level == 5:
            reader.take(reader.varint())  # MQTT 5 properties: not needed here
        reader.string()  # will topic
        reader.binary()  # will payload
    if username:
        reader.string()
    if password:
        reader.binary()
    if not reader.at_end():
        raise ConnectPacketError("trailing", "bytes left after the payload")
    return ConnectPacket(
        protocol_level=level,
        client_id=client_id,
        keepalive_s=keepalive_s,
        clean_start=bool(flags & 0x02),
        will=will,
        will_qos=will_qos,
        will_retain=will_retain,
        username=username,
        password=password,
        size=total,
    )


def _check_flags(flags: int, level: int) -> None:
    will, will_qos, will_retain = flags & 0x04, (flags >> 3) & 0x03, flags & 0x20
    if flags & 0x01:
        raise ConnectPacketError("flags", "reserved connect flag set")
    if will_qos == 3:
        raise ConnectPacketError("flags", "will QoS 3")
    if not will and (will_qos or will_retain):
        raise ConnectPacketError("flags", "will QoS or retain without a will")
    if level == 4 and flags & 0x40 and not flags & 0x80:
        # MQTT 3.1.1 section 3.1.2.9; MQTT 5 allows a password alone
        raise ConnectPacketError("flags", "password without user name")


def _varint(data: bytes, start: int, *, incomplete_ok: bool) -> tuple[int | None, int]:
    """MQTT variable byte integer at ``start``: (value, bytes used); (None, 0) when the
    bytes end inside it and ``incomplete_ok``."""
    value = 0
    for index in range(_MAX_VARINT_BYTES):
        if start + index >= len(data):
            if incomplete_ok:
                return None, 0
            raise ConnectPacketError("truncated", "bytes end inside a variable length")
        byte = data[start + index]
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return value, index + 1
    raise ConnectPacketError("bad_length", "variable length longer than 4 bytes")
