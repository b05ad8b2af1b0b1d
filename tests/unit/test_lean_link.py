"""One lean link's byte stream, against a fake transport (no socket, no broker)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from hes_sim.broker_address import BrokerAddress
from hes_sim.errors import BrokerError
from hes_sim.meter_sim.lean import LeanLink, LeanLinkFactory, LeanOptions
from hes_sim.protocols import mqtt_codec as mqtt
from hes_sim.protocols.mqtt_codec import ConnAck, PubAck, Publish, Subscribe

DOWN = "mtr/v1/SP0000001/down"
UP = "mtr/v1/SP0000001/up"


class FakeTransport(asyncio.Transport):
    def __init__(self, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.written = bytearray()
        self.reading = True
        self.aborted = False
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def packets(self) -> list[mqtt.Packet]:
        found, data = [], bytes(self.written)
        while data:
            size = mqtt.packet_size(data, len(data))
            assert size is not None
            found.append(mqtt.decode(data[:size]))
            data = data[size:]
        self.written.clear()
        return found

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.aborted = self.closing = True
        asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def close(self) -> None:
        self.closing = True
        asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)


def open_link(**options: int) -> tuple[LeanLinkFactory, LeanLink, FakeTransport]:
    factory = LeanLinkFactory(BrokerAddress("127.0.0.1", 1), LeanOptions(**options))
    link = factory("SP0000001")
    transport = FakeTransport(link)
    link.connection_made(transport)
    return factory, link, transport


def down(packet_id: int, frame: bytes) -> bytes:
    return mqtt.encode(Publish(DOWN, frame, 1, packet_id))


def one_byte_at_a_time(data: bytes) -> Iterator[bytes]:
    return (data[i : i + 1] for i in range(len(data)))


async def test_down_frames_split_anyhow_arrive_in_order_each_acked_when_taken() -> None:
    _factory, link, transport = open_link()
    for chunk in one_byte_at_a_time(down(7, b"first") + down(8, b"second")):
        link.data_received(chunk)
    assert transport.packets() == []  # nothing acknowledged before the meter takes it
    frames = link.receive()
    assert await anext(frames) == b"first"
    assert transport.packets() == [PubAck(7)]
    assert await anext(frames) == b"second"
    assert transport.packets() == [PubAck(8)]


async def test_a_waiting_reader_gets_the_frame_as_it_arrives() -> None:
    _factory, link, transport = open_link()
    waiting = asyncio.ensure_future(anext(link.receive()))
    await asyncio.sleep(0)  # the reader is parked on its future
    link.data_received(down(1, b"request"))
    assert await waiting == b"request"
    assert transport.packets() == [PubAck(1)]


async def test_a_full_queue_pauses_reading_and_keeps_the_rest_unparsed() -> None:
    _factory, link, transport = open_link(max_queued=4)
    link.data_received(b"".join(down(i, b"%d" % i) for i in range(1, 11)))
    assert not transport.reading
    frames = link.receive()
    taken = [await anext(frames) for _ in range(10)]
    assert taken == [b"%d" % i for i in range(1, 11)]
    assert transport.reading
    assert [p.packet_id for p in transport.packets() if isinstance(p, PubAck)] == list(range(1, 11))


async def test_send_waits_for_its_puback_within_a_bounded_window() -> None:
    _factory, link, transport = open_link(max_inflight=2)
    sends = [asyncio.ensure_future(link.send(b"%d" % i)) for i in range(3)]
    await asyncio.sleep(0)
    published = transport.packets()
    assert [p.payload for p in published if isinstance(p, Publish)] == [b"0", b"1"]
    assert all(p.topic == UP and p.qos == 1 for p in published if isinstance(p, Publish))
    link.data_received(mqtt.encode(PubAck(1)))
    await sends[0]
    await asyncio.sleep(0)
    third = transport.packets()
    assert [p.payload for p in third if isinstance(p, Publish)] == [b"2"]
    link.data_received(mqtt.encode(PubAck(2)) + mqtt.encode(PubAck(3)))
    await asyncio.gather(*sends)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xf0\x00", "malformed"),  # reserved packet type
        (b"\x30\xff\xff\xff\x7f", "malformed"),  # a 256 MiB packet announced
        (mqtt.encode(ConnAck(0)), "protocol"),  # a second CONNACK
        (mqtt.encode(Subscribe(1, (("#", 0),))), "protocol"),  # a client-only packet
    ],
)
async def test_a_bad_packet_ends_the_link_counted_and_logged(data: bytes, reason: str) -> None:
    factory, link, transport = open_link()
    frames = link.receive()
    waiting = asyncio.ensure_future(anext(frames))
    sending = asyncio.ensure_future(link.send(b"push"))
    await asyncio.sleep(0)
    with capture_logs() as logs:
        link.data_received(down(1, b"ok") + data + down(2, b"never seen"))
    assert await waiting == b"ok"
    with pytest.raises(BrokerError, match=reason):
        await sending
    with pytest.raises(BrokerError, match=reason):
        await anext(frames)
    assert transport.aborted
    assert factory.stats.errors[reason] == 1
    assert factory.stats.lost == 1
    assert [(e["event"], e["meter_id"], e["reason"]) for e in logs] == [
        ("lean_link_error", "SP0000001", reason)
    ]
    await asyncio.sleep(0)  # connection_lost runs


async def test_abandon_drops_the_socket_without_a_goodbye_and_ends_receive_quietly() -> None:
    factory, link, transport = open_link()
    frames = link.receive()
    waiting = asyncio.ensure_future(anext(frames))
    await asyncio.sleep(0)
    link.abandon()
    with pytest.raises(StopAsyncIteration):
        await waiting
    assert transport.aborted
    assert transport.packets() == []  # no DISCONNECT: the broker will publish the will
    with pytest.raises(BrokerError, match="closed"):
        await link.send(b"late")
    assert factory.stats.lost == 0
    await asyncio.sleep(0)


async def test_the_broker_closing_the_connection_is_a_lost_link() -> None:
    factory, link, _transport = open_link()
    waiting = asyncio.ensure_future(anext(link.receive()))
    await asyncio.sleep(0)
    link.connection_lost(ConnectionResetError("reset by peer"))
    with pytest.raises(BrokerError, match="reset by peer"):
        await waiting
    assert factory.stats.lost == 1


async def test_a_pingresp_clears_the_pending_ping() -> None:
    _factory, link, transport = open_link()
    link.send_ping(123.0)
    assert transport.packets() == [mqtt.PingReq()]
    assert link.ping_sent_at == link.last_sent == 123.0
    link.data_received(mqtt.PINGRESP)
    assert link.ping_sent_at is None


def test_an_idle_link_is_small() -> None:
    # no __dict__: every attribute is a slot, most of them None while idle
    link = LeanLinkFactory(BrokerAddress("127.0.0.1", 1))("SP0000001")
    assert not hasattr(link, "__dict__")
