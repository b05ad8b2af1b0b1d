"""The lean meter transport against a real mosquitto, a tiny fake broker, the 4G proxy
and the fleet runtime."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta, timezone

import aiomqtt
import pytest

from hes_sim.broker_address import BrokerAddress
from hes_sim.clock import SimClock
from hes_sim.errors import BrokerError
from hes_sim.events import EventBus
from hes_sim.meter_sim.fleet import Fleet, build_meters
from hes_sim.meter_sim.lean import lean_link_factory, loopback_sources
from hes_sim.meter_sim.meter import MeterKind
from hes_sim.meter_sim.network.link_model import Admission, Direction
from hes_sim.meter_sim.network.proxy import LinkProxy
from hes_sim.protocols import mqtt_codec as mqtt
from hes_sim.runner.broker import PrivateMosquitto

METER = "SP0000001"
STATE = f"mtr/v1/{METER}/state"
UP = f"mtr/v1/{METER}/up"
DOWN = f"mtr/v1/{METER}/down"


class Inbox:
    """What an aiomqtt subscriber (the head-end's side) receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._changed = asyncio.Event()

    async def run(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            self.messages.append((str(message.topic), payload))
            self._changed.set()

    def payloads(self, topic: str) -> list[bytes]:
        return [p for name, p in self.messages if name == topic]

    async def until(self, condition: Callable[[], bool], within_s: float = 10) -> None:
        async with asyncio.timeout(within_s):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


@contextlib.asynccontextmanager
async def head_end(
    broker: BrokerAddress, *topics: str
) -> AsyncIterator[tuple[aiomqtt.Client, Inbox]]:
    inbox = Inbox()
    async with aiomqtt.Client(broker.host, broker.port, identifier="test-hes") as client:
        for name in topics:
            await client.subscribe(name, qos=1)
        reader = asyncio.create_task(inbox.run(client), name="test:inbox")
        try:
            yield client, inbox
        finally:
            reader.cancel()
            await asyncio.wait([reader])


# ---------------------------------------------------------------- against mosquitto


async def test_a_link_publishes_qos1_and_announces_its_state(mosquitto: PrivateMosquitto) -> None:
    factory = lean_link_factory(mosquitto.address, keepalive_s=10, timeout_s=5)
    async with head_end(mosquitto.address, "mtr/v1/+/#") as (_hes, inbox):
        async with factory(METER) as link:
            assert 0 < link.connect_wall_s < 5
            for k in range(20):
                await link.send(b"push %d" % k)
            await inbox.until(lambda: len(inbox.payloads(UP)) == 20)
        await inbox.until(lambda: inbox.payloads(STATE) == [b"online", b"offline"])
    assert inbox.payloads(UP) == [b"push %d" % k for k in range(20)]
    # the state is retained, as the aiomqtt transport leaves it
    async with head_end(mosquitto.address, STATE) as (_hes, later):
        await later.until(lambda: later.payloads(STATE) == [b"offline"])
    assert factory.stats.connects == 1
    assert factory.stats.lost == 0
    assert not factory.keepalive.armed


async def test_a_link_receives_its_down_frames_in_order(mosquitto: PrivateMosquitto) -> None:
    factory = lean_link_factory(mosquitto.address, keepalive_s=10, timeout_s=5)
    async with head_end(mosquitto.address) as (hes, _inbox), factory(METER) as link:
        for k in range(5):
            await hes.publish(DOWN, b"request %d" % k, qos=1)
        frames = link.receive()
        assert [await anext(frames) for _ in range(5)] == [b"request %d" % k for k in range(5)]
        await hes.publish(f"mtr/v1/{METER}x/down", b"not mine", qos=1)
        await hes.publish(DOWN, b"last", qos=1)
        assert await anext(frames) == b"last"


async def test_keepalive_holds_an_idle_link_past_two_keepalives(
    mosquitto: PrivateMosquitto,
) -> None:
    """Two idle links with a 1 s keep-alive; the control one is taken off its wheel, so
    it never pings. The broker checks keep-alives on a coarse grid (mosquitto 2.0: some
    seconds), so the control's will is the sign that a check has passed; by then the
    pinging link must still be there."""
    pinging = lean_link_factory(mosquitto.address, keepalive_s=1, timeout_s=5)
    silent = lean_link_factory(mosquitto.address, keepalive_s=1, timeout_s=5)
    control_state = "mtr/v1/SP0000002/state"
    async with (
        head_end(mosquitto.address, STATE, control_state, UP) as (_hes, inbox),
        pinging(METER) as link,
        silent("SP0000002") as control,
    ):
        silent.keepalive.clear()
        started = time.monotonic()
        with pytest.raises(BrokerError, match="lost"):
            async with asyncio.timeout(20):
                await anext(control.receive())
        await inbox.until(lambda: inbox.payloads(control_state) == [b"online", b"offline"])
        assert time.monotonic() - started > 2  # past two keep-alives
        await link.send(b"still here")
        await inbox.until(lambda: inbox.payloads(UP) == [b"still here"])
        assert inbox.payloads(STATE) == [b"online"]  # its will was not published
        assert pinging.keepalive.pings >= 2
    assert pinging.keepalive.missed == 0
    assert pinging.stats.lost == 0


async def test_abandon_leaves_the_broker_to_publish_the_will(mosquitto: PrivateMosquitto) -> None:
    factory = lean_link_factory(mosquitto.address, keepalive_s=10, timeout_s=5)
    async with head_end(mosquitto.address, STATE) as (_hes, inbox):
        async with factory(METER) as link:
            await inbox.until(lambda: inbox.payloads(STATE) == [b"online"])
            link.abandon()
            with pytest.raises(StopAsyncIteration):
                await anext(link.receive())
        await inbox.until(lambda: inbox.payloads(STATE) == [b"online", b"offline"])
    assert factory.stats.lost == 0


async def test_a_broker_restart_is_reported_as_a_lost_link(mosquitto: PrivateMosquitto) -> None:
    factory = lean_link_factory(mosquitto.address, keepalive_s=10, timeout_s=5)
    async with factory(METER) as link:
        waiting = asyncio.ensure_future(anext(link.receive()))
        await mosquitto.restart()
        with pytest.raises(BrokerError, match="lost"):
            await waiting
        with pytest.raises(BrokerError, match="lost"):
            await link.send(b"after restart")
    # leaving a lost link is quiet: there is nobody left to say goodbye to
    assert factory.stats.lost == 1
    async with factory(METER) as again:  # the restarted broker takes the meter back
        await again.send(b"back")
    assert factory.stats.connects == 2


async def test_a_lean_fleet_connects_and_a_power_cut_fires_the_will(
    mosquitto: PrivateMosquitto,
) -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    meters = build_meters({MeterKind.SINGLE_PHASE: 5}, 1, ist)
    factory = lean_link_factory(mosquitto.address, keepalive_s=10, timeout_s=5)
    async with head_end(mosquitto.address, "mtr/v1/+/state") as (_hes, inbox):
        async with Fleet(
            meters,
            factory,
            EventBus(),
            seed=1,
            time_scale=60,
            push_randomisation_s=0,
            clock=SimClock(time.time(), 60),
        ) as fleet:
            async with asyncio.timeout(10):
                await fleet.wait_connected()
            states = [f"mtr/v1/{m.meter_id}/state" for m in meters]
            await inbox.until(lambda: all(inbox.payloads(s) == [b"online"] for s in states))
            assert fleet.power_off([meters[0].meter_id]) == 1
            await inbox.until(lambda: inbox.payloads(states[0]) == [b"online", b"offline"])
        await inbox.until(lambda: all(inbox.payloads(s)[-1] == b"offline" for s in states))
    assert factory.stats.connects == 5
    assert not factory.keepalive.armed


# ---------------------------------------------------------------- through the 4G proxy


@dataclass
class RadioModel:
    """Attaches everyone at once; ``broken`` meters' links become black holes."""

    broken: set[str] = field(default_factory=set)
    admitted: Counter[str] = field(default_factory=Counter)

    def admit(self, meter_id: str, now: float) -> Admission:
        self.admitted[meter_id] += 1
        return Admission(True, 0.0)

    def transit(self, meter_id: str, direction: Direction, size: int, now: float) -> float | None:
        return None if meter_id in self.broken else 0.0

    def released(self, meter_id: str, now: float) -> None:
        pass


async def test_through_the_proxy_a_black_holed_link_is_lost_by_keepalive(
    mosquitto: PrivateMosquitto,
) -> None:
    model = RadioModel()
    clock = SimClock(time.time(), 1)
    clock.start()
    async with LinkProxy(mosquitto.address, model, clock, EventBus()) as proxy:
        factory = lean_link_factory(proxy.address, keepalive_s=1, timeout_s=5)
        async with head_end(mosquitto.address, UP) as (_hes, inbox), factory(METER) as link:
            assert model.admitted == Counter({METER: 1})  # the proxy read our CONNECT
            await link.send(b"via 4G")
            await inbox.until(lambda: inbox.payloads(UP) == [b"via 4G"])
            model.broken.add(METER)
            with pytest.raises(BrokerError, match="keepalive"):
                async with asyncio.timeout(5):
                    await anext(link.receive())
        assert factory.stats.errors["keepalive"] == 1
        assert proxy.bad_handshakes == 0


# ---------------------------------------------------------------- against a fake broker


class FakeBroker(asyncio.Protocol):
    """One connection of :class:`FakeServer`: answers as it is told, records the rest."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.peers.append(transport.get_extra_info("peername")[0])
        self.server.connections.append(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (size := mqtt.packet_size(self.buffer, 1 << 20)) and size <= len(self.buffer):
            packet = mqtt.decode(self.buffer[:size])
            self.buffer = self.buffer[size:]
            self.server.received.append(packet)
            self.answer(packet)

    def answer(self, packet: mqtt.Packet) -> None:
        assert self.transport is not None
        match packet:
            case mqtt.Connect():
                if self.server.connack is not None:
                    self.transport.write(self.server.connack)
            case mqtt.Subscribe(packet_id=packet_id):
                self.transport.write(mqtt.encode(mqtt.SubAck(packet_id, (1,))))
            case mqtt.Publish(packet_id=packet_id) if packet_id is not None:
                self.transport.write(mqtt.encode(mqtt.PubAck(packet_id)))
            case mqtt.PingReq() if self.server.answer_pings:
                self.transport.write(mqtt.PINGRESP)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


@dataclass
class FakeServer:
    connack: bytes | None = b"\x20\x02\x00\x00"
    answer_pings: bool = True
    received: list[mqtt.Packet] = field(default_factory=list)
    connections: list[FakeBroker] = field(default_factory=list)
    peers: list[str] = field(default_factory=list)
    address: BrokerAddress = field(default_factory=lambda: BrokerAddress("127.0.0.1", 0))

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[FakeServer]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: FakeBroker(self), "127.0.0.1", 0)
        self.address = BrokerAddress("127.0.0.1", server.sockets[0].getsockname()[1])
        try:
            yield self
        finally:
            server.close()
            for connection in self.connections:
                if connection.transport is not None:
                    connection.transport.abort()
            await server.wait_closed()

    def send(self, index: int, data: bytes) -> None:
        transport = self.connections[index].transport
        assert transport is not None
        transport.write(data)


async def test_a_malformed_packet_ends_that_link_only(caplog: pytest.LogCaptureFixture) -> None:
    async with FakeServer().serving() as fake:
        factory = lean_link_factory(fake.address, keepalive_s=10, timeout_s=5)
        async with factory("SP0000001") as bad, factory("SP0000002") as good:
            fake.send(0, b"\xf0\x00garbage")
            with pytest.raises(BrokerError, match="malformed"):
                await anext(bad.receive())
            await good.send(b"unaffected")
            fake.send(1, mqtt.encode(mqtt.Publish("mtr/v1/SP0000002/down", b"hi", 1, 9)))
            assert await anext(good.receive()) == b"hi"
    assert factory.stats.errors == Counter({"malformed": 1})
    assert factory.stats.lost == 1


@pytest.mark.parametrize(
    ("connack", "message"),
    [
        (b"\x20\x02\x00\x05", "refused .* not_authorized \\(5\\)"),
        (b"\x20\x02\x00\x02", "refused .* identifier_rejected"),
        (b"\x20\x03\x00\x00\x00", "could not connect .* malformed"),  # CONNACK too long
        (b"\x90\x03\x00\x01\x01", "could not connect .* protocol"),  # SUBACK before CONNACK
    ],
)
async def test_a_bad_connack_is_a_clear_broker_error(connack: bytes, message: str) -> None:
    async with FakeServer(connack=connack).serving() as fake:
        factory = lean_link_factory(fake.address, keepalive_s=10, timeout_s=5)
        with pytest.raises(BrokerError, match=message):
            async with factory(METER):
                pass
    assert factory.stats.connects == 0
    assert not factory.keepalive.armed


async def test_no_connack_is_a_timeout() -> None:
    async with FakeServer(connack=None).serving() as fake:
        factory = lean_link_factory(fake.address, keepalive_s=10, timeout_s=0.3)
        started = time.monotonic()
        with pytest.raises(BrokerError, match=r"no CONNACK .* within 0.3 s"):
            async with factory(METER):
                pass
        assert time.monotonic() - started < 2
    assert factory.stats.connect_failures == 1


async def test_nothing_listening_is_a_clear_broker_error() -> None:
    async with FakeServer().serving() as fake:
        address = fake.address
    factory = lean_link_factory(address, keepalive_s=10, timeout_s=5)
    with pytest.raises(BrokerError, match="could not connect"):
        async with factory(METER):
            pass


async def test_a_missing_pingresp_loses_the_link() -> None:
    async with FakeServer(answer_pings=False).serving() as fake:
        factory = lean_link_factory(fake.address, keepalive_s=1, timeout_s=5)
        async with factory(METER) as link:
            with pytest.raises(BrokerError, match="no PINGRESP"):
                async with asyncio.timeout(5):
                    await anext(link.receive())
    assert mqtt.PingReq() in fake.received
    assert factory.stats.errors == Counter({"keepalive": 1})


async def test_connections_are_spread_over_the_source_addresses() -> None:
    async with FakeServer().serving() as fake:
        factory = lean_link_factory(
            fake.address, keepalive_s=10, timeout_s=5, source_hosts=loopback_sources(3)
        )
        async with contextlib.AsyncExitStack() as stack:
            for n in range(6):
                await stack.enter_async_context(factory(f"SP{n:07d}"))
    assert Counter(fake.peers) == Counter({"127.0.0.1": 2, "127.0.0.2": 2, "127.0.0.3": 2})
    connects = [p for p in fake.received if isinstance(p, mqtt.Connect)]
    assert {(c.keepalive_s, c.clean_session) for c in connects} == {(10, True)}
    assert all(
        c.will == mqtt.Will(f"mtr/v1/{c.client_id}/state", b"offline", 1, True) for c in connects
    )
