"""Household consumption: a daily curve with seeded noise. Pure; no clock of its own.

The curve is the sum of a night base, a morning peak and a larger evening peak, which is
the shape of Indian domestic feeders. Each consumer draws its size, power factor and
supply voltage once from its seed; the noise of each interval is drawn from the seed and
the interval alone, so any interval can be computed again, in any order, with the same
result (profile reads, and a DT meter summing its consumers, rely on that).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


def daily_shape(hour_of_day: float) -> float:
    """Relative demand (about 0.25 at night to 1.0 at the evening peak) at a local hour."""

    def bump(centre: float, width: float) -> float:
        distance = min(abs(hour_of_day - centre), 24 - abs(hour_of_day - centre))
        return math.exp(-0.5 * (distance / width) ** 2)

    return 0.25 + 0.45 * bump(7.5, 1.5) + 0.3 * bump(13.0, 3.0) + 0.75 * bump(20.5, 2.0)


@dataclass(frozen=True, slots=True)
class IntervalLoad:
    """Average electrical quantities over one interval (while supplied)."""

    active_w: float
    power_factor: float
    voltage_v: float
    phase_shares: tuple[float, float, float]  # how the load splits over R, Y, B
    phase_volts: tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class HouseholdProfile:
    """One consumer's constants, drawn once from its seed."""

    seed: int
    peak_w: float
    power_factor: float
    nominal_voltage: float

    @classmethod
    def draw(cls, seed: int, typical_peak_w: float) -> HouseholdProfile:
        rng = random.Random(seed)
        return cls(
            seed=seed,
            peak_w=typical_peak_w * rng.lognormvariate(0.0, 0.35),
            power_factor=rng.uniform(0.88, 0.98),
            nominal_voltage=rng.gauss(232.0, 4.0),
        )

    def interval(self, interval_end: float, local_hour: float) -> IntervalLoad:
        rng = random.Random(self.seed ^ int(interval_end))
        shape = daily_shape(local_hour)
        active = self.peak_w * shape * max(0.2, rng.gauss(1.0, 0.15))
        pf = min(0.999, max(0.7, self.power_factor + rng.gauss(0.0, 0.01)))
        # supply voltage sags a little under evening load, as LT networks do
        voltage = self.nominal_voltage - 6.0 * shape + rng.gauss(0, 1.0)
        shares = [max(0.05, rng.gauss(1 / 3, 0.03)) for _ in range(3)]
        total = sum(shares)
        r, y, b = (share / total for share in shares)
        vr, vy, vb = (voltage + rng.gauss(0, 1.5) for _ in range(3))
        return IntervalLoad(active, pf, voltage, (r, y, b), (vr, vy, vb))
