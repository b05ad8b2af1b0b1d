"""The scenario's timeline: cells, feeders and DTs going down and coming back, signal and
congestion trouble, a broker restart — applied at their simulated times."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from hes_sim.clock import SimClock
from hes_sim.errors import ScenarioError
from hes_sim.hes.inventory import MeterInfo
from hes_sim.meter_sim.fleet import Fleet
from hes_sim.runner.network import SimulatedNetwork
from hes_sim.runner.network_tally import NetworkTally
from hes_sim.runner.shards.fleet import ShardedFleet
from hes_sim.scenario.model import (
    BrokerRestart,
    CellOutage,
    CongestionSpike,
    DtOutage,
    FeederOutage,
    SignalDegradation,
    TimelineEvent,
)

log = structlog.get_logger(__name__)


class RestartableBroker(Protocol):
    """A broker the run started itself (a :class:`~hes_sim.runner.broker.PrivateMosquitto`),
    which it can stop and start again on the same port."""

    async def stop(self) -> None: ...

    async def start(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Step:
    at: float  # simulated seconds after the start
    text: str
    act: Callable[[], Awaitable[None]]


class Timeline:
    def __init__(
        self,
        events: list[TimelineEvent],
        register: list[MeterInfo],
        *,
        fleet: Fleet | ShardedFleet,
        network: SimulatedNetwork | None,
        tally: NetworkTally,
        clock: SimClock,
        brokers: Sequence[RestartableBroker] = (),
        broker: RestartableBroker | None = None,
    ) -> None:
        """``brokers``: every broker the run started (a broker restart restarts them all);
        ``broker``: one more, for a caller with a single broker. None of either: the run
        uses someone else's broker, which the timeline cannot restart."""
        self._register = register
        self._fleet = fleet
        self._network = network
        self._brokers = [*brokers, *(() if broker is None else (broker,))]
        self._tally = tally
        self._clock = clock
        self._start = clock.sim_start
        self.steps = sorted(
            (step for index, event in enumerate(events) for step in self._steps(index, event)),
            key=lambda step: step.at,
        )

    async def run(self, start: float) -> None:
        self._start = start
        for step in self.steps:
            await self._clock.sleep_until(start + step.at)
            log.info("timeline", at=step.at, what=step.text)
            self._tally.note(step.at, step.text)
            await step.act()

    # ---------------------------------------------------------------- building

    def _steps(self, index: int, event: TimelineEvent) -> list[Step]:
        where = f"timeline.{index}"
        match event:
            case CellOutage():
                return [self._cell_step(where, event)]
            case FeederOutage(kind=kind, feeder=feeder):
                meters = self._below(where, "feeder", feeder)
                return [self._power_step(event.at, kind == "feeder_outage", f"feeder {feeder}",
                                         meters)]  # fmt: skip
            case DtOutage(kind=kind, dt=dt):
                meters = self._below(where, "dt", dt)
                return [self._power_step(event.at, kind == "dt_outage", f"DT {dt}", meters)]
            case SignalDegradation() | CongestionSpike():
                return self._radio_trouble(where, event)
            case BrokerRestart(downtime=downtime):
                if not self._brokers:
                    raise ScenarioError(f"{where}: broker_restart needs the run's private broker")
                count = len(self._brokers)
                which = "" if count == 1 else f"{count} brokers, "
                return [Step(event.at, f"broker restart ({which}{downtime:g} s down)",
                             lambda: self._restart_brokers(downtime))]  # fmt: skip

    def _cell_step(self, where: str, event: CellOutage) -> Step:
        cell = event.cell
        meters = self._cell(where, cell)
        if event.kind == "cell_down":
            return Step(event.at, f"cell {cell} down ({len(meters)} meters)",
                        self._act(self._cell_down, cell, meters))  # fmt: skip
        return Step(event.at, f"cell {cell} up", self._act(self._cell_up, cell, meters))

    def _radio_trouble(self, where: str, event: SignalDegradation | CongestionSpike) -> list[Step]:
        """A spell of bad signal or of congestion in a cell, and its end."""
        cell = event.cell
        self._cell(where, cell)
        radio = self._radio().radio
        now = self._clock.now
        if isinstance(event, SignalDegradation):
            factor, loss = event.latency_factor, event.extra_loss
            return [
                Step(event.at, f"cell {cell} signal degraded x{factor:g} +{loss:g} loss",
                     self._act(lambda: radio.degrade(cell, factor, loss, now()))),
                Step(event.at + event.duration, f"cell {cell} signal restored",
                     self._act(lambda: radio.restore_signal(cell, now()))),
            ]  # fmt: skip
        share = event.capacity_factor
        return [
            Step(event.at, f"cell {cell} congested to {share:.0%} of capacity",
                 self._act(lambda: radio.congest(cell, share, now()))),
            Step(event.at + event.duration, f"cell {cell} capacity back",
                 self._act(lambda: radio.congest(cell, 1.0, now()))),
        ]  # fmt: skip

    @staticmethod
    def _act(action: Callable[..., object], *args: object) -> Callable[[], Awaitable[None]]:
        async def act() -> None:
            action(*args)

        return act

    def _radio(self) -> SimulatedNetwork:
        if self._network is None:
            raise ScenarioError("this timeline needs the radio model (network.radio: true)")
        return self._network

    def _cell(self, where: str, cell: str) -> list[str]:
        meters = [m.meter_id for m in self._register if m.cell == cell]
        if not meters:
            known = sorted({m.cell for m in self._register if m.cell})
            raise ScenarioError(f"{where}.cell: no cell {cell!r} (cells: {', '.join(known)})")
        return meters

    def _below(self, where: str, level: str, node: str) -> list[str]:
        """Meters that lose mains when ``node`` goes: a DT's meter goes with its
        consumers; a feeder's own meter, at the substation, stays up and reads zero."""
        if level == "dt":
            meters = [m.meter_id for m in self._register if m.dt == node]
            meters += [m.meter_id for m in self._register if m.meter_id == node]
        else:
            meters = [m.meter_id for m in self._register if m.feeder == node and m.meter_id != node]
        if not meters:
            raise ScenarioError(f"{where}.{level}: nothing is fed by {node!r}")
        return meters

    def _power_step(self, at: float, outage: bool, what: str, meters: list[str]) -> Step:
        async def act() -> None:
            now = self._clock.now()
            if outage:
                self._tally.lost(meters)
                if self._network is not None:
                    self._network.radio.power_off(meters, now)
                self._fleet.power_off(meters)
            else:
                if self._network is not None:
                    self._network.radio.power_on(meters, now)
                self._fleet.power_on(meters)
                self._tally.restored_now(meters)

        verb = "outage" if outage else "restored"
        return Step(at, f"{what} {verb} ({len(meters)} meters)", act)

    def _cell_down(self, cell: str, meters: list[str]) -> None:
        network = self._radio()
        network.radio.cell_down(cell, self._clock.now())
        network.gate.cell_down(cell)
        self._tally.lost(meters)

    def _cell_up(self, cell: str, meters: list[str]) -> None:
        network = self._radio()
        network.radio.cell_up(cell, self._clock.now())
        network.gate.cell_up(cell)
        self._tally.restored_now(meters)

    async def _restart_brokers(self, downtime: float) -> None:
        """Every broker of the run goes down at once and comes back, each on its own port,
        after ``downtime``: every meter loses its link, whichever broker it was on.

        The meters are waited for from the moment the brokers start: one that gets onto a
        broker up already, while another is still starting, counts as back."""
        everyone = [m.meter_id for m in self._register]
        self._tally.lost(everyone)
        async with asyncio.TaskGroup() as group:
            for broker in self._brokers:
                group.create_task(broker.stop())
        await self._clock.sleep_until(self._clock.now() + downtime)
        self._tally.restored_now(everyone)
        async with asyncio.TaskGroup() as group:
            for broker in self._brokers:
                group.create_task(broker.start())
        self._tally.note(self._clock.now() - self._start, "broker back")
