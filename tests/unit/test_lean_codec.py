"""The MQTT 3.1.1 codec of the lean meter transport."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hes_sim.errors import CodecError
from hes_sim.meter_sim.network.mqtt_connect import parse_connect
from hes_sim.protocols import mqtt_codec as mqtt
from hes_sim.protocols.mqtt_codec import (
    ConnAck,
    Connect,
    Disconnect,
    PingReq,
    PingResp,
    PubAck,
    Publish,
    SubAck,
    Subscribe,
    Will,
)

# MQTT strings: UTF-8 without U+0000 (surrogates cannot be encoded at all)
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
topic_names = text.filter(lambda t: t and "+" not in t and "#" not in t and len(t) < 300)
packet_ids = st.integers(1, 0xFFFF)
qos_values = st.sampled_from((0, 1, 2))


@st.composite
def publishes(draw: st.DrawFn) -> Publish:
    qos = draw(st.sampled_from((0, 1)))
    return Publish(
        draw(topic_names),
        draw(st.binary(max_size=2000)),
        qos,
        draw(packet_ids) if qos else None,
        draw(st.booleans()),
        draw(st.booleans()) if qos else False,
    )


wills = st.builds(Will, text.filter(bool), st.binary(max_size=100), qos_values, st.booleans())
packets = st.one_of(
    st.builds(Connect, text, st.integers(0, 0xFFFF), st.booleans(), st.none() | wills),
    st.builds(ConnAck, st.integers(0, 255), st.booleans()),
    publishes(),
    st.builds(PubAck, packet_ids),
    st.builds(
        Subscribe,
        packet_ids,
        st.lists(st.tuples(text.filter(bool), qos_values), min_size=1, max_size=5).map(tuple),
    ),
    st.builds(
        SubAck,
        packet_ids,
        st.lists(st.sampled_from((0, 1, 2, 0x80)), min_size=1, max_size=5).map(tuple),
    ),
    st.just(PingReq()),
    st.just(PingResp()),
    st.just(Disconnect()),
)


@given(packets)
def test_every_packet_decodes_to_itself(packet: mqtt.Packet) -> None:
    data = mqtt.encode(packet)
    assert mqtt.decode(data) == packet
    assert mqtt.packet_size(data, len(data)) == len(data)


@given(st.lists(packets, min_size=1, max_size=8), st.integers(1, 50))
def test_a_stream_cut_anywhere_splits_into_its_packets(
    packets: list[mqtt.Packet], cut: int
) -> None:
    stream = b"".join(mqtt.encode(p) for p in packets)
    buffer, found = bytearray(), []
    for start in range(0, len(stream), cut):
        buffer += stream[start : start + cut]
        while (size := mqtt.packet_size(buffer, len(stream))) is not None and size <= len(buffer):
            found.append(mqtt.decode(buffer[:size]))
            del buffer[:size]
    assert found == packets
    assert not buffer


def test_known_bytes() -> None:
    assert mqtt.encode(PingReq()) == b"\xc0\x00"
    assert mqtt.encode(PingResp()) == b"\xd0\x00"
    assert mqtt.encode(Disconnect()) == b"\xe0\x00"
    assert mqtt.encode(PubAck(0x1234)) == b"\x40\x02\x12\x34"
    assert mqtt.encode(ConnAck(5, False)) == b"\x20\x02\x00\x05"
    assert mqtt.encode(Publish("a/b", b"xy", 1, 10)) == b"\x32\x09\x00\x03a/b\x00\x0axy"
    assert mqtt.encode(Subscribe(1, (("a/#", 1),))) == b"\x82\x08\x00\x01\x00\x03a/#\x01"
    # 321 bytes of remaining length take two bytes of variable length
    assert mqtt.encode(Publish("t", bytes(318)))[:3] == b"\x30\xc1\x02"


def test_the_link_proxy_accepts_the_meters_connect() -> None:
    will = Will("mtr/v1/SP0000001/state", b"offline", qos=1, retain=True)
    data = mqtt.encode(Connect("SP0000001", 60, clean_session=True, will=will))
    parsed = parse_connect(data)
    assert (parsed.protocol_level, parsed.client_id, parsed.keepalive_s) == (4, "SP0000001", 60)
    assert (parsed.clean_start, parsed.will, parsed.will_qos, parsed.will_retain) == (
        True,
        True,
        1,
        True,
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00\x00", "packet_type"),  # reserved type 0
        (b"\xf0\x00", "packet_type"),  # reserved type 15
        (b"\x30\xff\xff\xff\xff\x01", "bad_length"),  # a five-byte variable length
        (b"\x40\x02\x00", "truncated"),
        (b"\x40\x02\x00\x01\x00", "trailing"),
        (b"\x40\x02\x00\x00", "packet_id"),  # packet id 0
        (b"\x41\x02\x00\x01", "flags"),  # PUBACK with a flag bit set
        (b"\x80\x06\x00\x01\x00\x01a\x01", "flags"),  # SUBSCRIBE without its fixed 0b0010
        (b"\x34\x05\x00\x01a\x00\x01", "unsupported"),  # QoS 2
        (b"\x36\x05\x00\x01a\x00\x01", "flags"),  # QoS 3
        (b"\x38\x03\x00\x01a", "flags"),  # DUP on QoS 0
        (b"\x30\x03\x00\x01#", "topic"),  # wildcard in a topic name
        (b"\x30\x04\x00\x02\xff\xfe", "bad_string"),
        (b"\x50\x02\x00\x01", "unsupported"),  # PUBREC
        (b"\x20\x02\x02\x00", "flags"),  # reserved CONNACK flag
        (b"\x90\x03\x00\x01\x03", "return_code"),
        (b"\x90\x02\x00\x01", "empty"),
        (b"\xd0\x01\x00", "trailing"),  # PINGRESP with a body
    ],
)
def test_bad_packets_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(CodecError) as raised:
        mqtt.decode(data)
    assert raised.value.reason == reason


def test_a_packet_larger_than_allowed_is_refused_from_its_header() -> None:
    header = mqtt.encode(Publish("t", bytes(1000)))[:3]
    with pytest.raises(CodecError, match="oversize"):
        mqtt.packet_size(header, 512)
    assert mqtt.packet_size(header[:1], 512) is None  # not yet known


@given(st.binary(max_size=64))
def test_any_bytes_decode_or_raise_codec_error(data: bytes) -> None:
    try:
        mqtt.packet_size(data, 1 << 20)
        mqtt.decode(data)
    except CodecError:
        pass


@pytest.mark.parametrize(
    "build",
    [
        lambda: mqtt.encode_publish("a/+", b""),
        lambda: mqtt.encode_publish("a", b"", qos=1),  # QoS 1 without a packet id
        lambda: mqtt.encode_publish("a", b"", qos=2, packet_id=1),
        lambda: mqtt.encode_puback(0),
        lambda: mqtt.encode_subscribe(1, ()),
        lambda: mqtt.encode(Connect("x" * 70_000, 60)),
        lambda: mqtt.encode(Connect("x", 70_000)),
    ],
)
def test_what_mqtt_cannot_carry_is_a_value_error(build: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case names its own problem
        build()  # type: ignore[operator]
