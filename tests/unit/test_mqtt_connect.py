"""The CONNECT parser the link proxy reads each meter's first packet with."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hes_sim.meter_sim.network.mqtt_connect import (
    ConnectPacketError,
    packet_length,
    parse_connect,
)


def _str(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def _bin(raw: bytes) -> bytes:
    return len(raw).to_bytes(2, "big") + raw


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def build_connect(
    client_id: str,
    *,
    level: int = 4,
    keepalive: int = 60,
    clean: bool = True,
    will: tuple[str, bytes, int, bool] | None = None,
    username: str | None = None,
    password: bytes | None = None,
    properties: bytes = b"",
    will_properties: bytes = b"",
) -> bytes:
    flags = 0x02 if clean else 0
    if will is not None:
        flags |= 0x04 | (will[2] << 3) | (0x20 if will[3] else 0)
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    body = _str("MQTT") + bytes([level, flags]) + keepalive.to_bytes(2, "big")
    if level == 5:
        body += _varint(len(properties)) + properties
    body += _str(client_id)
    if will is not None:
        if level == 5:
            body += _varint(len(will_properties)) + will_properties
        body += _str(will[0]) + _bin(will[1])
    if username is not None:
        body += _str(username)
    if password is not None:
        body += _bin(password)
    return b"\x10" + _varint(len(body)) + body


# What aiomqtt_link_factory's client sends for meter SP0000001, keep-alive 60, with its
# retained "offline" will at QoS 1, written out byte by byte.
METER_CONNECT = bytes.fromhex(
    "10"  # CONNECT
    "36"  # remaining length 54
    "00044d515454"  # "MQTT"
    "04"  # level 4: MQTT 3.1.1
    "2e"  # flags: clean session, will, will QoS 1, will retain
    "003c"  # keep-alive 60 s
    "0009" + b"SP0000001".hex() + "0016" + b"mtr/v1/SP0000001/state".hex() + "0007"
    "6f66666c696e65"  # "offline"
)


def test_parses_a_meter_connect_byte_by_byte() -> None:
    assert packet_length(METER_CONNECT) == len(METER_CONNECT) == 56
    packet = parse_connect(METER_CONNECT)
    assert packet.client_id == "SP0000001"
    assert packet.protocol_level == 4
    assert packet.keepalive_s == 60
    assert packet.clean_start
    assert (packet.will, packet.will_qos, packet.will_retain) == (True, 1, True)
    assert not packet.username
    assert not packet.password
    assert packet.size == 56


def test_builder_matches_the_literal_packet() -> None:
    built = build_connect(
        "SP0000001", will=("mtr/v1/SP0000001/state", b"offline", 1, True), keepalive=60
    )
    assert built == METER_CONNECT


def test_parses_mqtt5_with_properties_skipped() -> None:
    # session expiry interval (0x11) = 3600, receive maximum (0x21) = 20
    properties = bytes.fromhex("1100000e10") + bytes.fromhex("210014")
    will_properties = bytes.fromhex("1800000005")  # will delay interval 5 s
    raw = build_connect(
        "FD0000002",
        level=5,
        keepalive=30,
        clean=False,
        properties=properties,
        will=("w", b"gone", 0, False),
        will_properties=will_properties,
        username="u",
        password=b"p",
    )
    packet = parse_connect(raw)
    assert (packet.client_id, packet.protocol_level, packet.keepalive_s) == ("FD0000002", 5, 30)
    assert not packet.clean_start
    assert packet.username
    assert packet.password


def test_two_byte_remaining_length() -> None:
    raw = build_connect("M" * 200)
    assert raw[1:3] == bytes([(len(raw) - 3) & 0x7F | 0x80, (len(raw) - 3) >> 7])
    assert packet_length(raw[:2]) is None  # the length itself is still incomplete
    assert packet_length(raw[:3]) == len(raw)
    assert parse_connect(raw).client_id == "M" * 200


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x30\x02\x00\x00", "not_connect"),  # a PUBLISH first
        (b"\x11" + METER_CONNECT[1:], "not_connect"),  # reserved flag bits set
        (b"GET / HTTP/1.1\r\n\r\n", "not_connect"),
        (b"\x10\xff\xff\xff\xff\x01", "bad_length"),  # a five-byte remaining length
        (b"\x10\xff\xff\xff\x7f", "oversize"),
        (METER_CONNECT[:-1], "truncated"),
        (METER_CONNECT + b"\x00", "trailing"),
        (METER_CONNECT.replace(b"MQTT", b"MQTX"), "protocol_name"),
        (METER_CONNECT.replace(b"\x04\x2e", b"\x03\x2e"), "protocol_level"),
        (METER_CONNECT.replace(b"\x04\x2e", b"\x04\x2f"), "flags"),  # reserved bit
        (METER_CONNECT.replace(b"\x04\x2e", b"\x04\x1e"), "flags"),  # will QoS 3
        (build_connect("x", password=b"p"), "flags"),  # 3.1.1: password without user
        (build_connect("\x00"), "bad_string"),
        (build_connect("SP").replace(b"SP", b"\xff\xfe"), "bad_string"),
    ],
)
def test_refuses_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(ConnectPacketError) as caught:
        parse_connect(raw)
    assert caught.value.reason == reason


def test_the_size_limit_is_checked_from_the_header_alone() -> None:
    raw = build_connect("SP0000001", will=("t", b"x" * 2000, 0, False))
    with pytest.raises(ConnectPacketError, match="oversize"):
        packet_length(raw[:4], max_size=1024)
    assert packet_length(raw[:4], max_size=4096) == len(raw)


def test_empty_input_is_incomplete() -> None:
    assert packet_length(b"") is None
    with pytest.raises(ConnectPacketError, match="truncated"):
        parse_connect(b"")


def test_a_client_field_longer_than_the_packet_is_truncated() -> None:
    raw = bytearray(METER_CONNECT)
    raw[13] = 0x40  # client id length 0x0040 runs past the end
    with pytest.raises(ConnectPacketError, match="truncated"):
        parse_connect(bytes(raw))


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_connect_packet_error(data: bytes) -> None:
    try:
        size = packet_length(data)
        packet = parse_connect(data)
    except ConnectPacketError:
        return
    assert size == len(data) == packet.size


@given(st.binary(min_size=1, max_size=40), st.integers(0, 55), st.integers(1, 255))
def test_corrupted_meter_connects_raise_only_connect_packet_error(
    insert: bytes, at: int, xor: int
) -> None:
    flipped = bytearray(METER_CONNECT)
    flipped[at] ^= xor
    for raw in (bytes(flipped), METER_CONNECT[:at] + insert + METER_CONNECT[at:]):
        try:
            packet = parse_connect(raw)
        except ConnectPacketError:
            continue
        assert packet.size == len(raw)  # what parses was read to its last byte


_ids = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=40)


@given(
    client_id=_ids,
    level=st.sampled_from([4, 5]),
    keepalive=st.integers(0, 65535),
    will=st.none() | st.tuples(_ids, st.binary(max_size=30), st.integers(0, 2), st.booleans()),
    username=st.none() | _ids,
    properties=st.binary(max_size=20),
)
def test_round_trip(
    client_id: str,
    level: int,
    keepalive: int,
    will: tuple[str, bytes, int, bool] | None,
    username: str | None,
    properties: bytes,
) -> None:
    raw = build_connect(
        client_id,
        level=level,
        keepalive=keepalive,
        will=will,
        username=username,
        password=None if username is None else b"secret",
        properties=properties,
    )
    packet = parse_connect(raw)
    assert (packet.client_id, packet.protocol_level, packet.keepalive_s) == (
        client_id,
        level,
        keepalive,
    )
    assert packet.will == (will is not None)
    assert packet.size == len(raw)
    for cut in range(len(raw)):
        with pytest.raises(ConnectPacketError, match="truncated"):
            parse_connect(raw[:cut])
