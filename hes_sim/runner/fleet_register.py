"""The scenario's fleet, and the asset register a run hands the head-end: every meter,
with its kind, cell, feeder and DT."""

from __future__ import annotations

from hes_sim.hes.inventory import MeterInfo
from hes_sim.meter_sim.grid import Grid, build_grid
from hes_sim.scenario.model import Scenario


def scenario_grid(scenario: Scenario) -> Grid:
    """The fleet the scenario describes: the same scenario and seed, the same meters."""
    grid = None if scenario.grid is None else scenario.grid.spec()
    return build_grid(scenario.fleet.counts, scenario.seed, scenario.tz, grid)


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
