"""One meter's life on the network: connect, wait for the start, push each interval.

No interval is lost to a broken link: a frame that could not be sent waits in a bounded
outbox, and intervals that ended while the link was down are closed, each with its own
time stamp, as soon as it is back, then pushed in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog

from hes_sim.backoff import Backoff, Draws
from hes_sim.clock import SimClock
from hes_sim.errors import BrokerError, CodecError
from hes_sim.events import (
    EventBus,
    MeterConnected,
    MeterLinkLost,
    MeterRequestRefused,
    PushSent,
    ReadProduced,
)
from hes_sim.meter_sim.cosem.objects import object_model
from hes_sim.meter_sim.cosem.server import DlmsSession, Identity
from hes_sim.meter_sim.event_logs import event_log_name
from hes_sim.meter_sim.flag import Flag
from hes_sim.meter_sim.meter import VirtualMeter
from hes_sim.meter_sim.schedule import IntervalSchedule
from hes_sim.meter_sim.transport import LinkFactory, MeterLink
from hes_sim.protocols import frame, wrapper
from hes_sim.protocols.push import DataNotification, EventEntry

log = structlog.get_logger(__name__)

MAX_SESSIONS = 4  # client SAPs a meter serves at once (public, reader, management, …)
OUTBOX_LIMIT = 96  # one day of 15-minute pushes; older frames stay only in the profile
LAST_GASP_S = 5.0  # simulated: how long the supercapacitor keeps the modem up after mains goes
BOOT_S = 20.0  # simulated: from mains back to the modem searching for its cell


class ServiceGate(Protocol):
    """Whether the meter's modem has a cell to talk to (the 4G model's side)."""

    def has_service(self, meter_id: str) -> bool:
        """Whether the meter's cell is up and the meter is not in a coverage hole now."""
        ...

    async def in_service(self, meter_id: str) -> None:
        """Return once ``has_service`` would say so."""
        ...


