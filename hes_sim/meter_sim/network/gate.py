"""When a meter's modem has a cell to talk to: the runtime's side of the radio model.

A meter whose cell is down camps on it (awaits a future of its own, no polling); a meter
in a coverage gap looks again every ``HOLE_CHECK_S`` simulated seconds (gaps are rare and
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
        # per cell: None while it is up, else the futures of the meters camping on it. A
        # future each, not one shared event: a stopping fleet cancels thousands of campers
        # in any order, and an event's waiters leave its deque one linear search at a time.
        self._campers: dict[str, set[asyncio.Future[None]] | None] = dict.fromkeys(cells)

    def cell_down(self, cell_id: str) -> None:
        if self._campers[cell_id] is None:
            self._campers[cell_id] = set()

    def cell_up(self, cell_id: str) -> None:
        campers = self._campers[cell_id]
        self._campers[cell_id] = None
        for camper in campers or ():
            if not camper.done():
                camper.set_result(None)

    def has_service(self, meter_id: str) -> bool:
        cell_id = self._radio.cell_of(meter_id)
        return self._campers[cell_id] is None and self._radio.in_service(
            meter_id, self._clock.now()
        )

    async def in_service(self, meter_id: str) -> None:
        cell_id = self._radio.cell_of(meter_id)
        while True:
            campers = self._campers[cell_id]
            if campers is not None:
                camper = asyncio.get_running_loop().create_future()
                campers.add(camper)
                try:
                    await camper
                finally:
                    campers.discard(camper)
                continue  # the cell is up again (or went down anew meanwhile)
            if self._radio.in_service(meter_id, self._clock.now()):
                return
            await asyncio.sleep(self._clock.wall_seconds(HOLE_CHECK_S))
