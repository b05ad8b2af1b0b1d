"""The head-end's MQTT link, fed bytes as a socket would split them."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hes_sim.errors import BrokerError
from hes_sim.hes.broker_link import BrokerLink
from hes_sim.protocols import mqtt_codec as mqtt
from hes_sim.protocols.mqtt_codec import ConnAck, Publish


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.aborted = False
        self.reading = True
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def abort(self) -> None:
        self.aborted = self._closing = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


def _link() -> tuple[BrokerLink, FakeTransport, list[tuple[str, bytes, bool]]]:
    received: list[tuple[str, bytes, bool]] = []
    link = BrokerLink(lambda t, p, r: received.append((t, p, r)), "test broker")
    transport = FakeTransport()
    link.connection_made(transport)
    return link, transport, received


PUBLISHES = [
    Publish("mtr/v1/SP0000001/up", b"\x00\x01" * 30, 1, 7),
    Publish("mtr/v1/SP0000002/state", b"online", 1, 8, retain=True),
    Publish("mtr/v1/SP0000003/up", b"", 0),
]
STREAM = b"".join(mqtt.encode(p) for p in PUBLISHES)


@settings(max_examples=200)
@given(st.lists(st.integers(1, len(STREAM) - 1), max_size=8).map(sorted))
async def test_messages_split_anywhere_arrive_whole_and_are_acknowledged(cuts: list[int]) -> None:
    link, transport, received = _link()
    edges = [0, *cuts, len(STREAM)]
    for start, end in itertools.pairwise(edges):
        link.data_received(STREAM[start:end])
    assert received == [(p.topic, p.payload, p.retain) for p in PUBLISHES]
    acks = b"".join(transport.written)
    assert acks == mqtt.encode_puback(7) + mqtt.encode_puback(8)  # none for QoS 0
    assert not transport.aborted


async def test_a_bad_packet_ends_the_link_with_the_reason() -> None:
    link, transport, received = _link()
    link.data_received(mqtt.encode(PUBLISHES[0]) + b"\x00\x00")  # packet type 0 is reserved
    assert received == [(PUBLISHES[0].topic, PUBLISHES[0].payload, False)]
    assert transport.aborted
    with pytest.raises(BrokerError, match="bad packet"):
        await link.serve(keepalive_s=30)


async def test_an_unexpected_packet_ends_the_link() -> None:
    link, transport, _ = _link()
    link.data_received(mqtt.encode(ConnAck(0)))  # no CONNECT is waiting for one
    assert transport.aborted


async def test_publish_waits_for_its_puback_and_fails_when_the_link_drops() -> None:
    link, transport, _ = _link()
    first = asyncio.create_task(link.publish("mtr/v1/SP0000001/down", b"request"))
    await asyncio.sleep(0)
    packet = mqtt.decode(transport.written[-1])
    assert isinstance(packet, Publish)
    assert packet.qos == 1
    assert packet.packet_id is not None
    link.data_received(mqtt.encode_puback(packet.packet_id))
    await first
    second = asyncio.create_task(link.publish("mtr/v1/SP0000001/down", b"again"))
    await asyncio.sleep(0)
    link.connection_lost(ConnectionResetError("reset"))
    with pytest.raises(BrokerError, match="reset"):
        await second


async def test_pause_and_resume_reach_the_socket() -> None:
    link, transport, _ = _link()
    link.pause()
    assert not transport.reading
    link.resume()
    assert transport.reading
