"""The asset register a run hands the head-end: every meter of the simulated fleet."""

from __future__ import annotations

from hes_sim.hes.inventory import MeterInfo
from hes_sim.meter_sim.grid import Grid


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
