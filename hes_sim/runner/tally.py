"""Fleet-side counts of a run, fed by domain events; lets the runner wait without polling."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from hes_sim.events import (
    DecodeFailed,
    Event,
    MeterConnected,
    MeterEventReceived,
    MeterLinkLost,
    MeterRequestRefused,
    PushSent,
    ReadDuplicate,
    ReadProduced,
    ReadStored,
)


@dataclass(slots=True)
class RunTally:
    connects: int = 0
    links_lost: int = 0
    reads_produced: int = 0
    produced_by: Counter[str] = field(default_factory=Counter)  # per meter, for reconciliation
    pushes_sent: int = 0
    pushes_processed: int = 0  # stored, duplicate or rejected by the head-end
    requests_refused: int = 0  # by meters: forged, replayed, or outside an association
    connect_wall_s: list[float] = field(default_factory=list)
    _caught_up: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, event: Event) -> None:
        match event:
            case MeterConnected(connect_wall_s=seconds):
                self.connects += 1
                self.connect_wall_s.append(seconds)
            case MeterLinkLost():
                self.links_lost += 1
            case MeterRequestRefused():
                self.requests_refused += 1
            case ReadProduced(meter_id=meter_id):
                self.reads_produced += 1
                self.produced_by[meter_id] += 1
            case PushSent():
                self.pushes_sent += 1
            case ReadStored(recovered=False) | ReadDuplicate() | MeterEventReceived():
                self.pushes_processed += 1
            case DecodeFailed(meter_id=meter_id) if meter_id is not None:
                self.pushes_processed += 1
            case _:
                return
        if self.pushes_processed >= self.pushes_sent:
            self._caught_up.set()
        else:
            self._caught_up.clear()

    async def head_end_caught_up(self) -> None:
        """Until the head-end has dealt with every push the fleet has sent."""
        while self.pushes_processed < self.pushes_sent:
            self._caught_up.clear()
            await self._caught_up.wait()
