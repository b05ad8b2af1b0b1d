"""The run's side of a fleet spread over processes: the same face as an in-process
:class:`~hes_sim.meter_sim.fleet.Fleet` (connected, start, wait_finished, power), so the
run drives either the same way.

Each process reports its meters' events, re-emitted here on the run's bus, and a status.
A process that dies is logged and counted; its meters stay unconnected or unfinished, and
the run's own time limits decide, as they do for meters that never come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import structlog

from hes_sim.broker_address import BrokerAddress
from hes_sim.clock import SimClock
from hes_sim.events import EventBus
from hes_sim.meter_sim.lean.context import WireTotals
from hes_sim.meter_sim.runtime import RunPlan
from hes_sim.pipe_frames import end_children, write_to
from hes_sim.runner.shards.messages import (
    Events,
    Hello,
    Power,
    ShardError,
    Start,
    Status,
    Stop,
    ToWorker,
    frame,
    read_message,
    shard_of,
)

log = structlog.get_logger(__name__)

# a fleet process says goodbye for its meters (each a clean MQTT disconnect), then is killed;
# longer than the fleet's own grace for them (meter_sim.fleet.SHUTDOWN_GRACE_S and
# SHUTDOWN_GRACE_PER_METER_S)
STOP_GRACE_WALL_S = 20.0
STOP_GRACE_PER_METER_WALL_S = 0.003  # 14,000 lean meters took over 20 s here


@dataclass(slots=True)
class _Shard:
    index: int
    meters: int  # assigned to it
    process: asyncio.subprocess.Process
    status: Status = field(default_factory=lambda: Status(0, 0, 0, 0))
    failed: bool = False


class ShardedFleet:
    def __init__(
        self,
        scenario_path: Path,
        meter_ids: Iterable[str],
        *,
        processes: int,
        brokers: Sequence[BrokerAddress],
        fleet_secret: bytes,
        bus: EventBus,
        clock: SimClock,
        transport: str = "aiomqtt",
    ) -> None:
        if processes < 1:
            raise ValueError(f"processes must be >= 1, not {processes}")
        self._scenario_path = scenario_path
        self._processes = processes
        self._brokers = list(brokers)
        self._secret = fleet_secret
        self._bus = bus
        self._clock = clock
        self._transport = transport
        self._assigned = Counter(shard_of(m, processes) for m in meter_ids)
        self.meters = sum(self._assigned.values())
        self._shards: list[_Shard] = []
        self._changed = asyncio.Event()
        self._stopping = False
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        try:
            group = await self._stack.enter_async_context(asyncio.TaskGroup())
            for index in range(self._processes):
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "hes_sim.runner.shards.worker",
                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                )  # fmt: skip
                shard = _Shard(index, self._assigned[index], process)
                self._shards.append(shard)
                broker = self._brokers[index % len(self._brokers)]
                hello = Hello(str(self._scenario_path), index, self._processes, str(broker),
                              self._secret, self._transport)  # fmt: skip
                self._send(shard, hello)
                group.create_task(self._listen(shard), name=f"fleet-shard:{index}")
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        self._stopping = True
        for shard in self._shards:
            self._send(shard, Stop())
        largest = max((shard.meters for shard in self._shards), default=0)
        try:
            grace = STOP_GRACE_WALL_S + STOP_GRACE_PER_METER_WALL_S * largest
            killed = await end_children([shard.process for shard in self._shards], grace)
            if killed:
                log.warning("fleet_shards_killed", shards=killed)
        finally:
            await self._stack.aclose()

    def _send(self, shard: _Shard, message: ToWorker) -> None:
        write_to(shard.process, frame(message))

    async def _listen(self, shard: _Shard) -> None:
        stdout = shard.process.stdout
        if stdout is None:  # pragma: no cover - created with a pipe
            raise ShardError("a fleet process without a pipe")
        try:
            while (message := await read_message(stdout)) is not None:
                match message:
                    case Events(events=events):
                        for event in events:
                            self._bus.emit(event)
                    case Status():
                        shard.status = message
                        self._changed.set()
                    case _:
                        log.warning("fleet_shard_unexpected", shard=shard.index,
                                    message=type(message).__name__)  # fmt: skip
        except ShardError as exc:
            log.error("fleet_shard_garbled", shard=shard.index, error=str(exc))  # noqa: TRY400
        code = await shard.process.wait()
        if code != 0 and not self._stopping:  # killed at the end: logged once, as killed
            shard.failed = True
            log.error("fleet_shard_exited", shard=shard.index, code=code,
                      meters=shard.meters)  # fmt: skip
        self._changed.set()

    # ---------------------------------------------------------------- the Fleet's face

    @property
    def connected(self) -> int:
        return sum(shard.status.connected for shard in self._shards)

    @property
    def finished(self) -> int:
        return sum(shard.status.finished for shard in self._shards)

    @property
    def failed_processes(self) -> int:
        return sum(shard.failed for shard in self._shards)

    def powered(self) -> int:
        return sum(shard.status.powered for shard in self._shards)

    def wire_totals(self) -> WireTotals | None:
        """What the fleet processes' lean links met on the wire, as last reported."""
        reported = [s.status.wire for s in self._shards if s.status.wire is not None]
        return sum(reported, WireTotals()) if reported else None

    async def wait_connected(self) -> None:
        await self._until(lambda: self.connected >= self.meters)

    async def wait_finished(self) -> None:
        await self._until(lambda: self.finished >= self.meters)

    def start(self, _plan: RunPlan) -> None:
        """Every process starts its meters on the run clock (each builds the plan itself
        from the scenario)."""
        if self._clock.wall_anchor is None:
            raise ShardError("start the run clock before the fleet")
        for shard in self._shards:
            self._send(shard, Start(self._clock.wall_anchor))

    def power_off(self, meter_ids: Iterable[str]) -> int:
        return self._power(meter_ids, on=False)

    def power_on(self, meter_ids: Iterable[str]) -> int:
        return self._power(meter_ids, on=True)

    def _power(self, meter_ids: Iterable[str], *, on: bool) -> int:
        """Sent to the processes holding the meters; how many meters were named."""
        by_shard: dict[int, list[str]] = {}
        for meter_id in meter_ids:
            by_shard.setdefault(shard_of(meter_id, self._processes), []).append(meter_id)
        for index, ids in by_shard.items():
            self._send(self._shards[index], Power(tuple(ids), on=on))
        return sum(len(ids) for ids in by_shard.values())

    async def _until(self, done: Callable[[], bool]) -> None:
        while not done():
            if all(shard.process.returncode is not None for shard in self._shards):
                raise ShardError("every fleet process has ended")
            self._changed.clear()
            await self._changed.wait()
