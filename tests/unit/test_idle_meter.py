"""A connected meter holds no task while idle: the fleet's wake-ups, its link and the
fleet wake it. An in-memory link stands in for MQTT; the run's clock is a fast SimClock."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta, timezone
from types import TracebackType

from hes_sim.clock import SimClock
from hes_sim.errors import BrokerError
from hes_sim.events import Event, EventBus, MeterLinkLost, PushSent
from hes_sim.meter_sim.fleet import Fleet, build_meters
from hes_sim.meter_sim.meter import MeterKind
from hes_sim.meter_sim.runtime import RunPlan
from hes_sim.meter_sim.schedule import IntervalSchedule
from hes_sim.meter_sim.transport import LinkListener

IST = timezone(timedelta(hours=5, minutes=30))
START = 1_795_000_500.0  # 300 s before an interval boundary
SCALE = 900.0  # a simulated 15 minutes a wall second


class MemoryLink:
    """A ListeningLink and its own context manager; the test plays the broker."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock
        self.connect_wall_s = 0.0
        self.sent: list[float] = []  # simulated time of each send
        self.frames: deque[bytes] = deque()
        self.taken: list[bytes] = []
        self.listener: LinkListener | None = None
        self.lost = False
        self.exited: type[BaseException] | str | None = "open"

    async def __aenter__(self) -> MemoryLink:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: object, tb: TracebackType | None
    ) -> None:
        self.exited = exc_type

    async def send(self, frame: bytes) -> None:
        if self.lost:
            raise BrokerError("link lost")
        self.sent.append(self._clock.now())

    def receive(self) -> deque[bytes]:
        raise AssertionError("a listening link is never iterated")

    def abandon(self) -> None:
        self.lost = True

    def listen(self, listener: LinkListener | None) -> None:
        self.listener = listener

    def take(self) -> bytes | None:
        if self.frames:
            frame = self.frames.popleft()
            self.taken.append(frame)
            return frame
        if self.lost:
            raise BrokerError("link lost")
        return None

    # the broker's side
    def deliver(self, frame: bytes) -> None:
        self.frames.append(frame)
        assert self.listener is not None
        self.listener.link_event()

    def lose(self) -> None:
        self.lost = True
        assert self.listener is not None
        self.listener.link_event()


class Rig:
    def __init__(self) -> None:
        self.clock = SimClock(START, SCALE, wall_anchor=time.time())
        self.links: list[MemoryLink] = []
        self.events: list[Event] = []
        self.bus = EventBus()
        self.bus.subscribe(self.events.append)

    def factory(self, meter_id: str) -> MemoryLink:
        link = MemoryLink(self.clock)
        self.links.append(link)
        return link

    def fleet(self, meters: int = 1, randomisation_s: float = 0) -> Fleet:
        return Fleet(
            build_meters({MeterKind.SINGLE_PHASE: meters}, 1, IST),
            self.factory,
            self.bus,
            seed=1,
            time_scale=SCALE,
            push_randomisation_s=randomisation_s,
            reconnect_base_s=1.0,
            clock=self.clock,
        )


async def until(condition: Callable[[], bool], timeout_s: float = 5) -> None:
    async with asyncio.timeout(timeout_s):
        # the condition (which tasks exist) has no event to wait on: look each loop turn
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0)


def only_this_task() -> bool:
    return asyncio.all_tasks() == {asyncio.current_task()}


async def test_an_idle_meter_holds_no_task_and_pushes_when_its_time_comes() -> None:
    rig = Rig()
    schedule = IntervalSchedule(START, START + 3 * 900, 900)
    async with rig.fleet(meters=3, randomisation_s=60) as fleet:
        await fleet.wait_connected()
        await until(only_this_task)  # connected, waiting for the start: no task at all
        fleet.start(RunPlan(schedule))
        await until(lambda: only_this_task() and fleet._wakeups.pending == 3)
        await fleet.wait_finished()
        await until(only_this_task)  # finished, waiting for the stop: none either
    for runtime, link in zip(fleet.runtimes, rig.links, strict=True):
        ends = schedule.interval_ends()
        wants = [end + runtime.meter.push_offset(end) for end in ends]
        assert len(link.sent) == len(ends)
        for sent, want in zip(link.sent, wants, strict=True):
            assert want <= sent < want + 0.2 * SCALE  # never early; late by a loop turn
        assert link.exited is None  # a goodbye at the stop
    pushed = [e.interval_end for e in rig.events if isinstance(e, PushSent)]
    assert sorted(pushed) == sorted(schedule.interval_ends() * 3)


async def test_a_frame_wakes_an_idle_meter_at_once_and_its_push_stays_filed() -> None:
    rig = Rig()
    async with rig.fleet() as fleet:
        fleet.start(RunPlan(IntervalSchedule(START, START + 3600, 900)))
        await until(lambda: only_this_task() and fleet._wakeups.pending == 1)
        link = rig.links[0]
        link.deliver(b"not a wrapper frame")  # answered with nothing: rejected, logged
        await until(lambda: link.taken == [b"not a wrapper frame"] and only_this_task())
        assert fleet._wakeups.pending == 1  # parked again until the same push
        assert link.sent == []


