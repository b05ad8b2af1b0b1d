"""Household consumption: a daily curve with seeded noise. Pure; no clock of its own.

The curve is the sum of a night base, a morning peak and a larger evening peak, which is
the shape of Indian domestic feeders. Each meter draws its own size, power factor and
supply voltage once from its seeded generator, then noise per interval.
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
    """Average electrical quantities over one interval."""

    active_w: float
    power_factor: float
    voltage_v: float


class HouseholdLoad:
    """Seeded load of one consumer: ``peak_w`` at the evening peak, noise per interval."""

    def __init__(self, rng: random.Random, peak_w: float) -> None:
        self._rng = rng
        self.peak_w = peak_w * rng.lognormvariate(0.0, 0.35)
        self.power_factor = rng.uniform(0.88, 0.98)
        self.nominal_voltage = rng.gauss(232.0, 4.0)

    def interval(self, local_hour: float) -> IntervalLoad:
        noise = max(0.2, self._rng.gauss(1.0, 0.15))
        active = self.peak_w * daily_shape(local_hour) * noise
        pf = min(0.999, max(0.7, self.power_factor + self._rng.gauss(0.0, 0.01)))
        # supply voltage sags a little under evening load, as LT networks do
        voltage = self.nominal_voltage - 6.0 * daily_shape(local_hour) + self._rng.gauss(0, 1.0)
        return IntervalLoad(active, pf, voltage)
