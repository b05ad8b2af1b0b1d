"""The scenario's timeline: cells, feeders and DTs going down and coming back, signal and
congestion trouble, a broker restart — applied at their simulated times."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from hes_sim.clock import SimClock
from hes_sim.errors import ScenarioError
from hes_sim.hes.inventory import MeterInfo
from hes_sim.meter_sim.fleet import Fleet
from hes_sim.runner.broker import PrivateMosquitto
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
        broker: PrivateMosquitto | None,
        tally: NetworkTally,
        clock: SimClock,
    ) -> None:
        self._register = register
        self._fleet = fleet
        self._network = network
        self._broker = broker
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
                if self._broker is None:
                    raise ScenarioError(f"{where}: broker_restart needs the run's private broker")
                return [Step(event.at, f"broker restart ({downtime:g} s down)",
                             lambda: self._restart_broker(downtime))]  # fmt: skip

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

    async def _restart_broker(self, downtime: float) -> None:
        assert self._broker is not None  # noqa: S101 - checked when the step was built
        everyone = [m.meter_id for m in self._register]
        self._tally.lost(everyone)
        await self._broker.stop()
        await self._clock.sleep_until(self._clock.now() + downtime)
        await self._broker.start()
        self._tally.note(self._clock.now() - self._start, "broker back")
        self._tally.restored_now(everyone)
