"""Which meters are online, from their retained state topic and last will. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from hes_sim.clock import Clock
from hes_sim.protocols.topics import MeterState


@dataclass(slots=True)
class Presence:
    state: MeterState
    since: float  # simulated Unix seconds


class MeterPresence:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._meters: dict[str, Presence] = {}
        self.online = 0

    def update(self, meter_id: str, state: MeterState) -> bool:
        """Record ``state`` for the meter; True when it is a change."""
        current = self._meters.get(meter_id)
        if current is not None and current.state is state:
            return False
        if current is not None and current.state is MeterState.ONLINE:
            self.online -= 1
        if state is MeterState.ONLINE:
            self.online += 1
        self._meters[meter_id] = Presence(state, self._clock.now())
        return True

    def get(self, meter_id: str) -> Presence | None:
        return self._meters.get(meter_id)
