"""The run's simulated 4G network: the radio model, the proxy the meters' bytes cross,
and the service gate the meters camp on. Built from the scenario and the fleet register."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator

from hes_sim.broker_address import BrokerAddress
from hes_sim.clock import SimClock
from hes_sim.events import EventBus
from hes_sim.hes.inventory import MeterInfo
from hes_sim.meter_sim.network.gate import CellServiceGate
from hes_sim.meter_sim.network.proxy import LinkProxy
from hes_sim.meter_sim.network.radio import RadioNetwork
from hes_sim.meter_sim.network.specs import CellSpec, CoverageHoles, SignalClass
from hes_sim.meter_sim.transport import LinkFactory, aiomqtt_link_factory
from hes_sim.scenario.model import NetworkSpec

CELL_SPACING_KM = 2.0  # cells on a grid, for the record: nothing depends on distance


def cell_specs(network: NetworkSpec, register: list[MeterInfo]) -> list[CellSpec]:
    """One spec per cell of the register's placement."""
    meters: dict[str, int] = {}
    for info in register:
        if info.cell is not None:
            meters[info.cell] = meters.get(info.cell, 0) + 1
    mix = {SignalClass(name): share for name, share in network.signal_mix.model_dump().items()}
    side = max(1, math.ceil(math.sqrt(len(meters))))
    return [
        CellSpec(
            cell_id=cell,
            x_km=CELL_SPACING_KM * (index % side),
            y_km=CELL_SPACING_KM * (index // side),
            max_attached=network.max_attached_per_cell or 2 * count,
            max_messages_per_s=network.max_messages_per_s_per_cell,
            signal_mix=mix,
        )
        for index, (cell, count) in enumerate(sorted(meters.items()))
    ]


class SimulatedNetwork:
    def __init__(
        self, radio: RadioNetwork, gate: CellServiceGate, proxy: LinkProxy, keepalive_wall_s: int
    ) -> None:
        self.radio = radio
        self.gate = gate
        self.proxy = proxy
        self._keepalive_wall_s = keepalive_wall_s

    def link_factory(self) -> LinkFactory:
        # a publish that waits longer than two keep-alives waits on a dead link
        return aiomqtt_link_factory(
            self.proxy.address,
            keepalive_s=self._keepalive_wall_s,
            timeout_s=2.0 * self._keepalive_wall_s + 1.0,
        )


def keepalive_wall_s(keepalive_sim_s: float, time_scale: float) -> int:
    """MQTT keep-alive is whole wall seconds (at least 1): the scenario's simulated
    keep-alive at this time scale."""
    return max(1, round(keepalive_sim_s / time_scale))


@contextlib.asynccontextmanager
async def simulated_network(
    network: NetworkSpec,
    register: list[MeterInfo],
    *,
    broker: BrokerAddress,
    clock: SimClock,
    bus: EventBus,
    seed: int,
    time_scale: float,
) -> AsyncIterator[SimulatedNetwork]:
    cells = cell_specs(network, register)
    cell_of = {info.meter_id: info.cell for info in register if info.cell is not None}
    holes = network.coverage_holes
    radio = RadioNetwork(
        cells,
        cell_of,
        seed=seed,
        holes=CoverageHoles(holes.share, holes.mean_in_service, holes.mean_out_of_service)
        if holes.share > 0
        else None,
    )
    gate = CellServiceGate(radio, clock, [cell.cell_id for cell in cells])
    async with LinkProxy(broker, radio, clock, bus) as proxy:
        yield SimulatedNetwork(radio, gate, proxy, keepalive_wall_s(network.keepalive, time_scale))
