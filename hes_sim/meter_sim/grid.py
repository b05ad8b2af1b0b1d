"""The network the meters sit on: feeders, distribution transformers, consumers. Pure.

LT consumers (single-phase, three-phase, LT-CT) are spread over the DTs in a seeded
order; HT consumers hang directly on the feeders. With a grid, every DT and every feeder
gets its own meter, which measures what is below it plus a technical loss, so that
energy balances from consumer to feeder as it does on a real network.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timezone

from hes_sim.meter_sim.meter import KIND_SPECS, MeterKind, VirtualMeter


@dataclass(frozen=True, slots=True)
class GridSpec:
    feeders: int
    dts_per_feeder: int
    technical_loss: float  # added at each level: DT over its consumers, feeder over its DTs


@dataclass(frozen=True, slots=True)
class Grid:
    meters: list[VirtualMeter]  # consumers first, then DT meters, then feeder meters
    dt_of: dict[str, str]  # consumer meter id -> DT meter id
    feeder_of: dict[str, str]  # DT or HT consumer meter id -> feeder meter id

    def feeder_above(self, meter_id: str) -> str | None:
        """The feeder a meter hangs on, through its DT when it has one."""
        return self.feeder_of.get(self.dt_of.get(meter_id, meter_id))

    def place_in_cells(
        self, meters_per_cell: int, seed: int, cells: int | None = None
    ) -> dict[str, str]:
        """Meter id -> cell id. Meters of one DT share its cell (they stand near it);
        without a grid, meters come in a seeded order. With ``cells``, exactly that many
        cells, each DT's group going to the least filled; else cells of at most
        ``meters_per_cell`` (a DT's group is never split), filled in order."""
        by_dt: dict[str, list[str]] = {}
        for meter in self.meters:
            by_dt.setdefault(self.dt_of.get(meter.meter_id, meter.meter_id), []).append(
                meter.meter_id
            )
        groups = list(by_dt.values())
        if not self.dt_of:
            random.Random(seed ^ 0xCE11).shuffle(groups)
        placed: dict[str, str] = {}
        if cells is not None:
            filled = [0] * cells
            for group in groups:
                index = filled.index(min(filled))
                placed.update(dict.fromkeys(group, f"CELL{index + 1:04d}"))
                filled[index] += len(group)
            return placed
        cell, count = 1, 0
        for group in groups:
            if count and count + len(group) > meters_per_cell:
                cell, count = cell + 1, 0
            placed.update(dict.fromkeys(group, f"CELL{cell:04d}"))
            count += len(group)
        return placed


def meter_id(kind: MeterKind, number: int) -> str:
    return f"{KIND_SPECS[kind].id_prefix}{number:07d}"


def build_grid(
    counts: dict[MeterKind, int], fleet_seed: int, tz: timezone, grid: GridSpec | None
) -> Grid:
    consumers = [
        VirtualMeter.create(meter_id(kind, number), kind, fleet_seed, tz)
        for kind, count in counts.items()
        for number in range(1, count + 1)
    ]
    if grid is None:
        return Grid(consumers, {}, {})
    order = random.Random(fleet_seed ^ 0x6121D)
    low_voltage = [m for m in consumers if m.kind is not MeterKind.HT_CT]
    order.shuffle(low_voltage)

    def network_meter(kind: MeterKind, number: int, children: list[VirtualMeter]) -> VirtualMeter:
        meter = VirtualMeter.network(
            meter_id(kind, number),
            kind,
            fleet_seed,
            tz,
            children=children,
            technical_loss=grid.technical_loss,
        )
        parent_of = dt_of if kind is MeterKind.DT else feeder_of
        parent_of.update({child.meter_id: meter.meter_id for child in children})
        return meter

    dt_of: dict[str, str] = {}
    feeder_of: dict[str, str] = {}
    total_dts = grid.feeders * grid.dts_per_feeder
    dts = [
        network_meter(MeterKind.DT, index + 1, low_voltage[index::total_dts])
        for index in range(total_dts)
    ]
    high_voltage = [m for m in consumers if m.kind is MeterKind.HT_CT]
    per_feeder = grid.dts_per_feeder
    feeders = [
        network_meter(
            MeterKind.FEEDER,
            index + 1,
            dts[index * per_feeder : (index + 1) * per_feeder]
            + high_voltage[index :: grid.feeders],
        )
        for index in range(grid.feeders)
    ]
    return Grid(consumers + dts + feeders, dt_of, feeder_of)
