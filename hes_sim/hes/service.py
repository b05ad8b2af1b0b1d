"""The head-end process's long-lived part: MQTT subscription, ingest and metrics.

An async context manager owning a TaskGroup with named tasks: ``hes:mqtt:{n}`` reads
broker n (and reconnects with jittered back-off when it vanishes) and ``hes:ingest``
decodes and stores in batches. A fleet spread over several brokers is read from all of
them; a request goes out through the broker its meter was last heard on. Shutdown is
two-phase: stop reading, let ingest drain the queue for a grace period, then cancel.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import CollectorRegistry

from hes_sim.backoff import Backoff
from hes_sim.broker_address import BrokerAddress
from hes_sim.clock import Clock
from hes_sim.errors import BrokerError, CodecError
from hes_sim.events import (
    DecodeFailed,
    EventBus,
    HeadEndSubscribed,
    LateAnswer,
    MeterOffline,
    MeterOnline,
)
from hes_sim.hes.ingest import InboundPush, Ingest, PushPolicy
from hes_sim.hes.metrics import BusinessMetrics, HesMetrics
from hes_sim.hes.presence import MeterPresence
from hes_sim.hes.store import ReadStore
from hes_sim.http_metrics import MetricsServer
from hes_sim.protocols import topics, wrapper
from hes_sim.protocols.topics import Channel, MeterState

log = structlog.get_logger(__name__)

SESSION_EXPIRY_S = 3600  # the broker keeps our QoS 1 backlog this long across a reconnect
LATE_ANSWER_WINDOW = 4.0  # an answer later than four timeouts is taken as never coming


@dataclass(frozen=True, slots=True)
class SilencePolicy:
    threshold_s: float  # simulated seconds without a message before a meter counts offline
    check_every_wall_s: float


class HeadEnd:
    def __init__(
        self,
        broker: BrokerAddress | Sequence[BrokerAddress],
        store: ReadStore,
        clock: Clock,
        bus: EventBus,
        *,
        policy: PushPolicy | None = None,
        client_id: str = "hes-ingest-1",
        metrics_host: str = "127.0.0.1",
        metrics_port: int = 0,
        queue_size: int = 20_000,
        batch_size: int = 500,
        shutdown_grace_s: float = 10.0,
        silence: SilencePolicy | None = None,
    ) -> None:
        self._brokers = [broker] if isinstance(broker, BrokerAddress) else list(broker)
        if not self._brokers:
            raise ValueError("a head-end needs a broker")
        self._clock = clock
        self._bus = bus
        self._client_id = client_id
        self._batch_size = batch_size
        self._grace_s = shutdown_grace_s
        self._silence = silence  # None: trust the state topic and last will only
        self._queue: asyncio.Queue[InboundPush] = asyncio.Queue(maxsize=queue_size)
        self._ingest = Ingest(store, clock, bus, policy)
        self.presence = MeterPresence(clock)
        self.registry = CollectorRegistry()
        bus.subscribe(BusinessMetrics(self.registry))
        bus.subscribe(
            HesMetrics(
                self.registry,
                queue_depth=self._queue.qsize,
                meters_online=lambda: self.presence.online,
            )
        )
        self.subscribed = asyncio.Event()
        self.metrics = MetricsServer(
            self.registry, metrics_host, metrics_port, healthy=self.subscribed.is_set
        )
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[int, aiomqtt.Client] = {}  # by broker index, while connected
        self._broker_of: dict[str, int] = {}  # meter -> the broker it was last heard on
        # one outstanding request per meter: its future, removed when the exchange ends
        self._waiting: dict[str, asyncio.Future[bytes]] = {}
        # answers still owed for requests that timed out, per meter: until when (monotonic)
        # one is taken for the late one, not for the answer to the next request
        self._owed: dict[str, deque[float]] = {}
        self._readers: list[asyncio.Task[None]] = []
        self._writer: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self._stack.enter_async_context(self.metrics)
        group = await self._stack.enter_async_context(asyncio.TaskGroup())
        self._readers = [
            group.create_task(self._read_broker(index), name=f"hes:mqtt:{index}")
            for index in range(len(self._brokers))
        ]
        self._writer = group.create_task(self._ingest_loop(), name="hes:ingest")
        if self._silence is not None:
            self._sweeper = group.create_task(self._sweep(self._silence), name="hes:silence")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for reader in self._readers:
            reader.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._grace_s):
                await self.drained()
        for task in (self._writer, self._sweeper):
            if task is not None:
                task.cancel()
        await self._stack.__aexit__(exc_type, exc, tb)

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    async def drained(self) -> None:
        """Until every message received so far has been decoded and stored."""
        await self._queue.join()

    async def _read_broker(self, index: int) -> None:
        broker = self._brokers[index]
        backoff = Backoff(random.Random(), base=0.2, cap=10.0)
        sessions = 0
        while True:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = SESSION_EXPIRY_S
            client = aiomqtt.Client(
                broker.host,
                broker.port,
                identifier=self._client_id,
                protocol=aiomqtt.ProtocolVersion.V5,
                # resume our session (and the pushes queued for it) across reconnects and
                # restarts; a new session is made when the broker has none
                clean_start=False,
                properties=properties,
                keepalive=30,
            )
            try:
                async with client:
                    await client.subscribe(topics.subscription(Channel.UP, shared=True), qos=1)
                    await client.subscribe(topics.subscription(Channel.STATE), qos=1)
                    sessions += 1
                    self._clients[index] = client
                    backoff.reset()
                    if len(self._clients) == len(self._brokers):
                        self.subscribed.set()
                    self._bus.emit(HeadEndSubscribed(str(broker), sessions))
                    log.info("hes_subscribed", broker=str(broker), client_id=self._client_id)
                    async for message in client.messages:
                        topic_name, payload = str(message.topic), message.payload
                        await self._route(topic_name, payload, message.retain, index)
            except aiomqtt.MqttError as exc:
                self._clients.pop(index, None)
                self.subscribed.clear()
                delay = backoff.next_delay()
                log.warning(
                    "hes_broker_lost",
                    broker=str(broker),
                    error=str(exc),
                    retry_in_s=round(delay, 2),
                )
                await asyncio.sleep(delay)

    async def _route(
        self, topic_name: str, payload: object, retained: bool = False, broker: int = 0
    ) -> None:
        try:
            meter_id, channel = topics.parse(topic_name)
        except CodecError as exc:
            self._bus.emit(DecodeFailed(exc.reason, None))
            log.warning("message_rejected", topic=topic_name, error=str(exc))
            return
        self._broker_of[meter_id] = broker
        data = bytes(payload) if isinstance(payload, bytes | bytearray) else b""
        if channel is Channel.UP and self.presence.touch(meter_id):
            self._bus.emit(MeterOnline(meter_id))
        if channel is Channel.UP and _is_response(data):
            self._on_response(meter_id, data)
        elif channel is Channel.UP:
            await self._queue.put(InboundPush(meter_id, data, self._clock.now()))
        elif channel is Channel.STATE:
            self._on_state(meter_id, data, retained=retained)

    async def exchange(self, meter_id: str, apdu: bytes, timeout_s: float) -> bytes:
        """Send one request APDU to a meter and wait (wall seconds) for its answer."""
        index = self._broker_of.get(meter_id, 0)
        client = self._clients.get(index)
        if client is None:
            raise BrokerError(f"the head-end is not connected to {self._brokers[index]}")
        if meter_id in self._waiting:
            raise RuntimeError(f"a request to {meter_id} is already outstanding")
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[meter_id] = answer
        try:
            frame = wrapper.wrap(apdu, wrapper.HES_CLIENT_WPORT, wrapper.METER_WPORT)
            try:
                await client.publish(topics.topic(meter_id, Channel.DOWN), frame, qos=1)
            except aiomqtt.MqttError as exc:
                raise BrokerError(f"request to {meter_id} not sent: {exc}") from exc
            try:
                async with asyncio.timeout(timeout_s):
                    return await answer
            except TimeoutError:
                owed = self._owed.setdefault(meter_id, deque())
                owed.append(time.monotonic() + LATE_ANSWER_WINDOW * timeout_s)
                raise
        finally:
            del self._waiting[meter_id]

    def _on_response(self, meter_id: str, frame: bytes) -> None:
        if self._late(meter_id):
            # a meter answers in order: this is the answer to a request given up on
            self._bus.emit(LateAnswer(meter_id))
            log.info("late_answer_dropped", meter_id=meter_id)
            return
        waiting = self._waiting.get(meter_id)
        if waiting is None or waiting.done():
            self._bus.emit(DecodeFailed("unsolicited_response", meter_id))
            log.warning("unsolicited_response", meter_id=meter_id)
            return
        try:
            _header, apdu = wrapper.unwrap(frame)
        except CodecError as exc:
            waiting.set_exception(exc)
            return
        waiting.set_result(apdu)

    def _late(self, meter_id: str) -> bool:
        """Whether an answer still owed to a timed-out request is due; owed answers that
        never came within their window are forgotten (the request was lost)."""
        owed = self._owed.get(meter_id)
        if not owed:
            return False
        now = time.monotonic()
        while owed and owed[0] < now:
            owed.popleft()
        if not owed:
            del self._owed[meter_id]
            return False
        owed.popleft()
        return True

    def _on_state(self, meter_id: str, data: bytes, *, retained: bool) -> None:
        try:
            state = MeterState(data.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            self._bus.emit(DecodeFailed("state_payload", meter_id))
            log.warning("state_rejected", meter_id=meter_id, payload=data[:32].hex())
            return
        if self.presence.update(meter_id, state, heard=not retained):
            self._bus.emit(
                MeterOnline(meter_id) if state is MeterState.ONLINE else MeterOffline(meter_id)
            )

    async def _sweep(self, silence: SilencePolicy) -> None:
        """Declare offline the meters silent past the threshold."""
        while True:
            await asyncio.sleep(silence.check_every_wall_s)
            for meter_id in self.presence.sweep(silence.threshold_s):
                log.info("meter_silent", meter_id=meter_id, silence_s=silence.threshold_s)
                self._bus.emit(MeterOffline(meter_id))

    async def _ingest_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._ingest.process(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()


def _is_response(frame: bytes) -> bool:
    """Pushes are addressed to the push wPort; answers to requests to the client's."""
    return (
        len(frame) >= wrapper.HEADER_SIZE
        and int.from_bytes(frame[4:6], "big") == wrapper.HES_CLIENT_WPORT
    )
