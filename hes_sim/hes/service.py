"""The head-end process's long-lived part: MQTT subscription, ingest and metrics.

An async context manager owning a TaskGroup with named tasks: ``hes:mqtt:{n}`` holds
the connection to broker n (a :class:`BrokerLink`; it reconnects with jittered back-off
when the broker vanishes) and ``hes:ingest`` decodes and stores in batches. Pushes wait
in a bounded buffer; when it is full the head-end stops reading, and the brokers keep the
backlog. A fleet spread over several brokers is read from all of
them; a request goes out through the broker its meter was last heard on. Shutdown is
two-phase: stop reading, let ingest drain the queue for a grace period, then cancel.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import NoReturn, Self

import structlog
from prometheus_client import CollectorRegistry

from hes_sim.broker_address import BrokerAddress
from hes_sim.clock import Clock, SimClock
from hes_sim.errors import BrokerError, CodecError
from hes_sim.events import (
    DecodeFailed,
    EventBus,
    HeadEndSubscribed,
    LateAnswer,
    MeterOffline,
    MeterOnline,
)
from hes_sim.hes.answers import PendingAnswers, Verdict
from hes_sim.hes.broker_link import BrokerLink, hold_link
from hes_sim.hes.ingest import InboundPush, Ingest, PushPolicy, is_response, parse_topic
from hes_sim.hes.ingest_queue import IngestQueue
from hes_sim.hes.ingest_workers.pool import IngestPool, IngestWorkers, PoolCallbacks
from hes_sim.hes.metrics import BusinessMetrics, HesMetrics
from hes_sim.hes.presence import MeterPresence
from hes_sim.hes.store import ReadStore
from hes_sim.http_metrics import MetricsServer
from hes_sim.protocols import topics, wrapper
from hes_sim.protocols.topics import Channel, MeterState

log = structlog.get_logger(__name__)


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
        workers: IngestWorkers | None = None,
    ) -> None:
        self._brokers = [broker] if isinstance(broker, BrokerAddress) else list(broker)
        if not self._brokers:
            raise ValueError("a head-end needs a broker")
        self._clock = clock
        self._bus = bus
        self._client_id = client_id
        self._grace_s = shutdown_grace_s
        self._silence = silence  # None: trust the state topic and last will only
        policy = policy or PushPolicy()
        self._queue = IngestQueue(
            Ingest(store, clock, bus, policy),
            size=queue_size,
            batch_size=batch_size,
            pause=lambda: self._each_link(BrokerLink.pause),
            resume=lambda: self._each_link(BrokerLink.resume),
        )
        self._pool: IngestPool | None = None
        if workers is not None:
            if not isinstance(clock, SimClock):
                raise TypeError("ingest workers follow a SimClock")
            self._pool = IngestPool(
                workers, self._brokers, clock, bus,
                PoolCallbacks(self._heard_all, self._answer_from_worker, self._worker_subscribed),
                require_ciphered=policy.require_ciphered, client_id=client_id,
                queue_size=queue_size, batch_size=batch_size,
            )  # fmt: skip
        self.presence = MeterPresence(clock)
        self.registry = CollectorRegistry()
        bus.subscribe(BusinessMetrics(self.registry), BusinessMetrics.KINDS)
        bus.subscribe(
            HesMetrics(
                self.registry,
                queue_depth=lambda: self.queue_depth,
                meters_online=lambda: self.presence.online,
            ),
            HesMetrics.KINDS,
        )
        self.subscribed = asyncio.Event()
        self.metrics = MetricsServer(
            self.registry, metrics_host, metrics_port, healthy=self.subscribed.is_set
        )
        self._stack = contextlib.AsyncExitStack()
        self._links: dict[int, BrokerLink] = {}  # by broker index, while connected
        self._broker_of: dict[str, int] = {}  # meter -> the broker it was last heard on
        # one outstanding request per meter, and the answers owed to those given up on
        self._answers = PendingAnswers(time.monotonic)
        self._readers: list[asyncio.Task[None]] = []
        self._writer: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self._stack.enter_async_context(self.metrics)
        if self._pool is not None:
            await self._stack.enter_async_context(self._pool)
        group = await self._stack.enter_async_context(asyncio.TaskGroup())
        self._readers = [
            group.create_task(self._read_broker(index), name=f"hes:mqtt:{index}")
            for index in range(len(self._brokers))
        ]
        self._writer = group.create_task(self._queue.run(), name="hes:ingest")
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
                await self._queue.drained()
        for task in (self._writer, self._sweeper):
            if task is not None:
                task.cancel()
        await self._stack.__aexit__(exc_type, exc, tb)

    @property
    def queue_depth(self) -> int:
        return len(self._queue) + (0 if self._pool is None else self._pool.queue_depth)

    @property
    def ingest_worker_restarts(self) -> int:
        return 0 if self._pool is None else self._pool.restarts

    async def drained(self) -> None:
        """Until every message received so far has been decoded and stored."""
        await self._queue.drained()
        if self._pool is not None:
            await self._pool.drained()

    def _read_broker(self, index: int) -> Coroutine[None, None, NoReturn]:
        broker = self._brokers[index]
        filters = [(topics.subscription(Channel.STATE), 1)]
        if self._pool is None:  # else the workers read the up topics
            filters.insert(0, (topics.subscription(Channel.UP, shared=True), 1))

        def on_message(topic_name: str, payload: bytes, retained: bool) -> None:
            self._route(topic_name, payload, retained, index)

        def on_up(link: BrokerLink, sessions: int) -> None:
            self._links[index] = link
            if self._queue.paused:
                link.pause()
            self._bus.emit(HeadEndSubscribed(str(broker), sessions))
            log.info("hes_subscribed", broker=str(broker), client_id=self._client_id)
            self._check_subscribed()

        def on_down(link: BrokerLink) -> None:
            if self._links.get(index) is link:
                del self._links[index]
            self.subscribed.clear()

        return hold_link(
            broker, self._client_id, tuple(filters), on_message, on_up=on_up, on_down=on_down
        )

    def _check_subscribed(self) -> None:
        if len(self._links) == len(self._brokers) and (
            self._pool is None or self._pool.subscribed_everywhere()
        ):
            self.subscribed.set()

    def _worker_subscribed(self, broker: int, sessions: int) -> None:
        self._bus.emit(HeadEndSubscribed(str(self._brokers[broker]), sessions))
        self._check_subscribed()

    def _each_link(self, action: Callable[[BrokerLink], None]) -> None:
        for link in self._links.values():
            action(link)

    def _route(self, topic_name: str, data: bytes, retained: bool = False, broker: int = 0) -> None:
        parsed = parse_topic(topic_name, self._bus)
        if parsed is None:
            return
        meter_id, channel = parsed
        if channel is Channel.UP:
            self._heard(meter_id, broker)
            if is_response(data):
                self._on_response(meter_id, data)
            else:
                self._queue.put(InboundPush(meter_id, data, self._clock.now()))
        elif channel is Channel.STATE:
            self._broker_of[meter_id] = broker
            self._on_state(meter_id, data, retained=retained)

    def _heard(self, meter_id: str, broker: int) -> None:
        self._heard_all((meter_id,), broker)

    def _heard_all(self, meter_ids: Sequence[str], broker: int) -> None:
        self._broker_of.update(dict.fromkeys(meter_ids, broker))
        for meter_id in self.presence.touch_all(meter_ids):
            self._bus.emit(MeterOnline(meter_id))

    def _answer_from_worker(self, meter_id: str, data: bytes, broker: int) -> None:
        self._broker_of[meter_id] = broker
        self._on_response(meter_id, data)

    async def exchange(self, meter_id: str, apdu: bytes, timeout_s: float) -> bytes:
        """Send one request APDU to a meter and wait (wall seconds) for its answer."""
        index = self._broker_of.get(meter_id, 0)
        link = self._links.get(index)
        if link is None:
            raise BrokerError(f"the head-end is not connected to {self._brokers[index]}")
        answer = self._answers.expect(meter_id, apdu)
        try:
            frame = wrapper.wrap(apdu, wrapper.HES_CLIENT_WPORT, wrapper.METER_WPORT)
            try:
                await link.publish(topics.topic(meter_id, Channel.DOWN), frame)
            except BrokerError as exc:
                raise BrokerError(f"request to {meter_id} not sent: {exc}") from exc
            try:
                async with asyncio.timeout(timeout_s):
                    return await answer
            except TimeoutError:
                self._answers.give_up(meter_id, timeout_s)
                raise
        finally:
            self._answers.done(meter_id)

    def _on_response(self, meter_id: str, frame: bytes) -> None:
        try:
            _header, apdu = wrapper.unwrap(frame)
        except CodecError as exc:
            if not self._answers.fail(meter_id, exc):  # else the request fails with it
                self._bus.emit(DecodeFailed(exc.reason, meter_id))
                log.warning("response_rejected", meter_id=meter_id, error=str(exc))
            return
        verdict = self._answers.take(meter_id, apdu)
        if verdict is Verdict.LATE:
            self._bus.emit(LateAnswer(meter_id))
            log.info("late_answer_dropped", meter_id=meter_id)
        elif verdict is Verdict.UNSOLICITED:
            self._bus.emit(DecodeFailed("unsolicited_response", meter_id))
            log.warning("unsolicited_response", meter_id=meter_id)

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
