"""An ingest worker: ``python -m hes_sim.hes.ingest_workers.worker``, started by a head-end.

It reads a :class:`Hello` on stdin, opens the head-end's store, and joins the shared
subscription to the meters' up topics on every broker, under its own persistent session.
Each push it takes is deciphered, checked, decoded and stored here, in batches, exactly as
the head-end would; what came of it goes back on stdout (:class:`Outcomes`), with the
meters heard and any answer to a head-end request, once per turn of its loop. Logs go to
stderr. A head-end that vanishes (stdin closed) stops it.

Replay protection is per process: the broker spreads a meter's pushes over the workers,
so a replayed push that reaches a worker which never saw the original is caught by the
store's uniqueness (a duplicate read), not by the invocation counter.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
from collections.abc import Callable, Sequence

import structlog

from hes_sim.broker_address import BrokerAddress
from hes_sim.clock import SimClock
from hes_sim.events import Event, EventBus
from hes_sim.hes.broker_link import BrokerLink, hold_link
from hes_sim.hes.ingest import InboundPush, Ingest, PushPolicy, is_response, parse_topic
from hes_sim.hes.ingest_queue import IngestQueue
from hes_sim.hes.ingest_workers.messages import (
    Answer,
    ClockStart,
    Flush,
    Flushed,
    FromWorker,
    Heard,
    Hello,
    IngestWorkerError,
    Outcomes,
    Stop,
    StoredRead,
    Subscribed,
    frame,
    read_message,
)
from hes_sim.hes.records import ReadRecord
from hes_sim.hes.store_factory import open_store
from hes_sim.keyring import FleetKeyring
from hes_sim.pipe_frames import run_child
from hes_sim.protocols import topics
from hes_sim.protocols.topics import Channel

log = structlog.get_logger(__name__)

ITEMS_PER_FRAME = 5_000
GC_THRESHOLDS = (20_000, 20, 20)
SHUTDOWN_GRACE_S = 10.0


class Reporter:
    """What the head-end must learn, gathered over one turn of the loop and sent at its end."""

    def __init__(self, out: asyncio.WriteTransport) -> None:
        self._out = out
        self._events: list[Event] = []
        self._stored: list[StoredRead] = []
        self._heard: dict[int, list[str]] = {}  # by broker
        self._scheduled = False
        self.queue_depth: Callable[[], int] = lambda: 0

    def event(self, event: Event) -> None:
        self._events.append(event)
        self._schedule()

    def stored(self, reads: Sequence[ReadRecord], stored_at: float) -> None:
        """Reads just stored: sent as tuples, each a ``ReadStored`` at the head-end."""
        self._stored += [
            (read.meter_id, read.interval_end, stored_at - read.interval_end, read.wh_import)
            for read in reads
        ]
        self._schedule()

    def heard(self, meter_id: str, broker: int) -> None:
        meters = self._heard.get(broker)
        if meters is None:
            meters = self._heard[broker] = []
            self._schedule()
        meters.append(meter_id)

    def send(self, message: FromWorker) -> None:
        if not self._out.is_closing():
            self._out.write(frame(message))

    def flush(self) -> None:
        self._scheduled = False
        heard, self._heard = self._heard, {}
        for broker, meters in heard.items():
            for first in range(0, len(meters), ITEMS_PER_FRAME):
                self.send(Heard(broker, tuple(meters[first : first + ITEMS_PER_FRAME])))
        events, self._events = self._events, []
        stored, self._stored = self._stored, []
        for first in range(0, max(len(events), len(stored)), ITEMS_PER_FRAME):
            chunk = slice(first, first + ITEMS_PER_FRAME)
            self.send(Outcomes(tuple(events[chunk]), self.queue_depth(), tuple(stored[chunk])))

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)


class Worker:
    def __init__(
        self, hello: Hello, reporter: Reporter, ingest: Ingest, clock: SimClock, bus: EventBus
    ) -> None:
        self._hello = hello
        self._reporter = reporter
        self._links: dict[int, BrokerLink] = {}
        self.queue = IngestQueue(
            ingest,
            size=hello.queue_size,
            batch_size=hello.batch_size,
            pause=lambda: self._each_link(BrokerLink.pause),
            resume=lambda: self._each_link(BrokerLink.resume),
        )
        reporter.queue_depth = lambda: len(self.queue)
        self._bus = bus
        self._clock = clock

    async def hold(self, index: int, broker: BrokerAddress) -> None:
        """Read ``broker`` (the head-end's broker number ``index``) for good."""

        def on_message(topic_name: str, payload: bytes, _retained: bool) -> None:
            self._route(topic_name, payload, index)

        def on_up(link: BrokerLink, sessions: int) -> None:
            self._links[index] = link
            if self.queue.paused:
                link.pause()
            self._reporter.send(Subscribed(index, sessions))

        def on_down(link: BrokerLink) -> None:
            if self._links.get(index) is link:
                del self._links[index]

        client_id = f"{self._hello.client_id}-w{self._hello.worker}"
        filters = ((topics.subscription(Channel.UP, shared=True), 1),)
        await hold_link(broker, client_id, filters, on_message, on_up=on_up, on_down=on_down)

    def _route(self, topic_name: str, data: bytes, broker: int) -> None:
        parsed = parse_topic(topic_name, self._bus)
        if parsed is None:
            return
        meter_id, channel = parsed
        if channel is not Channel.UP:
            return  # not subscribed here: an old session's subscription
        self._reporter.heard(meter_id, broker)
        if is_response(data):
            self._reporter.send(Answer(meter_id, data, broker))
        else:
            self.queue.put(InboundPush(meter_id, data, self._clock.now()))

    def _each_link(self, action: Callable[[BrokerLink], None]) -> None:
        for link in self._links.values():
            action(link)


async def serve(reader: asyncio.StreamReader, out: asyncio.WriteTransport) -> None:
    hello = await read_message(reader)
    if not isinstance(hello, Hello):
        raise IngestWorkerError(f"an ingest worker must be greeted first, got {hello!r}")
    clock = SimClock(hello.sim_start, hello.time_scale, hello.wall_anchor)
    reporter = Reporter(out)
    bus = EventBus()
    bus.subscribe(reporter.event)
    policy = PushPolicy(FleetKeyring(hello.fleet_secret), hello.require_ciphered)
    # on this loop's thread: it does nothing but ingest, and a batch's write (a few ms)
    # costs less there than handed to a thread (see SqlStore); the head-end keeps the store
    store = open_store(
        hello.store, export_interval_s=hello.export_interval_s, on_loop=True, upkeep=False
    )
    log.info("ingest_worker_starting", worker=hello.worker, brokers=len(hello.brokers))
    # Each push leaves a score of short-lived containers behind, so the collector's default
    # (a young collection every 700 allocations) ran every few dozen pushes, and now and
    # then walked all the keys and counters this process keeps. What was made to start
    # (modules, the keyring) is frozen out of its sight, and it runs less often.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    async with store, asyncio.TaskGroup() as group:
        ingest = Ingest(store, clock, bus, policy, report_stored=reporter.stored)
        worker = Worker(hello, reporter, ingest, clock, bus)
        ingesting = group.create_task(worker.queue.run(), name="ingest-worker:ingest")
        readers = [
            group.create_task(
                worker.hold(i, BrokerAddress.parse(url)), name=f"ingest-worker:mqtt:{i}"
            )
            for i, url in enumerate(hello.brokers)
        ]
        try:
            while (message := await read_message(reader)) is not None:
                match message:
                    case ClockStart(wall_anchor=anchor):
                        clock.start(anchor)
                    case Flush(token=token):
                        group.create_task(_answer_flush(worker, reporter, token))
                    case Stop():
                        break
                    case _:
                        log.warning("ingest_worker_unexpected", message=type(message).__name__)
        finally:
            for task in readers:
                task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SHUTDOWN_GRACE_S):
                await worker.queue.drained()
        ingesting.cancel()
    reporter.flush()


async def _answer_flush(worker: Worker, reporter: Reporter, token: int) -> None:
    await worker.queue.drained()
    reporter.flush()  # the outcomes before the answer
    reporter.send(Flushed(token))


def main() -> int:
    return run_child(serve, IngestWorkerError, "ingest_worker_failed")


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
