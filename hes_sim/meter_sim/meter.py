"""A virtual meter's measuring side: energy registers and block-load entries. Pure."""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import StrEnum

from hes_sim.meter_sim.load_model import HouseholdLoad, IntervalLoad
from hes_sim.protocols.block_load import (
    SINGLE_PHASE_BLOCK_LOAD,
    THREE_PHASE_BLOCK_LOAD,
    BlockLoadEntry,
    ProfileLayout,
)


class MeterKind(StrEnum):
    SINGLE_PHASE = "single_phase"
    THREE_PHASE = "three_phase"


@dataclass(frozen=True, slots=True)
class KindSpec:
    id_prefix: str
    layout: ProfileLayout
    peak_w: float  # typical evening-peak demand of a consumer on this kind of meter


KIND_SPECS = {
    MeterKind.SINGLE_PHASE: KindSpec("SP", SINGLE_PHASE_BLOCK_LOAD, 500.0),
    MeterKind.THREE_PHASE: KindSpec("TP", THREE_PHASE_BLOCK_LOAD, 2_000.0),
}


def meter_seed(fleet_seed: int, meter_id: str) -> int:
    """A per-meter seed that depends only on the fleet seed and the meter id."""
    digest = hashlib.blake2b(f"{fleet_seed}:{meter_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(slots=True)
class EnergyRegisters:
    """Cumulative registers, in Wh / VAh / varh. They only ever go up."""

    wh_import: float = 0.0
    vah_import: float = 0.0
    varh_lag: float = 0.0


@dataclass(slots=True)
class VirtualMeter:
    meter_id: str
    kind: MeterKind
    load: HouseholdLoad
    rng: random.Random
    tz: timezone
    registers: EnergyRegisters = field(default_factory=EnergyRegisters)
    # the integer part already reported in block values; fractions carry to the next block
    _reported: EnergyRegisters = field(default_factory=EnergyRegisters)

    @classmethod
    def create(cls, meter_id: str, kind: MeterKind, fleet_seed: int, tz: timezone) -> VirtualMeter:
        rng = random.Random(meter_seed(fleet_seed, meter_id))
        return cls(meter_id, kind, HouseholdLoad(rng, KIND_SPECS[kind].peak_w), rng, tz)

    @property
    def layout(self) -> ProfileLayout:
        return KIND_SPECS[self.kind].layout

    def close_interval(self, interval_end: float, interval_s: float) -> BlockLoadEntry:
        """Integrate the interval ending at ``interval_end`` (simulated Unix seconds)."""
        end = datetime.fromtimestamp(interval_end, tz=self.tz)
        middle = end - timedelta(seconds=interval_s / 2)
        load = self.load.interval(middle.hour + middle.minute / 60 + middle.second / 3600)
        hours = interval_s / 3600
        apparent = load.active_w / load.power_factor
        reactive = math.sqrt(max(0.0, apparent**2 - load.active_w**2))
        self.registers.wh_import += load.active_w * hours
        self.registers.vah_import += apparent * hours
        self.registers.varh_lag += reactive * hours
        block_wh = self._take("wh_import")
        block_vah = self._take("vah_import")
        block_varh = self._take("varh_lag")
        values = (
            self._single_phase(load, block_wh, block_vah)
            if self.kind is MeterKind.SINGLE_PHASE
            else self._three_phase(load, block_wh, block_vah, block_varh)
        )
        return BlockLoadEntry(self.layout, end, values)

    def _take(self, name: str) -> int:
        """Whole units accrued since the last block; keeps registers and blocks consistent."""
        total = math.floor(getattr(self.registers, name))
        block: int = total - int(getattr(self._reported, name))
        setattr(self._reported, name, float(total))
        return block

    def _single_phase(self, load: IntervalLoad, wh: int, vah: int) -> tuple[int, ...]:
        current = load.active_w / (load.voltage_v * load.power_factor)
        return (_deci(load.voltage_v), _centi(current), wh, 0, vah, 0)

    def _three_phase(self, load: IntervalLoad, wh: int, vah: int, varh: int) -> tuple[int, ...]:
        # unbalance between phases of a few percent, as on a real LT service
        shares = [max(0.05, self.rng.gauss(1 / 3, 0.03)) for _ in range(3)]
        total = sum(shares)
        volts = [load.voltage_v + self.rng.gauss(0, 1.5) for _ in range(3)]
        amps = [
            load.active_w * share / total / (volt * load.power_factor)
            for share, volt in zip(shares, volts, strict=True)
        ]
        return (
            *(_centi(a) for a in amps),
            *(_deci(v) for v in volts),
            wh,
            0,
            varh,
            0,
            0,
            0,
            vah,
            0,
        )


def _deci(value: float) -> int:
    return max(0, min(0xFFFF, round(value * 10)))


def _centi(value: float) -> int:
    return max(0, min(0xFFFF, round(value * 100)))
