"""Where each meter stands in the radio sense: its signal class and whether it sits in a
coverage hole. Pure and seeded per meter, so that the same seed and meter id give the same
answer whatever other meters exist and in whatever order they are listed.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Mapping

from hes_sim.meter_sim.meter import meter_seed
from hes_sim.meter_sim.network.specs import CoverageHoles, SignalClass

# salts keep the radio's draws independent of each other and of the meter's own draws
SIGNAL_SALT = 0x51_6E_A1
HOLE_SALT = 0x40_1E
MODEM_SALT = 0x30_DE_30

# A hole's service is generated window by window, each window from its own seed, so that
# the state at any time is computed from the start of its window instead of from the
# epoch. The state at a window's start is drawn from the stationary distribution; with
# exponential durations (memoryless) each window is then an exact stationary two-state
# Markov process. The only artefact is an independent redraw at each boundary, once per
# WINDOW_CYCLES mean cycles, against ~2 * WINDOW_CYCLES genuine flips.
WINDOW_CYCLES = 64


def radio_seed(seed: int, meter_id: str, salt: int) -> int:
    return meter_seed(seed, meter_id) ^ salt


def signal_class_of(meter_id: str, mix: Mapping[SignalClass, float], seed: int) -> SignalClass:
    """The meter's class, drawn from its cell's mix by inverse CDF in SignalClass order."""
    draw = random.Random(radio_seed(seed, meter_id, SIGNAL_SALT)).random()
    cumulative = 0.0
    last = SignalClass.EXCELLENT
    for signal in SignalClass:
        share = mix.get(signal, 0.0)
        if share <= 0:
            continue
        cumulative += share
        last = signal
        if draw < cumulative:
            return signal
    return last  # shares summing to 1 - epsilon: the draw fell in the rounding gap


class HoleService:
    """In/out of service of meters in coverage holes: a pure function of
    (seed, meter_id, time). Results are cached per meter and window, which changes
    nothing but speed."""

    def __init__(self, holes: CoverageHoles, seed: int) -> None:
        self.holes = holes
        self.seed = seed
        self.window_s = WINDOW_CYCLES * (holes.mean_in_service_s + holes.mean_out_of_service_s)
        # meter id -> (window index, in service at window start, flip times in the window)
        self._cache: dict[str, tuple[int, bool, list[float]]] = {}
        self._holed: dict[str, bool] = {}

    def in_hole(self, meter_id: str) -> bool:
        held = self._holed.get(meter_id)
        if held is None:
            rng = random.Random(radio_seed(self.seed, meter_id, HOLE_SALT))
            held = self._holed[meter_id] = rng.random() < self.holes.share
        return held

    def _window(self, meter_id: str, index: int) -> tuple[bool, list[float]]:
        cached = self._cache.get(meter_id)
        if cached is not None and cached[0] == index:
            return cached[1], cached[2]
        holes = self.holes
        rng = random.Random(radio_seed(self.seed, f"{meter_id}#{index}", HOLE_SALT))
        start = index * self.window_s
        end = start + self.window_s
        first = rng.random() >= holes.out_of_service_share
        flips: list[float] = []
        state, t = first, start
        while True:
            t += rng.expovariate(
                1 / (holes.mean_in_service_s if state else holes.mean_out_of_service_s)
            )
            if t >= end:
                break
            flips.append(t)
            state = not state
        self._cache[meter_id] = (index, first, flips)
        return first, flips

    def _index(self, now: float) -> int:
        return int(now // self.window_s)

    def _state(self, meter_id: str, index: int, t: float) -> tuple[bool, float]:
        """The service at t (within window ``index``) and when it next may change."""
        first, flips = self._window(meter_id, index)
        passed = bisect.bisect_right(flips, t)
        # an even number of flips at or before t leaves the window's first state
        state = first if passed % 2 == 0 else not first
        upcoming = flips[passed] if passed < len(flips) else (index + 1) * self.window_s
        return state, upcoming

    def in_service(self, meter_id: str, now: float) -> bool:
        """True for a meter outside any hole; for a meter in a hole, its service at now."""
        if not self.in_hole(meter_id):
            return True
        return self._state(meter_id, self._index(now), now)[0]

    def interrupted(self, meter_id: str, start: float, end: float) -> bool:
        """True when the meter was out of service at any time in [start, end]."""
        if not self.in_hole(meter_id):
            return False
        index, t = self._index(start), start
        while t <= end:
            state, upcoming = self._state(meter_id, index, t)
            if not state:
                return True
            if upcoming >= (index + 1) * self.window_s:
                index += 1  # counted, not derived from the time, so rounding cannot stall
            t = upcoming
        return False
