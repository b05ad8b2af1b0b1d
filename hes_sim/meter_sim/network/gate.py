"""When a meter's modem has a cell to talk to: the runtime's side of the radio model.

A meter whose cell is down camps on it (awaits the cell's event, no polling); a meter in
a coverage gap looks again every ``HOLE_CHECK_S`` simulated seconds (gaps are rare and
last minutes). Service does not mean a bearer: the attach may still be refused (a full
cell), which the meter's back-off handles.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from hes_sim.clock import SimClock
from hes_sim.meter_sim.network.radio import RadioNetwork

HOLE_CHECK_S = 30.0


class CellServiceGate:
    def __init__(self, radio: RadioNetwork, clock: SimClock, cells: Iterable[str]) -> None:
        self._radio = radio
        self._clock = clock
        self._up: dict[str, asyncio.Event] = {}
        for cell in cells:
            self._up[cell] = asyncio.Event()
            self._up[cell].set()

    def cell_down(self, cell_id: str) -> None:
        self._up[cell_id].clear()

    def cell_up(self, cell_id: str) -> None:
        self._up[cell_id].set()

    def has_service(self, meter_id: str) -> bool:
        up = self._up[self._radio.cell_of(meter_id)]
        return up.is_set() and self._radio.in_service(meter_id, self._clock.now())

    async def in_service(self, meter_id: str) -> None:
        up = self._up[self._radio.cell_of(meter_id)]
        while True:
            await up.wait()
            if self._radio.in_service(meter_id, self._clock.now()):
                return
            await asyncio.sleep(self._clock.wall_seconds(HOLE_CHECK_S))
