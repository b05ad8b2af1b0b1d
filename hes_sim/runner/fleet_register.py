"""The scenario's fleet, and the asset register a run hands the head-end: every meter,
with its kind, cell, feeder and DT."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

from hes_sim.broker_address import BrokerAddress
from hes_sim.clock import SimClock
from hes_sim.events import EventBus
from hes_sim.hes.inventory import MeterInfo
from hes_sim.keyring import FleetKeyring
from hes_sim.meter_sim.fleet import Fleet
from hes_sim.meter_sim.grid import Grid, build_grid, meter_id
from hes_sim.meter_sim.lean import lean_link_factory, loopback_sources
from hes_sim.meter_sim.lean.context import WireTotals, wire_totals_of
from hes_sim.meter_sim.meter import VirtualMeter
from hes_sim.meter_sim.runtime import ServiceGate
from hes_sim.meter_sim.transport import LinkFactory, MeterLink, aiomqtt_link_factory
from hes_sim.runner.shards.messages import shard_of
from hes_sim.scenario.model import Scenario


def scenario_grid(scenario: Scenario) -> Grid:
    """The fleet the scenario describes: the same scenario and seed, the same meters."""
    grid = None if scenario.grid is None else scenario.grid.spec()
    return build_grid(scenario.fleet.counts, scenario.seed, scenario.tz, grid)


def shard_meters(scenario: Scenario, shard: int, shards: int) -> list[VirtualMeter]:
    """The meters of one fleet process. Without a grid only they are built (a process
    need not hold the whole fleet's state); a DT's or feeder's meter reads its children,
    so with a grid the whole grid is built and its share kept."""
    if scenario.grid is not None:
        grid = scenario_grid(scenario)
        return [m for m in grid.meters if shard_of(m.meter_id, shards) == shard]
    return [
        VirtualMeter.create(name, kind, scenario.seed, scenario.tz)
        for kind, count in scenario.fleet.counts.items()
        for number in range(1, count + 1)
        if shard_of(name := meter_id(kind, number), shards) == shard
    ]


def scenario_fleet(
    scenario: Scenario,
    meters: Sequence[VirtualMeter],
    link_factory: LinkFactory,
    bus: EventBus,
    clock: SimClock,
    *,
    keyring: FleetKeyring,
    service: ServiceGate | None = None,
    on_power_loss: Callable[[str], object] | None = None,
) -> Fleet:
    """The scenario's meters (or a shard of them) as a fleet, the same in every process."""
    return Fleet(
        meters,
        link_factory,
        bus,
        seed=scenario.seed,
        time_scale=scenario.time_scale,
        push_randomisation_s=scenario.push.randomisation_start_interval,
        start_spread_s=scenario.fleet.start_spread,
        clock=clock,
        keyring=keyring,
        cipher_pushes=scenario.security.pushes == "ciphered",
        service=service,
        on_power_loss=on_power_loss,
    )


LEAN_SOURCES = 4  # loopback source addresses: the kernel's port search stays cheap


def link_factory(broker: BrokerAddress, transport: str = "aiomqtt") -> LinkFactory:
    """``aiomqtt``: a full client per meter; ``lean``: a bare protocol per meter."""
    if transport == "lean":
        return lean_link_factory(broker, source_hosts=loopback_sources(LEAN_SOURCES))
    return aiomqtt_link_factory(broker)


def routed_link_factory(
    brokers: Sequence[BrokerAddress], transport: str = "aiomqtt"
) -> LinkFactory:
    """Each meter on its broker, by its id (the same assignment in every process)."""
    factories = [link_factory(broker, transport) for broker in brokers]
    if len(factories) == 1:
        return factories[0]
    return RoutedLinks(factories)


class RoutedLinks:
    """A link factory per broker; a meter's link from its broker's factory."""

    def __init__(self, factories: Sequence[LinkFactory]) -> None:
        self._factories = tuple(factories)

    def __call__(self, meter_id: str) -> AbstractAsyncContextManager[MeterLink]:
        return self._factories[shard_of(meter_id, len(self._factories))](meter_id)

    def wire_totals(self) -> WireTotals | None:
        totals = [t for f in self._factories if (t := wire_totals_of(f)) is not None]
        return sum(totals, WireTotals()) if totals else None


def scenario_register(scenario: Scenario, grid: Grid) -> list[MeterInfo]:
    network = scenario.network
    return register_of(grid, network.meters_per_cell, scenario.seed, network.cells)


def register_of(
    grid: Grid, meters_per_cell: int, seed: int, cells: int | None = None
) -> list[MeterInfo]:
    placed = grid.place_in_cells(meters_per_cell, seed, cells)
    return [
        MeterInfo(
            meter_id=meter.meter_id,
            kind=meter.kind.value,
            cell=placed[meter.meter_id],
            feeder=grid.feeder_above(meter.meter_id),
            dt=grid.dt_of.get(meter.meter_id),
        )
        for meter in grid.meters
    ]
