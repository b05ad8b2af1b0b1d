"""Consumption by consumer category: daily and seasonal shape with seeded noise. Pure.

Domestic demand has a night base, a morning peak and a larger evening peak; commercial
demand is a daytime plateau; industrial demand is flat over two shifts. Summer (April to
June) raises demand for cooling, winter lowers it, as on north Indian distribution
networks. Each consumer draws its size, power factor and supply voltage once from its
seed; the noise of each interval is drawn from the seed and the interval alone, so any
interval can be computed again, in any order, with the same result (profile reads, and a
DT meter summing its consumers, rely on that).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Category(StrEnum):
    DOMESTIC = "domestic"
    COMMERCIAL = "commercial"
    INDUSTRIAL = "industrial"


def _bump(hour: float, centre: float, width: float) -> float:
    distance = min(abs(hour - centre), 24 - abs(hour - centre))
    return math.exp(-0.5 * (distance / width) ** 2)


def daily_shape(hour_of_day: float, category: Category = Category.DOMESTIC) -> float:
    """Relative demand at a local hour, about 1.0 at the category's peak."""
    h = hour_of_day
    match category:
        case Category.DOMESTIC:
            return (
                0.25
                + 0.45 * _bump(h, 7.5, 1.5)
                + 0.3 * _bump(h, 13.0, 3.0)
                + 0.75 * _bump(h, 20.5, 2.0)
            )
        case Category.COMMERCIAL:
            return 0.15 + 0.85 * _bump(h, 15.0, 3.5)
        case Category.INDUSTRIAL:
            return 0.55 + 0.45 * (1.0 if 6 <= h < 22 else 0.0)


SEASON = {1: 0.85, 2: 0.9, 3: 1.0, 4: 1.2, 5: 1.3, 6: 1.3, 7: 1.15, 8: 1.1, 9: 1.1, 10: 1.0,
          11: 0.9, 12: 0.85}  # fmt: skip


@dataclass(frozen=True, slots=True)
class IntervalLoad:
    """Average electrical quantities over one interval (while supplied)."""

    active_w: float
    power_factor: float
    voltage_v: float  # phase-to-neutral
    phase_shares: tuple[float, float, float]  # how the load splits over R, Y, B
    phase_volts: tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class ConsumerProfile:
    """One consumer's constants, drawn once from its seed."""

    seed: int
    category: Category
    peak_w: float
    power_factor: float
    nominal_voltage: float

    @classmethod
    def draw(
        cls, seed: int, typical_peak_w: float, category: Category, supply_voltage: float = 232.0
    ) -> ConsumerProfile:
        rng = random.Random(seed)
        return cls(
            seed=seed,
            category=category,
            peak_w=typical_peak_w * rng.lognormvariate(0.0, 0.35),
            power_factor=rng.uniform(0.88, 0.98),
            nominal_voltage=supply_voltage * rng.gauss(1.0, 0.017),
        )

    def demand(self, interval_end: float, interval_s: float, middle: datetime) -> IntervalLoad:
        """What the consumer draws, on average, over the interval whose middle is given
        (``interval_s`` is part of the load-source signature; a consumer's draw does not
        depend on it)."""
        del interval_s
        rng = random.Random(self.seed ^ int(interval_end))
        shape = daily_shape(middle.hour + middle.minute / 60, self.category)
        active = self.peak_w * shape * SEASON[middle.month] * max(0.2, rng.gauss(1.0, 0.15))
        pf = min(0.999, max(0.7, self.power_factor + rng.gauss(0.0, 0.01)))
        # supply voltage sags a little under load, as LT networks do
        voltage = self.nominal_voltage * (1 - 0.026 * shape) + rng.gauss(0, 1.0)
        shares = [max(0.05, rng.gauss(1 / 3, 0.03)) for _ in range(3)]
        total = sum(shares)
        r, y, b = (share / total for share in shares)
        vr, vy, vb = (voltage * rng.gauss(1.0, 0.006) for _ in range(3))
        return IntervalLoad(active, pf, voltage, (r, y, b), (vr, vy, vb))
