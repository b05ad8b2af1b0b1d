"""Which block-load intervals a run covers. Pure arithmetic on simulated Unix seconds."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class IntervalSchedule:
    sim_start: float
    sim_end: float
    interval_s: int

    @property
    def first_end(self) -> float:
        """The first interval boundary after the start (intervals are clock-aligned)."""
        return (math.floor(self.sim_start / self.interval_s) + 1) * self.interval_s

    def interval_ends(self) -> list[float]:
        ends: list[float] = []
        end = self.first_end
        while end <= self.sim_end:
            ends.append(end)
            end += self.interval_s
        return ends

    @property
    def count(self) -> int:
        return max(0, math.floor((self.sim_end - self.first_end) / self.interval_s) + 1)
