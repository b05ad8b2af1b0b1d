"""The head-end's ingest workers, seen from the head-end: started, greeted, heard, stopped.

Each worker is a process reading the shared subscription of every broker and storing
what it takes. The pool re-emits their outcomes on the head-end's bus (so metrics,
prepaid charging, export and the run's tallies see one head-end), hands the meters heard
and the answers to requests to the head-end, and restarts a worker that dies, with
jittered back-off, logged and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Self

import structlog

from hes_sim.backoff import Backoff
from hes_sim.broker_address import BrokerAddress
from hes_sim.clock import SimClock
from hes_sim.events import EventBus, ReadStored
from hes_sim.hes.ingest_workers.messages import (
    Answer,
    ClockStart,
    Flush,
    Flushed,
    Heard,
    Hello,
    IngestWorkerError,
    Outcomes,
    Stop,
    Subscribed,
    ToWorker,
    frame,
    read_message,
)
from hes_sim.pipe_frames import end_children, write_to

log = structlog.get_logger(__name__)

STOP_GRACE_S = 20.0  # a worker stores what it holds before it ends


@dataclass(frozen=True, slots=True)
class IngestWorkers:
    """How many ingest processes, and what they need that the head-end does not carry."""

    count: int
    store: str  # the head-end's store: a SQLite path or a postgresql:// URL
    fleet_secret: bytes
    export_interval_s: int | None = None


@dataclass(slots=True)
class _Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    queue_depth: int = 0
    subscribed: frozenset[int] = frozenset()  # brokers it holds a session with


@dataclass(frozen=True, slots=True)
class PoolCallbacks:
    heard: Callable[[Sequence[str], int], None]  # meters, their broker
    answer: Callable[[str, bytes, int], None]  # meter, frame, broker
    subscribed: Callable[[int, int], None]  # broker, sessions (any worker's)


class IngestPool:
    def __init__(
        self,
        options: IngestWorkers,
        brokers: Sequence[BrokerAddress],
        clock: SimClock,
        bus: EventBus,
        callbacks: PoolCallbacks,
        *,
        require_ciphered: bool,
        client_id: str,
        queue_size: int,
        batch_size: int,
    ) -> None:
        if options.count < 1:
            raise ValueError(f"ingest workers must be >= 1, not {options.count}")
        self._brokers = len(brokers)
        self._clock = clock
        self._bus = bus
        self._callbacks = callbacks
        self._hello = Hello(  # each worker's, but for its number and the clock's anchor
            worker=0,
            brokers=tuple(str(broker) for broker in brokers),
            store=options.store,
            fleet_secret=options.fleet_secret,
            require_ciphered=require_ciphered,
            sim_start=clock.sim_start,
            time_scale=clock.time_scale,
            wall_anchor=None,
            export_interval_s=options.export_interval_s,
            client_id=client_id,
            queue_size=queue_size,
            batch_size=batch_size,
        )
        self._workers = [_Worker(index) for index in range(options.count)]
        self._flushes: dict[int, asyncio.Future[None]] = {}  # by worker, the last asked
        self._flush_token = 0
        self._stopping = False
        self._stack = contextlib.AsyncExitStack()
        self.restarts = 0

    async def __aenter__(self) -> Self:
        group = await self._stack.enter_async_context(asyncio.TaskGroup())
        for worker in self._workers:
            group.create_task(self._keep(worker), name=f"hes:ingest-worker:{worker.index}")
        group.create_task(self._tell_clock_start(), name="hes:ingest-clock")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping = True
        for worker in self._workers:
            self._send(worker, Stop())
        running = [w.process for w in self._workers if w.process and w.process.returncode is None]
        try:
            killed = await end_children(running, STOP_GRACE_S)
            if killed:
                log.warning("ingest_workers_killed", workers=killed)
        finally:
            await self._stack.__aexit__(exc_type, exc, tb)

    @property
    def queue_depth(self) -> int:
        return sum(worker.queue_depth for worker in self._workers)

    def subscribed_everywhere(self) -> bool:
        everything = frozenset(range(self._brokers))
        return all(worker.subscribed == everything for worker in self._workers)

    async def drained(self) -> None:
        """Until every worker has stored what it had received when asked."""
        self._flush_token += 1
        loop = asyncio.get_running_loop()
        waits = []
        for worker in self._workers:
            if worker.process is None or worker.process.returncode is not None:
                continue
            future: asyncio.Future[None] = loop.create_future()
            self._flushes[worker.index] = future
            self._send(worker, Flush(self._flush_token))
            waits.append(future)
        await asyncio.gather(*waits)

    # ------------------------------------------------------------ one worker's life

    async def _keep(self, worker: _Worker) -> None:
        """Run the worker; start it again, after a back-off, whenever it ends early."""
        backoff = Backoff(random.Random(), base=0.5, cap=15.0)
        while not self._stopping:
            code = await self._run(worker)
            if self._stopping:
                return
            self.restarts += 1
            delay = backoff.next_delay()
            log.error("ingest_worker_exited", worker=worker.index, code=code,
                      restart_in_s=round(delay, 2))  # fmt: skip
            await asyncio.sleep(delay)

    async def _run(self, worker: _Worker) -> int:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hes_sim.hes.ingest_workers.worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        worker.process, worker.subscribed, worker.queue_depth = process, frozenset(), 0
        anchor = self._clock.wall_anchor
        self._send(worker, replace(self._hello, worker=worker.index, wall_anchor=anchor))
        try:
            await self._listen(worker, process)
        except IngestWorkerError as exc:
            log.error("ingest_worker_garbled", worker=worker.index, error=str(exc))  # noqa: TRY400
            process.kill()
        finally:
            pending = self._flushes.pop(worker.index, None)
            if pending is not None and not pending.done():
                pending.set_result(None)  # nothing more will be stored by this one
        return await process.wait()

    async def _listen(self, worker: _Worker, process: asyncio.subprocess.Process) -> None:
        stdout = process.stdout
        if stdout is None:  # pragma: no cover - created with a pipe
            raise IngestWorkerError("an ingest worker without a pipe")
        callbacks = self._callbacks
        while (message := await read_message(stdout)) is not None:
            match message:
                case Heard(broker=broker, meters=meters):
                    callbacks.heard(meters, broker)
                case Outcomes(events=events, queue_depth=depth, stored=stored):
                    worker.queue_depth = depth
                    for event in events:
                        self._bus.emit(event)
                    for meter_id, interval_end, delay, wh_import in stored:
                        self._bus.emit(ReadStored(meter_id, interval_end, delay, wh_import))
                case Answer(meter_id=meter_id, frame=data, broker=broker):
                    callbacks.answer(meter_id, data, broker)
                case Subscribed(broker=broker, sessions=sessions):
                    worker.subscribed |= {broker}
                    callbacks.subscribed(broker, sessions)
                case Flushed(token=token) if token == self._flush_token:
                    future = self._flushes.pop(worker.index, None)
                    if future is not None and not future.done():
                        future.set_result(None)
                case _:
                    log.warning("ingest_worker_unexpected", worker=worker.index,
                                message=type(message).__name__)  # fmt: skip

    async def _tell_clock_start(self) -> None:
        await self._clock.started()
        anchor = self._clock.wall_anchor
        if anchor is not None:
            for worker in self._workers:
                self._send(worker, ClockStart(anchor))

    def _send(self, worker: _Worker, message: ToWorker) -> None:
        write_to(worker.process, frame(message))
