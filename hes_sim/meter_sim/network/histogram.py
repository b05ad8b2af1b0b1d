"""A fixed-bucket histogram of durations: bounded memory however long a run lasts. Pure."""

from __future__ import annotations

import bisect
import math

# 1 ms to 1000 s, ten buckets a decade (each ~26% wide): fine enough for percentiles of
# link latency and coarse enough to stay small; beyond the last bound is an overflow bucket
BOUNDS: tuple[float, ...] = tuple(10 ** (k / 10 - 3) for k in range(61))


class Histogram:
    def __init__(self, bounds: tuple[float, ...] = BOUNDS) -> None:
        if not bounds or list(bounds) != sorted(bounds) or bounds[0] <= 0:
            raise ValueError("bounds must be positive and ascending")
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # counts[i]: values <= bounds[i]; last: over
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.total += value
        self.max = max(self.max, value)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def quantile(self, q: float) -> float:
        """Estimated q-quantile: geometric interpolation inside the bucket it falls in,
        capped by the largest value seen. 0.0 when empty."""
        if not 0 <= q <= 1:
            raise ValueError(f"q must be in [0, 1], got {q}")
        if not self.count:
            return 0.0
        rank = q * self.count
        seen = 0
        for index, count in enumerate(self.counts):
            if count and seen + count >= rank:
                if index == len(self.bounds):
                    return self.max
                upper = self.bounds[index]
                lower = self.bounds[index - 1] if index else upper / 10 ** (1 / 10)
                fraction = (rank - seen) / count
                return min(self.max, lower * math.pow(upper / lower, fraction))
            seen += count
        return self.max

    def buckets(self) -> list[tuple[float, int]]:
        """(upper bound, cumulative count) as Prometheus exposes them, +inf last."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out
