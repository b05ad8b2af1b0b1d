"""One meter's life on the network: connect, wait for the start, push each interval.

No interval is lost to a broken link: a frame that could not be sent waits in a bounded
outbox, and intervals that ended while the link was down are closed, each with its own
time stamp, as soon as it is back, then pushed in order.

A meter runs a task only while it has work (connecting, pushing, answering, a last
gasp, its goodbye). Connected and idle, it holds none: the fleet's shared
:class:`~hes_sim.meter_sim.wakeups.WakeScheduler` wakes it at its next push, its link
at a frame or at the link's end, the fleet at the start, a power cut and the stop. Each
wake-up runs :meth:`MeterRuntime.wake`, which starts the meter's one worker unless it
runs already; the worker looks at everything there is to do before it parks again.

Offline, the worker waits (its back-off, power, its cell) on a future of its own, made
when it waits and resolved by :meth:`MeterRuntime.wake` once the fleet stops: never on
the fleet's ``stopping`` Event, where ten thousand waiters, each removed from one deque
as it is woken, made a reconnection storm cost the square of its size.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, NoReturn, Protocol

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
from hes_sim.meter_sim.flag import Flag, Tally
from hes_sim.meter_sim.listening import Spawn, listening
from hes_sim.meter_sim.meter import VirtualMeter
from hes_sim.meter_sim.schedule import IntervalSchedule
from hes_sim.meter_sim.transport import LinkFactory, ListeningLink, MeterLink
from hes_sim.meter_sim.wakeups import Entry, WakeScheduler, still_filed
from hes_sim.protocols import frame, wrapper
from hes_sim.protocols.block_load import BlockLoadEntry
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


class Step(Enum):
    WORKED = "worked"  # it did something: look again
    IDLE = "idle"  # nothing to do until a wake-up
    DONE = "done"  # the run is over: say goodbye


@dataclass(frozen=True, slots=True)
class FleetShared:
    """What every meter of one fleet shares: one object, one pointer a meter."""

    link_factory: LinkFactory
    bus: EventBus
    time_scale: float
    connect_slots: asyncio.Semaphore
    plan: asyncio.Future[RunPlan | None]
    stopping: asyncio.Event
    clock: SimClock
    wakeups: WakeScheduler
    spawn: Spawn  # the fleet's tasks: a meter's worker, a pumped link's reader
    cipher_pushes: bool = False
    service: ServiceGate | None = None
    on_power_loss: Callable[[str], object] | None = None
    # how many of the fleet's meters are powered, have connected once, are finished
    powered: Tally = field(default_factory=Tally)
    connected: Tally = field(default_factory=Tally)
    finished: Tally = field(default_factory=Tally)


class MeterRuntime:
    """One meter of a fleet: its link, its outbox, where it is in the run. Slotted and
    lazy (no deque, dict or task while idle): a fleet process holds ten thousands."""

    __slots__ = (
        "_backoff",
        "_ended",
        "_fleet",
        "_gasp",
        "_identity",
        "_invoke_id",
        "_link",
        "_link_context",
        "_next_end",
        "_nudge",
        "_outbox",
        "_powered",
        "_rng",
        "_sessions",
        "_wake_entry",
        "_worker",
        "connected",
        "finished",
        "meter",
    )

    def __init__(
        self,
        meter: VirtualMeter,
        fleet: FleetShared,
        *,
        backoff: Backoff,
        identity: Identity | None = None,
        rng: Draws | None = None,
    ) -> None:
        self.meter = meter
        self._fleet = fleet
        self._backoff = backoff
        self._identity = identity  # pushes are ciphered if the fleet says so and this is set
        # one association per client wPort, as a meter keeps one per SAP; made on first use
        self._sessions: dict[int, DlmsSession] | None = None
        self._outbox: deque[DataNotification] | None = None  # made when a frame waits
        self._next_end: float | None = None
        self._invoke_id = 0
        # with a 4G model: wait for the cell, spread reconnections over the push setup's
        # randomisation window, and drop the link without goodbye when mains goes
        self._rng: Draws = rng or random.Random(meter.meter_id)
        self._link: ListeningLink | None = None
        self._link_context: AbstractAsyncContextManager[MeterLink] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._wake_entry: Entry | None = None  # the push it sleeps until, in the wakeups
        self._gasp: asyncio.TimerHandle | None = None  # mains went while connected
        self._nudge: asyncio.Future[None] | None = None  # the offline worker waits on it
        self._ended = False  # its life is over: the fleet stopped, or the meter failed
        # flags, not asyncio.Events: a hundred thousand meters each keep them
        self._powered = Flag(value=meter.powered, tally=fleet.powered)
        self.connected = Flag(tally=fleet.connected)
        self.finished = Flag(tally=fleet.finished)

    # ------------------------------------------------------------ what wakes the meter

    def wake(self) -> None:
        """Something may be due (a push, a frame, the start, power, the stop): run the
        meter's worker, unless it runs already (it looks again before it parks), or the
        meter waits for its first connect (:meth:`connect_after`)."""
        if self._worker is None:
            if not self._ended and not self._first_connect_ahead():
                self._worker = self._fleet.spawn(self._work(), f"meter:{self.meter.meter_id}")
        elif self._fleet.stopping.is_set():
            self._rouse()  # a worker waiting offline (back-off, power, cell) leaves now

    def connect_after(self, wall_s: float) -> None:
        """The fleet's cold start, spread: the meter's first connect ``wall_s`` from now,
        filed in the fleet's wake-ups (no task, no timer of its own). Until then other
        wake-ups (the run's start) leave it waiting; the stop clears the wake-ups, and
        the meter leaves without connecting."""
        self._wake_entry = self._fleet.wakeups.wake_in(wall_s, self)

    def _first_connect_ahead(self) -> bool:
        """Offline with a wake-up still filed: its first connect, later (an offline meter
        files no other; losing a link drops the push it was filed for)."""
        entry = self._wake_entry
        return self._link is None and entry is not None and still_filed(entry)

    def _rouse(self) -> None:
        """End the offline worker's wait (it looks again why it waits, and may go on)."""
        nudge, self._nudge = self._nudge, None
        if nudge is not None and not nudge.done():
            nudge.set_result(None)

    async def _parked(self, wall_s: float | None = None) -> None:
        """Until roused (the stop, power back, the cell back) or ``wall_s`` wall seconds
        passed: on the meter's own future, no waiter on anything the fleet shares."""
        nudge = self._nudge = asyncio.get_running_loop().create_future()
        try:
            if wall_s is None:
                await nudge
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wall_s):
                        await nudge
        finally:
            if self._nudge is nudge:
                self._nudge = None

    def link_event(self) -> None:
        """LinkListener: a frame came, or the link ended."""
        self.wake()

    def power_off(self) -> bool:
        """Mains lost (a feeder or DT outage): the meter logs it, pushes it if it can, and
        goes silent until power returns. False if it was off already."""
        if not self.meter.powered:
            return False
        self.meter.power_off(self._fleet.clock.now())
        self._powered.clear()
        if self._link is not None:
            self._owe_last_gasp()
        return True

    def power_on(self) -> bool:
        if self.meter.powered:
            return False
        self.meter.power_on(self._fleet.clock.now())
        self._powered.set()
        self._rouse()  # a meter waiting for power boots
        return True

    def _owe_last_gasp(self) -> None:
        """Mains went while connected: the supercapacitor keeps the modem up LAST_GASP_S
        for the power-failure event; then the link is dropped, whatever the meter was
        doing (a send stuck waiting for its acknowledgement ends there too)."""
        if self._gasp is None:
            delay = self._fleet.clock.wall_seconds(LAST_GASP_S)
            self._gasp = asyncio.get_running_loop().call_later(delay, self._modem_dies)
            self.wake()

    def _modem_dies(self) -> None:
        if self._link is not None:
            self._link.abandon()  # the worker learns it from its send, or its next look

    # ------------------------------------------------------------ the worker

    async def _work(self) -> None:
        """Until the meter has nothing to do; link failures are retried, never raised.

        A bug in one meter ends that meter only, loudly; it never takes the fleet down.
        """
        try:
            await self._until_idle()
        except asyncio.CancelledError:
            self._ended = True  # the fleet cancels only at its end
            raise
        except Exception as exc:
            self._ended = True
            log.exception("meter_failed", meter_id=self.meter.meter_id)
            self._fleet.bus.emit(MeterLinkLost(self.meter.meter_id, f"meter failed: {exc!r}"))
        finally:
            self._worker = None

    async def _until_idle(self) -> None:
        delay = 0.0  # simulated seconds before the next connection attempt
        while not self._ended:
            if self._link is None and not await self._reach(delay):
                self._ended = True
                return
            after = await self._on_link()
            if after is None:
                return  # parked (or done): a wake-up brings it back
            delay = after

    async def _reach(self, delay: float) -> bool:
        """Offline: wait for power, the cell and ``delay``, then connect. False when the
        fleet stops first."""
        stopping = self._fleet.stopping
        meter_id = self.meter.meter_id
        while not stopping.is_set():
            if delay:
                await self._pause(delay)
                delay = 0.0
            if not self._powered.is_set():
                while not self._powered.is_set() and not stopping.is_set():
                    await self._parked()  # power_on, or the stop, rouses it
                delay = BOOT_S + self._randomised_start()
                continue
            service = self._fleet.service
            if service is not None and not service.has_service(meter_id):
                # the modem camps until its cell is back, then the push setup spreads the
                # meters of that cell over the randomisation window
                await self._until_or_stopping(service.in_service(meter_id))
                delay = self._randomised_start()
                continue
            if stopping.is_set():
                return False
            try:
                await self._connect()
            except BrokerError as exc:
                delay = self._link_lost(str(exc))
                continue
            return True
        return False

    async def _connect(self) -> None:
        fleet = self._fleet
        async with fleet.connect_slots:
            context = fleet.link_factory(self.meter.meter_id)
            link = await context.__aenter__()
        self._link_context, self._link = context, listening(link, fleet.spawn)
        # listening first: a link read by a task subscribes its down channel in that
        # task, which must run before whoever reacts to the meter's arrival sends to it
        self._link.listen(self)
        fleet.bus.emit(
            MeterConnected(self.meter.meter_id, link.connect_wall_s, self._backoff.attempt)
        )
        self._backoff.reset()
        self.connected.set()
        if not self.meter.powered:
            self._owe_last_gasp()  # mains went while it was connecting

    def _link_lost(self, reason: str) -> float:
        self._fleet.bus.emit(MeterLinkLost(self.meter.meter_id, reason))
        log.debug("meter_link_lost", meter_id=self.meter.meter_id, error=reason)
        return self._backoff.next_delay()

    async def _on_link(self) -> float | None:
        """The connected meter's work, until it is idle (None), or the link ended (the
        simulated seconds before connecting again)."""
        link = self._link
        assert link is not None  # noqa: S101 - called with a link
        try:
            try:
                while (step := await self._serve(link)) is Step.WORKED:
                    pass
            except BrokerError:
                if self._gasp is None:
                    raise
                await self._last_gasp(link)  # the modem died mid-send: PowerLost
            if step is Step.IDLE:
                return None  # parked: a wake-up brings it back
            await self._close_link(None)  # the run is over: a goodbye
        except PowerLost:
            return 0.0  # it waits for power, then boots
        except BrokerError as exc:
            await self._close_link(exc)
            return self._link_lost(str(exc))
        except BaseException as exc:
            await self._close_link(exc)
            raise
        self._ended = True
        return None

    async def _serve(self, link: ListeningLink) -> Step:
        """One look at everything the connected meter may have to do, in order."""
        if self._gasp is not None:
            await self._last_gasp(link)
        request = link.take()  # raises BrokerError once the link is lost
        if request is not None:
            await self._answer_request(link, request)
            return Step.WORKED
        plan = self._fleet.plan
        if not plan.done():
            return Step.IDLE  # until the start (the fleet wakes every meter then)
        run = plan.result()
        if run is None or self._fleet.stopping.is_set():
            return Step.DONE
        return await self._push_step(link, run.schedule)

    async def _push_step(self, link: ListeningLink, schedule: IntervalSchedule) -> Step:
        """Alerts and frames waiting go out; then the next interval, once it is due."""
        if self._next_end is None:
            self._next_end = schedule.first_end
        if self.meter.events.pending:
            self._queue_alerts()  # e.g. the power-restored event of a meter that just booted
        if self._outbox:
            await self._flush(link)
            return Step.WORKED
        if self._next_end > schedule.sim_end:
            self.finished.set()
            return Step.IDLE  # until the stop
        push_at = self._next_end + self.meter.push_offset(self._next_end)
        clock = self._fleet.clock
        now = clock.now()
        if now < push_at:
            self._sleep(clock.wall_seconds(push_at - now))
            return Step.IDLE
        self._close_interval(self._next_end, schedule.interval_s)
        self._next_end += schedule.interval_s
        return Step.WORKED

    def _sleep(self, wall_s: float) -> None:
        """Park until ``wall_s`` from now: filed in the fleet's wake-ups, no timer of its own."""
        wakeups = self._fleet.wakeups
        if self._wake_entry is not None:
            wakeups.cancel(self._wake_entry)
        self._wake_entry = wakeups.wake_in(wall_s, self)

    async def _last_gasp(self, link: ListeningLink) -> NoReturn:
        """On mains loss: the last gasp (the power-failure event, if it gets out before the
        modem dies), then the modem drops mid-connection: the broker learns by keep-alive."""
        self._queue_alerts()
        with contextlib.suppress(BrokerError):
            await self._flush(link)  # bounded: _modem_dies abandons the link in time
        link.abandon()
        lost = PowerLost(self.meter.meter_id)
        await self._close_link(lost)
        if self._fleet.on_power_loss is not None:
            self._fleet.on_power_loss(self.meter.meter_id)
        raise lost

    async def _close_link(self, exc: BaseException | None) -> None:
        """Leave the link, once: a goodbye when ``exc`` is None, else it is dropped."""
        link, context = self._link, self._link_context
        if link is None or context is None:
            return
        self._link = self._link_context = None
        link.listen(None)
        if self._wake_entry is not None:
            self._fleet.wakeups.cancel(self._wake_entry)
            self._wake_entry = None
        if self._gasp is not None:
            self._gasp.cancel()
            self._gasp = None
        if exc is None:
            await context.__aexit__(None, None, None)
        else:
            await context.__aexit__(type(exc), exc, exc.__traceback__)

    def _randomised_start(self) -> float:
        """Push setup: a reconnecting meter waits a random part of its randomisation
        window, which is what keeps a restoration from being one spike."""
        window = self.meter.push.randomisation_start_interval
        return self._rng.uniform(0, window) if window > 0 else 0.0

    async def _until_or_stopping(self, waiting: Coroutine[Any, Any, object]) -> None:
        """Until ``waiting`` is done or the fleet stops, whichever comes first."""
        stopping = self._fleet.stopping
        task = asyncio.ensure_future(waiting)

        def done(_task: asyncio.Future[object]) -> None:
            self._rouse()

        task.add_done_callback(done)
        try:
            while not task.done() and not stopping.is_set():
                await self._parked()
        finally:
            task.remove_done_callback(done)
            task.cancel()

    def _close_interval(self, interval_end: float, interval_s: int) -> None:
        entry = self.meter.close_interval(interval_end, interval_s)
        self._queue(entry)
        self._fleet.bus.emit(ReadProduced(self.meter.meter_id, interval_end))

    def _queue(self, entry: BlockLoadEntry | EventEntry) -> None:
        self._invoke_id = (self._invoke_id + 1) & 0xFF_FFFF
        if self._outbox is None:
            self._outbox = deque(maxlen=OUTBOX_LIMIT)
        self._outbox.append(DataNotification(self._invoke_id, None, entry))

    async def _flush(self, link: MeterLink) -> None:
        # only the meter's one worker sends, so the order is the outbox's
        outbox = self._outbox
        while outbox:
            notification = outbox[0]
            await link.send(self._encode(notification))
            outbox.popleft()
            stamped = notification.entry.clock.timestamp()
            self._fleet.bus.emit(PushSent(self.meter.meter_id, stamped))
        if self._outbox is outbox:
            self._outbox = None  # an idle meter keeps no deque

    def _encode(self, notification: DataNotification) -> bytes:
        """Each transmission is ciphered afresh, with the next invocation counter, so that a
        push resent after a broken link is a duplicate read, never a replayed APDU."""
        if not self._fleet.cipher_pushes or self._identity is None:
            return frame.encode_push_frame(notification)
        sender = frame.Sender(
            self._identity.system_title, self._identity.keys, self.meter.next_invocation_counter()
        )
        return frame.encode_push_frame(notification, sender)

    async def _answer_request(self, link: MeterLink, request: bytes) -> None:
        """Answer what the head-end asked on the down channel, one APDU at a time."""
        answer = self._answer(request)
        if answer is not None:
            await link.send(answer)
        self._queue_alerts()
        await self._flush(link)

    def _queue_alerts(self) -> None:
        """Events that are pushed as they happen (a relay switching) join the outbox."""
        for event in self.meter.events.take_pending():
            self._queue(
                EventEntry(
                    event_log_name(event.log),
                    datetime.fromtimestamp(event.at, tz=self.meter.tz),
                    int(event.code),
                    self.meter.status_word(),
                )
            )

    def _answer(self, request: bytes) -> bytes | None:
        try:
            header, apdu = wrapper.unwrap(request)
        except CodecError as exc:
            log.warning("request_rejected", meter_id=self.meter.meter_id, error=str(exc))
            return None
        if self._identity is None:
            return None
        if self._sessions is None:
            self._sessions = {}  # idle meters that were never asked hold none
        session = self._sessions.get(header.source_wport)
        if session is None:
            if len(self._sessions) >= MAX_SESSIONS:
                self._sessions.pop(next(iter(self._sessions)))
            session = DlmsSession(self.meter, object_model(self.meter.kind), self._identity)
            self._sessions[header.source_wport] = session
        refused = session.refused
        answer = session.handle(apdu, self._fleet.clock.now())
        if session.refused > refused:
            self._fleet.bus.emit(MeterRequestRefused(self.meter.meter_id))
            log.warning("request_refused", meter_id=self.meter.meter_id)
        if answer is None:
            return None
        return wrapper.wrap(answer, header.destination_wport, header.source_wport)

    async def _pause(self, sim_seconds: float) -> None:
        """``sim_seconds``, or until the fleet stops."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + sim_seconds / self._fleet.time_scale
        stopping = self._fleet.stopping
        while not stopping.is_set() and (left := deadline - loop.time()) > 0:
            await self._parked(left)
