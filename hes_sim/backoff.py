"""Capped exponential back-off with full jitter (pure; the caller sleeps)."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, rng: random.Random, base: float, cap: float) -> None:
        if not 0 < base <= cap:
            raise ValueError(f"need 0 < base <= cap, got base={base} cap={cap}")
        self._rng = rng
        self.base = base
        self.cap = cap
        self.attempt = 0

    def next_delay(self) -> float:
        """The delay before the next attempt: uniform in [0, min(cap, base * 2**attempt)]."""
        ceiling = min(self.cap, self.base * 2**self.attempt)
        self.attempt += 1
        return self._rng.uniform(0, ceiling)

    def reset(self) -> None:
        self.attempt = 0
