"""The head-end's PUBLISH fast path agrees with the full MQTT decoder."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hes_sim.errors import CodecError
from hes_sim.protocols import mqtt_codec as mqtt
from hes_sim.protocols.mqtt_codec import Publish
from tests.unit.test_lean_codec import packets, publishes


@given(publishes())
def test_a_publish_parses_as_the_decoder_reads_it(packet: Publish) -> None:
    data = mqtt.encode(packet)
    assert mqtt.parse_publish(data) == (
        packet.topic,
        packet.payload,
        packet.packet_id,
        packet.retain,
    )


@given(packets)
def test_only_a_publish_is_taken(packet: mqtt.Packet) -> None:
    data = mqtt.encode(packet)
    if isinstance(packet, Publish):
        assert mqtt.parse_publish(data)[0] == packet.topic
    else:
        with pytest.raises(CodecError):
            mqtt.parse_publish(data)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_codec_error_and_agree_with_decode(data: bytes) -> None:
    try:
        packet: mqtt.Packet | None = mqtt.decode(data)
    except CodecError:
        packet = None
    if not isinstance(packet, Publish):
        with pytest.raises(CodecError):
            mqtt.parse_publish(data)
        return
    assert mqtt.parse_publish(data) == (
        packet.topic,
        packet.payload,
        packet.packet_id,
        packet.retain,
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x30\x03\x00\x01a", None),  # a valid QoS 0 publish with topic "a", no payload
        (b"\x32\x03\x00\x01a", "truncated"),  # QoS 1 without its packet id
        (b"\x32\x05\x00\x01a\x00\x00", "packet_id"),
        (b"\x34\x03\x00\x01a", "unsupported"),  # QoS 2
        (b"\x38\x03\x00\x01a", "flags"),  # DUP on QoS 0
        (b"\x30\x03\x00\x01+", "topic"),
        (b"\x30\x03\x00\x05a", "truncated"),  # topic length past the packet
        (b"\x30\x04\x00\x01a", "truncated"),  # remaining length says one more byte
    ],
)
def test_bad_publishes_name_what_is_wrong(data: bytes, reason: str | None) -> None:
    if reason is None:
        assert mqtt.parse_publish(data) == ("a", b"", None, False)
        return
    with pytest.raises(CodecError) as caught:
        mqtt.parse_publish(data)
    assert caught.value.reason == reason
