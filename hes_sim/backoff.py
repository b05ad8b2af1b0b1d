"""Capped exponential back-off with full jitter (pure; the caller sleeps)."""

from __future__ import annotations

import random
from typing import Protocol


class Draws(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


class LazyRandom:
    """``random.Random(seed)``, built on the first draw: a Mersenne Twister holds about
    2.5 KB of state, and most of a hundred thousand meters never draw (they never have to
    reconnect). The draws are those of ``random.Random(seed)``."""

    __slots__ = ("_rng", "_seed")

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._rng: random.Random | None = None

    def uniform(self, a: float, b: float) -> float:
        if self._rng is None:
            self._rng = random.Random(self._seed)
        return self._rng.uniform(a, b)


class Backoff:
    __slots__ = ("_rng", "attempt", "base", "cap")  # one per meter: no __dict__

    def __init__(self, rng: Draws, base: float, cap: float) -> None:
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