class PowerLost(Exception):  # noqa: N818 - a happening, not a failure of the caller
    """Mains went off while the meter was connected; its link was left without goodbye."""


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What the fleet hands every meter when the run starts."""

    schedule: IntervalSchedule


class MeterRuntime:
    def __init__(
        self,
        meter: VirtualMeter,
        link_factory: LinkFactory,
        bus: EventBus,
        *,
        backoff: Backoff,
        time_scale: float,
        connect_slots: asyncio.Semaphore,
        plan: asyncio.Future[RunPlan | None],
        stopping: asyncio.Event,
        clock: SimClock,
        identity: Identity | None = None,
        cipher_pushes: bool = False,
        service: ServiceGate | None = None,
        on_power_loss: Callable[[str], object] | None = None,
        rng: Draws | None = None,
    ) -> None:
        self.meter = meter
        self._link_factory = link_factory
        self._bus = bus
        self._backoff = backoff
        self._time_scale = time_scale
        self._connect_slots = connect_slots
        self._plan = plan
        self._stopping = stopping
        self._clock = clock
        self._identity = identity
        self._cipher_pushes = cipher_pushes and identity is not None
        # one association per client wPort, as a meter keeps one per SAP; made on first use
        self._sessions: dict[int, DlmsSession] = {}
        self._flushing = asyncio.Lock()
        self._outbox: deque[DataNotification] = deque(maxlen=OUTBOX_LIMIT)
        self._next_end: float | None = None
        self._invoke_id = 0
        # with a 4G model: wait for the cell, spread reconnections over the push setup's
        # randomisation window, and drop the link without goodbye when mains goes
        self._service = service
        self._on_power_loss = on_power_loss
        self._rng: Draws = rng or random.Random(meter.meter_id)
        # flags, not asyncio.Events: a hundred thousand meters each keep four
        self._powered = Flag(value=True)
        self._power_lost = Flag()
        self.connected = Flag()
        self.finished = Flag()

    def power_off(self) -> bool:
        """Mains lost (a feeder or DT outage): the meter logs it, pushes it if it can, and
        goes silent until power returns. False if it was off already."""
        if not self.meter.powered:
            return False
        self.meter.power_off(self._clock.now())
        self._powered.clear()
        self._power_lost.set()
        return True

    def power_on(self) -> bool:
        if self.meter.powered:
            return False
        self.meter.power_on(self._clock.now())
        self._power_lost.clear()
        self._powered.set()
        return True

    async def run(self) -> None:
        """Serve the meter until the fleet stops; link failures are retried, never raised.

        A bug in one meter ends that meter only, loudly; it never takes the fleet down.
        """
        try:
            await self._run()
        except Exception as exc:
            log.exception("meter_failed", meter_id=self.meter.meter_id)
            self._bus.emit(MeterLinkLost(self.meter.meter_id, f"meter failed: {exc!r}"))

    async def _run(self) -> None:
        delay = 0.0  # simulated seconds before the next connection attempt
        while not self._stopping.is_set():
            if delay:
                await self._pause(delay)
            if not self._powered.is_set():
                await self._until_or_stopping(self._powered.wait())
                delay = BOOT_S + self._randomised_start()
                continue
            if self._service is not None and not self._service.has_service(self.meter.meter_id):
                # the modem camps until its cell is back, then the push setup spreads the
                # meters of that cell over the randomisation window
                await self._until_or_stopping(self._service.in_service(self.meter.meter_id))
                delay = self._randomised_start()
                continue
            if self._stopping.is_set():
                return
            try:
                await self._connected_life()
            except* PowerLost:
                delay = 0.0  # the loop waits for power, then boots
            except* BrokerError as failures:
                reason = "; ".join(str(exc) for exc in failures.exceptions)
                self._bus.emit(MeterLinkLost(self.meter.meter_id, reason))
                log.debug("meter_link_lost", meter_id=self.meter.meter_id, error=reason)
                delay = self._backoff.next_delay()
            else:
                return

    async def _connected_life(self) -> None:
        """One connection, from connect to the end of the run (or the link's end)."""
        async with contextlib.AsyncExitStack() as stack:
            async with self._connect_slots:
                link = await stack.enter_async_context(self._link_factory(self.meter.meter_id))
            self._bus.emit(
                MeterConnected(self.meter.meter_id, link.connect_wall_s, self._backoff.attempt)
            )
            self._backoff.reset()
            self.connected.set()
            async with asyncio.TaskGroup() as group:
                name = f"meter:{self.meter.meter_id}"
                answering = group.create_task(self._answer_requests(link), name=f"{name}:dlms")
                watching = group.create_task(self._watch_power(link), name=f"{name}:power")
                await self._serve(link)
                answering.cancel()
                watching.cancel()

    async def _watch_power(self, link: MeterLink) -> None:
        """On mains loss: the last gasp (the power-failure event, if it gets out in time),
        then the modem dies mid-connection, so the broker learns only by keep-alive."""
        await self._power_lost.wait()
        self._queue_alerts()
        with contextlib.suppress(TimeoutError, BrokerError):
            async with asyncio.timeout(self._clock.wall_seconds(LAST_GASP_S)):
                await self._flush(link)
        link.abandon()
        if self._on_power_loss is not None:
            self._on_power_loss(self.meter.meter_id)
        raise PowerLost(self.meter.meter_id)

    def _randomised_start(self) -> float:
        """Push setup: a reconnecting meter waits a random part of its randomisation
        window, which is what keeps a restoration from being one spike."""
        window = self.meter.push.randomisation_start_interval
        return self._rng.uniform(0, window) if window > 0 else 0.0

    async def _until_or_stopping(self, waiting: Coroutine[Any, Any, object]) -> None:
        """Until ``waiting`` is done or the fleet stops, whichever comes first."""
        tasks = (asyncio.ensure_future(waiting), asyncio.ensure_future(self._stopping.wait()))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()

    async def _serve(self, link: MeterLink) -> None:
        plan = await self._plan
        if plan is None:
            return
        if self._next_end is None:
            self._next_end = plan.schedule.first_end
        self._queue_alerts()  # e.g. the power-restored event of a meter that just booted
        await self._flush(link)
        while self._next_end <= plan.schedule.sim_end:
            await self._until(self._next_end + self.meter.push_offset(self._next_end))
            if self._stopping.is_set():
                return
            self._close_interval(self._next_end, plan.schedule.interval_s)
            self._next_end += plan.schedule.interval_s
            await self._flush(link)
        self.finished.set()
        await self._stopping.wait()

    def _close_interval(self, interval_end: float, interval_s: int) -> None:
        entry = self.meter.close_interval(interval_end, interval_s)
        self._invoke_id = (self._invoke_id + 1) & 0xFF_FFFF
        self._outbox.append(DataNotification(self._invoke_id, None, entry))
        self._bus.emit(ReadProduced(self.meter.meter_id, interval_end))

    async def _flush(self, link: MeterLink) -> None:
        # the push loop and the request loop both flush; one at a time keeps the order
        async with self._flushing:
            while self._outbox:
                notification = self._outbox[0]
                await link.send(self._encode(notification))
                self._outbox.popleft()
                stamped = notification.entry.clock.timestamp()
                self._bus.emit(PushSent(self.meter.meter_id, stamped))

    def _encode(self, notification: DataNotification) -> bytes:
        """Each transmission is ciphered afresh, with the next invocation counter, so that a
        push resent after a broken link is a duplicate read, never a replayed APDU."""
        if not self._cipher_pushes or self._identity is None:
            return frame.encode_push_frame(notification)
        sender = frame.Sender(
            self._identity.system_title, self._identity.keys, self.meter.next_invocation_counter()
        )
        return frame.encode_push_frame(notification, sender)

    async def _answer_requests(self, link: MeterLink) -> None:
        """Answer what the head-end asks on the down channel, one APDU at a time."""
        async for request in link.receive():
            answer = self._answer(request)
            if answer is not None:
                await link.send(answer)
            self._queue_alerts()
            await self._flush(link)

    def _queue_alerts(self) -> None:
        """Events that are pushed as they happen (a relay switching) join the outbox."""
        for event in self.meter.events.take_pending():
            self._invoke_id = (self._invoke_id + 1) & 0xFF_FFFF
            entry = EventEntry(
                event_log_name(event.log),
                datetime.fromtimestamp(event.at, tz=self.meter.tz),
                int(event.code),
                self.meter.status_word(),
            )
            self._outbox.append(DataNotification(self._invoke_id, None, entry))

    def _answer(self, request: bytes) -> bytes | None:
        try:
            header, apdu = wrapper.unwrap(request)
        except CodecError as exc:
            log.warning("request_rejected", meter_id=self.meter.meter_id, error=str(exc))
            return None
        if self._identity is None:
            return None
        session = self._sessions.get(header.source_wport)
        if session is None:  # idle meters hold none
            if len(self._sessions) >= MAX_SESSIONS:
                self._sessions.pop(next(iter(self._sessions)))
            session = DlmsSession(self.meter, object_model(self.meter.kind), self._identity)
            self._sessions[header.source_wport] = session
        refused = session.refused
        answer = session.handle(apdu, self._clock.now())
        if session.refused > refused:
            self._bus.emit(MeterRequestRefused(self.meter.meter_id))
            log.warning("request_refused", meter_id=self.meter.meter_id)
        if answer is None:
            return None
        return wrapper.wrap(answer, header.destination_wport, header.source_wport)

    async def _until(self, sim_time: float) -> None:
        """Sleep until ``sim_time`` or until the fleet stops, whichever comes first."""
        delay = self._clock.wall_seconds(sim_time - self._clock.now())
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()

    async def _pause(self, sim_seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(sim_seconds / self._time_scale):
                await self._stopping.wait()
