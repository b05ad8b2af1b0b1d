"""How the exporter batches and backs off (times in simulated seconds)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ExportSettings:
    """Times in simulated seconds, except ``shutdown_grace_s`` (wall)."""

    batch_size: int = 500
    retry_base_s: float = 60.0
    retry_cap_s: float = 3600.0
    poll_s: float = 900.0
    shutdown_grace_s: float = 5.0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.poll_s <= 0:
            raise ValueError("batch_size and poll_s must be positive")
        if not 0 < self.retry_base_s <= self.retry_cap_s:
            raise ValueError("need 0 < retry_base_s <= retry_cap_s")


def retry_delay(failures: int, base: float, cap: float, rng: random.Random) -> float:
    """The wait after ``failures`` failures in a row (the first: 0): uniform in [c/2, c]
    with c = min(cap, base * 2**failures). Half the ceiling is always waited ("equal
    jitter"), unlike ``hes_sim.backoff``'s full jitter whose draws near 0 would let a
    sink that is down be tried again almost at once."""
    ceiling = min(cap, base * 2 ** min(failures, 62))
    return float(ceiling * (0.5 + 0.5 * rng.random()))
