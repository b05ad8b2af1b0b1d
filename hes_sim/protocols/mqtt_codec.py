"""MQTT 3.1.1 packets, just the ones a meter's link needs, as pure functions over bytes.

The meters speak MQTT 3.1.1 (protocol level 4), as the aiomqtt transport does, so that
the broker and the 4G link proxy see the same CONNECT whichever transport a fleet uses.
The maintained sans-IO package on PyPI (``mqtt5``) encodes and decodes MQTT 5 only, and
MQTT 5 packets differ on the wire (properties in CONNECT, CONNACK, PUBLISH, SUBACK), so
this module is the smallest 3.1.1 codec that does the job.

Spoken: CONNECT, CONNACK, PUBLISH (QoS 0 and 1), PUBACK, SUBSCRIBE, SUBACK, PINGREQ,
PINGRESP, DISCONNECT. The QoS 2 and UNSUBSCRIBE packets are refused as unsupported.

:func:`packet_size` reads a fixed header to learn how many bytes the packet takes, so that
a stream reader can bound what it buffers; :func:`decode` reads one whole packet. Both
raise :class:`CodecError`, and nothing else, for bytes they cannot accept. The encoders
raise ``ValueError`` for values the protocol cannot carry (a caller's bug, not the wire's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeAlias

from hes_sim.errors import CodecError

PROTOCOL_NAME = b"\x00\x04MQTT"
PROTOCOL_LEVEL = 4  # MQTT 3.1.1
MAX_REMAINING = 268_435_455  # the largest 4-byte variable length
MAX_STRING = 0xFFFF
SUBACK_FAILURE = 0x80


class PacketType(IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


# the fixed flag bits 3.1.1 requires for every packet type but PUBLISH (section 2.2.2)
_FIXED_FLAGS = {t: 0 for t in PacketType if t is not PacketType.PUBLISH} | {
    PacketType.PUBREL: 0b0010,
    PacketType.SUBSCRIBE: 0b0010,
    PacketType.UNSUBSCRIBE: 0b0010,
}
_UNSUPPORTED = {
    PacketType.PUBREC,
    PacketType.PUBREL,
    PacketType.PUBCOMP,
    PacketType.UNSUBSCRIBE,
    PacketType.UNSUBACK,
}


class ConnectReturnCode(IntEnum):
    ACCEPTED = 0
    BAD_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USER_NAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Connect:
    client_id: str
    keepalive_s: int
    clean_session: bool = True
    will: Will | None = None


@dataclass(frozen=True, slots=True)
class ConnAck:
    return_code: int  # a ConnectReturnCode, or another byte a broker should not send
    session_present: bool = False


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int = 0
    packet_id: int | None = None  # set exactly when qos is 1
    retain: bool = False
    dup: bool = False


@dataclass(frozen=True, slots=True)
class PubAck:
    packet_id: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    packet_id: int
    filters: tuple[tuple[str, int], ...]  # (topic filter, requested QoS)


@dataclass(frozen=True, slots=True)
class SubAck:
    packet_id: int
    return_codes: tuple[int, ...]  # granted QoS, or SUBACK_FAILURE


@dataclass(frozen=True, slots=True)
class PingReq:
    pass


@dataclass(frozen=True, slots=True)
class PingResp:
    pass


@dataclass(frozen=True, slots=True)
class Disconnect:
    pass


Packet = Connect | ConnAck | Publish | PubAck | Subscribe | SubAck | PingReq | PingResp | Disconnect

PINGREQ = b"\xc0\x00"
PINGRESP = b"\xd0\x00"
DISCONNECT = b"\xe0\x00"


# ---------------------------------------------------------------- encoding


def encode(packet: Packet) -> bytes:  # noqa: PLR0911 - one arm per packet type
    match packet:
        case Connect():
            return encode_connect(packet)
        case ConnAck(return_code, session_present):
            _check_byte(return_code, "return code")
            return bytes((0x20, 2, int(session_present), return_code))
        case Publish():
            return encode_publish(
                packet.topic,
                packet.payload,
                qos=packet.qos,
                packet_id=packet.packet_id,
                retain=packet.retain,
                dup=packet.dup,
            )
        case PubAck(packet_id):
            return encode_puback(packet_id)
        case Subscribe(packet_id, filters):
            return encode_subscribe(packet_id, filters)
        case SubAck(packet_id, codes):
            for code in codes:
                _check_byte(code, "return code")
            return _packet(0x90, _packet_id(packet_id) + bytes(codes))
        case PingReq():
            return PINGREQ
        case PingResp():
            return PINGRESP
        case Disconnect():
            return DISCONNECT


def encode_connect(packet: Connect) -> bytes:
    flags = 0x02 if packet.clean_session else 0
    payload = _string(packet.client_id)
    if packet.will is not None:
        will = packet.will
        _check_qos(will.qos, allowed=(0, 1, 2))
        flags |= 0x04 | will.qos << 3 | (0x20 if will.retain else 0)
        payload += _string(will.topic) + _binary(will.payload)
    if not 0 <= packet.keepalive_s <= 0xFFFF:
        raise ValueError(f"keep-alive {packet.keepalive_s} s does not fit 16 bits")
    header = PROTOCOL_NAME + bytes((PROTOCOL_LEVEL, flags)) + packet.keepalive_s.to_bytes(2, "big")
    return _packet(0x10, header + payload)


def encode_publish(
    topic: str,
    payload: bytes,
    *,
    qos: int = 0,
    packet_id: int | None = None,
    retain: bool = False,
    dup: bool = False,
) -> bytes:
    _check_qos(qos, allowed=(0, 1))
    if (packet_id is None) != (qos == 0):
        raise ValueError("a packet id goes with QoS 1 and only with it")
    if dup and qos == 0:
        raise ValueError("DUP is set on QoS 0")
    if not topic or "+" in topic or "#" in topic:
        raise ValueError(f"topic name {topic!r} is empty or has a wildcard")
    first = 0x30 | (0x08 if dup else 0) | qos << 1 | (0x01 if retain else 0)
    body = _string(topic)
    if packet_id is not None:
        body += _packet_id(packet_id)
    return _packet(first, body + payload)


def encode_puback(packet_id: int) -> bytes:
    return b"\x40\x02" + _packet_id(packet_id)


def encode_subscribe(packet_id: int, filters: tuple[tuple[str, int], ...]) -> bytes:
    if not filters:
        raise ValueError("SUBSCRIBE needs at least one topic filter")
    body = _packet_id(packet_id)
    for topic_filter, qos in filters:
        _check_qos(qos, allowed=(0, 1, 2))
        if not topic_filter:
            raise ValueError("empty topic filter")
        body += _string(topic_filter) + bytes((qos,))
    return _packet(0x82, body)


def _packet(first: int, body: bytes) -> bytes:
    if len(body) > MAX_REMAINING:
        raise ValueError(f"{len(body)} bytes do not fit one MQTT packet")
    return bytes((first,)) + _varint(len(body)) + body


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def _string(text: str) -> bytes:
    if "\x00" in text:
        raise ValueError(f"{text!r}: U+0000 is not allowed in an MQTT string")
    return _binary(text.encode("utf-8"))


def _binary(raw: bytes) -> bytes:
    if len(raw) > MAX_STRING:
        raise ValueError(f"{len(raw)} bytes do not fit a length-prefixed field")
    return len(raw).to_bytes(2, "big") + raw


def _packet_id(packet_id: int) -> bytes:
    if not 0 < packet_id <= 0xFFFF:
        raise ValueError(f"packet id {packet_id} is not in 1..65535")
    return packet_id.to_bytes(2, "big")


def _check_qos(qos: int, allowed: tuple[int, ...]) -> None:
    if qos not in allowed:
        raise ValueError(f"QoS {qos} is not one of {allowed}")


def _check_byte(value: int, what: str) -> None:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{what} {value} does not fit a byte")


# ---------------------------------------------------------------- decoding


def packet_size(head: bytes | bytearray | memoryview, max_size: int) -> int | None:
    """Total bytes of the packet starting ``head``, or None while its fixed header is
    still incomplete. Refuses a reserved packet type, a bad variable length, and a packet
    larger than ``max_size``, so a reader never buffers more than that."""
    header = _fixed_header(head)
    if header is None:
        return None
    total = header[0] + header[1]
    if total > max_size:
        raise CodecError("oversize", f"{total} bytes, at most {max_size} accepted")
    return total


def decode(data: bytes | bytearray | memoryview) -> Packet:
    """One whole packet, ``data`` holding exactly its bytes."""
    header = _fixed_header(data)
    if header is None or len(data) < header[0] + header[1]:
        raise CodecError("truncated", f"{len(data)} bytes of a longer packet")
    start, remaining = header
    if len(data) > start + remaining:
        raise CodecError("trailing", f"{len(data) - start - remaining} bytes after the packet")
    kind = PacketType(data[0] >> 4)
    flags = data[0] & 0x0F
    if kind in _UNSUPPORTED:
        raise CodecError("unsupported", f"{kind.name} packets are not spoken here")
    if kind is not PacketType.PUBLISH and flags != _FIXED_FLAGS[kind]:
        raise CodecError("flags", f"{kind.name} with fixed-header flags 0x{flags:x}")
    body = FieldReader(bytes(data[start:]))
    packet = _DECODERS[kind](body, flags)
    if not body.at_end():
        raise CodecError("trailing", f"bytes left inside a {kind.name}")
    return packet


def parse_publish(data: bytes) -> tuple[str, bytes, int | None, bool]:
    """Topic, payload, packet id and retain flag of one whole PUBLISH in ``data``.

    The head-end's hot path: the checks :func:`decode` makes of a PUBLISH, without the
    packet object; any other packet, or bad bytes, raise CodecError.
    """
    header = _fixed_header(data)
    if header is None or len(data) != header[0] + header[1]:
        raise CodecError("truncated", f"{len(data)} bytes are not one whole packet")
    first = data[0]
    if first >> 4 != PacketType.PUBLISH:
        raise CodecError("unexpected", f"packet type {first >> 4} is not PUBLISH")
    qos = (first >> 1) & 0x03
    if qos > 1:
        raise CodecError("flags" if qos == 3 else "unsupported", f"PUBLISH with QoS {qos}")
    if first & 0x08 and not qos:
        raise CodecError("flags", "DUP set on a QoS 0 PUBLISH")
    at = header[0] + 2
    end = at + int.from_bytes(data[at - 2 : at], "big")
    if at > len(data) or end > len(data):
        raise CodecError("truncated", "topic runs past the packet")
    try:
        topic = data[at:end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CodecError("bad_string", f"not UTF-8: {exc}") from None
    if not topic or "+" in topic or "#" in topic or "\x00" in topic:
        raise CodecError("topic", f"topic name {topic!r} is empty or not a name")
    packet_id = None
    if qos:
        packet_id = int.from_bytes(data[end : end + 2], "big")
        end += 2
        if end > len(data):
            raise CodecError("truncated", "packet id runs past the packet")
        if packet_id == 0:
            raise CodecError("packet_id", "packet id 0")
    return topic, data[end:], packet_id, bool(first & 0x01)


def _fixed_header(head: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    """(fixed header size, remaining length), or None while the header is incomplete."""
    if not head:
        return None
    kind = head[0] >> 4
    if kind in (0, 15):
        raise CodecError("packet_type", f"reserved packet type {kind}")
    if len(head) > 1 and head[1] < 0x80:  # one length byte: most packets, every push
        return 2, head[1]
    remaining = 0
    for index in range(4):
        if 1 + index >= len(head):
            return None
        byte = head[1 + index]
        remaining |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return 2 + index, remaining
    raise CodecError("bad_length", "variable length longer than 4 bytes")


class FieldReader:
    """The fields of a packet, front to back from ``at``; CodecError for anything that runs
    past its end or is not what MQTT allows (also used for the link proxy's CONNECT)."""

    __slots__ = ("_at", "_data")

    def __init__(self, data: bytes, at: int = 0) -> None:
        self._data = data
        self._at = at

    def take(self, count: int) -> bytes:
        end = self._at + count
        if end > len(self._data):
            raise CodecError("truncated", f"field of {count} bytes runs past the packet")
        chunk = self._data[self._at : end]
        self._at = end
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def uint16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def packet_id(self) -> int:
        packet_id = self.uint16()
        if packet_id == 0:
            raise CodecError("packet_id", "packet id 0")
        return packet_id

    def binary(self) -> bytes:
        return self.take(self.uint16())

    def string(self) -> str:
        try:
            text = self.binary().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CodecError("bad_string", f"not UTF-8: {exc}") from None
        if "\x00" in text:
            raise CodecError("bad_string", "U+0000 in a string")
        return text

    def varint(self) -> int:
        """An MQTT variable byte integer (at most four bytes)."""
        value = 0
        for shift in range(0, 28, 7):
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise CodecError("bad_length", "variable length longer than 4 bytes")

    def rest(self) -> bytes:
        return self.take(len(self._data) - self._at)

    def at_end(self) -> bool:
        return self._at == len(self._data)


_Decoder: TypeAlias = Callable[[FieldReader, int], Packet]


def _decode_connect(body: FieldReader, _flags: int) -> Connect:
    if body.take(6) != PROTOCOL_NAME:
        raise CodecError("protocol_name", "protocol name is not MQTT")
    level = body.byte()
    if level != PROTOCOL_LEVEL:
        raise CodecError("protocol_level", f"level {level}, only 4 (MQTT 3.1.1) is spoken")
    flags = body.byte()
    if flags & 0x01:
        raise CodecError("flags", "reserved connect flag set")
    if flags & 0xC0:
        raise CodecError("unsupported", "user name and password are not spoken here")
    has_will, will_qos, will_retain = bool(flags & 0x04), (flags >> 3) & 0x03, bool(flags & 0x20)
    if will_qos == 3 or (not has_will and (will_qos or will_retain)):
        raise CodecError("flags", f"bad will flags 0x{flags:02x}")
    keepalive = body.uint16()
    client_id = body.string()
    will = None
    if has_will:
        will = Will(body.string(), body.binary(), will_qos, will_retain)
    return Connect(client_id, keepalive, bool(flags & 0x02), will)


def _decode_connack(body: FieldReader, _flags: int) -> ConnAck:
    ack_flags = body.byte()
    if ack_flags & 0xFE:
        raise CodecError("flags", f"reserved CONNACK flags 0x{ack_flags:02x}")
    return ConnAck(body.byte(), bool(ack_flags & 0x01))


def _decode_publish(body: FieldReader, flags: int) -> Publish:
    dup, qos, retain = bool(flags & 0x08), (flags >> 1) & 0x03, bool(flags & 0x01)
    if qos == 3:
        raise CodecError("flags", "PUBLISH with QoS 3")
    if qos == 2:
        raise CodecError("unsupported", "QoS 2 is not spoken here")
    if dup and qos == 0:
        raise CodecError("flags", "DUP set on a QoS 0 PUBLISH")
    topic = body.string()
    if not topic or "+" in topic or "#" in topic:
        raise CodecError("topic", f"topic name {topic!r} is empty or has a wildcard")
    packet_id = body.packet_id() if qos else None
    return Publish(topic, body.rest(), qos, packet_id, retain, dup)


def _decode_puback(body: FieldReader, _flags: int) -> PubAck:
    return PubAck(body.packet_id())


def _decode_subscribe(body: FieldReader, _flags: int) -> Subscribe:
    packet_id = body.packet_id()
    filters = []
    while not body.at_end():
        topic_filter = body.string()
        qos = body.byte()
        if qos > 2:
            raise CodecError("flags", f"requested QoS byte 0x{qos:02x}")
        filters.append((topic_filter, qos))
    if not filters:
        raise CodecError("empty", "SUBSCRIBE without a topic filter")
    return Subscribe(packet_id, tuple(filters))


def _decode_suback(body: FieldReader, _flags: int) -> SubAck:
    packet_id = body.packet_id()
    codes = body.rest()
    if not codes:
        raise CodecError("empty", "SUBACK without a return code")
    for code in codes:
        if code not in (0, 1, 2, SUBACK_FAILURE):
            raise CodecError("return_code", f"SUBACK return code 0x{code:02x}")
    return SubAck(packet_id, tuple(codes))


def _empty(packet: PingReq | PingResp | Disconnect) -> _Decoder:
    def decode_empty(_body: FieldReader, _flags: int) -> Packet:
        return packet

    return decode_empty


_DECODERS: dict[PacketType, _Decoder] = {
    PacketType.CONNECT: _decode_connect,
    PacketType.CONNACK: _decode_connack,
    PacketType.PUBLISH: _decode_publish,
    PacketType.PUBACK: _decode_puback,
    PacketType.SUBSCRIBE: _decode_subscribe,
    PacketType.SUBACK: _decode_suback,
    PacketType.PINGREQ: _empty(PingReq()),
    PacketType.PINGRESP: _empty(PingResp()),
    PacketType.DISCONNECT: _empty(Disconnect()),
}
