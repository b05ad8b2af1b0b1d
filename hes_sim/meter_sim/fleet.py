"""The fleet: every meter's runtime, its work in one TaskGroup, owned by an async context
manager.

A meter holds a task only while it works (see :mod:`hes_sim.meter_sim.runtime`); the
fleet owns those tasks, and one :class:`WakeScheduler` that wakes its idle meters.
Entering the fleet is its cold start: every meter connects at once, or, with a start
spread, each at its own seeded point of the spread, woken by the same scheduler.
Shutdown is two-phase: ``stopping`` is set and every meter woken, so that meters say
goodbye and disconnect; whatever is still running after the grace period is cancelled.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from datetime import timezone
from types import TracebackType
from typing import Any

import structlog

from hes_sim.backoff import Backoff, LazyRandom
from hes_sim.clock import SimClock
from hes_sim.events import EventBus
from hes_sim.keyring import FleetKeyring
from hes_sim.meter_sim.cosem.server import Identity
from hes_sim.meter_sim.grid import GridSpec, build_grid
from hes_sim.meter_sim.lean.context import WireTotals, wire_totals_of
from hes_sim.meter_sim.meter import MeterKind, VirtualMeter, meter_seed
from hes_sim.meter_sim.runtime import FleetShared, MeterRuntime, RunPlan, ServiceGate
from hes_sim.meter_sim.transport import LinkFactory
from hes_sim.meter_sim.wakeups import WakeScheduler

log = structlog.get_logger(__name__)


def build_meters(
    counts: dict[MeterKind, int], fleet_seed: int, tz: timezone, grid: GridSpec | None = None
) -> list[VirtualMeter]:
    """Meters numbered per kind (SP0000001…, TP0000001…), and DT and feeder meters
    (DT0000001…, FD0000001…) when a grid is given."""
    return build_grid(counts, fleet_seed, tz, grid).meters


FIRST_CONNECT_SALT = 0x57A27  # the cold start's draws, apart from back-off's and boot's


def first_connect_delay(fleet_seed: int, meter_id: str, spread_s: float) -> float:
    """Simulated seconds from the fleet's start to the meter's first connect: uniform in
    ``[0, spread_s)``, from the meter's own seeded generator (same seed, same draw).

    A generator made for this one draw and dropped: the meter's kept one
    (``MeterRuntime``'s lazy ``rng``) would hold its 2.5 KB of state for the whole run
    once drawn from, in every meter, and its later draws would shift with the spread."""
    if spread_s <= 0:
        return 0.0
    draws = random.Random(meter_seed(fleet_seed, meter_id) ^ FIRST_CONNECT_SALT)
    return draws.random() * spread_s


# wall seconds for the meters' goodbyes at the stop (a retained "offline" at QoS 1, then
# DISCONNECT, each), by default: 14,000 meters in each of seven fleet processes sharing two
# cores took more than ten seconds, and the goodbyes left were cancelled (the brokers'
# wills said "offline" in their stead). A sharded run's parent waits longer still.
SHUTDOWN_GRACE_S = 10.0
SHUTDOWN_GRACE_PER_METER_S = 0.002


class Fleet:
    def __init__(
        self,
        meters: Sequence[VirtualMeter],
        link_factory: LinkFactory,
        bus: EventBus,
        *,
        seed: int,
        time_scale: float,
        push_randomisation_s: float,
        reconnect_base_s: float = 5.0,
        reconnect_cap_s: float = 300.0,
        connect_concurrency: int = 200,
        start_spread_s: float = 0.0,
        shutdown_grace_s: float | None = None,
        clock: SimClock,
        keyring: FleetKeyring | None = None,
        cipher_pushes: bool = True,
        service: ServiceGate | None = None,
        on_power_loss: Callable[[str], object] | None = None,
    ) -> None:
        if start_spread_s < 0:
            raise ValueError(f"start_spread_s must be >= 0, got {start_spread_s}")
        self._seed = seed
        self._start_spread_s = start_spread_s  # simulated seconds
        self._clock = clock
        self._plan: asyncio.Future[RunPlan | None] = asyncio.get_running_loop().create_future()
        self._stopping = asyncio.Event()
        self._grace_s = (
            shutdown_grace_s
            if shutdown_grace_s is not None
            else SHUTDOWN_GRACE_S + SHUTDOWN_GRACE_PER_METER_S * len(meters)
        )
        self._wakeups = WakeScheduler()
        self._group = asyncio.TaskGroup()
        self._working: set[asyncio.Task[None]] = set()  # the meters' tasks running now
        self._shared = shared = FleetShared(
            link_factory,
            bus,
            time_scale,
            asyncio.Semaphore(connect_concurrency),
            self._plan,
            self._stopping,
            clock,
            self._wakeups,
            self._spawn,
            cipher_pushes=cipher_pushes and keyring is not None,
            service=service,
            on_power_loss=on_power_loss,
        )
        self._links = link_factory
        self.runtimes: list[MeterRuntime] = []
        counter_floor = int(time.time())
        for meter in meters:
            meter.push.randomisation_start_interval = round(push_randomisation_s)
            # suite-0 counters start at the wall clock's seconds, so a meter of a later run
            # with the same fleet secret does not reuse an (IV, key) pair of an earlier one
            meter.invocation_counter = max(meter.invocation_counter, counter_floor)
            # drawn lazily: a meter that never reconnects never builds its generators
            rng = LazyRandom(meter_seed(seed, meter.meter_id) ^ 0x5EED)
            base = float(meter.push.repetition_delay) or reconnect_base_s
            self.runtimes.append(
                MeterRuntime(
                    meter,
                    shared,
                    # the push setup's repetition delay paces a meter's retries
                    backoff=Backoff(rng, base, max(reconnect_cap_s, base)),
                    identity=None
                    if keyring is None
                    else Identity(
                        keyring.system_title_for(meter.meter_id), keyring.keys_for(meter.meter_id)
                    ),
                    rng=LazyRandom(meter_seed(seed, meter.meter_id) ^ 0xB007),
                )
            )
        self._by_id = {runtime.meter.meter_id: runtime for runtime in self.runtimes}

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = self._group.create_task(work, name=name)
        self._working.add(task)
        task.add_done_callback(self._working.discard)
        return task

    async def __aenter__(self) -> Fleet:
        await self._group.__aenter__()
        spread = self._start_spread_s
        for runtime in self.runtimes:
            if spread > 0:
                # as when an area is powered on at once: each meter's first connect at its
                # own point of the spread, so that the fleet's CPU does not pace it
                delay = first_connect_delay(self._seed, runtime.meter.meter_id, spread)
                runtime.connect_after(self._clock.wall_seconds(delay))
            else:
                runtime.wake()  # each connects, then parks until its first push
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        if not self._plan.done():
            self._plan.set_result(None)  # meters still waiting for the start just leave
        self._wakeups.clear()
        for runtime in self.runtimes:
            runtime.wake()  # idle meters say goodbye; busy ones see the stop themselves
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._grace_s
        # a meter may start another task while stopping (a link reader ends, a worker
        # follows), so wait for the set as it is now until it is empty or time is up
        while self._working and (left := deadline - loop.time()) > 0:
            await asyncio.wait(list(self._working), timeout=left)
        if self._working:
            log.warning("fleet_shutdown_cancelling", tasks=len(self._working))
            for task in self._working:
                task.cancel()
        await self._group.__aexit__(exc_type, exc, tb)

    @property
    def connected(self) -> int:
        """Meters that have connected once."""
        return self._shared.connected.count

    @property
    def finished(self) -> int:
        return self._shared.finished.count

    async def wait_connected(self) -> None:
        """Until every meter has connected once (meters keep retrying on their own)."""
        await asyncio.gather(*(r.connected.wait() for r in self.runtimes))

    def powered(self) -> int:
        return self._shared.powered.count

    def wire_totals(self) -> WireTotals | None:
        """What the meters' links met on the wire (lean links count it; None otherwise)."""
        return wire_totals_of(self._links)

    def power_off(self, meter_ids: Iterable[str]) -> int:
        """Mains lost for these meters (an outage upstream); how many were on."""
        return sum(self._by_id[m].power_off() for m in meter_ids if m in self._by_id)

    def power_on(self, meter_ids: Iterable[str]) -> int:
        return sum(self._by_id[m].power_on() for m in meter_ids if m in self._by_id)

    def start(self, plan: RunPlan) -> None:
        self._plan.set_result(plan)
        for runtime in self.runtimes:
            runtime.wake()  # connected meters park until the start

    async def wait_finished(self) -> None:
        """Until every meter has pushed its last interval of the run."""
        await asyncio.gather(*(r.finished.wait() for r in self.runtimes))
