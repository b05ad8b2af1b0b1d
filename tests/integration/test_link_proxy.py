"""The link proxy between meters and a real mosquitto, driven by fake radio models."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiomqtt
import pytest
from structlog.testing import capture_logs

from hes_sim.broker_address import BrokerAddress
from hes_sim.clock import SimClock
from hes_sim.events import AttachRejected, EventBus, LinkAttached, LinkBlackHoled
from hes_sim.meter_sim.network.link_model import Admission, Direction, RejectReason
from hes_sim.meter_sim.network.proxy import LinkProxy
from hes_sim.runner.broker import PrivateMosquitto

from .conftest import EventWaiter

Transit = Callable[[str, Direction, int], float | None]


@dataclass
class FakeModel:
    """A LinkModel whose answers the test sets, recording what the proxy asked."""

    transit_s: Transit = lambda _meter, _direction, _size: 0.0
    attach_s: float = 0.0
    refuse: dict[str, RejectReason] = field(default_factory=dict)
    admitted: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    releases: dict[str, list[float]] = field(default_factory=dict)
    chunks: list[tuple[str, Direction, int, float | None]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def until(self, condition: Callable[[], bool], within_s: float = 10) -> None:
        async with asyncio.timeout(within_s):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    def admit(self, meter_id: str, now: float) -> Admission:
        self._changed.set()
        if meter_id in self.refuse:
            self.refused[meter_id] += 1
            return Admission(False, self.attach_s, self.refuse[meter_id])
        self.admitted[meter_id] += 1
        return Admission(True, self.attach_s)

    def transit(self, meter_id: str, direction: Direction, size: int, now: float) -> float | None:
        delay = self.transit_s(meter_id, direction, size)
        self.chunks.append((meter_id, direction, size, delay))
        return delay

    def released(self, meter_id: str, now: float) -> None:
        self.releases.setdefault(meter_id, []).append(now)
        self._changed.set()

    def assert_released_once_each(self) -> None:
        assert {m: len(t) for m, t in self.releases.items()} == dict.fromkeys(self.admitted, 1)


class Inbox:
    """Messages a subscriber receives, with their arrival time, and a way to wait for some."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, str, bytes]] = []
        self._changed = asyncio.Event()

    async def run(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            self.messages.append((time.monotonic(), str(message.topic), payload))
            self._changed.set()

    async def until(self, condition: Callable[[], bool], within_s: float = 10) -> None:
        async with asyncio.timeout(within_s):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    def payloads(self, topic: str) -> list[bytes]:
        return [p for _t, name, p in self.messages if name == topic]

    def arrival(self, topic: str, payload: bytes) -> float:
        return next(t for t, name, p in self.messages if name == topic and p == payload)


def client(
    address: BrokerAddress,
    meter_id: str,
    *,
    keepalive: int = 60,
    v5: bool = False,
    timeout: float = 10,
) -> aiomqtt.Client:
    return aiomqtt.Client(
        address.host,
        address.port,
        identifier=meter_id,
        will=aiomqtt.Will(f"will/{meter_id}", b"gone", qos=1),
        keepalive=keepalive,
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        timeout=timeout,
    )


@contextlib.asynccontextmanager
async def connected(mqtt: aiomqtt.Client) -> AsyncIterator[aiomqtt.Client]:
    """A connected client whose own goodbye may fail (its link may be dead by then)."""
    await mqtt.__aenter__()
    try:
        yield mqtt
    finally:
        with contextlib.suppress(aiomqtt.MqttError):
            await mqtt.__aexit__(None, None, None)
        # aiomqtt leaves a keep-alive timeout in a future nobody reads once disconnected
        lost = mqtt._disconnected
        if lost.done() and not lost.cancelled():
            lost.exception()


@contextlib.asynccontextmanager
async def subscribed(mqtt: aiomqtt.Client, *topics: str) -> AsyncIterator[Inbox]:
    inbox = Inbox()
    async with connected(mqtt):
        for name in topics:
            await mqtt.subscribe(name, qos=1)
        reader = asyncio.create_task(inbox.run(mqtt), name="test:inbox")
        try:
            yield inbox
        finally:
            reader.cancel()
            await asyncio.wait([reader])


def attached(events: EventWaiter) -> list[LinkAttached]:
    return [e for e in events.events if isinstance(e, LinkAttached)]


def started_clock(time_scale: float = 1.0) -> SimClock:
    clock = SimClock(time.time(), time_scale)
    clock.start()
    return clock


async def round_trip(sender: aiomqtt.Client, inbox: Inbox, topic: str, payload: bytes) -> float:
    """Wall seconds from publishing to the subscriber's receipt."""
    started = time.monotonic()
    await sender.publish(topic, payload, qos=1)
    await inbox.until(lambda: payload in inbox.payloads(topic))
    return inbox.arrival(topic, payload) - started


async def test_clients_work_through_the_proxy_under_their_own_ids(
    mosquitto: PrivateMosquitto,
) -> None:
    model = FakeModel()
    bus = EventBus()
    events = EventWaiter(bus)
    async with LinkProxy(mosquitto.address, model, started_clock(), bus) as proxy:
        assert proxy.address.host == "127.0.0.1"
        assert proxy.address.port not in (0, mosquitto.address.port)
        async with (
            subscribed(client(proxy.address, "SP0000001", v5=True), "data/#") as inbox,
            connected(client(proxy.address, "SP0000002")) as sender,
        ):
            await round_trip(sender, inbox, "data/SP0000002", b"hello")
            assert model.admitted == Counter({"SP0000001": 1, "SP0000002": 1})
            assert {e.meter_id for e in attached(events)} == {"SP0000001", "SP0000002"}
            assert {d for _m, d, _s, _d in model.chunks} == {Direction.UP, Direction.DOWN}
            # the broker knows the sender as SP0000002: the same id connecting directly
            # takes the session over and the broker closes the proxied connection
            async with connected(client(mosquitto.address, "SP0000002")):
                await model.until(lambda: "SP0000002" in model.releases)
            assert proxy.links_of("SP0000002") == 0
            assert proxy.links_of("SP0000001") == 1
    model.assert_released_once_each()
    assert proxy.bad_handshakes == 0


async def test_model_latency_lengthens_a_round_trip(mosquitto: PrivateMosquitto) -> None:
    async def median_round_trip(model: FakeModel, clock: SimClock) -> float:
        async with (
            LinkProxy(mosquitto.address, model, clock, EventBus()) as proxy,
            subscribed(client(proxy.address, "SUB"), "rt/#") as inbox,
            connected(client(proxy.address, "PUB")) as sender,
        ):
            trips = [await round_trip(sender, inbox, "rt/x", b"%d" % i) for i in range(5)]
        return statistics.median(trips)

    hop_sim_s = 0.5  # at x10: 50 ms of wall time each way
    slow = FakeModel(transit_s=lambda *_: hop_sim_s)
    baseline = await median_round_trip(FakeModel(), started_clock(10))
    delayed = await median_round_trip(slow, started_clock(10))
    # PUBLISH up from the sender, then down to the subscriber: two hops at least
    assert delayed >= 2 * hop_sim_s / 10 * 0.95
    assert delayed > 5 * baseline


async def test_random_chunk_delays_keep_every_message_in_order(
    mosquitto: PrivateMosquitto,
) -> None:
    rng = random.Random(7)
    model = FakeModel(transit_s=lambda *_: rng.choice([0.0, rng.uniform(0, 0.03)]))
    async with (
        LinkProxy(mosquitto.address, model, started_clock(), EventBus()) as proxy,
        subscribed(client(proxy.address, "SUB"), "seq") as inbox,
        connected(client(proxy.address, "PUB")) as sender,
    ):
        sent = [b"%04d" % i for i in range(200)]
        await asyncio.gather(*(sender.publish("seq", p, qos=1) for p in sent))
        await inbox.until(lambda: len(inbox.payloads("seq")) >= len(sent))
        assert inbox.payloads("seq") == sent
    # order was at stake: chunk after chunk was given less delay than the one before it
    for meter, direction in (("PUB", Direction.UP), ("SUB", Direction.DOWN)):
        delays = [d or 0.0 for m, w, _s, d in model.chunks if (m, w) == (meter, direction)]
        assert sum(1 for a, b in itertools.pairwise(delays) if b < a) >= 3
    model.assert_released_once_each()


Kill = Callable[[LinkProxy, aiomqtt.Client], Awaitable[None]]
KEEPALIVE_S = 1
# mosquitto 2.0.11 looks for expired keep-alives in a sweep every 5 to 6 s (later versions
# check every second), so an expired client may wait up to one sweep for its will
BROKER_SWEEP_S = 6.0


async def _will_after_black_hole(
    mosquitto: PrivateMosquitto, kill: Kill, *, goodbye_at_once: bool
) -> None:
    """A meter's link dies right after a message the broker acknowledged: its will must
    come from keep-alive expiry (1.5 x keep-alive at mosquitto), and only for that meter."""
    dead: set[str] = set()
    model = FakeModel(transit_s=lambda meter, *_: None if meter in dead else 0.0)
    clock = started_clock()
    bus = EventBus()
    events = EventWaiter(bus)
    async with (
        LinkProxy(mosquitto.address, model, clock, bus) as proxy,
        subscribed(client(mosquitto.address, "WATCH"), "will/#", "data/#") as inbox,
        connected(client(proxy.address, "SURVIVOR", keepalive=KEEPALIVE_S)) as survivor,
    ):
        victim = client(proxy.address, "VICTIM", keepalive=KEEPALIVE_S)
        will_came = lambda: inbox.payloads("will/VICTIM") == [b"gone"]  # noqa: E731
        async with connected(victim):
            await round_trip(victim, inbox, "data/VICTIM", b"last words")
            cut_at, cut_mono = clock.now(), time.monotonic()
            dead.add("VICTIM")
            await kill(proxy, victim)
            await events.until(lambda _: len(events.of(LinkBlackHoled)) == 1, within_s=2)
            if not goodbye_at_once:  # the meter's client stays, pinging into the void
                await inbox.until(will_came, within_s=15)
        await inbox.until(will_came, within_s=15)
        will_after = inbox.arrival("will/VICTIM", b"gone") - cut_mono
        assert KEEPALIVE_S < will_after < 2 * KEEPALIVE_S + BROKER_SWEEP_S + 1
        await model.until(lambda: "VICTIM" in model.releases)
        # the proxy held the broker side open until the broker gave up on it
        assert model.releases["VICTIM"][0] - cut_at > KEEPALIVE_S
        assert proxy.links_of("VICTIM") == 0
        # the survivor, on the same keep-alive, is still there and its will never came
        await round_trip(survivor, inbox, "data/SURVIVOR", b"still here")
        assert inbox.payloads("will/SURVIVOR") == []
    assert events.of(LinkBlackHoled) == [LinkBlackHoled("VICTIM")]
    model.assert_released_once_each()


async def test_a_black_holed_link_fires_the_will_only_after_keepalive_expiry(
    mosquitto: PrivateMosquitto,
) -> None:
    async def lose_next_chunk(_proxy: LinkProxy, victim: aiomqtt.Client) -> None:
        # the model answers None for the victim's next chunk: this publish
        await victim.publish("data/VICTIM", b"lost", qos=0)

    await _will_after_black_hole(mosquitto, lose_next_chunk, goodbye_at_once=False)


async def test_cut_makes_even_a_clean_disconnect_vanish(mosquitto: PrivateMosquitto) -> None:
    async def power_loss(proxy: LinkProxy, _victim: aiomqtt.Client) -> None:
        assert proxy.cut("VICTIM") == 1
        # leaving `connected` next sends DISCONNECT and closes: neither reaches the broker

    await _will_after_black_hole(mosquitto, power_loss, goodbye_at_once=True)


async def test_a_refused_attach_fails_the_connect_and_a_later_one_succeeds(
    mosquitto: PrivateMosquitto,
) -> None:
    model = FakeModel(attach_s=0.3, refuse={"SP0000001": RejectReason.CONGESTED})
    bus = EventBus()
    events = EventWaiter(bus)
    async with LinkProxy(mosquitto.address, model, started_clock(), bus) as proxy:
        started = time.monotonic()
        with pytest.raises(aiomqtt.MqttError):
            async with client(proxy.address, "SP0000001", timeout=1):
                pass
        await events.until(lambda _: bool(events.of(AttachRejected)))
        assert events.of(AttachRejected) == [AttachRejected("SP0000001", "congested")]
        assert time.monotonic() - started >= 0.3  # refused after the attach delay, not before
        assert events.of(LinkAttached) == []
        del model.refuse["SP0000001"]
        async with (
            subscribed(client(proxy.address, "SP0000001"), "x") as inbox,
            connected(client(proxy.address, "SP0000002")) as sender,
        ):
            await round_trip(sender, inbox, "x", b"ok")
        assert {e.meter_id for e in attached(events)} == {"SP0000001", "SP0000002"}
        assert all(e.attach_s >= 0.3 for e in attached(events))
    assert model.refused == Counter({"SP0000001": 1})
    model.assert_released_once_each()  # the refused connection held no place


async def test_garbage_closes_only_that_connection(mosquitto: PrivateMosquitto) -> None:
    model = FakeModel()
    async with (
        LinkProxy(
            mosquitto.address, model, started_clock(), EventBus(), handshake_timeout_s=0.5
        ) as proxy,
        subscribed(client(proxy.address, "SUB"), "x") as inbox,
    ):
        bad = [
            ("not_connect", b"GET / HTTP/1.1\r\nHost: meter\r\n\r\n"),
            ("not_connect", b"\xc0\x00"),  # a PINGREQ first
            ("oversize", b"\x10\xff\xff\xff\x7f"),
            ("protocol_level", b"\x10\x0d\x00\x04MQTT\x03\x02\x00\x3c\x00\x01A"),
            ("no_client_id", b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"),
            ("timeout", b"\x10\x20\x00\x04MQTT"),  # half a CONNECT, then silence
        ]
        for _reason, payload in bad:
            reader, writer = await asyncio.open_connection(proxy.address.host, proxy.address.port)
            writer.write(payload)
            async with asyncio.timeout(5):
                with contextlib.suppress(ConnectionResetError):
                    assert await reader.read() == b""  # the proxy closed it
            writer.close()
            await writer.wait_closed()
        assert proxy.bad_handshake_reasons == Counter(reason for reason, _p in bad)
        assert proxy.bad_handshakes == len(bad)
        async with connected(client(proxy.address, "PUB")) as sender:
            await round_trip(sender, inbox, "x", b"still serving")
    assert set(model.admitted) == {"SUB", "PUB"}
    model.assert_released_once_each()


async def test_released_once_per_admitted_connection_however_it_ends(
    mosquitto: PrivateMosquitto,
) -> None:
    model = FakeModel()
    with capture_logs() as logs:
        proxy = await _released_once_scenario(mosquitto, model)
    # the attach delay did not hold the shutdown: closing the meter's socket ended it
    assert "proxy_shutdown_cancelling" not in [entry["event"] for entry in logs]
    assert set(model.admitted) == {"CLEAN", "TAKEN", "IMPATIENT", "LINGERING", "STUCK"}
    model.assert_released_once_each()
    assert proxy.links_open == 0


async def _released_once_scenario(mosquitto: PrivateMosquitto, model: FakeModel) -> LinkProxy:
    async with LinkProxy(mosquitto.address, model, started_clock(), EventBus()) as proxy:
        # a clean goodbye
        async with connected(client(proxy.address, "CLEAN")):
            pass
        await model.until(lambda: "CLEAN" in model.releases)
        # the broker drops it: a takeover by the same id, connecting directly
        async with (
            connected(client(proxy.address, "TAKEN")),
            connected(client(mosquitto.address, "TAKEN")),
        ):
            await model.until(lambda: "TAKEN" in model.releases)
        # the meter gives up during a long attach (aiomqtt would keep its socket open)
        model.attach_s = 30
        reader, writer = await asyncio.open_connection(proxy.address.host, proxy.address.port)
        writer.write(b"\x10\x15\x00\x04MQTT\x04\x02\x00\x3c\x00\x09IMPATIENT")
        await model.until(lambda: "IMPATIENT" in model.admitted)
        writer.close()
        await writer.wait_closed()
        await model.until(lambda: "IMPATIENT" in model.releases)
        assert await reader.read() == b""
        # still connected when the proxy shuts down, and one still attaching then
        model.attach_s = 0
        lingering = client(proxy.address, "LINGERING")
        await lingering.__aenter__()
        model.attach_s = 30
        stuck_reader, stuck = await asyncio.open_connection(proxy.address.host, proxy.address.port)
        stuck.write(b"\x10\x11\x00\x04MQTT\x04\x02\x00\x3c\x00\x05STUCK")
        await model.until(lambda: "STUCK" in model.admitted)
        assert not {"LINGERING", "STUCK"} & set(model.releases)
    assert await stuck_reader.read() == b""
    stuck.close()
    await stuck.wait_closed()
    with contextlib.suppress(aiomqtt.MqttError):
        await lingering.__aexit__(None, None, None)
    return proxy


def test_refuses_a_non_loopback_host() -> None:
    with pytest.raises(ValueError, match="loopback"):
        LinkProxy(
            BrokerAddress("127.0.0.1", 1883),
            FakeModel(),
            started_clock(),
            EventBus(),
            host="0.0.0.0",  # noqa: S104 -- the address being refused
        )