async def test_a_link_lost_while_idle_wakes_the_meter_which_connects_again() -> None:
    rig = Rig()
    async with rig.fleet() as fleet:
        fleet.start(RunPlan(IntervalSchedule(START, START + 3600, 900)))
        await until(lambda: only_this_task() and len(rig.links) == 1)
        rig.links[0].lose()
        await until(lambda: len(rig.links) == 2 and only_this_task())
        assert rig.links[0].exited is BrokerError  # dropped, not said goodbye to
        assert rig.links[0].listener is None  # and no longer listened to
        lost = [e for e in rig.events if isinstance(e, MeterLinkLost)]
        assert [e.reason for e in lost] == ["link lost"]
        assert fleet._wakeups.pending == 1  # the reconnected meter waits for its push again


async def test_the_stop_wakes_idle_meters_for_their_goodbye() -> None:
    rig = Rig()
    async with rig.fleet(meters=2) as fleet:
        await fleet.wait_connected()
        await until(only_this_task)
    assert [link.exited for link in rig.links] == [None, None]
    assert only_this_task()


class RefusedLink(MemoryLink):
    """A broker that refuses every connection: the meter backs off and tries again."""

    async def __aenter__(self) -> MemoryLink:
        raise BrokerError("connection refused")


def offline_fleet(rig: Rig, meters: int, *, scale: float) -> Fleet:
    """Meters whose back-off pauses last long (minutes at ``scale``)."""
    built = build_meters({MeterKind.SINGLE_PHASE: meters}, 1, IST)
    for meter in built:
        meter.push.repetition_delay = 3600  # a back-off of up to an hour, first time
    return Fleet(
        built, rig.factory, rig.bus, seed=1, time_scale=scale, push_randomisation_s=0,
        clock=rig.clock,
    )  # fmt: skip


def stop_waiters(fleet: Fleet) -> int:
    """Waiters on the fleet's one ``stopping`` Event (each wake-up of one costs O(n))."""
    return len(fleet._stopping._waiters or ())  # type: ignore[attr-defined]


async def test_meters_backing_off_wait_on_their_own_not_on_the_fleets_stop() -> None:
    rig = Rig()
    rig.factory = lambda meter_id: RefusedLink(rig.clock)  # type: ignore[method-assign]
    meters = 200
    fleet = offline_fleet(rig, meters, scale=1.0)
    async with fleet:
        # every meter was refused once and pauses now (a few may have tried again)
        await until(lambda: len([e for e in rig.events if isinstance(e, MeterLinkLost)]) >= meters)
        for _ in range(5):
            await asyncio.sleep(0)
        paused = [r for r in fleet.runtimes if r._worker is not None]
        assert len(paused) > meters // 2
        assert stop_waiters(fleet) == 0  # was one a paused meter
        assert len(asyncio.all_tasks()) == len(paused) + 1  # a worker each, no helpers
        stopped_at = time.monotonic()
    assert time.monotonic() - stopped_at < 1.0  # the stop ends the pauses at once
    assert only_this_task()
    assert all(r._nudge is None for r in fleet.runtimes)


async def test_meters_waiting_for_power_hold_their_worker_only_and_boot_when_it_is_back() -> None:
    rig = Rig()
    fleet = rig.fleet(meters=50)
    for runtime in fleet.runtimes:
        runtime.power_off()  # mains gone before the first connection
    async with fleet:
        await until(lambda: all(r._nudge is not None for r in fleet.runtimes))
        assert stop_waiters(fleet) == 0  # was one a meter, and two tasks
        assert len(asyncio.all_tasks()) == 50 + 1
        assert not rig.links
        for runtime in fleet.runtimes:
            runtime.power_on()
        await fleet.wait_connected()  # booted (20 s simulated, at x900), then connected
        assert len(rig.links) == 50
    assert only_this_task()


async def test_the_stop_ends_a_wait_for_power_and_a_cancelled_pause_stays_cancelled() -> None:
    rig = Rig()
    rig.factory = lambda meter_id: RefusedLink(rig.clock)  # type: ignore[method-assign]
    fleet = offline_fleet(rig, 2, scale=1.0)
    fleet.runtimes[0].power_off()
    async with fleet:
        waiting = fleet.runtimes[0]
        paused = fleet.runtimes[1]
        await until(lambda: waiting._nudge is not None and paused._nudge is not None)
        worker = paused._worker
        assert worker is not None
        worker.cancel()  # a cancel is never taken for the end of a pause
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        assert worker.cancelled()
        assert paused._ended
        stopped_at = time.monotonic()
    assert time.monotonic() - stopped_at < 1.0
    assert waiting._worker is None
    assert only_this_task()
